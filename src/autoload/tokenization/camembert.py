"""CamemBERT's tokenizer (SentencePiece Unigram with fairseq ids), built the way transformers 5.x
`CamembertTokenizer` builds it, from tokenizer.json or from `sentencepiece.bpe.model` alone.

fairseq ids: `<s>NOTUSED`=0, `<pad>`=1, `</s>NOTUSED`=2, `<unk>`=3, `<unk>NOTUSED`=4, then every SentencePiece
piece after the model's `<unk>` (so `<s>`=5, `</s>`=6 for the usual `<unk> <s> </s>` start), `<mask>` last
(matched with the spaces before it, lstrip). Pipeline as XLM-R's: charsmap -> whitespace split + "▁" before every
word -> Unigram -> `<s> A </s>` / `<s> A </s></s> B </s>` -> Metaspace decoder.
"""

from __future__ import annotations

from tokenizers import AddedToken, decoders, pre_tokenizers, processors

from .sentencepiece_unigram import SentencePieceUnigramTokenizer, precompiled, unigram_backend

NOT_USED = ["<s>NOTUSED", "</s>NOTUSED", "<unk>NOTUSED"]


class CamembertTokenizer(SentencePieceUnigramTokenizer):
    """CamemBERT (French RoBERTa) Unigram tokenizer."""

    model_input_names = ["input_ids", "attention_mask"]
    spm_file = "sentencepiece.bpe.model"

    def __init__(self, vocab: list[tuple[str, float]] | None = None, *, add_prefix_space: bool = True,
                 bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                 pad_token="<pad>", mask_token="<mask>", extra_special_tokens=None,
                 _spm_precompiled_charsmap: bytes | None = None, **kwargs):
        self.add_prefix_space = add_prefix_space
        if isinstance(mask_token, str):
            mask_token = AddedToken(mask_token, lstrip=True, special=True)
        if extra_special_tokens is None:
            extra_special_tokens = list(NOT_USED)
        if vocab is not None:
            unk_id = next((i for i, (token, _) in enumerate(vocab) if token == str(unk_token)), 0)
        else:
            vocab = [(NOT_USED[0], 0.0), (str(pad_token), 0.0), (NOT_USED[1], 0.0), (str(unk_token), 0.0),
                     (NOT_USED[2], -100.0), (str(mask_token), 0.0)]
            unk_id = 3
        backend = unigram_backend(vocab, unk_id=unk_id)
        if _spm_precompiled_charsmap is not None:
            backend.normalizer = precompiled(_spm_precompiled_charsmap)
        prepend = "always" if add_prefix_space else "never"
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=prepend, split=True)])
        backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=prepend)
        super().__init__(backend, bos_token=bos_token, eos_token=eos_token, sep_token=sep_token, cls_token=cls_token,
                         unk_token=unk_token, pad_token=pad_token, mask_token=mask_token,
                         extra_special_tokens=extra_special_tokens, add_prefix_space=add_prefix_space, **kwargs)
        bos, eos = self.bos_token, self.eos_token
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
            special_tokens=[(bos, self.bos_token_id), (eos, self.eos_token_id)])

    @classmethod
    def spm_vocab(cls, pieces, kwargs):
        """fairseq's layout: `<s>NOTUSED <pad> </s>NOTUSED <unk> <unk>NOTUSED`, the pieces after the model's
        `<unk>` (id 0), then `<mask>`."""
        head = [(NOT_USED[0], 0.0), (str(kwargs.get("pad_token", "<pad>")), 0.0), (NOT_USED[1], 0.0),
                (str(kwargs.get("unk_token", "<unk>")), 0.0), (NOT_USED[2], -100.0)]
        return head + pieces[1:] + [(str(kwargs.get("mask_token", "<mask>")), 0.0)]


CamembertTokenizerFast = CamembertTokenizer
