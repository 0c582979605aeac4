"""T5's tokenizer (SentencePiece Unigram + sentinel tokens), built the way transformers 5.x `T5Tokenizer` builds it,
from tokenizer.json or from `spiece.model` alone. mT5 uses the same class: transformers maps model_type
"mt5" to T5Tokenizer and knows no "MT5Tokenizer" name (tokenizer_class_from_name returns None), so neither does
the registry here.

Ids as in the model: `<pad>`=0, `</s>`=1, `<unk>`=2, the pieces, then the `extra_ids` sentinels appended in
reverse order (`<extra_id_99>` first, so `<extra_id_0>` is the last id). Pipeline: the model's charsmap -> split on
whitespace, "▁" before every word -> Unigram (unknown id 2) -> `A </s>` / `A </s> B </s>` (no bos) -> Metaspace
decoder.
"""

from __future__ import annotations

import re

from tokenizers import decoders, pre_tokenizers, processors

from .sentencepiece_unigram import SentencePieceUnigramTokenizer, precompiled, unigram_backend


class T5Tokenizer(SentencePieceUnigramTokenizer):
    """T5 / Flan-T5 / mT5 Unigram tokenizer with `<extra_id_N>` sentinels."""

    model_input_names = ["input_ids", "attention_mask"]
    spm_file = "spiece.model"

    def __init__(self, vocab: list[tuple[str, float]] | None = None, *, eos_token="</s>", unk_token="<unk>",
                 pad_token="<pad>", extra_ids: int = 100, extra_special_tokens=None,
                 additional_special_tokens=None, legacy: bool | None = None,
                 _spm_precompiled_charsmap: bytes | None = None, **kwargs):
        self._extra_ids = extra_ids
        # transformers 5's T5Tokenizer keeps `legacy` as a stored option only: the Metaspace pre-tokenizer above is
        # the non-legacy behaviour (no extra "▁" after special tokens) whatever the value
        self.legacy = legacy
        if isinstance(extra_special_tokens, list):  # the v5 name wins over the v4 one
            additional_special_tokens = extra_special_tokens
        if additional_special_tokens is not None:
            additional_special_tokens = list(additional_special_tokens)
            sentinels = [token for token in additional_special_tokens if "<extra_id_" in str(token)]
            if not sentinels:
                additional_special_tokens += [f"<extra_id_{i}>" for i in range(extra_ids)]
            elif extra_ids > 0 and extra_ids != len(sentinels):
                raise ValueError(f"Both extra_ids ({extra_ids}) and additional_special_tokens "
                                 f"({additional_special_tokens}) are given to T5Tokenizer: the special tokens must "
                                 "include the extra_ids tokens.")
        else:
            additional_special_tokens = [f"<extra_id_{i}>" for i in range(extra_ids)]
        if vocab is None:
            vocab = [(str(pad_token), 0.0), (str(eos_token), 0.0), (str(unk_token), 0.0), ("▁", -2.0)]
            vocab += [(f"<extra_id_{i}>", 0.0) for i in range(extra_ids - 1, -1, -1)]
        kwargs.pop("unk_id", None)  # T5's unknown token is id 2 (as transformers)
        backend = unigram_backend(vocab, unk_id=2)
        if _spm_precompiled_charsmap is not None:
            backend.normalizer = precompiled(_spm_precompiled_charsmap)
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)])
        backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
        super().__init__(backend, eos_token=eos_token, unk_token=unk_token, pad_token=pad_token, extra_ids=extra_ids,
                         extra_special_tokens=additional_special_tokens,
                         **({} if legacy is None else {"legacy": legacy}), **kwargs)
        eos = str(eos_token)
        backend.post_processor = processors.TemplateProcessing(
            single=["$A", eos], pair=["$A", eos, "$B", eos], special_tokens=[(eos, self.eos_token_id)])

    @classmethod
    def spm_vocab(cls, pieces, kwargs):
        """The .model's pieces as they are, then the sentinels `<extra_id_{extra_ids-1}>` ... `<extra_id_0>`."""
        extra_ids = int(kwargs.get("extra_ids", 100))
        kwargs.pop("extra_special_tokens", None)  # the .model's CONTROL pieces (<s>, </s>) are not T5's extras
        return pieces + [(f"<extra_id_{i}>", 0.0) for i in range(extra_ids - 1, -1, -1)]

    def get_sentinel_tokens(self) -> list[str]:
        """The `<extra_id_N>` tokens among the extra special tokens."""
        return list({token for token in self.extra_special_tokens if re.fullmatch(r"<extra_id_\d+>", token)})

    def get_sentinel_token_ids(self) -> list[int]:
        return [self.convert_tokens_to_ids(token) for token in self.get_sentinel_tokens()]


T5TokenizerFast = T5Tokenizer
