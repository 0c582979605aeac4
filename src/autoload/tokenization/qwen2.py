"""Qwen2's byte-level BPE (also Qwen2.5 / Qwen3), built the way transformers 5.x `Qwen2Tokenizer` builds it.

NFC normalizer -> split with Qwen's regex (single digits, letters with one leading non-letter, ...) -> ByteLevel
(no regex of its own, no prefix space) -> BPE -> ByteLevel decoder. `<|endoftext|>` is unk, eos and pad; there is
no bos. The vocab and merges come from tokenizer.json, else vocab.json + merges.txt.
"""

from __future__ import annotations

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import BPE

from .base import TokenizersBackend
from .gpt2 import bpe_from_files
from .patterns import QWEN2_PATTERN


class Qwen2Tokenizer(TokenizersBackend):
    """Byte-level BPE of the Qwen2 family."""

    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, vocab: str | dict[str, int] | None = None, merges: str | list | None = None, *,
                 unk_token="<|endoftext|>", bos_token=None, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                 add_prefix_space: bool | None = None, **kwargs):
        self.add_prefix_space = bool(add_prefix_space)
        backend = Tokenizer(BPE(vocab=vocab if vocab is not None else {"<|endoftext|>": 0}, merges=merges or [],
                                dropout=None, unk_token=None, continuing_subword_prefix="", end_of_word_suffix="",
                                fuse_unk=False, byte_fallback=False))
        backend.decoder = decoders.ByteLevel()
        backend.normalizer = normalizers.NFC()
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=self.add_prefix_space, use_regex=False),
        ])
        super().__init__(backend, unk_token=unk_token, bos_token=bos_token, eos_token=eos_token, pad_token=pad_token,
                         add_prefix_space=add_prefix_space, **kwargs)
        # every special token is matched whole, before normalization (as Qwen2Tokenizer does last)
        self.add_tokens([AddedToken(token, special=True) for token in self.all_special_tokens])

    @classmethod
    def _from_files(cls, files, kwargs, source):
        return bpe_from_files(cls, files, kwargs, source)


Qwen2TokenizerFast = Qwen2Tokenizer
