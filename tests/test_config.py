"""Configs: the reference's defaults and derived fields (differential against transformers), overrides,
unknown keys kept, save/load round trips both ways, and the errors for bad files."""

from __future__ import annotations

import json

import pytest
import transformers

import autoload
from autoload.models import configs
from conftest import write_repo

IGNORED = {"transformers_version", "_name_or_path", "architectures"}

CASES = {
    "bert": [{}, {"hidden_size": 64, "num_attention_heads": 4, "id2label": {"0": "neg", "1": "pos", "2": "neu"}}],
    "gpt2": [{}, {"n_embd": 64, "n_layer": 2, "n_head": 4, "n_inner": 100}],
    "roberta": [{}, {"hidden_size": 64, "num_attention_heads": 4, "type_vocab_size": 1, "is_decoder": True}],
    "xlm-roberta": [{}, {"vocab_size": 250002, "max_position_embeddings": 514, "layer_norm_eps": 1e-5,
                         "num_labels": 1}],
    "camembert": [{}, {"vocab_size": 32005, "pad_token_id": 1, "classifier_dropout": 0.2}],
    "mpnet": [{}, {"hidden_size": 64, "num_attention_heads": 4, "relative_attention_num_buckets": 16,
                   "layer_norm_eps": 1e-5, "max_position_embeddings": 514}],
    "distilbert": [{}, {"hidden_size": 64, "n_heads": 4, "sinusoidal_pos_embds": True, "activation": "relu"}],
    "albert": [{}, {"hidden_size": 64, "num_attention_heads": 4, "embedding_size": 32, "num_hidden_groups": 2,
                    "inner_group_num": 2, "classifier_dropout_prob": 0.2, "hidden_act": "gelu"}],
    "electra": [{}, {"embedding_size": 32, "hidden_size": 64, "is_decoder": True, "summary_type": "mean"}],
    "deberta-v2": [{}, {"hidden_size": 64, "relative_attention": True, "pos_att_type": "p2c|c2p",
                        "position_buckets": 256, "share_att_key": True, "norm_rel_ebd": "layer_norm",
                        "position_biased_input": False},
                   {"pos_att_type": ["c2p"], "pooler_hidden_size": 32, "conv_kernel_size": 3, "legacy": False}],
    "llama": [{}, {"hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "rope_theta": 500000.0},
              {"rope_scaling": {"rope_type": "linear", "factor": 2.0}, "max_position_embeddings": 4096}],
    "mistral": [{}, {"hidden_size": 64, "num_attention_heads": 4, "sliding_window": None}],
    "qwen2": [{}, {"num_hidden_layers": 4, "use_sliding_window": True, "sliding_window": 16, "max_window_layers": 2}],
    "qwen3": [{}, {"hidden_size": 64, "num_attention_heads": 4, "head_dim": 16, "torch_dtype": "bfloat16"}],
    "modernbert": [{}, {"num_hidden_layers": 5, "global_attn_every_n_layers": 2, "global_rope_theta": 1000.0,
                        "local_rope_theta": 50.0, "reference_compile": True, "local_attention": 64},
                   {"rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 5.0}},
                    "classifier_pooling": "mean"},
                   {"rope_scaling": {"rope_type": "linear", "factor": 2.0}, "global_rope_theta": 1000.0}],
}


def _reference(model_type: str, values: dict):
    return transformers.AutoConfig.for_model(model_type, **values)


@pytest.mark.parametrize("model_type,values", [(t, v) for t, cases in CASES.items() for v in cases])
def test_fields_match_the_reference(model_type, values):
    ours = autoload.AutoConfig.for_model(model_type, **values)
    ref = _reference(model_type, values)
    expected = {k: v for k, v in ref.to_dict().items() if k not in IGNORED}
    got = {k: v for k, v in ours.to_dict().items() if k not in IGNORED}
    expected["dtype"] = str(expected["dtype"]).replace("torch.", "") if expected["dtype"] else None
    assert got == expected
    for name in ("hidden_size", "num_attention_heads", "num_hidden_layers", "max_position_embeddings"):
        assert getattr(ours, name) == getattr(ref, name)  # attribute_map names too (GPT-2)


def test_from_pretrained_folder_and_overrides(tmp_path):
    write_repo(tmp_path, {"config.json": json.dumps({
        "model_type": "bert", "hidden_size": 32, "custom_key": [1, 2], "torch_dtype": "float16",
        "id2label": {"0": "a", "1": "b", "2": "c"}, "_commit_hash": "deadbeef"})})
    config, unused = autoload.AutoConfig.from_pretrained(tmp_path, hidden_size=64, foo=1, return_unused_kwargs=True)
    assert isinstance(config, configs.BertConfig)
    assert config.hidden_size == 64 and config.custom_key == [1, 2] and unused == {"foo": 1}
    assert config.num_labels == 3 and config.id2label == {0: "a", 1: "b", 2: "c"}
    assert config.label2id == transformers.AutoConfig.from_pretrained(tmp_path).label2id  # None, as there
    import torch
    assert config.dtype is torch.float16 and config.torch_dtype is torch.float16
    assert not hasattr(config, "_commit_hash")
    relabelled = autoload.AutoConfig.from_pretrained(tmp_path, num_labels=5)
    assert relabelled.num_labels == 5 and relabelled.id2label[4] == "LABEL_4"
    ref = transformers.AutoConfig.from_pretrained(tmp_path, num_labels=5)
    assert relabelled.id2label == ref.id2label


def test_save_round_trips_both_ways(tmp_path):
    ours = autoload.AutoConfig.for_model("llama", hidden_size=64, num_attention_heads=4, rope_theta=1e6,
                                         my_extra={"nested": True})
    ours.save_pretrained(tmp_path / "ours")
    saved = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert "rope_theta" not in saved and saved["rope_parameters"]["rope_theta"] == 1e6 and saved["my_extra"]
    ref = transformers.AutoConfig.from_pretrained(tmp_path / "ours")
    assert ref.rope_parameters == ours.rope_parameters and ref.head_dim == ours.head_dim == 16
    assert ref.my_extra == {"nested": True}
    ref.save_pretrained(tmp_path / "theirs")
    back = autoload.AutoConfig.from_pretrained(tmp_path / "theirs")
    assert {k: v for k, v in back.to_dict().items() if k not in IGNORED} == \
        {k: v for k, v in ours.to_dict().items() if k not in IGNORED}


def test_gpt2_attribute_map():
    config = configs.GPT2Config(hidden_size=64, num_hidden_layers=3)
    assert config.n_embd == 64 and config.n_layer == 3 and config.hidden_size == 64
    config.hidden_size = 128
    assert config.n_embd == 128 and "hidden_size" not in config.to_dict()


def test_wrong_types_are_errors_like_the_reference():
    with pytest.raises(TypeError, match="hidden_size"):
        configs.BertConfig(hidden_size="big")
    with pytest.raises(TypeError, match="use_cache"):
        configs.LlamaConfig(use_cache="yes")
    assert configs.LlamaConfig(rms_norm_eps=1).rms_norm_eps == 1  # an int is a fine float


def test_bad_config_files(tmp_path):
    write_repo(tmp_path / "broken", {"config.json": '{"model_type": "bert", '})
    with pytest.raises(ValueError, match=r"broken/config.json is not valid JSON"):
        autoload.AutoConfig.from_pretrained(tmp_path / "broken")
    write_repo(tmp_path / "untyped", {"config.json": '{"hidden_size": 4}'})
    with pytest.raises(ValueError, match="no 'model_type' key"):
        autoload.AutoConfig.from_pretrained(tmp_path / "untyped")
    write_repo(tmp_path / "typo", {"config.json": '{"model_type": "bertt"}'})
    with pytest.raises(ValueError, match=r"Unknown model_type 'bertt'.*Did you mean 'bert'\?.*gpt2"):
        autoload.AutoConfig.from_pretrained(tmp_path / "typo")
    (tmp_path / "empty").mkdir()
    with pytest.raises(OSError, match="has no config.json"):
        autoload.AutoConfig.from_pretrained(tmp_path / "empty")
    with pytest.raises(OSError, match="neither a local folder nor a valid repo id"):
        autoload.AutoConfig.from_pretrained(str(tmp_path / "does" / "not" / "exist"))
    write_repo(tmp_path / "list", {"config.json": "[1, 2]"})
    with pytest.raises(ValueError, match="JSON object"):
        autoload.AutoConfig.from_pretrained(tmp_path / "list")


def test_from_pretrained_through_the_hub(hub, hub_root, cache_dir):
    config = autoload.AutoConfig.from_pretrained("bert-base-chinese")
    assert isinstance(config, configs.BertConfig) and config.hidden_size == 32
    assert config.name_or_path == "bert-base-chinese"
    hub.reset_requests()
    autoload.AutoConfig.from_pretrained("bert-base-chinese", local_files_only=True)
    assert hub.requests == []
    write_repo(hub_root / "org" / "noconfig", {"README.md": "no config here"})
    with pytest.raises(OSError, match="org/noconfig.*has no config.json"):
        autoload.AutoConfig.from_pretrained("org/noconfig")


def test_register_config(tmp_path):
    class MyConfig(autoload.PretrainedConfig):
        model_type = "my-type"
        defaults = {"width": 3}

    with pytest.raises(ValueError, match="model_type"):
        autoload.AutoConfig.register("other-type", MyConfig)
    with pytest.raises(ValueError, match="built-in"):
        autoload.AutoConfig.register("bert", type("B", (autoload.PretrainedConfig,), {"model_type": "bert"}))
    autoload.AutoConfig.register("my-type", MyConfig)
    try:
        write_repo(tmp_path, {"config.json": '{"model_type": "my-type", "width": 7}'})
        config = autoload.AutoConfig.from_pretrained(tmp_path)
        assert isinstance(config, MyConfig) and config.width == 7
        assert autoload.AutoConfig.for_model("my-type").width == 3
    finally:
        autoload.AutoConfig._registered.pop("my-type")
