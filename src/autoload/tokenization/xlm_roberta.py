"""XLM-RoBERTa's tokenizer (SentencePiece Unigram with fairseq ids), built the way transformers 5.x
`XLMRobertaTokenizer` builds it, from tokenizer.json or from `sentencepiece.bpe.model` alone (a Unigram model
despite its name).

fairseq ids: `<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3, then the SentencePiece pieces from id 3 on (each piece's id
+1: the model's own `<unk> <s> </s>` at 0-2 are replaced), `<mask>` last. Pipeline: the model's precompiled
charsmap (if any) -> split on whitespace, "▁" before every word -> Unigram -> `<s> A </s>` / `<s> A </s></s> B </s>`
(all token type 0) -> Metaspace decoder ("▁" -> " ", the first one dropped).
"""

from __future__ import annotations

from tokenizers import decoders, pre_tokenizers, processors

from .sentencepiece_unigram import SentencePieceUnigramTokenizer, precompiled, unigram_backend


class XLMRobertaTokenizer(SentencePieceUnigramTokenizer):
    """XLM-R / multilingual-e5 / BGE-M3 style Unigram tokenizer."""

    model_input_names = ["input_ids", "attention_mask"]
    spm_file = "sentencepiece.bpe.model"

    def __init__(self, vocab: list[tuple[str, float]] | None = None, *, add_prefix_space: bool = True,
                 bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                 pad_token="<pad>", mask_token="<mask>", _spm_precompiled_charsmap: bytes | None = None, **kwargs):
        self.add_prefix_space = add_prefix_space
        if vocab is None:
            vocab = [(str(token), 0.0) for token in (bos_token, pad_token, eos_token, unk_token, mask_token)]
        backend = unigram_backend(vocab, unk_id=3)  # fairseq's <unk> is always id 3
        if _spm_precompiled_charsmap is not None:
            backend.normalizer = precompiled(_spm_precompiled_charsmap)
        prepend = "always" if add_prefix_space else "never"
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=prepend)])
        backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=prepend)
        super().__init__(backend, bos_token=bos_token, eos_token=eos_token, sep_token=sep_token, cls_token=cls_token,
                         unk_token=unk_token, pad_token=pad_token, mask_token=mask_token,
                         add_prefix_space=add_prefix_space, **kwargs)
        bos, eos = str(bos_token), str(eos_token)
        backend.post_processor = processors.TemplateProcessing(
            single=[bos, "$A", eos], pair=[bos, "$A", eos, eos, "$B", eos],
            special_tokens=[(bos, self.bos_token_id), (eos, self.eos_token_id)])

    @classmethod
    def spm_vocab(cls, pieces, kwargs):
        """fairseq's layout: its four specials, the pieces after the model's own `<unk> <s> </s>`, then `<mask>`."""
        specials = [str(kwargs.get(name, default)) for name, default in
                    (("bos_token", "<s>"), ("pad_token", "<pad>"), ("eos_token", "</s>"), ("unk_token", "<unk>"))]
        return [(token, 0.0) for token in specials] + pieces[3:] + [(str(kwargs.get("mask_token", "<mask>")), 0.0)]


XLMRobertaTokenizerFast = XLMRobertaTokenizer
