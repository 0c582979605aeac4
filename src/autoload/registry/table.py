"""The registry, as data: model_type -> config class, tokenizer class name, {Auto class: model class}.

Strings are "module:Class" (imported on first use) except the tokenizer, which is a `tokenizer_class` name
looked up in `TOKENIZER_CLASSES` (None: the generic tokenizers-backed class, as the reference does for llama
and mistral). `family` names the model file when it is not the model_type's own: mistral, qwen2 and qwen3 are
Llama-family variants, their classes in `autoload.models.llama`. A test ties every entry to the files.
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
    "roberta": {  # the RoBERTa family's file; xlm-roberta and camembert are rows into it (their "family")
        "config": "autoload.models.configs:RobertaConfig",
        "tokenizer": "RobertaTokenizer",
        "tasks": _tasks("roberta", **{
            "": "RobertaModel", "ForPreTraining": "RobertaForMaskedLM", "ForMaskedLM": "RobertaForMaskedLM",
            "ForCausalLM": "RobertaForCausalLM", "ForSequenceClassification": "RobertaForSequenceClassification",
            "ForTokenClassification": "RobertaForTokenClassification",
            "ForQuestionAnswering": "RobertaForQuestionAnswering", "ForMultipleChoice": "RobertaForMultipleChoice",
            "ForTextEncoding": "RobertaModel"}),
    },
    "xlm-roberta": {
        "config": "autoload.models.configs:XLMRobertaConfig",
        "tokenizer": "XLMRobertaTokenizer",
        "family": "roberta",  # its classes are in models/roberta.py
        "tasks": _tasks("roberta", **{
            "": "XLMRobertaModel", "ForPreTraining": "XLMRobertaForMaskedLM", "ForMaskedLM": "XLMRobertaForMaskedLM",
            "ForCausalLM": "XLMRobertaForCausalLM",
            "ForSequenceClassification": "XLMRobertaForSequenceClassification",
            "ForTokenClassification": "XLMRobertaForTokenClassification",
            "ForQuestionAnswering": "XLMRobertaForQuestionAnswering",
            "ForMultipleChoice": "XLMRobertaForMultipleChoice", "ForTextEncoding": "XLMRobertaModel"}),
    },
    "camembert": {
        "config": "autoload.models.configs:CamembertConfig",
        "tokenizer": "CamembertTokenizer",
        "family": "roberta",  # its classes are in models/roberta.py
        "tasks": _tasks("roberta", **{
            "": "CamembertModel", "ForPreTraining": "CamembertForMaskedLM", "ForMaskedLM": "CamembertForMaskedLM",
            "ForCausalLM": "CamembertForCausalLM", "ForSequenceClassification": "CamembertForSequenceClassification",
            "ForTokenClassification": "CamembertForTokenClassification",
            "ForQuestionAnswering": "CamembertForQuestionAnswering",
            "ForMultipleChoice": "CamembertForMultipleChoice"}),
    },
    "albert": {
        "config": "autoload.models.configs:AlbertConfig",
        "tokenizer": "AlbertTokenizer",
        "tasks": _tasks("albert", **{
            "": "AlbertModel", "ForPreTraining": "AlbertForPreTraining", "ForMaskedLM": "AlbertForMaskedLM",
            "ForSequenceClassification": "AlbertForSequenceClassification",
            "ForTokenClassification": "AlbertForTokenClassification",
            "ForQuestionAnswering": "AlbertForQuestionAnswering", "ForMultipleChoice": "AlbertForMultipleChoice",
            "ForTextEncoding": "AlbertModel"}),
    },
    "distilbert": {
        "config": "autoload.models.configs:DistilBertConfig",
        "tokenizer": "DistilBertTokenizer",
        "tasks": _tasks("distilbert", **{
            "": "DistilBertModel", "ForPreTraining": "DistilBertForMaskedLM", "ForMaskedLM": "DistilBertForMaskedLM",
            "ForSequenceClassification": "DistilBertForSequenceClassification",
            "ForTokenClassification": "DistilBertForTokenClassification",
            "ForQuestionAnswering": "DistilBertForQuestionAnswering",
            "ForMultipleChoice": "DistilBertForMultipleChoice", "ForTextEncoding": "DistilBertModel"}),
    },
    "electra": {
        "config": "autoload.models.configs:ElectraConfig",
        "tokenizer": "ElectraTokenizer",
        "tasks": _tasks("electra", **{
            "": "ElectraModel", "ForPreTraining": "ElectraForPreTraining", "ForMaskedLM": "ElectraForMaskedLM",
            "ForCausalLM": "ElectraForCausalLM", "ForSequenceClassification": "ElectraForSequenceClassification",
            "ForTokenClassification": "ElectraForTokenClassification",
            "ForQuestionAnswering": "ElectraForQuestionAnswering", "ForMultipleChoice": "ElectraForMultipleChoice",
            "ForTextEncoding": "ElectraModel"}),
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
    "baichuan": {  # Baichuan / Baichuan2 7B (rotary) and 13B (ALiBi); the repos' modeling_baichuan.py, built in
        "config": "autoload.models.configs:BaichuanConfig",
        "tokenizer": "BaichuanTokenizer",
        "replaces_remote_code": True,  # used natively with or without trust_remote_code (native=False opts out)
        "tasks": _tasks("baichuan", **{"": "BaichuanModel", "ForCausalLM": "BaichuanForCausalLM"}),
    },
    "internlm2": {  # InternLM2 / 2.5; AutoModel is the LM class, as the repos' auto_map says
        "config": "autoload.models.configs:InternLM2Config",
        "tokenizer": "InternLM2Tokenizer",
        "replaces_remote_code": True,  # used natively with or without trust_remote_code (native=False opts out)
        "tasks": _tasks("internlm2", **{
            "": "InternLM2ForCausalLM", "ForCausalLM": "InternLM2ForCausalLM",
            "ForSequenceClassification": "InternLM2ForSequenceClassification"}),
    },
    "llama": {  # the Llama family's file; mistral, qwen2 and qwen3 are rows into it (their "family")
        "config": "autoload.models.configs:LlamaConfig",
        "tokenizer": None,
        "tasks": {
            "AutoModel": "autoload.models.llama:LlamaModel",
            "AutoModelForCausalLM": "autoload.models.llama:LlamaForCausalLM",
            "AutoModelForSequenceClassification": "autoload.models.llama:LlamaForSequenceClassification",
            "AutoModelForTokenClassification": "autoload.models.llama:LlamaForTokenClassification",
            "AutoModelForQuestionAnswering": "autoload.models.llama:LlamaForQuestionAnswering"},
    },
    "mistral": {
        "config": "autoload.models.configs:MistralConfig",
        "tokenizer": None,
        "family": "llama",  # its classes are in models/llama.py
        "tasks": {
            "AutoModel": "autoload.models.llama:MistralModel",
            "AutoModelForCausalLM": "autoload.models.llama:MistralForCausalLM",
            "AutoModelForSequenceClassification": "autoload.models.llama:MistralForSequenceClassification",
            "AutoModelForTokenClassification": "autoload.models.llama:MistralForTokenClassification",
            "AutoModelForQuestionAnswering": "autoload.models.llama:MistralForQuestionAnswering"},
    },
    "qwen2": {
        "config": "autoload.models.configs:Qwen2Config",
        "tokenizer": "Qwen2Tokenizer",
        "family": "llama",  # its classes are in models/llama.py
        "tasks": {
            "AutoModel": "autoload.models.llama:Qwen2Model",
            "AutoModelForCausalLM": "autoload.models.llama:Qwen2ForCausalLM",
            "AutoModelForSequenceClassification": "autoload.models.llama:Qwen2ForSequenceClassification",
            "AutoModelForTokenClassification": "autoload.models.llama:Qwen2ForTokenClassification",
            "AutoModelForQuestionAnswering": "autoload.models.llama:Qwen2ForQuestionAnswering"},
    },
    "qwen3": {
        "config": "autoload.models.configs:Qwen3Config",
        "tokenizer": "Qwen2Tokenizer",
        "family": "llama",  # its classes are in models/llama.py
        "tasks": {
            "AutoModel": "autoload.models.llama:Qwen3Model",
            "AutoModelForCausalLM": "autoload.models.llama:Qwen3ForCausalLM",
            "AutoModelForSequenceClassification": "autoload.models.llama:Qwen3ForSequenceClassification",
            "AutoModelForTokenClassification": "autoload.models.llama:Qwen3ForTokenClassification",
            "AutoModelForQuestionAnswering": "autoload.models.llama:Qwen3ForQuestionAnswering"},
    },
    "mixtral": {
        "config": "autoload.models.configs:MixtralConfig",
        "tokenizer": None,  # as mistral
        "family": "llama",  # its classes are in models/llama.py (sparse MoE layers)
        "tasks": {
            "AutoModel": "autoload.models.llama:MixtralModel",
            "AutoModelForCausalLM": "autoload.models.llama:MixtralForCausalLM",
            "AutoModelForSequenceClassification": "autoload.models.llama:MixtralForSequenceClassification",
            "AutoModelForTokenClassification": "autoload.models.llama:MixtralForTokenClassification",
            "AutoModelForQuestionAnswering": "autoload.models.llama:MixtralForQuestionAnswering"},
    },
    "qwen2_moe": {
        "config": "autoload.models.configs:Qwen2MoeConfig",
        "tokenizer": "Qwen2Tokenizer",  # as qwen2
        "family": "llama",  # its classes are in models/llama.py (sparse MoE layers)
        "tasks": {
            "AutoModel": "autoload.models.llama:Qwen2MoeModel",
            "AutoModelForCausalLM": "autoload.models.llama:Qwen2MoeForCausalLM",
            "AutoModelForSequenceClassification": "autoload.models.llama:Qwen2MoeForSequenceClassification",
            "AutoModelForTokenClassification": "autoload.models.llama:Qwen2MoeForTokenClassification",
            "AutoModelForQuestionAnswering": "autoload.models.llama:Qwen2MoeForQuestionAnswering"},
    },
    "qwen3_moe": {
        "config": "autoload.models.configs:Qwen3MoeConfig",
        "tokenizer": "Qwen2Tokenizer",  # as qwen3
        "family": "llama",  # its classes are in models/llama.py (sparse MoE layers)
        "tasks": {
            "AutoModel": "autoload.models.llama:Qwen3MoeModel",
            "AutoModelForCausalLM": "autoload.models.llama:Qwen3MoeForCausalLM",
            "AutoModelForSequenceClassification": "autoload.models.llama:Qwen3MoeForSequenceClassification",
            "AutoModelForTokenClassification": "autoload.models.llama:Qwen3MoeForTokenClassification",
            "AutoModelForQuestionAnswering": "autoload.models.llama:Qwen3MoeForQuestionAnswering"},
    },
    "phi3": {
        "config": "autoload.models.configs:Phi3Config",
        "tokenizer": None,
        # the repos name LlamaTokenizer, whose rebuilt pipeline differs from their tokenizer.json (a "▁" before
        # the text after each special token): their tokenizer.json is loaded as it is, as the reference does
        "declared_tokenizer_ignored": True,
        "tasks": _tasks("phi3", **{
            "": "Phi3Model", "ForCausalLM": "Phi3ForCausalLM",
            "ForSequenceClassification": "Phi3ForSequenceClassification",
            "ForTokenClassification": "Phi3ForTokenClassification"}),
    },
    "glm": {  # GLM-4 in the HF-native layout (THUDM/glm-4-9b-hf); glm4 is a row into the same file (its "family")
        "config": "autoload.models.configs:GlmConfig",
        "tokenizer": None,  # tokenizer.json with PreTrainedTokenizerFast: the generic backend
        "tasks": _tasks("glm", **{
            "": "GlmModel", "ForCausalLM": "GlmForCausalLM",
            "ForSequenceClassification": "GlmForSequenceClassification",
            "ForTokenClassification": "GlmForTokenClassification"}),
    },
    "glm4": {  # GLM-4-0414 / GLM-Z1: GLM plus two post-norms per layer
        "config": "autoload.models.configs:Glm4Config",
        "tokenizer": None,
        "family": "glm",  # its classes are in models/glm.py
        "tasks": _tasks("glm", **{
            "": "Glm4Model", "ForCausalLM": "Glm4ForCausalLM",
            "ForSequenceClassification": "Glm4ForSequenceClassification",
            "ForTokenClassification": "Glm4ForTokenClassification"}),
    },
    "mpnet": {
        "config": "autoload.models.configs:MPNetConfig",
        "tokenizer": "MPNetTokenizer",
        "tasks": _tasks("mpnet", **{
            "": "MPNetModel", "ForPreTraining": "MPNetForMaskedLM", "ForMaskedLM": "MPNetForMaskedLM",
            "ForSequenceClassification": "MPNetForSequenceClassification",
            "ForTokenClassification": "MPNetForTokenClassification",
            "ForQuestionAnswering": "MPNetForQuestionAnswering", "ForMultipleChoice": "MPNetForMultipleChoice"}),
    },
    "gemma": {  # the Gemma family's file; gemma2, gemma3_text and gemma3 are rows into it (their "family")
        "config": "autoload.models.configs:GemmaConfig",
        "tokenizer": "GemmaTokenizer",
        "tasks": _tasks("gemma", **{
            "": "GemmaModel", "ForCausalLM": "GemmaForCausalLM",
            "ForSequenceClassification": "GemmaForSequenceClassification",
            "ForTokenClassification": "GemmaForTokenClassification"}),
    },
    "gemma2": {
        "config": "autoload.models.configs:Gemma2Config",
        "tokenizer": "GemmaTokenizer",
        "family": "gemma",  # its classes are in models/gemma.py
        "tasks": _tasks("gemma", **{
            "": "Gemma2Model", "ForCausalLM": "Gemma2ForCausalLM",
            "ForSequenceClassification": "Gemma2ForSequenceClassification",
            "ForTokenClassification": "Gemma2ForTokenClassification"}),
    },
    "gemma3_text": {
        "config": "autoload.models.configs:Gemma3TextConfig",
        "tokenizer": "GemmaTokenizer",
        "family": "gemma",
        "tasks": _tasks("gemma", **{
            "": "Gemma3TextModel", "ForCausalLM": "Gemma3ForCausalLM",
            "ForSequenceClassification": "Gemma3TextForSequenceClassification"}),
    },
    "gemma3": {  # multimodal repos: autoload builds the language model of text_config (no vision tower)
        "config": "autoload.models.configs:Gemma3Config",
        "tokenizer": "GemmaTokenizer",
        "family": "gemma",
        "tasks": _tasks("gemma", **{
            "": "Gemma3Model", "ForPreTraining": "Gemma3ForConditionalGeneration",
            "ForCausalLM": "Gemma3ForConditionalGeneration",
            "ForSequenceClassification": "Gemma3ForSequenceClassification"}),
    },
    "modernbert": {  # the repos ship tokenizer.json (PreTrainedTokenizerFast): the generic class
        "config": "autoload.models.configs:ModernBertConfig",
        "tokenizer": None,
        "tasks": _tasks("modernbert", **{
            "": "ModernBertModel", "ForMaskedLM": "ModernBertForMaskedLM",
            "ForSequenceClassification": "ModernBertForSequenceClassification",
            "ForTokenClassification": "ModernBertForTokenClassification",
            "ForQuestionAnswering": "ModernBertForQuestionAnswering",
            "ForMultipleChoice": "ModernBertForMultipleChoice"}),
    },
    "deberta-v2": {  # DeBERTa v2 and v3
        "config": "autoload.models.configs:DebertaV2Config",
        "tokenizer": "DebertaV2Tokenizer",
        "tasks": _tasks("deberta_v2", **{
            "": "DebertaV2Model", "ForPreTraining": "DebertaV2ForMaskedLM", "ForMaskedLM": "DebertaV2ForMaskedLM",
            "ForSequenceClassification": "DebertaV2ForSequenceClassification",
            "ForTokenClassification": "DebertaV2ForTokenClassification",
            "ForQuestionAnswering": "DebertaV2ForQuestionAnswering",
            "ForMultipleChoice": "DebertaV2ForMultipleChoice", "ForTextEncoding": "DebertaV2Model"}),
    },
    "bart": {  # BART; mbart is a row into the same file (its "family")
        "config": "autoload.models.configs:BartConfig",
        "tokenizer": "BartTokenizer",
        "tasks": _tasks("bart", **{
            "": "BartModel", "ForPreTraining": "BartForConditionalGeneration",
            "ForMaskedLM": "BartForConditionalGeneration", "ForCausalLM": "BartForCausalLM",
            "ForSeq2SeqLM": "BartForConditionalGeneration",
            "ForSequenceClassification": "BartForSequenceClassification",
            "ForQuestionAnswering": "BartForQuestionAnswering"}),
    },
    "mbart": {
        "config": "autoload.models.configs:MBartConfig",
        "tokenizer": "MBartTokenizer",
        "family": "bart",  # its classes are in models/bart.py
        "tasks": _tasks("bart", **{
            "": "MBartModel", "ForMaskedLM": "MBartForConditionalGeneration", "ForCausalLM": "MBartForCausalLM",
            "ForSeq2SeqLM": "MBartForConditionalGeneration",
            "ForSequenceClassification": "MBartForSequenceClassification",
            "ForQuestionAnswering": "MBartForQuestionAnswering"}),
    },
    "marian": {
        "config": "autoload.models.configs:MarianConfig",
        "tokenizer": "MarianTokenizer",  # source.spm / target.spm + vocab.json (tokenization/marian.py)
        "tasks": _tasks("marian", **{
            "": "MarianModel", "ForCausalLM": "MarianForCausalLM", "ForSeq2SeqLM": "MarianMTModel"}),
    },
    "t5": {  # T5 v1.0 / v1.1 / flan-t5; mt5 is a row into the same file (its "family")
        "config": "autoload.models.configs:T5Config",
        "tokenizer": "T5Tokenizer",
        "tasks": _tasks("t5", **{
            "": "T5Model", "ForPreTraining": "T5ForConditionalGeneration",
            "ForSeq2SeqLM": "T5ForConditionalGeneration",
            "ForSequenceClassification": "T5ForSequenceClassification",
            "ForTokenClassification": "T5ForTokenClassification",
            "ForQuestionAnswering": "T5ForQuestionAnswering", "ForTextEncoding": "T5EncoderModel"}),
    },
    "mt5": {
        "config": "autoload.models.configs:MT5Config",
        "tokenizer": "T5Tokenizer",
        "family": "t5",  # its classes are in models/t5.py
        "tasks": _tasks("t5", **{
            "": "MT5Model", "ForSeq2SeqLM": "MT5ForConditionalGeneration",
            "ForSequenceClassification": "MT5ForSequenceClassification",
            "ForTokenClassification": "MT5ForTokenClassification",
            "ForQuestionAnswering": "MT5ForQuestionAnswering", "ForTextEncoding": "MT5EncoderModel"}),
    },
}

AUTO_MODEL_CLASSES = (
    "AutoModel", "AutoModelForPreTraining", "AutoModelForMaskedLM", "AutoModelForCausalLM",
    "AutoModelForSequenceClassification", "AutoModelForTokenClassification", "AutoModelForQuestionAnswering",
    "AutoModelForMultipleChoice", "AutoModelForNextSentencePrediction", "AutoModelForTextEncoding",
    "AutoModelForSeq2SeqLM",
)

# `tokenizer_class` names whose built-in class replaces the repo's own tokenizer code even when it is trusted
# (when the repo's auto_map names a class of that same name); `native=False` opts back into the repo's code.
TOKENIZERS_REPLACING_REMOTE_CODE = frozenset({"ChatGLMTokenizer", "ChatGLM4Tokenizer", "BaichuanTokenizer",
                                              "BaiChuanTokenizer", "InternLM2Tokenizer"})
