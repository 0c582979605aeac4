"""The concrete classes import from the top level, as in the reference (`from autoload import BertConfig,
LlamaForCausalLM, BertTokenizerFast`), lazily: `import autoload` and a config name import no torch. The export table
of autoload/__init__.py is tied here to the registry's rows and to TOKENIZER_CLASSES, so it cannot drift."""

from __future__ import annotations

import subprocess
import sys

import pytest
import transformers

import autoload
from autoload.registry import MODEL_TYPES
from autoload.registry.auto import import_string
from autoload.tokenization import TOKENIZER_CLASSES
from conftest import ROOT


def registry_names() -> dict[str, str]:
    """name -> "module:Class" for every config, model and tokenizer class the registry knows."""
    names = {}
    for row in MODEL_TYPES.values():
        for target in (row["config"], *row["tasks"].values()):
            names[target.partition(":")[2]] = target
    return {**names, **TOKENIZER_CLASSES}


@pytest.mark.parametrize("name,target", sorted(registry_names().items()))
def test_every_registry_class_is_a_top_level_name(name, target):
    assert name in autoload.__all__ and name in dir(autoload)
    assert getattr(autoload, name) is import_string(target)


def test_from_import_as_in_the_reference():
    from autoload import (BertConfig, BertForSequenceClassification, BertTokenizer, BertTokenizerFast,
                          GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2TokenizerFast)
    from autoload.models.bert import BertForSequenceClassification as direct
    assert BertForSequenceClassification is direct
    assert BertTokenizerFast is BertTokenizer
    assert issubclass(LlamaForCausalLM, autoload.PreTrainedModel) and issubclass(GPT2LMHeadModel, autoload.PreTrainedModel)
    for ours in (BertConfig, GPT2Config, LlamaConfig):
        assert ours.model_type == getattr(transformers, ours.__name__).model_type
    assert Qwen2TokenizerFast.__name__ == "Qwen2Tokenizer"


def test_names_match_the_reference_exports():
    """Every exported model, config and tokenizer name is a name transformers exports too (no invented spelling),
    except the ChatGLM, Baichuan and InternLM2 classes, which transformers does not ship (they come from the repos'
    remote code)."""
    for name in registry_names():
        remote = name.startswith(("ChatGLM", "Baichuan", "BaiChuan", "InternLM2")) or name == "QWenTokenizer"
        assert remote or hasattr(transformers, name), name


def test_unknown_names_fail():
    with pytest.raises(AttributeError, match="BertForNothing"):
        autoload.BertForNothing  # noqa: B018
    with pytest.raises(ImportError):
        exec("from autoload import LlamaForNothing", {})


def _loaded_after(code: str) -> set[str]:
    probe = f"import sys; sys.path.insert(0, {str(ROOT / 'src')!r}); {code}; print(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_config_and_tokenizer_names_import_no_torch():
    loaded = _loaded_after("import autoload; from autoload import BertConfig, LlamaConfig, GPT2Config, BertTokenizer; "
                           "BertConfig(hidden_size=64).hidden_size")
    assert "torch" not in loaded and "transformers" not in loaded


def test_a_model_class_name_imports_torch_only_when_used():
    loaded = _loaded_after("import autoload; autoload.__all__")
    assert "torch" not in loaded and "autoload.models.llama" not in loaded
    loaded = _loaded_after("from autoload import LlamaForCausalLM")
    assert "torch" in loaded and "autoload.models.llama" in loaded and "autoload.models.bert" not in loaded
