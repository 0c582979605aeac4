"""mBART's tokenizers (SentencePiece Unigram with fairseq ids and language codes), built the way transformers 5.x
`MBartTokenizer` (mbart-large-cc25, mbart-large-en-ro: 25 languages) and `MBart50Tokenizer` (mbart-large-50*:
52 languages) build them, from tokenizer.json or from `sentencepiece.bpe.model` alone.

Ids: XLM-R's fairseq layout (`<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3, the SentencePiece pieces from id 4 on), then
the language codes (`ar_AR` ... `zh_CN`, special tokens), `<mask>` last (lstrip). Templates follow the language:
* mBART (cc25): source `tokens </s> src_lang`, target (`text_target=`) `tokens </s> tgt_lang`; pairs are
  concatenated before the suffix;
* mBART-50: `src_lang tokens </s>` and `tgt_lang tokens </s>`.
Setting `src_lang` rebuilds the template at once; `tgt_lang` is used while encoding `text_target`.
`lang_code_to_id["fr_XX"]` is what generation's `forced_bos_token_id` takes.
"""

from __future__ import annotations

from tokenizers import AddedToken, Regex, decoders, normalizers, pre_tokenizers, processors

from .sentencepiece_unigram import SentencePieceUnigramTokenizer, precompiled, unigram_backend

FAIRSEQ_LANGUAGE_CODES = ["ar_AR", "cs_CZ", "de_DE", "en_XX", "es_XX", "et_EE", "fi_FI", "fr_XX", "gu_IN", "hi_IN",
                          "it_IT", "ja_XX", "kk_KZ", "ko_KR", "lt_LT", "lv_LV", "my_MM", "ne_NP", "nl_XX", "ro_RO",
                          "ru_RU", "si_LK", "tr_TR", "vi_VN", "zh_CN"]
MBART50_LANGUAGE_CODES = FAIRSEQ_LANGUAGE_CODES + [
    "af_ZA", "az_AZ", "bn_IN", "fa_IR", "he_IL", "hr_HR", "id_ID", "ka_GE", "km_KH", "mk_MK", "ml_IN", "mn_MN",
    "mr_IN", "pl_PL", "ps_AF", "pt_XX", "sv_SE", "sw_KE", "ta_IN", "te_IN", "th_TH", "tl_XX", "uk_UA", "ur_PK",
    "xh_ZA", "gl_ES", "sl_SI"]


class MBartTokenizer(SentencePieceUnigramTokenizer):
    """mBART (cc25) tokenizer: `tokens </s> lang_code`, the code of `src_lang` (default en_XX) or, for
    `text_target=`, of `tgt_lang` (default: src_lang)."""

    model_input_names = ["input_ids", "attention_mask"]
    spm_file = "sentencepiece.bpe.model"
    language_codes = FAIRSEQ_LANGUAGE_CODES
    # normalizer after the charsmap: strip the right end, runs of 2+ spaces -> this (mBART "▁", mBART-50 " ")
    space_run = "▁"
    codes_first = True  # extra special tokens: the codes, then the config's (mBART-50: the other way round)

    def __init__(self, vocab: list[tuple[str, float]] | None = None, *, bos_token="<s>", eos_token="</s>",
                 sep_token="</s>", cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                 src_lang: str | None = None, tgt_lang: str | None = None, extra_special_tokens=None,
                 additional_special_tokens=None, _spm_precompiled_charsmap: bytes | None = None, **kwargs):
        if isinstance(mask_token, str):
            mask_token = AddedToken(mask_token, lstrip=True, rstrip=False, special=True)
        if vocab is None:
            vocab = [(str(token), 0.0) for token in (cls_token, pad_token, eos_token, unk_token)] + [("▁", -2.0)]
            vocab += [(code, 0.0) for code in self.language_codes] + [(str(mask_token), 0.0)]
        backend = unigram_backend(vocab, unk_id=3)  # fairseq's <unk> is always id 3
        steps = [precompiled(_spm_precompiled_charsmap)] if _spm_precompiled_charsmap is not None else []
        backend.normalizer = normalizers.Sequence(
            steps + [normalizers.Strip(left=False, right=True), normalizers.Replace(Regex(" {2,}"), self.space_run)])
        backend.pre_tokenizer = self._pre_tokenizer()
        backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
        # the language codes are special tokens (ahead of the config's own extras), whatever the config lists
        extras = extra_special_tokens if isinstance(extra_special_tokens, list) else additional_special_tokens
        codes = [AddedToken(code, special=True) for code in self.language_codes]
        extras = [token for token in extras or [] if str(token) not in self.language_codes]
        extras = codes + extras if self.codes_first else extras + codes
        super().__init__(backend, bos_token=bos_token, eos_token=eos_token, sep_token=sep_token, cls_token=cls_token,
                         unk_token=unk_token, pad_token=pad_token, mask_token=mask_token, extra_special_tokens=extras,
                         src_lang=src_lang, tgt_lang=tgt_lang, **kwargs)
        self.lang_code_to_id = {code: self.convert_tokens_to_ids(code) for code in self.language_codes}
        self.id_to_lang_code = {index: code for code, index in self.lang_code_to_id.items()}
        self.fairseq_offset = 1
        self.fairseq_tokens_to_ids = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, **self.lang_code_to_id,
                                      "<mask>": self.convert_tokens_to_ids(str(mask_token))}
        self.fairseq_ids_to_tokens = {index: token for token, index in self.fairseq_tokens_to_ids.items()}
        self._src_lang = src_lang if src_lang is not None else "en_XX"
        self.tgt_lang = tgt_lang
        self.set_src_lang_special_tokens(self._src_lang)

    @staticmethod
    def _pre_tokenizer():
        metaspace = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
        return pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), metaspace])

    @classmethod
    def spm_vocab(cls, pieces, kwargs):
        """fairseq's layout: its four specials, the pieces after the model's own `<unk> <s> </s>`, the language
        codes, then `<mask>`."""
        specials = [str(kwargs.get(name, default)) for name, default in
                    (("bos_token", "<s>"), ("pad_token", "<pad>"), ("eos_token", "</s>"), ("unk_token", "<unk>"))]
        return ([(token, 0.0) for token in specials] + pieces[3:] + [(code, 0.0) for code in cls.language_codes]
                + [(str(kwargs.get("mask_token", "<mask>")), 0.0)])

    # -- languages ---------------------------------------------------------------------------------------------

    @property
    def src_lang(self) -> str:
        return self._src_lang

    @src_lang.setter
    def src_lang(self, new_src_lang: str) -> None:
        self.set_src_lang_special_tokens(new_src_lang)  # an unknown code raises before anything changes
        self._src_lang = new_src_lang

    def _lang_id(self, lang: str) -> int:
        index = self._tokenizer.token_to_id(lang)  # None for a token outside the vocab (no <unk> fallback)
        if index is None:
            raise ValueError(f"{lang!r} is not a language code of this tokenizer; known: "
                             f"{', '.join(self.language_codes)}")
        return index

    def _set_template(self, prefix: list[int], suffix: list[int]) -> None:
        self.prefix_tokens, self.suffix_tokens = prefix, suffix
        prefix_str, suffix_str = self.convert_ids_to_tokens(prefix), self.convert_ids_to_tokens(suffix)
        self._tokenizer.post_processor = processors.TemplateProcessing(
            single=prefix_str + ["$A"] + suffix_str, pair=prefix_str + ["$A", "$B"] + suffix_str,
            special_tokens=list(zip(prefix_str + suffix_str, prefix + suffix)))

    def set_src_lang_special_tokens(self, src_lang: str) -> None:
        """Source template: no prefix, suffix `</s> src_lang`."""
        self.cur_lang_code = self._lang_id(src_lang)
        self._set_template([], [self.eos_token_id, self.cur_lang_code])

    def set_tgt_lang_special_tokens(self, lang: str) -> None:
        """Target template: no prefix, suffix `</s> tgt_lang`."""
        self.cur_lang_code = self._lang_id(lang)
        self._set_template([], [self.eos_token_id, self.cur_lang_code])

    def _switch_to_input_mode(self) -> None:
        self.set_src_lang_special_tokens(self.src_lang)

    def _switch_to_target_mode(self) -> None:
        if self.tgt_lang is None:
            self.tgt_lang = self._src_lang
        self.set_tgt_lang_special_tokens(self.tgt_lang)

    def __call__(self, text=None, text_pair=None, *, text_target=None, text_pair_target=None, **kwargs):
        """As TokenizersBackend.__call__; `text_target` is encoded with the target language's template."""
        encoded = super().__call__(text, text_pair, **kwargs) if text is not None else None
        if text_target is None:
            if encoded is None:
                raise ValueError("Give the text to tokenize (text=...) or a target (text_target=...).")
            return encoded
        self._switch_to_target_mode()
        try:
            target = super().__call__(text_target, text_pair_target, **kwargs)
        finally:
            self._switch_to_input_mode()
        if encoded is None:
            return target
        encoded["labels"] = target["input_ids"]
        return encoded

    def _build_translation_inputs(self, raw_inputs, return_tensors: str | None, src_lang: str | None,
                                  tgt_lang: str | None, **extra_kwargs):
        """The translation pipeline's inputs: the source encoded in `src_lang`, `forced_bos_token_id` = tgt_lang."""
        if src_lang is None or tgt_lang is None:
            raise ValueError("Translation requires a `src_lang` and a `tgt_lang` for this model")
        self.src_lang = src_lang
        inputs = self(raw_inputs, add_special_tokens=True, return_tensors=return_tensors, **extra_kwargs)
        inputs["forced_bos_token_id"] = self.convert_tokens_to_ids(tgt_lang)
        return inputs


class MBart50Tokenizer(MBartTokenizer):
    """mBART-50 tokenizer: `lang_code tokens </s>`, 52 language codes."""

    language_codes = MBART50_LANGUAGE_CODES
    space_run = " "
    codes_first = False

    def __init__(self, vocab: list[tuple[str, float]] | None = None, *, bos_token=None, **kwargs):
        if vocab is not None and not any(token in MBART50_LANGUAGE_CODES for token, _ in vocab):
            # a vocab without the codes is read as the .model's pieces and laid out as fairseq's (as transformers)
            vocab = self.spm_vocab([(str(token), float(score)) for token, score in vocab], kwargs)
        super().__init__(vocab, bos_token=bos_token, **kwargs)  # no bos_token: the reference has none

    @staticmethod
    def _pre_tokenizer():
        return pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)

    def set_src_lang_special_tokens(self, src_lang: str) -> None:
        """Source template: prefix `src_lang`, suffix `</s>`."""
        self.cur_lang_code_id = self._lang_id(src_lang)
        self._set_template([self.cur_lang_code_id], [self.eos_token_id])

    def set_tgt_lang_special_tokens(self, tgt_lang: str) -> None:
        """Target template: prefix `tgt_lang`, suffix `</s>`."""
        self.cur_lang_code_id = self._lang_id(tgt_lang)
        self._set_template([self.cur_lang_code_id], [self.eos_token_id])


MBartTokenizerFast = MBartTokenizer
MBart50TokenizerFast = MBart50Tokenizer
