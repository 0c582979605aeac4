"""ALBERT's tokenizer (SentencePiece Unigram), built the way transformers 5.x `AlbertTokenizer` builds it, from
tokenizer.json or from `spiece.model` alone (ids as in the model: `<pad>`=0, `<unk>`=1, `[CLS]`, `[SEP]`, `[MASK]`).

Pipeline: "``" and "''" -> '"' -> (not keep_accents) NFKD + strip accents -> (do_lower_case) lowercase -> the
model's charsmap -> split on whitespace (runs of spaces vanish: the old `remove_space`), "▁" before every word ->
Unigram (unknown id 1) -> `[CLS] A [SEP]` / `[CLS] A [SEP] B [SEP]` with token types 0/1 (returned only when
asked: transformers 5 lists no token_type_ids for ALBERT) -> Metaspace decoder.
"""

from __future__ import annotations

from tokenizers import decoders, normalizers, pre_tokenizers, processors

from .sentencepiece_unigram import SentencePieceUnigramTokenizer, precompiled, unigram_backend


class AlbertTokenizer(SentencePieceUnigramTokenizer):
    """ALBERT Unigram tokenizer (lowercased, accents stripped by default)."""

    model_input_names = ["input_ids", "attention_mask"]
    spm_file = "spiece.model"

    def __init__(self, vocab: list[tuple[str, float]] | None = None, *, do_lower_case: bool = True,
                 keep_accents: bool = False, remove_space: bool = True, add_prefix_space: bool = True,
                 trim_offsets: bool = True, bos_token="[CLS]", eos_token="[SEP]", unk_token="<unk>",
                 sep_token="[SEP]", pad_token="<pad>", cls_token="[CLS]", mask_token="[MASK]",
                 _spm_precompiled_charsmap: bytes | None = None, **kwargs):
        self.do_lower_case = do_lower_case
        self.keep_accents = keep_accents
        self.remove_space = remove_space  # stored only: the whitespace split always drops runs of spaces
        self.add_prefix_space = add_prefix_space
        self.trim_offsets = trim_offsets
        kwargs.pop("unk_id", None)  # ALBERT's unknown token is id 1 whatever the model says (as transformers)
        if vocab is None:
            vocab = [(str(token), 0.0) for token in (pad_token, unk_token, cls_token, sep_token, mask_token)]
        backend = unigram_backend(vocab, unk_id=1)
        steps = [normalizers.Replace("``", '"'), normalizers.Replace("''", '"')]
        if not keep_accents:
            steps += [normalizers.NFKD(), normalizers.StripAccents()]
        if do_lower_case:
            steps.append(normalizers.Lowercase())
        if _spm_precompiled_charsmap is not None:
            steps.append(precompiled(_spm_precompiled_charsmap))
        backend.normalizer = normalizers.Sequence(steps)
        prepend = "always" if add_prefix_space else "never"
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=prepend)])
        backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=prepend)
        # set before the base class, so a tokenizer.json's own post-processor replaces it (as transformers)
        backend.post_processor = processors.TemplateProcessing(
            single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
            special_tokens=[("[CLS]", backend.token_to_id(str(cls_token))),
                            ("[SEP]", backend.token_to_id(str(sep_token)))])
        super().__init__(backend, do_lower_case=do_lower_case, keep_accents=keep_accents, remove_space=remove_space,
                         bos_token=bos_token, eos_token=eos_token, sep_token=sep_token, cls_token=cls_token,
                         unk_token=unk_token, pad_token=pad_token, mask_token=mask_token,
                         add_prefix_space=add_prefix_space, trim_offsets=trim_offsets, **kwargs)


AlbertTokenizerFast = AlbertTokenizer
