"""The registry table and the Auto classes' resolution, with stand-in model classes registered by the tests
(the built-in model code is checked by its own parity tests)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

import autoload
from autoload.models import configs
from autoload.registry import AUTO_MODEL_CLASSES, MODEL_TYPES
from autoload.registry.auto import AutoTokenizer, import_string
from conftest import ROOT, write_repo


def test_table_is_tied_to_the_files():
    from autoload.tokenization import TOKENIZER_CLASSES
    for model_type, entry in MODEL_TYPES.items():
        config_class = import_string(entry["config"])
        assert config_class.model_type == model_type
        assert entry["tokenizer"] is None or entry["tokenizer"] in TOKENIZER_CLASSES
        family = entry.get("family", model_type)  # a variant (mistral) lives in its family's file (llama)
        assert family in MODEL_TYPES and "family" not in MODEL_TYPES[family], (model_type, family)
        for auto_name, reference in entry["tasks"].items():
            assert auto_name in AUTO_MODEL_CLASSES
            module, _, name = reference.partition(":")
            # a hyphen in a model_type ("deberta-v2") is an underscore in the file name
            assert module == f"autoload.models.{family.replace('-', '_')}", \
                "one file per family, named after the family's model_type"
            assert (ROOT / "src" / Path(*module.split(".")).with_suffix(".py")).is_file(), reference
            assert hasattr(importlib.import_module(module), name), reference
            assert getattr(importlib.import_module(module), name).config_class is config_class, reference
    for reference in TOKENIZER_CLASSES.values():
        assert import_string(reference).__name__


def test_table_matches_the_reference_mappings():
    """Each (model_type, Auto class) pair names the class transformers 5.24 maps it to."""
    import transformers
    from transformers.models.auto import modeling_auto as ma
    names = {
        "AutoModel": ma.MODEL_MAPPING_NAMES, "AutoModelForPreTraining": ma.MODEL_FOR_PRETRAINING_MAPPING_NAMES,
        "AutoModelForMaskedLM": ma.MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        "AutoModelForCausalLM": ma.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        "AutoModelForSequenceClassification": ma.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
        "AutoModelForTokenClassification": ma.MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES,
        "AutoModelForQuestionAnswering": ma.MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES,
        "AutoModelForMultipleChoice": ma.MODEL_FOR_MULTIPLE_CHOICE_MAPPING_NAMES,
        "AutoModelForNextSentencePrediction": ma.MODEL_FOR_NEXT_SENTENCE_PREDICTION_MAPPING_NAMES,
        "AutoModelForTextEncoding": ma.MODEL_FOR_TEXT_ENCODING_MAPPING_NAMES,
    }
    for model_type, entry in MODEL_TYPES.items():
        if entry.get("replaces_remote_code"):  # remote code only in transformers; the row mirrors the repos' auto_map
            continue
        for auto_name, mapping in names.items():
            expected = mapping.get(model_type)
            got = entry["tasks"].get(auto_name)
            assert (got.partition(":")[2] if got else None) == expected, (model_type, auto_name)
    assert transformers.__version__.startswith("5.")


class StandIn:
    """Records how the Auto class called it."""

    config_class = configs.BertConfig

    def __init__(self, config, **kwargs):
        self.config, self.kwargs = config, kwargs

    @classmethod
    def from_pretrained(cls, name_or_path, *args, config=None, **kwargs):
        model = cls(config, **kwargs)
        model.name_or_path, model.args = name_or_path, args
        return model


@pytest.fixture
def stand_ins():
    registered = []

    def register(auto, config_class, model_class):
        auto.register(config_class, model_class, exist_ok=True)
        registered.append((auto, config_class))
    yield register
    for auto, config_class in registered:
        auto._registered.pop(config_class, None)


def test_auto_model_picks_the_registered_class_and_passes_the_config(tmp_path, stand_ins):
    write_repo(tmp_path, {"config.json": json.dumps({"model_type": "bert", "hidden_size": 16})})
    stand_ins(autoload.AutoModelForCausalLM, configs.BertConfig, StandIn)
    model = autoload.AutoModelForCausalLM.from_pretrained(tmp_path, num_labels=3, output_attentions=True,
                                                          dtype="auto", low_cpu_mem_usage=True)
    assert isinstance(model, StandIn) and isinstance(model.config, configs.BertConfig)
    assert model.config.num_labels == 3 and model.config.output_attentions is True
    assert model.kwargs == {"low_cpu_mem_usage": True}  # not a config field: the model class decides
    assert "dtype" not in model.kwargs  # dtype="auto" is for the model class, never pollutes the config


def test_auto_model_pins_the_commit_for_the_weights(hub, cache_dir, stand_ins):
    stand_ins(autoload.AutoModel, configs.BertConfig, StandIn)
    hub.reset_requests()
    model = autoload.AutoModel.from_pretrained("bert-base-chinese")
    commit = (cache_dir / "models--google-bert--bert-base-chinese" / "refs" / "main").read_text()
    assert model.kwargs["revision"] == commit
    assert not any("safetensors" in r.path for r in hub.requests)  # the Auto class fetched only config.json


def test_task_that_does_not_fit_names_the_ones_that_do(tmp_path):
    write_repo(tmp_path, {"config.json": '{"model_type": "gpt2"}'})
    with pytest.raises(ValueError) as info:
        autoload.AutoModelForMaskedLM.from_pretrained(tmp_path)
    message = str(info.value)
    assert "'gpt2' has no AutoModelForMaskedLM" in message
    assert "AutoModelForCausalLM" in message and "AutoModelForSequenceClassification" in message
    assert "AutoModelForMultipleChoice" not in message


def test_builtin_resolution_follows_the_reference():
    """bert under AutoModelForCausalLM is the LM-head decoder, as in the reference."""
    entry = MODEL_TYPES["bert"]["tasks"]
    assert entry["AutoModelForCausalLM"].endswith(":BertLMHeadModel")
    assert MODEL_TYPES["qwen3"]["tasks"]["AutoModelForCausalLM"] == "autoload.models.llama:Qwen3ForCausalLM"


def test_unknown_model_type_and_missing_model_type(tmp_path):
    write_repo(tmp_path / "a", {"config.json": '{"model_type": "qwen4"}'})
    with pytest.raises(ValueError, match=r"Unknown model_type 'qwen4'.*Did you mean 'qwen(2|3)'"):
        autoload.AutoModelForCausalLM.from_pretrained(tmp_path / "a")
    write_repo(tmp_path / "b", {"config.json": "{}"})
    with pytest.raises(ValueError, match="no 'model_type'"):
        autoload.AutoModel.from_pretrained(tmp_path / "b")


def test_register_rules():
    class NewConfig(autoload.PretrainedConfig):
        model_type = "new-arch"

    class NewModel(StandIn):
        config_class = NewConfig

    with pytest.raises(ValueError, match="built-in"):
        autoload.AutoModelForCausalLM.register(configs.BertConfig, StandIn)
    with pytest.raises(ValueError, match="config_class"):
        autoload.AutoModel.register(configs.GPT2Config, StandIn)
    autoload.AutoConfig.register("new-arch", NewConfig)
    autoload.AutoModelForCausalLM.register(NewConfig, NewModel)
    try:
        model = autoload.AutoModelForCausalLM.from_config(NewConfig())
        assert isinstance(model, NewModel)
        with pytest.raises(ValueError, match="AutoModelForCausalLM"):  # the one that fits
            autoload.AutoModel.from_config(NewConfig())
    finally:
        autoload.AutoConfig._registered.pop("new-arch")
        autoload.AutoModelForCausalLM._registered.pop(NewConfig)


def test_register_tokenizer(tmp_path):
    class NewConfig(autoload.PretrainedConfig):
        model_type = "tok-arch"

    class NewTokenizer:
        @classmethod
        def from_pretrained(cls, name_or_path, **kwargs):
            obj = cls()
            obj.kwargs = kwargs
            return obj

    autoload.AutoConfig.register("tok-arch", NewConfig)
    AutoTokenizer.register(NewConfig, NewTokenizer)
    try:
        with pytest.raises(ValueError, match="exist_ok"):
            AutoTokenizer.register(NewConfig, NewTokenizer)
        write_repo(tmp_path, {"config.json": '{"model_type": "tok-arch"}'})
        tok = AutoTokenizer.from_pretrained(tmp_path, model_max_length=7)
        assert isinstance(tok, NewTokenizer) and tok.kwargs == {"model_max_length": 7}
    finally:
        autoload.AutoConfig._registered.pop("tok-arch")
        AutoTokenizer._registered.pop(NewConfig)


def test_auto_classes_are_not_instantiated():
    for cls in (autoload.AutoConfig, autoload.AutoTokenizer, autoload.AutoModel):
        with pytest.raises(TypeError, match="from_pretrained"):
            cls()


def test_auto_tokenizer_downloads_no_weights(hub, hub_root, cache_dir):
    """The class comes from the repo's files; the request log shows metadata, config and tokenizer files only,
    and a second load from the cache asks for nothing but the commit."""
    hub.reset_requests()
    tok = AutoTokenizer.from_pretrained("bert-base-chinese")
    assert type(tok).__name__ == "BertTokenizer" and tok.tokenize("你好") == ["你", "好"]
    downloads = sorted(r.path.rsplit("/", 1)[1] for r in hub.requests if "/resolve/" in r.path)
    assert downloads == ["config.json", "tokenizer_config.json", "vocab.txt"]
    assert not any("safetensors" in r.path for r in hub.requests)
    hub.reset_requests()
    AutoTokenizer.from_pretrained("bert-base-chinese")
    assert [r.method for r in hub.requests] == ["GET"] and "/revision/" in hub.requests[0].path
    hub.reset_requests()
    AutoTokenizer.from_pretrained("bert-base-chinese", local_files_only=True)
    assert hub.requests == []
