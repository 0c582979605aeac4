"""The model API that training code reads, against transformers on the same weights: gradient checkpointing
(equal gradients, fewer saved activations), enable_input_require_grads, resize_token_embeddings (same random
draws), the counting and lookup helpers, save_pretrained's keywords; transformers.Trainer and accelerate driving
an autoload model (equal losses step by step, saved folders that both libraries reload)."""

from __future__ import annotations

import json
import os

import pytest
import torch
import transformers
from torch.testing import assert_close

import autoload
import autoload.models.bert as our_bert
import autoload.models.chatglm as our_chatglm
import autoload.models.gpt2 as our_gpt2
import autoload.models.llama as our_llama
import model_cases

SMALL = {"vocab_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
BERT = dict(SMALL, hidden_size=32, intermediate_size=64, max_position_embeddings=32)
LLAMA = dict(SMALL, hidden_size=32, intermediate_size=64, num_key_value_heads=2, max_position_embeddings=64,
             pad_token_id=0)
GPT2 = {"vocab_size": 64, "n_layer": 2, "n_head": 4, "n_embd": 32, "n_positions": 64}

# name -> (reference class, autoload module, config class, config)
CASES = {
    "llama-causal": ("LlamaForCausalLM", our_llama, "LlamaConfig", LLAMA),
    "llama-causal-untied": ("LlamaForCausalLM", our_llama, "LlamaConfig", dict(LLAMA, tie_word_embeddings=False)),
    "bert-seq-cls": ("BertForSequenceClassification", our_bert, "BertConfig", BERT),
    "bert-mlm": ("BertForMaskedLM", our_bert, "BertConfig", BERT),
    "gpt2-lm": ("GPT2LMHeadModel", our_gpt2, "GPT2Config", GPT2),
    "gpt2-token-cls": ("GPT2ForTokenClassification", our_gpt2, "GPT2Config", GPT2),
}


def pair(tmp_path, name, **overrides):
    ref_name, module, config_name, config = CASES[name]
    cfg = getattr(transformers, config_name)(**{**config, **overrides})
    return model_cases.make_pair(tmp_path / name, getattr(transformers, ref_name), getattr(module, ref_name), cfg)


def batch(class_name: str, t: int = 8):
    ids, mask = model_cases.padded_batch(2, t, "right", [0, 3], 64)
    return {"input_ids": ids, "attention_mask": mask, **model_cases.labels_for(class_name, ids, mask)}


def grads(model, inputs) -> dict[str, torch.Tensor]:
    model.zero_grad()
    torch.manual_seed(0)  # the same dropout masks on every call (a checkpoint replays the RNG state)
    model(**inputs).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def saved_bytes(model, inputs) -> int:
    """Bytes of the tensors autograd keeps for backward during one forward (the activations memory); tensors a
    checkpointed block saves go to the checkpoint's own hooks, not to this one."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(**inputs).loss
    loss.backward()
    return total


# -- gradient checkpointing -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["llama-causal", "bert-seq-cls", "gpt2-lm"])
@pytest.mark.parametrize("kwargs", [None, {"use_reentrant": True}])
def test_gradient_checkpointing_recomputes_with_equal_gradients(tmp_path, name, kwargs):
    overrides = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0} if name.startswith("bert") else {}
    ref, ours = pair(tmp_path, name, **overrides)
    inputs = batch(CASES[name][0], t=16)
    ref.train(), ours.train()
    assert ours.supports_gradient_checkpointing and not ours.is_gradient_checkpointing
    plain, plain_bytes = grads(ours, inputs), saved_bytes(ours, inputs)
    ref.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    ours.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    assert ours.is_gradient_checkpointing and ours.base_model.gradient_checkpointing
    checkpointed, checkpointed_bytes = grads(ours, inputs), saved_bytes(ours, inputs)
    assert checkpointed.keys() == plain.keys()
    for key in plain:
        assert_close(checkpointed[key], plain[key], atol=1e-6, rtol=0)
    assert checkpointed_bytes < 0.8 * plain_bytes  # the blocks' activations are recomputed, not kept
    reference = grads(ref, inputs)
    for key in plain:  # GPT-2's projections: nn.Linear (out, in) here, transformers' Conv1D [in, out]
        expected = reference[key].t() if key.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")) else \
            reference[key]
        assert_close(checkpointed[key], expected, atol=1e-4, rtol=0)
    ours.gradient_checkpointing_disable()
    assert not ours.is_gradient_checkpointing and saved_bytes(ours, inputs) == plain_bytes


def test_gradient_checkpointing_keeps_no_cache_and_eval_is_unchanged(tmp_path):
    ref, ours = pair(tmp_path, "llama-causal")
    inputs = batch("LlamaForCausalLM")
    ours.gradient_checkpointing_enable()
    ours.train()
    assert ours(**inputs, use_cache=True).past_key_values is None  # recomputing would fill a cache twice
    ours.eval()
    out = ours(**inputs, use_cache=True)
    assert out.past_key_values is not None
    assert_close(out.logits, ref(**inputs).logits, atol=1e-4, rtol=0)


def test_gradient_checkpointing_chatglm_and_failures(tmp_path):
    config = our_chatglm.ChatGLMConfig(num_layers=2, hidden_size=32, ffn_hidden_size=64, num_attention_heads=4,
                                       kv_channels=8, multi_query_group_num=2, padded_vocab_size=64, seq_length=64)
    torch.manual_seed(0)
    model = our_chatglm.ChatGLMForConditionalGeneration(config).train()
    ids = torch.randint(0, 64, (2, 16))
    plain, plain_bytes = grads(model, {"input_ids": ids, "labels": ids}), saved_bytes(model, {"input_ids": ids,
                                                                                            "labels": ids})
    model.gradient_checkpointing_enable()
    assert model.transformer.gradient_checkpointing
    checked = grads(model, {"input_ids": ids, "labels": ids})
    for key in plain:
        assert_close(checked[key], plain[key], atol=1e-6, rtol=0)
    assert saved_bytes(model, {"input_ids": ids, "labels": ids}) < plain_bytes
    with pytest.raises(NotImplementedError, match="every_n_layers"):
        model.gradient_checkpointing_enable(every_n_layers=2)

    class NoCheckpointing(autoload.PreTrainedModel):
        pass

    with pytest.raises(ValueError, match="does not support gradient checkpointing"):
        NoCheckpointing(autoload.PretrainedConfig()).gradient_checkpointing_enable()


def test_trainer_style_activation_checkpointing_name(tmp_path):
    _, ours = pair(tmp_path, "bert-seq-cls")
    ours.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert ours.is_gradient_checkpointing
    ours.activation_checkpointing_disable()
    assert not ours.is_gradient_checkpointing


# -- enable_input_require_grads ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["llama-causal", "bert-seq-cls", "gpt2-lm"])
def test_enable_input_require_grads(tmp_path, name):
    ref, ours = pair(tmp_path, name)
    inputs = batch(CASES[name][0])
    for model in (ref, ours):
        model.requires_grad_(False)
        embeddings = model.get_input_embeddings()
        seen = []
        model.enable_input_require_grads()
        handle = embeddings.register_forward_hook(lambda m, i, o: seen.append(o.requires_grad))  # runs after it
        model(**inputs)
        model.disable_input_require_grads()
        model(**inputs)
        handle.remove()
        assert seen == [True, False], type(model)


# -- resize_token_embeddings ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["llama-causal", "llama-causal-untied", "bert-mlm", "gpt2-lm", "bert-seq-cls"])
@pytest.mark.parametrize("new, multiple, mean", [(70, None, True), (70, 16, True), (70, None, False),
                                                 (50, None, True), (None, 48, True)])
def test_resize_token_embeddings(tmp_path, name, new, multiple, mean):
    ref, ours = pair(tmp_path, name)
    results = []
    for model in (ref, ours):
        torch.manual_seed(7)
        embeddings = model.resize_token_embeddings(new, pad_to_multiple_of=multiple, mean_resizing=mean)
        assert embeddings is model.get_input_embeddings()
        results.append(model)
    expected = ref.config.vocab_size
    assert ours.config.vocab_size == expected == ours.get_input_embeddings().weight.shape[0]
    assert ours.get_input_embeddings().num_embeddings == expected
    ref_state, our_state = ref.state_dict(), ours.state_dict()
    for key, value in our_state.items():
        assert_close(value, ref_state[key], atol=0, rtol=0, msg=lambda m: f"{key}: {m}")
    out = ours.get_output_embeddings()
    if out is not None:
        assert out.weight.shape[0] == expected
        assert (out.weight is ours.get_input_embeddings().weight) == bool(ours.config.tie_word_embeddings)
    inputs = {k: v % expected if k != "attention_mask" else v for k, v in batch(CASES[name][0]).items()}
    model_cases.assert_outputs_close(ours(**inputs), ref(**inputs))


def test_resize_token_embeddings_no_op_and_errors(tmp_path):
    _, ours = pair(tmp_path, "llama-causal")
    before = ours.get_input_embeddings().weight
    assert ours.resize_token_embeddings() is ours.get_input_embeddings()
    assert ours.get_input_embeddings().weight is before and ours.config.vocab_size == 64
    with pytest.raises(ValueError, match="pad_to_multiple_of"):
        ours.resize_token_embeddings(70, pad_to_multiple_of=8.0)


# -- counting, lookups, flags -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["llama-causal", "llama-causal-untied", "bert-seq-cls", "bert-mlm", "gpt2-lm"])
def test_counts_and_lookups_match_the_reference(tmp_path, name):
    ref, ours = pair(tmp_path, name)
    for only_trainable in (False, True):
        for exclude in (False, True):
            assert ours.num_parameters(only_trainable=only_trainable, exclude_embeddings=exclude) == \
                ref.num_parameters(only_trainable=only_trainable, exclude_embeddings=exclude)
    ours.get_input_embeddings().requires_grad_(False)
    ref.get_input_embeddings().requires_grad_(False)
    assert ours.num_parameters(only_trainable=True) == ref.num_parameters(only_trainable=True)
    assert ours.get_memory_footprint() == ref.get_memory_footprint()
    assert ours.get_memory_footprint(return_buffers=False) == ref.get_memory_footprint(return_buffers=False)
    assert ours.base_model_prefix == ref.base_model_prefix
    assert type(ours.base_model).__name__ == type(ref.base_model).__name__
    assert type(ours.get_decoder()).__name__ == type(ref.get_decoder()).__name__
    assert ours.supports_gradient_checkpointing == ref.supports_gradient_checkpointing
    assert set(ours._no_split_modules) == set(ref._no_split_modules)
    assert ours.config.use_return_dict is True
    ours.config.return_dict = False
    assert ours.config.use_return_dict is False


def test_activation_modules_are_in_named_modules(tmp_path):
    for name, key in [("llama-causal", "model.layers.0.mlp.act_fn"),
                      ("bert-seq-cls", "bert.encoder.layer.0.intermediate.intermediate_act_fn"),
                      ("bert-mlm", "cls.predictions.transform.transform_act_fn"),
                      ("gpt2-lm", "transformer.h.0.mlp.act")]:
        ref, ours = pair(tmp_path, name)
        assert key in dict(ref.named_modules()) and key in dict(ours.named_modules())
        inputs = batch(CASES[name][0])
        captured = []
        for model in (ref, ours):  # a forward hook on the activation sees the same tensor in both
            handle = model.get_submodule(key).register_forward_hook(lambda m, i, o: captured.append(o))
            model(**inputs)
            handle.remove()
        assert_close(captured[1], captured[0], atol=1e-5, rtol=0)


def test_add_pooling_layer_false(tmp_path):
    cfg = transformers.BertConfig(**BERT)
    torch.manual_seed(0)
    transformers.BertModel(cfg).save_pretrained(tmp_path)
    ref = transformers.BertModel.from_pretrained(tmp_path, add_pooling_layer=False)
    ours = our_bert.BertModel.from_pretrained(tmp_path, add_pooling_layer=False)
    assert ours.pooler is None and ref.pooler is None
    assert not any(k.startswith("pooler") for k in ours.state_dict())
    inputs = batch("BertModel")
    out = ours(**inputs)
    assert out.pooler_output is None
    assert_close(out.last_hidden_state, ref(**inputs).last_hidden_state, atol=1e-4, rtol=0)
    assert our_bert.BertModel(our_bert.BertConfig(**BERT), add_pooling_layer=False).pooler is None
    with pytest.raises(TypeError, match="add_pooling_layr"):
        our_bert.BertModel.from_pretrained(tmp_path, add_pooling_layr=False)


def test_set_seed_matches_the_reference():
    import random

    import numpy as np
    draws = []
    for set_seed in (transformers.set_seed, autoload.set_seed):
        set_seed(123)
        draws.append((random.random(), np.random.rand(), torch.rand(3)))
    assert draws[0][0] == draws[1][0] and draws[0][1] == draws[1][1]
    assert torch.equal(draws[0][2], draws[1][2])


# -- save_pretrained's keywords ---------------------------------------------------------------------------------

def test_save_pretrained_keywords(tmp_path):
    ref, ours = pair(tmp_path, "llama-causal")
    ours.save_pretrained(tmp_path / "not-main", is_main_process=False)
    assert not (tmp_path / "not-main").exists() or not os.listdir(tmp_path / "not-main")

    calls = []

    def save_function(obj, path):
        calls.append(path)
        torch.save(obj, path)

    state = {k: v + 1 for k, v in ours.state_dict().items()}  # another state dict than the model's own
    ours.save_pretrained(tmp_path / "pickled", state_dict=state, save_function=save_function,
                         safe_serialization=False)
    assert [os.path.basename(p) for p in calls] == ["pytorch_model.bin"]
    assert json.loads((tmp_path / "pickled" / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert (tmp_path / "pickled" / "generation_config.json").exists()
    for model in (transformers.LlamaForCausalLM.from_pretrained(tmp_path / "pickled"),
                  our_llama.LlamaForCausalLM.from_pretrained(tmp_path / "pickled")):
        assert_close(model.model.norm.weight, state["model.norm.weight"])

    class Ignoring(our_llama.LlamaForCausalLM):
        _keys_to_ignore_on_save = ["model.norm.weight"]

    Ignoring(ours.config).save_pretrained(tmp_path / "ignoring")
    from safetensors import safe_open
    with safe_open(str(tmp_path / "ignoring" / "model.safetensors"), "pt") as f:
        assert "model.norm.weight" not in f.keys() and "model.embed_tokens.weight" in f.keys()
