"""RoBERTa's byte-level BPE, built the way transformers 5.x `RobertaTokenizer` builds it.

GPT-2's pipeline (ByteLevel pre-tokenizer with optional prefix space -> BPE -> ByteLevel decoder) from `vocab.json` +
`merges.txt` or the vocab/merges of a `tokenizer.json`, with RoBERTa's own template whatever tokenizer.json said:
`<s> A </s>` and `<s> A </s></s> B </s>`, every token type 0, offsets trimmed of the spaces the byte-level
pre-tokenizer keeps (trim_offsets). The mask token's `lstrip` (eat the space before `<mask>`) comes from the repo's
added tokens, as in the released checkpoints.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
from tokenizers.models import BPE

from .base import TokenizersBackend
from .gpt2 import bpe_from_files


class RobertaTokenizer(TokenizersBackend):
    """Byte-level BPE for RoBERTa and the models that reuse its vocabulary (Longformer, BART's, CodeBERT, ...).

    add_prefix_space: encode "Hello" like " Hello" (needed with is_split_into_words=True); trim_offsets: offsets
    cover a word without the space the byte-level BPE glues to its front.
    """

    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, vocab: str | dict[str, int] | None = None, merges: str | list | None = None, *,
                 errors: str = "replace", bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
                 unk_token="<unk>", pad_token="<pad>", mask_token="<mask>", add_prefix_space: bool = False,
                 trim_offsets: bool = True, **kwargs):
        self.add_prefix_space = add_prefix_space
        self.trim_offsets = trim_offsets
        if vocab is None:
            vocab = {str(pad_token): 0, str(unk_token): 1, str(cls_token): 2, str(sep_token): 3, str(mask_token): 4}
        backend = Tokenizer(BPE(vocab=vocab, merges=merges or [], dropout=None, continuing_subword_prefix="",
                                end_of_word_suffix="", fuse_unk=False))
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
        backend.decoder = decoders.ByteLevel()
        super().__init__(backend, errors=errors, bos_token=bos_token, eos_token=eos_token, sep_token=sep_token,
                         cls_token=cls_token, unk_token=unk_token, pad_token=pad_token, mask_token=mask_token,
                         add_prefix_space=add_prefix_space, trim_offsets=trim_offsets, **kwargs)
        # <s> A </s> / <s> A </s></s> B </s>; RobertaProcessing also trims offsets (ByteLevel post-processor's job)
        backend.post_processor = processors.RobertaProcessing(
            (str(self.sep_token), self.sep_token_id), (str(self.cls_token), self.cls_token_id),
            trim_offsets=trim_offsets, add_prefix_space=add_prefix_space)

    @classmethod
    def _from_files(cls, files, kwargs, source):
        return bpe_from_files(cls, files, kwargs, source)


RobertaTokenizerFast = RobertaTokenizer
# BART uses RoBERTa's vocabulary and template; transformers 5 resolves these names to RobertaTokenizer too
BartTokenizer = BartTokenizerFast = RobertaTokenizer
