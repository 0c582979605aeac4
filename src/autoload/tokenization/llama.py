"""Llama-2 style tokenizer (SentencePiece BPE expressed in `tokenizers`), as transformers 5.x `LlamaTokenizer`
builds it from a tokenizer.json: no normalizer; Metaspace pre-tokenizer ("▁" for spaces, prefix "▁" on the first
word only, no splitting); BPE with byte fallback (<0x..> tokens) and fused unknowns; decoder "▁"->" ", bytes, fuse,
strip the leading space. Left padding by default. The post-processor (`<s> $A`) comes from tokenizer.json.

Llama-3 repos are byte-level: they name `PreTrainedTokenizerFast` (the generic backend), and the ones that still
name `LlamaTokenizer` are loaded with the generic backend too (as transformers' AutoTokenizer does).
"""

from __future__ import annotations

import json
import logging

from tokenizers import Tokenizer, decoders, pre_tokenizers
from tokenizers.models import BPE

from .base import TokenizersBackend
from .loading import TOKENIZER_FILE, model_parts_from_tokenizer_json

logger = logging.getLogger(__name__)


class LlamaTokenizer(TokenizersBackend):
    """Llama / Llama-2 / Mistral-v0.1 style BPE with byte fallback; `<s>`/`</s>`/`<unk>`."""

    model_input_names = ["input_ids", "attention_mask"]
    padding_side = "left"

    def __init__(self, vocab: dict[str, int] | None = None, merges: list | None = None, *,
                 clean_up_tokenization_spaces: bool = False, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                 use_default_system_prompt: bool = False, legacy: bool = False, add_prefix_space: bool | None = None,
                 **kwargs):
        self.add_prefix_space = True if add_prefix_space is None else add_prefix_space
        self.legacy = legacy
        self.use_default_system_prompt = use_default_system_prompt
        if vocab is None:
            vocab = {str(unk_token): 0, str(bos_token): 1, str(eos_token): 2}
        backend = Tokenizer(BPE(vocab=vocab, merges=merges or [], fuse_unk=True, byte_fallback=True, dropout=None))
        backend.normalizer = None
        # "first": only the start of the text gets the "▁" prefix (not the text after each added token);
        # legacy=True (old checkpoints) prefixes every chunk.
        prepend = ("first" if not legacy else "always") if self.add_prefix_space else "never"
        backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=prepend, split=False)
        steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
        if self.add_prefix_space:
            steps.append(decoders.Strip(content=" ", left=1))
        backend.decoder = decoders.Sequence(steps)
        super().__init__(backend, clean_up_tokenization_spaces=clean_up_tokenization_spaces, unk_token=unk_token,
                         bos_token=bos_token, eos_token=eos_token, use_default_system_prompt=use_default_system_prompt,
                         add_prefix_space=add_prefix_space, legacy=legacy, **kwargs)

    @classmethod
    def _from_files(cls, files, kwargs, source):
        if TOKENIZER_FILE not in files:
            raise cls._missing_files_error(source, [TOKENIZER_FILE], files)
        if _is_byte_level(files.json(TOKENIZER_FILE)):
            # Llama-3 style repos often still declare LlamaTokenizer; this class would force Metaspace onto a
            # byte-level vocab. transformers' AutoTokenizer loads those with the generic backend, and so do we.
            logger.warning("%s declares LlamaTokenizer but its tokenizer.json is byte-level: loading it with the "
                           "generic TokenizersBackend (tokenizer.json as it is).", source.describe())
            return TokenizersBackend._from_files(files, kwargs, source)
        kwargs.update(model_parts_from_tokenizer_json(files, "BPE"))
        return cls(**kwargs)


def _is_byte_level(tokenizer_json: dict) -> bool:
    pipeline = {key: value for key, value in tokenizer_json.items() if key not in ("model", "added_tokens")}
    return '"ByteLevel"' in json.dumps(pipeline)


LlamaTokenizerFast = LlamaTokenizer
