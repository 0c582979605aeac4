"""autoload: load pretrained models by name, leaner and faster than the Auto* classes you know.

Public names are exported lazily (PEP 562): `import autoload` imports neither torch nor transformers
nor requests; each name's module is imported the first time the name is used.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "hub_download": "autoload.hub.download",
    "snapshot_download": "autoload.hub.download",
    "HubServer": "autoload.server",
    "PretrainedConfig": "autoload.configuration",
    "PreTrainedModel": "autoload.modeling",
    "set_seed": "autoload.modeling",
    "pipeline": "autoload.pipelines",
    "SentenceTransformer": "autoload.sentence.encoder",
    "CrossEncoder": "autoload.sentence.cross_encoder",
    "GenerationConfig": "autoload.generation",
    "TextStreamer": "autoload.generation",
    "TextIteratorStreamer": "autoload.generation",
    "AutoConfig": "autoload.registry.auto",
    "AutoTokenizer": "autoload.registry.auto",
    **{name: "autoload.registry.auto" for name in (
        "AutoModel", "AutoModelForPreTraining", "AutoModelForMaskedLM", "AutoModelForCausalLM",
        "AutoModelForSequenceClassification", "AutoModelForTokenClassification", "AutoModelForQuestionAnswering",
        "AutoModelForMultipleChoice", "AutoModelForNextSentencePrediction", "AutoModelForTextEncoding",
        "AutoModelForSeq2SeqLM")},
    **{name: "autoload.errors" for name in (
        "RepoFileError", "ConfigError", "ConfigTypeError", "ModelTooLargeError", "ChatTemplateError")},
    **{name: "autoload.hub.errors" for name in (
        "HubError", "HubHTTPError", "RepositoryNotFoundError", "GatedRepoError", "RevisionNotFoundError",
        "EntryNotFoundError", "LocalEntryNotFoundError", "OfflineModeError", "IncompleteSnapshotError",
        "IntegrityError", "UnsafePathError", "InvalidRepoIdError", "InvalidRevisionError",
        "MalformedResponseError", "RetryLimitError", "CacheLockTimeoutError", "AuthenticationError",
        "WriteAccessError", "CommitConflictError", "PayloadTooLargeError", "QuotaExceededError")},
    **{name: "autoload.hub.upload" for name in (
        "create_repo", "create_branch", "create_commit", "upload_file", "upload_folder", "CommitOperationAdd",
        "CommitOperationDelete")},
    # concrete classes, as the reference exports them: every config, model and tokenizer class of the registry
    # (registry/table.py's rows and tokenization.TOKENIZER_CLASSES; tests/test_toplevel.py ties this list to them)
    **{f"{name}Config": "autoload.models.configs" for name in (
        "Bert", "GPT2", "ChatGLM", "Llama", "Mistral", "Qwen2", "Qwen3", "Mixtral", "Qwen2Moe", "Qwen3Moe")},
    **{name: "autoload.models.bert" for name in (
        "BertModel", "BertForPreTraining", "BertForMaskedLM", "BertLMHeadModel", "BertForSequenceClassification",
        "BertForTokenClassification", "BertForQuestionAnswering", "BertForMultipleChoice",
        "BertForNextSentencePrediction")},
    **{name: "autoload.models.configs" for name in ("RobertaConfig", "XLMRobertaConfig", "CamembertConfig")},
    **{f"{family}{head}": "autoload.models.roberta" for family in ("Roberta", "XLMRoberta", "Camembert") for head in (
        "Model", "ForCausalLM", "ForMaskedLM", "ForSequenceClassification", "ForTokenClassification",
        "ForQuestionAnswering", "ForMultipleChoice")},
    "AlbertConfig": "autoload.models.configs",
    **{f"Albert{head}": "autoload.models.albert" for head in (
        "Model", "ForPreTraining", "ForMaskedLM", "ForSequenceClassification", "ForTokenClassification",
        "ForQuestionAnswering", "ForMultipleChoice")},
    "DistilBertConfig": "autoload.models.configs",
    **{name: "autoload.models.distilbert" for name in (
        "DistilBertModel", "DistilBertForMaskedLM", "DistilBertForSequenceClassification",
        "DistilBertForTokenClassification", "DistilBertForQuestionAnswering", "DistilBertForMultipleChoice")},
    "ElectraConfig": "autoload.models.configs",
    **{name: "autoload.models.electra" for name in (
        "ElectraModel", "ElectraForPreTraining", "ElectraForMaskedLM", "ElectraForCausalLM",
        "ElectraForSequenceClassification", "ElectraForTokenClassification", "ElectraForQuestionAnswering",
        "ElectraForMultipleChoice")},
    "MPNetConfig": "autoload.models.configs",
    **{name: "autoload.models.mpnet" for name in (
        "MPNetModel", "MPNetForMaskedLM", "MPNetForSequenceClassification", "MPNetForTokenClassification",
        "MPNetForQuestionAnswering", "MPNetForMultipleChoice")},
    "ModernBertConfig": "autoload.models.configs",
    **{f"ModernBert{head}": "autoload.models.modernbert" for head in (
        "Model", "ForMaskedLM", "ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering",
        "ForMultipleChoice")},
    **{name: "autoload.models.configs" for name in ("BartConfig", "MBartConfig", "MarianConfig")},
    **{name: "autoload.models.bart" for name in (
        "BartModel", "BartForConditionalGeneration", "BartForSequenceClassification", "BartForQuestionAnswering",
        "BartForCausalLM", "MBartModel", "MBartForConditionalGeneration", "MBartForSequenceClassification",
        "MBartForQuestionAnswering", "MBartForCausalLM")},
    **{name: "autoload.models.marian" for name in ("MarianModel", "MarianMTModel", "MarianForCausalLM")},
    "DebertaV2Config": "autoload.models.configs",
    **{f"DebertaV2{head}": "autoload.models.deberta_v2" for head in (
        "Model", "ForMaskedLM", "ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering",
        "ForMultipleChoice")},
    **{name: "autoload.models.gpt2" for name in (
        "GPT2Model", "GPT2LMHeadModel", "GPT2ForSequenceClassification", "GPT2ForTokenClassification",
        "GPT2ForQuestionAnswering")},
    **{name: "autoload.models.configs" for name in ("GemmaConfig", "Gemma2Config", "Gemma3TextConfig", "Gemma3Config")},
    **{name: "autoload.models.gemma" for name in (
        "GemmaModel", "GemmaForCausalLM", "GemmaForSequenceClassification", "GemmaForTokenClassification",
        "Gemma2Model", "Gemma2ForCausalLM", "Gemma2ForSequenceClassification", "Gemma2ForTokenClassification",
        "Gemma3TextModel", "Gemma3ForCausalLM", "Gemma3TextForSequenceClassification", "Gemma3Model",
        "Gemma3ForConditionalGeneration", "Gemma3ForSequenceClassification")},
    **{name: "autoload.models.chatglm" for name in (
        "ChatGLMForConditionalGeneration", "ChatGLMForSequenceClassification")},
    **{f"{family}{head}": "autoload.models.llama" for family in (
        "Llama", "Mistral", "Qwen2", "Qwen3", "Mixtral", "Qwen2Moe", "Qwen3Moe") for head in (
        "Model", "ForCausalLM", "ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering")},
    **{name: "autoload.models.configs" for name in ("Phi3Config", "GlmConfig", "Glm4Config", "BaichuanConfig",
                                                    "InternLM2Config")},
    **{name: "autoload.models.baichuan" for name in ("BaichuanModel", "BaichuanForCausalLM")},
    **{name: "autoload.models.internlm2" for name in ("InternLM2ForCausalLM", "InternLM2ForSequenceClassification")},
    **{f"Phi3{head}": "autoload.models.phi3" for head in (
        "Model", "ForCausalLM", "ForSequenceClassification", "ForTokenClassification")},
    **{f"{family}{head}": "autoload.models.glm" for family in ("Glm", "Glm4") for head in (
        "Model", "ForCausalLM", "ForSequenceClassification", "ForTokenClassification")},
    "T5Config": "autoload.models.configs",
    "MT5Config": "autoload.models.configs",
    **{f"{family}{head}": "autoload.models.t5" for family in ("T5", "MT5") for head in (
        "Model", "ForConditionalGeneration", "EncoderModel", "ForSequenceClassification", "ForTokenClassification",
        "ForQuestionAnswering")},
    **{name: "autoload.tokenization.base" for name in (
        "TokenizersBackend", "PreTrainedTokenizerFast", "PreTrainedTokenizer", "PythonBackend")},
    **{name: "autoload.tokenization.bert" for name in (
        "BertTokenizer", "BertTokenizerFast", "DistilBertTokenizer", "DistilBertTokenizerFast")},
    "ElectraTokenizer": "autoload.tokenization.bert",
    "ElectraTokenizerFast": "autoload.tokenization.bert",
    "GPT2Tokenizer": "autoload.tokenization.gpt2",
    "GPT2TokenizerFast": "autoload.tokenization.gpt2",
    "RobertaTokenizer": "autoload.tokenization.roberta",
    "RobertaTokenizerFast": "autoload.tokenization.roberta",
    "BartTokenizer": "autoload.tokenization.roberta",
    "BartTokenizerFast": "autoload.tokenization.roberta",
    **{name: "autoload.tokenization.mbart" for name in (
        "MBartTokenizer", "MBartTokenizerFast", "MBart50Tokenizer", "MBart50TokenizerFast")},
    "T5Tokenizer": "autoload.tokenization.t5",
    "T5TokenizerFast": "autoload.tokenization.t5",
    "MarianTokenizer": "autoload.tokenization.marian",
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
    "QWenTokenizer": "autoload.tokenization.tiktoken_bpe",
    "ChatGLMTokenizer": "autoload.tokenization.chatglm",
    "ChatGLM4Tokenizer": "autoload.tokenization.chatglm",
    **{name: "autoload.tokenization.llama_spm" for name in (
        "BaichuanTokenizer", "BaiChuanTokenizer", "InternLM2Tokenizer", "InternLM2TokenizerFast")},
}
# reference names served by another class of their module (v5's Python backend is the tokenizers-backed class)
_ALIASES = {"PreTrainedTokenizer": "TokenizersBackend", "PythonBackend": "TokenizersBackend"}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'autoload' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), _ALIASES.get(name, name))
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
