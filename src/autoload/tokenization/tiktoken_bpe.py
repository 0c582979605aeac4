"""`QWenTokenizer`: Qwen(-1)'s tokenizer from its `qwen.tiktoken` rank file, without remote code. The rank file
becomes a `tokenizers` BPE in `tiktoken_ranks.py`."""

from __future__ import annotations

from tokenizers import Tokenizer

from .base import TokenizersBackend
from .tiktoken_ranks import build_from_ranks


class QWenTokenizer(TokenizersBackend):
    """Qwen(-1) tokenizer from `qwen.tiktoken` (the repos whose remote code uses tiktoken), without remote code.

    `<|endoftext|>` is eos, pad and unk. Saved as a plain tokenizer.json (`tokenizer_class: TokenizersBackend`).
    """

    saved_class_name = "TokenizersBackend"

    def __init__(self, tokenizer_object: Tokenizer | None = None, *, vocab_file: str | None = None,
                 eos_token="<|endoftext|>", pad_token="<|endoftext|>", unk_token="<|endoftext|>", **kwargs):
        if tokenizer_object is None:
            if vocab_file is None:
                raise ValueError("QWenTokenizer needs a rank file (vocab_file='qwen.tiktoken') or a tokenizer_object.")
            tokenizer_object = build_from_ranks(vocab_file)
        super().__init__(tokenizer_object, eos_token=eos_token, pad_token=pad_token, unk_token=unk_token, **kwargs)

    @classmethod
    def _from_files(cls, files, kwargs, source):
        rank_files = sorted(name for name in files if name.endswith(".tiktoken") and "/" not in name)
        if not rank_files:
            raise cls._missing_files_error(source, ["qwen.tiktoken (a *.tiktoken rank file)"], files)
        return cls(vocab_file=files[rank_files[0]], **kwargs)
