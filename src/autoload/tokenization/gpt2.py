"""GPT-2's byte-level BPE, built the way transformers 5.x `GPT2Tokenizer` builds it.

From `vocab.json` + `merges.txt` or from the vocab/merges of a `tokenizer.json`: ByteLevel pre-tokenizer (GPT-2's
split regex, bytes mapped to printable characters, optional prefix space) -> BPE -> ByteLevel decoder. The
post-processor is tokenizer.json's (usually ByteLevel offsets trimming); without one, nothing is added around a text.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, pre_tokenizers
from tokenizers.models import BPE

from .base import TokenizersBackend
from .loading import TOKENIZER_FILE, model_parts_from_tokenizer_json


class GPT2Tokenizer(TokenizersBackend):
    """Byte-level BPE for GPT-2 style models; `<|endoftext|>` is bos, eos and unk; no pad token by default.

    add_prefix_space: encode "Hello" like " Hello" (GPT-2 marks word starts with the space before them).
    """

    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, vocab: str | dict[str, int] | None = None, merges: str | list | None = None, *,
                 errors: str = "replace", unk_token="<|endoftext|>", bos_token="<|endoftext|>",
                 eos_token="<|endoftext|>", pad_token=None, add_prefix_space: bool = False, **kwargs):
        self.add_prefix_space = add_prefix_space
        backend = Tokenizer(BPE(vocab=vocab if vocab is not None else {}, merges=merges or [], dropout=None,
                                continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
        backend.decoder = decoders.ByteLevel()
        super().__init__(backend, errors=errors, unk_token=unk_token, bos_token=bos_token, eos_token=eos_token,
                         pad_token=pad_token, add_prefix_space=add_prefix_space, **kwargs)

    @classmethod
    def _from_files(cls, files, kwargs, source):
        return bpe_from_files(cls, files, kwargs, source)


def bpe_from_files(cls, files, kwargs, source):
    """Build a byte-level BPE class from tokenizer.json's model, else from vocab.json + merges.txt."""
    if TOKENIZER_FILE in files:
        kwargs.update(model_parts_from_tokenizer_json(files, "BPE"))
    elif "vocab.json" in files and "merges.txt" in files:
        kwargs["vocab"], kwargs["merges"] = files["vocab.json"], files["merges.txt"]
    else:
        raise cls._missing_files_error(source, [TOKENIZER_FILE, "vocab.json + merges.txt"], files)
    return cls(**kwargs)


GPT2TokenizerFast = GPT2Tokenizer
