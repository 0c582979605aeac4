"""BERT's WordPiece tokenizer, built the way transformers 5.x `BertTokenizer` builds it.

From `vocab.txt` alone (one token per line, id = line number) or from the vocab of a `tokenizer.json`; either way the
pipeline is this class's own: BertNormalizer (clean text, spaces around CJK characters, lowercase + strip accents as
configured) -> BertPreTokenizer (split on whitespace and punctuation) -> WordPiece ("##" continuation, 100 chars per
word at most) -> `[CLS] A [SEP]` / `[CLS] A [SEP] B [SEP]` with token types 0/1 -> WordPiece decoder (which also
removes the space before punctuation).
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

from .base import TokenizersBackend
from .loading import TOKENIZER_FILE, model_parts_from_tokenizer_json


class BertTokenizer(TokenizersBackend):
    """WordPiece tokenizer for BERT and its relatives (MiniLM, bert-base-chinese, ...).

    do_lower_case: lowercase the input; strip_accents: None follows do_lower_case; tokenize_chinese_chars: put
    spaces around each CJK character so it becomes a word of its own.
    """

    model_input_names = ["input_ids", "token_type_ids", "attention_mask"]

    def __init__(self, vocab: str | dict[str, int] | None = None, *, do_lower_case: bool = True,
                 unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]",
                 tokenize_chinese_chars: bool = True, strip_accents: bool | None = None, **kwargs):
        self.do_lower_case = do_lower_case
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.strip_accents = strip_accents
        if vocab is None:
            vocab = {str(pad_token): 0, str(unk_token): 1, str(cls_token): 2, str(sep_token): 3, str(mask_token): 4}
        # A vocab.txt path is read by tokenizers itself, exactly as transformers does (line index = id).
        backend = Tokenizer(WordPiece(vocab, unk_token=str(unk_token)))
        backend.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=tokenize_chinese_chars,
                                                        strip_accents=strip_accents, lowercase=do_lower_case)
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece(prefix="##")
        super().__init__(backend, do_lower_case=do_lower_case, unk_token=unk_token, sep_token=sep_token,
                         pad_token=pad_token, cls_token=cls_token, mask_token=mask_token,
                         tokenize_chinese_chars=tokenize_chinese_chars, strip_accents=strip_accents, **kwargs)
        # BERT always writes its own template, whatever tokenizer.json said (2/3 only if the ids are unknown).
        cls_id = self.cls_token_id if self.cls_token_id is not None else 2
        sep_id = self.sep_token_id if self.sep_token_id is not None else 3
        cls, sep = str(self.cls_token), str(self.sep_token)
        backend.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0", pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, cls_id), (sep, sep_id)])

    @classmethod
    def _from_files(cls, files, kwargs, source):
        if TOKENIZER_FILE in files:
            kwargs.update(model_parts_from_tokenizer_json(files, "WordPiece"))
        elif "vocab.txt" in files:
            kwargs["vocab"] = files["vocab.txt"]
        else:
            raise cls._missing_files_error(source, [TOKENIZER_FILE, "vocab.txt"], files)
        return cls(**kwargs)


class DistilBertTokenizer(BertTokenizer):
    """BERT's tokenizer without token_type_ids (DistilBERT has no segment embeddings)."""

    model_input_names = ["input_ids", "attention_mask"]


BertTokenizerFast = BertTokenizer
DistilBertTokenizerFast = DistilBertTokenizer
ElectraTokenizer = ElectraTokenizerFast = BertTokenizer  # as the reference: ELECTRA uses BERT's tokenizer as is
