"""DeBERTa-v2/v3's tokenizer (SentencePiece Unigram), built the way transformers 5.x `DebertaV2Tokenizer` builds
it, from tokenizer.json or from `spm.model` alone (ids as in the model: DeBERTa-v3's `[PAD] [CLS] [SEP] [UNK]` are
its first pieces; `[MASK]` is added after them).

Pipeline: (do_lower_case) lowercase -> with a charsmap: charsmap, strip trailing spaces, collapse runs of spaces;
without one: whitespace runs/tabs/newlines -> " ", NFC, strip trailing spaces -> (split_by_punct) every
punctuation character its own word -> "▁" for spaces and before the text (before every word when add_prefix_space)
-> Unigram -> `[CLS] A [SEP]` / `[CLS] A [SEP] B [SEP]` with token types 0/1 -> Metaspace decoder.
"""

from __future__ import annotations

from tokenizers import Regex, decoders, normalizers, pre_tokenizers, processors

from .sentencepiece_unigram import SentencePieceUnigramTokenizer, precompiled, unigram_backend


class DebertaV2Tokenizer(SentencePieceUnigramTokenizer):
    """DeBERTa-v2/v3 Unigram tokenizer; returns token_type_ids."""

    model_input_names = ["input_ids", "attention_mask", "token_type_ids"]
    spm_file = "spm.model"

    def __init__(self, vocab: list[tuple[str, float]] | None = None, *, do_lower_case: bool = False,
                 split_by_punct: bool = False, add_prefix_space: bool = True, unk_id: int = 1,
                 bos_token="[CLS]", eos_token="[SEP]", unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                 cls_token="[CLS]", mask_token="[MASK]", _spm_precompiled_charsmap: bytes | None = None, **kwargs):
        self.do_lower_case = do_lower_case
        self.split_by_punct = split_by_punct
        self.add_prefix_space = add_prefix_space
        if vocab is None:
            vocab = [(str(token), 0.0) for token in
                     (pad_token, unk_token, bos_token, eos_token, sep_token, cls_token, mask_token)]
            unk_id = 1
        elif (str(unk_token), 0.0) in vocab:  # the unknown token's position, when it has score 0 (as transformers)
            unk_id = vocab.index((str(unk_token), 0.0))
        backend = unigram_backend(vocab, unk_id=unk_id)

        steps = [normalizers.Lowercase()] if do_lower_case else []
        if _spm_precompiled_charsmap is not None:
            steps += [precompiled(_spm_precompiled_charsmap), normalizers.Strip(left=False, right=True),
                      normalizers.Replace(Regex(r" {2,}"), " ")]
        else:
            steps += [normalizers.Replace(Regex(r"\s{2,}|[\n\r\t]"), " "), normalizers.NFC(),
                      normalizers.Strip(left=False, right=True)]
        backend.normalizer = normalizers.Sequence(steps)
        prepend = "always" if add_prefix_space else "first"
        words = [pre_tokenizers.Punctuation(behavior="isolated")] if split_by_punct else []
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            words + [pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=prepend)])
        backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=prepend)
        super().__init__(backend, bos_token=bos_token, eos_token=eos_token, unk_token=unk_token, sep_token=sep_token,
                         cls_token=cls_token, pad_token=pad_token, mask_token=mask_token, unk_id=unk_id,
                         do_lower_case=do_lower_case, split_by_punct=split_by_punct,
                         add_prefix_space=add_prefix_space, **kwargs)
        cls, sep = str(self.cls_token), str(self.sep_token)
        cls_id = self.cls_token_id if self.cls_token_id is not None else 0
        sep_id = self.sep_token_id if self.sep_token_id is not None else 0
        backend.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0", pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, cls_id), (sep, sep_id)])


DebertaV2TokenizerFast = DebertaV2Tokenizer
