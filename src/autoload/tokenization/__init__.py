"""Tokenizers backed by the Rust `tokenizers` library, with transformers 5.x behaviour (see docs/tokenizers.md).

Names are exported lazily (PEP 562): importing this package imports nothing heavy; `tokenizers` is imported with
the first class used, torch only for `return_tensors="pt"`.
"""

from __future__ import annotations

import importlib

# `tokenizer_class` names (tokenizer_config.json / config.json) -> "module:Class", for the registry.
# transformers 5 has one class per model: the "...Fast" names are aliases of the same class.
TOKENIZER_CLASSES: dict[str, str] = {
    "TokenizersBackend": "autoload.tokenization.base:TokenizersBackend",
    "PreTrainedTokenizerFast": "autoload.tokenization.base:TokenizersBackend",
    "PreTrainedTokenizer": "autoload.tokenization.base:TokenizersBackend",  # v5's PythonBackend is upgraded too
    "PythonBackend": "autoload.tokenization.base:TokenizersBackend",
    "BertTokenizer": "autoload.tokenization.bert:BertTokenizer",
    "BertTokenizerFast": "autoload.tokenization.bert:BertTokenizer",
    "DistilBertTokenizer": "autoload.tokenization.bert:DistilBertTokenizer",
    "DistilBertTokenizerFast": "autoload.tokenization.bert:DistilBertTokenizer",
    "ElectraTokenizer": "autoload.tokenization.bert:BertTokenizer",
    "ElectraTokenizerFast": "autoload.tokenization.bert:BertTokenizer",
    "GPT2Tokenizer": "autoload.tokenization.gpt2:GPT2Tokenizer",
    "GPT2TokenizerFast": "autoload.tokenization.gpt2:GPT2Tokenizer",
    "RobertaTokenizer": "autoload.tokenization.roberta:RobertaTokenizer",
    "RobertaTokenizerFast": "autoload.tokenization.roberta:RobertaTokenizer",
    "BartTokenizer": "autoload.tokenization.roberta:RobertaTokenizer",  # transformers aliases it to Roberta's
    "BartTokenizerFast": "autoload.tokenization.roberta:RobertaTokenizer",
    "MBartTokenizer": "autoload.tokenization.mbart:MBartTokenizer",
    "MBartTokenizerFast": "autoload.tokenization.mbart:MBartTokenizer",
    "MBart50Tokenizer": "autoload.tokenization.mbart:MBart50Tokenizer",
    "MBart50TokenizerFast": "autoload.tokenization.mbart:MBart50Tokenizer",
    "MPNetTokenizer": "autoload.tokenization.mpnet:MPNetTokenizer",
    "MPNetTokenizerFast": "autoload.tokenization.mpnet:MPNetTokenizer",
    "Qwen2Tokenizer": "autoload.tokenization.qwen2:Qwen2Tokenizer",
    "Qwen2TokenizerFast": "autoload.tokenization.qwen2:Qwen2Tokenizer",
    "LlamaTokenizer": "autoload.tokenization.llama:LlamaTokenizer",
    "LlamaTokenizerFast": "autoload.tokenization.llama:LlamaTokenizer",
    "GemmaTokenizer": "autoload.tokenization.gemma:GemmaTokenizer",
    "GemmaTokenizerFast": "autoload.tokenization.gemma:GemmaTokenizer",
    "XLMRobertaTokenizer": "autoload.tokenization.xlm_roberta:XLMRobertaTokenizer",
    "XLMRobertaTokenizerFast": "autoload.tokenization.xlm_roberta:XLMRobertaTokenizer",
    "CamembertTokenizer": "autoload.tokenization.camembert:CamembertTokenizer",
    "CamembertTokenizerFast": "autoload.tokenization.camembert:CamembertTokenizer",
    "DebertaV2Tokenizer": "autoload.tokenization.deberta_v2:DebertaV2Tokenizer",
    "DebertaV2TokenizerFast": "autoload.tokenization.deberta_v2:DebertaV2Tokenizer",
    "AlbertTokenizer": "autoload.tokenization.albert:AlbertTokenizer",
    "AlbertTokenizerFast": "autoload.tokenization.albert:AlbertTokenizer",
    "T5Tokenizer": "autoload.tokenization.t5:T5Tokenizer",
    "T5TokenizerFast": "autoload.tokenization.t5:T5Tokenizer",
    "MarianTokenizer": "autoload.tokenization.marian:MarianTokenizer",  # transformers has no Fast one
    "QWenTokenizer": "autoload.tokenization.tiktoken_bpe:QWenTokenizer",
    "ChatGLMTokenizer": "autoload.tokenization.chatglm:ChatGLMTokenizer",
    "ChatGLM4Tokenizer": "autoload.tokenization.chatglm:ChatGLM4Tokenizer",
    "BaichuanTokenizer": "autoload.tokenization.llama_spm:BaichuanTokenizer",
    "BaiChuanTokenizer": "autoload.tokenization.llama_spm:BaichuanTokenizer",  # Baichuan-7B (v1) spells it so
    "InternLM2Tokenizer": "autoload.tokenization.llama_spm:InternLM2Tokenizer",
    "InternLM2TokenizerFast": "autoload.tokenization.llama_spm:InternLM2Tokenizer",
}

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "TokenizersBackend": "autoload.tokenization.base",
    "PreTrainedTokenizerFast": "autoload.tokenization.base",
    "BatchEncoding": "autoload.tokenization.encoding",
    "BertTokenizer": "autoload.tokenization.bert",
    "BertTokenizerFast": "autoload.tokenization.bert",
    "DistilBertTokenizer": "autoload.tokenization.bert",
    "ElectraTokenizer": "autoload.tokenization.bert",
    "ElectraTokenizerFast": "autoload.tokenization.bert",
    "GPT2Tokenizer": "autoload.tokenization.gpt2",
    "GPT2TokenizerFast": "autoload.tokenization.gpt2",
    "RobertaTokenizer": "autoload.tokenization.roberta",
    "RobertaTokenizerFast": "autoload.tokenization.roberta",
    "BartTokenizer": "autoload.tokenization.roberta",
    "BartTokenizerFast": "autoload.tokenization.roberta",
    "MBartTokenizer": "autoload.tokenization.mbart",
    "MBartTokenizerFast": "autoload.tokenization.mbart",
    "MBart50Tokenizer": "autoload.tokenization.mbart",
    "MBart50TokenizerFast": "autoload.tokenization.mbart",
    "MPNetTokenizer": "autoload.tokenization.mpnet",
    "MPNetTokenizerFast": "autoload.tokenization.mpnet",
    "Qwen2Tokenizer": "autoload.tokenization.qwen2",
    "Qwen2TokenizerFast": "autoload.tokenization.qwen2",
    "LlamaTokenizer": "autoload.tokenization.llama",
    "LlamaTokenizerFast": "autoload.tokenization.llama",
    "GemmaTokenizer": "autoload.tokenization.gemma",
    "GemmaTokenizerFast": "autoload.tokenization.gemma",
    "XLMRobertaTokenizer": "autoload.tokenization.xlm_roberta",
    "XLMRobertaTokenizerFast": "autoload.tokenization.xlm_roberta",
    "CamembertTokenizer": "autoload.tokenization.camembert",
    "CamembertTokenizerFast": "autoload.tokenization.camembert",
    "DebertaV2Tokenizer": "autoload.tokenization.deberta_v2",
    "DebertaV2TokenizerFast": "autoload.tokenization.deberta_v2",
    "AlbertTokenizer": "autoload.tokenization.albert",
    "AlbertTokenizerFast": "autoload.tokenization.albert",
    "T5Tokenizer": "autoload.tokenization.t5",
    "T5TokenizerFast": "autoload.tokenization.t5",
    "MarianTokenizer": "autoload.tokenization.marian",
    "QWenTokenizer": "autoload.tokenization.tiktoken_bpe",
    "ChatGLMTokenizer": "autoload.tokenization.chatglm",
    "ChatGLM4Tokenizer": "autoload.tokenization.chatglm",
    "BaichuanTokenizer": "autoload.tokenization.llama_spm",
    "BaiChuanTokenizer": "autoload.tokenization.llama_spm",
    "InternLM2Tokenizer": "autoload.tokenization.llama_spm",
    "InternLM2TokenizerFast": "autoload.tokenization.llama_spm",
}

__all__ = ["TOKENIZER_CLASSES", "tokenizer_class", *_EXPORTS]


def tokenizer_class(name: str):
    """The class registered under a `tokenizer_class` name (a trailing "Fast" is accepted), or None."""
    target = TOKENIZER_CLASSES.get(name) or TOKENIZER_CLASSES.get(name.removesuffix("Fast"))
    if target is None:
        return None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'autoload.tokenization' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
