"""Gemma's tokenizer (Gemma 1/2/3: SentencePiece BPE expressed in `tokenizers`), as transformers 5.x
`GemmaTokenizer` builds it from a tokenizer.json: spaces normalised to "▁" (no prefix space), a pre-tokenizer that
splits on " " (a no-op after the normaliser, kept as the reference has it), BPE with byte fallback and fused unknowns,
decoder "▁"->" ", bytes, fuse (no strip). `<pad>` 0, `<eos>` 1, `<bos>` 2, `<unk>` 3, `<mask>` 4; left padding.
The post-processor (`<bos> $A`) comes from tokenizer.json. The vocabulary is read from tokenizer.json only
(the reference ignores tokenizer.model when tokenizer.json is there, and the released repos ship it).
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import BPE

from .base import TokenizersBackend
from .loading import TOKENIZER_FILE, model_parts_from_tokenizer_json


class GemmaTokenizer(TokenizersBackend):
    """Gemma's BPE with byte fallback; `<bos>`/`<eos>`/`<pad>`/`<unk>`/`<mask>`."""

    model_input_names = ["input_ids", "attention_mask"]
    padding_side = "left"

    def __init__(self, vocab: dict[str, int] | None = None, merges: list | None = None, *, unk_token="<unk>",
                 bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", mask_token="<mask>", **kwargs):
        if vocab is None:
            vocab = {str(pad_token): 0, str(eos_token): 1, str(bos_token): 2, str(unk_token): 3, str(mask_token): 4}
        backend = Tokenizer(BPE(vocab=vocab, merges=merges or [], fuse_unk=True, unk_token=str(unk_token),
                                dropout=None, byte_fallback=True))
        backend.normalizer = normalizers.Replace(" ", "▁")
        backend.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="merged_with_previous", invert=False)
        backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
        super().__init__(backend, unk_token=unk_token, bos_token=bos_token, eos_token=eos_token, pad_token=pad_token,
                         mask_token=mask_token, **kwargs)

    @classmethod
    def _from_files(cls, files, kwargs, source):
        if TOKENIZER_FILE not in files:
            raise cls._missing_files_error(source, [TOKENIZER_FILE], files)
        kwargs.update(model_parts_from_tokenizer_json(files, "BPE"))
        return cls(**kwargs)


GemmaTokenizerFast = GemmaTokenizer
