"""MPNet's WordPiece tokenizer, built the way transformers 5.x `MPNetTokenizer` builds it.

BERT's pipeline (BertNormalizer -> BertPreTokenizer -> WordPiece -> WordPiece decoder, see bert.py) from `vocab.txt`
or the vocab of a `tokenizer.json`, with RoBERTa's special tokens and template instead of BERT's: `<s> A </s>` and
`<s> A </s></s> B </s>`, every token type 0 (MPNet has no segment embeddings, so no token_type_ids). `<mask>` eats
the space before it (lstrip), also when set later with `tok.mask_token = ...`.
"""

from __future__ import annotations

from tokenizers import AddedToken, processors

from .base import _SpecialToken
from .bert import BertTokenizer


class _MaskToken(_SpecialToken):
    """`tok.mask_token = "<mask>"` stores an lstrip token, as MPNet's reference setter does."""

    def __set__(self, obj, value):
        super().__set__(obj, AddedToken(value, lstrip=True, rstrip=False) if isinstance(value, str) else value)


def _plain(token):
    """A str special token as the reference wraps it: no lstrip/rstrip (an AddedToken is kept as given)."""
    return AddedToken(token, lstrip=False, rstrip=False) if isinstance(token, str) else token


class MPNetTokenizer(BertTokenizer):
    """WordPiece tokenizer for MPNet (microsoft/mpnet-base, sentence-transformers' all-mpnet-base-v2, ...).

    do_lower_case, tokenize_chinese_chars and strip_accents as BertTokenizer's.
    """

    model_input_names = ["input_ids", "attention_mask"]
    mask_token = _MaskToken()

    def __init__(self, vocab: str | dict[str, int] | None = None, *, do_lower_case: bool = True, bos_token="<s>",
                 eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="[UNK]", pad_token="<pad>",
                 mask_token="<mask>", tokenize_chinese_chars: bool = True, strip_accents: bool | None = None,
                 **kwargs):
        if isinstance(mask_token, str):
            mask_token = AddedToken(mask_token, lstrip=True, rstrip=False)
        # an empty vocab (not BERT's five tokens) when none is given: the special tokens are then added in order
        super().__init__({} if vocab is None else vocab, do_lower_case=do_lower_case, bos_token=_plain(bos_token),
                         eos_token=_plain(eos_token), sep_token=_plain(sep_token), cls_token=_plain(cls_token),
                         unk_token=_plain(unk_token), pad_token=_plain(pad_token), mask_token=mask_token,
                         tokenize_chinese_chars=tokenize_chinese_chars, strip_accents=strip_accents, **kwargs)
        # RoBERTa's template replaces the BERT one set above (0 and 2 only if the ids are unknown)
        cls_id = self.cls_token_id if self.cls_token_id is not None else 0
        sep_id = self.sep_token_id if self.sep_token_id is not None else 2
        self.backend_tokenizer.post_processor = processors.RobertaProcessing(
            (str(self.sep_token), sep_id), (str(self.cls_token), cls_id), trim_offsets=True, add_prefix_space=False)


MPNetTokenizerFast = MPNetTokenizer
