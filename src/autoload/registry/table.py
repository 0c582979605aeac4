"""The registry, as data: model_type -> config class, tokenizer class name, {Auto class: model class}.

Strings are "module:Class" (imported on first use) except the tokenizer, which is a `tokenizer_class` name
looked up in `TOKENIZER_CLASSES` (None: the generic tokenizers-backed class, as the reference does for llama
and mistral). A test ties every entry to the files.
"""

from __future__ import annotations


def _tasks(module: str, **classes: str) -> dict[str, str]:
    return {f"AutoModel{task}": f"autoload.models.{module}:{name}" for task, name in classes.items()}


MODEL_TYPES: dict[str, dict] = {
    "bert": {
        "config": "autoload.models.configs:BertConfig",
        "tokenizer": "BertTokenizer",
        "tasks": _tasks("bert", **{
            "": "BertModel", "ForPreTraining": "BertForPreTraining", "ForMaskedLM": "BertForMaskedLM",
            "ForCausalLM": "BertLMHeadModel", "ForSequenceClassification": "BertForSequenceClassification",
            "ForTokenClassification": "BertForTokenClassification",
            "ForQuestionAnswering": "BertForQuestionAnswering", "ForMultipleChoice": "BertForMultipleChoice",
            "ForNextSentencePrediction": "BertForNextSentencePrediction", "ForTextEncoding": "BertModel"}),
    },
    "gpt2": {
        "config": "autoload.models.configs:GPT2Config",
        "tokenizer": "GPT2Tokenizer",
        "tasks": _tasks("gpt2", **{
            "": "GPT2Model", "ForCausalLM": "GPT2LMHeadModel", "ForPreTraining": "GPT2LMHeadModel",
            "ForSequenceClassification": "GPT2ForSequenceClassification",
            "ForTokenClassification": "GPT2ForTokenClassification",
            "ForQuestionAnswering": "GPT2ForQuestionAnswering"}),
    },
    "chatglm": {  # ChatGLM2/3 and GLM-4; AutoModel is the LM class, as the repos' auto_map says
        "config": "autoload.models.configs:ChatGLMConfig",
        "tokenizer": "ChatGLMTokenizer",
        "replaces_remote_code": True,  # the repos' modeling_chatglm.py is what autoload implements: used natively
        "tasks": _tasks("chatglm", **{
            "": "ChatGLMForConditionalGeneration", "ForCausalLM": "ChatGLMForConditionalGeneration",
            "ForSequenceClassification": "ChatGLMForSequenceClassification"}),
    },
}

# the four Llama-style decoder families have the same five classes, each in its own self-contained file
for _type, _prefix, _tokenizer in (("llama", "Llama", None), ("mistral", "Mistral", None),
                                   ("qwen2", "Qwen2", "Qwen2Tokenizer"), ("qwen3", "Qwen3", "Qwen2Tokenizer")):
    MODEL_TYPES[_type] = {
        "config": f"autoload.models.configs:{_prefix}Config",
        "tokenizer": _tokenizer,
        "tasks": _tasks(_type, **{
            "": f"{_prefix}Model", "ForCausalLM": f"{_prefix}ForCausalLM",
            "ForSequenceClassification": f"{_prefix}ForSequenceClassification",
            "ForTokenClassification": f"{_prefix}ForTokenClassification",
            "ForQuestionAnswering": f"{_prefix}ForQuestionAnswering"}),
    }

AUTO_MODEL_CLASSES = (
    "AutoModel", "AutoModelForPreTraining", "AutoModelForMaskedLM", "AutoModelForCausalLM",
    "AutoModelForSequenceClassification", "AutoModelForTokenClassification", "AutoModelForQuestionAnswering",
    "AutoModelForMultipleChoice", "AutoModelForNextSentencePrediction", "AutoModelForTextEncoding",
)

# `tokenizer_class` names whose built-in class replaces the repo's own tokenizer code even when it is trusted
# (when the repo's auto_map names a class of that same name); `native=False` opts back into the repo's code.
TOKENIZERS_REPLACING_REMOTE_CODE = frozenset({"ChatGLMTokenizer", "ChatGLM4Tokenizer"})
