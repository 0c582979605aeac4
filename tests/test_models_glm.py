"""GLM-4 in transformers' layout (model_types glm and glm4) vs transformers 5.x on tiny random checkpoints: every
head with left padding and losses, q/k/v biases, glm4's post-norms, the interleaved partial rotary for several
partial_rotary_factor values and a scaled rope, eager attentions, cached step-by-step decoding, greedy / beam
generation, compile=True, save -> transformers reload, Auto classes, config defaults, and AutoTokenizer on a
GLM-style tokenizer.json folder (the generic backend, as the reference)."""

from __future__ import annotations

import shutil

import pytest
import torch
import transformers

import autoload
from autoload.generation import generate
from autoload.models import glm
from autoload.models.configs import Glm4Config, GlmConfig
from decoder_cases import batch, cached_decode, close, full_forward
from model_cases import assert_outputs_close, labels_for, make_pair
from tokenizer_cases import (assert_same_attributes, assert_same_decoding, assert_same_everywhere, train_byte_level,
                             transformers_auto, write_folder)

PREFIX = {"glm": "Glm", "glm4": "Glm4"}
TASKS = ("Model", "ForCausalLM", "ForSequenceClassification", "ForTokenClassification")


def tiny(family: str, **overrides):
    """hidden 32, 4 query / 2 key-value heads of 16 dims (head_dim != hidden/heads), 2 layers, vocab 99."""
    values = dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, max_position_embeddings=64, pad_token_id=0, eos_token_id=2,
                  initializer_range=0.2)
    values.update(overrides)
    return getattr(transformers, f"{PREFIX[family]}Config")(**values)


def _jitter(model):
    """Move every weight off its init: norm gains of 1 and zero biases would hide a swapped or missing key."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)


def pair(folder, family, config=None, task="ForCausalLM", attn="sdpa"):
    name = f"{PREFIX[family]}{task}"
    return make_pair(folder, getattr(transformers, name), getattr(glm, name),
                     config if config is not None else tiny(family), attn=attn, prepare=_jitter, reload=False)


@pytest.fixture(scope="module", params=list(PREFIX))
def lm(request, tmp_path_factory):
    return request.param, *pair(tmp_path_factory.mktemp(request.param), request.param)


@pytest.mark.parametrize("family", list(PREFIX))
@pytest.mark.parametrize("task", TASKS)
def test_every_head_left_padded_with_loss(tmp_path, family, task):
    ref, ours = pair(tmp_path, family, task=task)
    ids, mask = batch(t=7, padding="left")
    labels = labels_for(task, ids, mask)
    with torch.no_grad():
        r = ref(ids, attention_mask=mask, **labels)
        o = ours(ids, attention_mask=mask, **labels)
    if task == "Model":
        close(o.last_hidden_state, r.last_hidden_state, mask=mask)
    elif task == "ForSequenceClassification":
        assert_outputs_close(o, r, keys=("loss", "logits"))
    else:
        close(o.logits, r.logits, mask=mask)
        torch.testing.assert_close(o.loss, r.loss, atol=1e-4, rtol=0)


def test_structure(lm):
    family, _, ours = lm
    layer = ours.model.layers[0]
    assert layer.self_attn.q_proj.bias is not None and layer.self_attn.o_proj.bias is None
    assert layer.mlp.gate_up_proj.weight.shape == (2 * 37, 32)
    assert hasattr(layer, "post_mlp_layernorm") == (family == "glm4")
    assert ours.model.rotary_emb.inv_freq.shape == (4,)  # rd = 16 * 0.5 = 8 rotated dims: 4 pairs


@pytest.mark.parametrize("family", list(PREFIX))
@pytest.mark.parametrize("overrides", [
    {"partial_rotary_factor": 1.0}, {"partial_rotary_factor": 0.25, "rope_theta": 300.0},
    {"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0, "partial_rotary_factor": 0.5}},
    {"attention_bias": False, "num_key_value_heads": 1}])
def test_rotary_variants_and_biases(tmp_path, family, overrides):
    ref, ours = pair(tmp_path, family, tiny(family, **overrides))
    ids, mask = batch(t=9, padding="left")
    close(full_forward(ours, ids, mask), full_forward(ref, ids, mask), mask=mask)


@pytest.mark.parametrize("family", list(PREFIX))
def test_eager_attentions_and_hidden_states(tmp_path, family):
    ref, ours = pair(tmp_path, family, attn="eager")
    ids, mask = batch(t=6, padding="left")
    with torch.no_grad():
        r = ref(ids, attention_mask=mask, output_attentions=True, output_hidden_states=True)
        o = ours(ids, attention_mask=mask, output_attentions=True, output_hidden_states=True)
    close(o.logits, r.logits, mask=mask)
    for a, b in zip(o.attentions, r.attentions, strict=True):
        close(a, b)
    for a, b in zip(o.hidden_states, r.hidden_states, strict=True):
        close(a, b, mask=mask)


@pytest.mark.parametrize("prefill", [1, 4])
def test_cached_decode_equals_full_forward(lm, prefill):
    _, ref, ours = lm
    ids, mask = batch(t=10, padding="left")
    close(cached_decode(ours, ids, mask, prefill), full_forward(ref, ids, mask), mask=mask)


def test_greedy_and_beam_ids(lm):
    _, ref, ours = lm
    ids, mask = batch(b=3, t=5, padding="left")
    greedy = dict(attention_mask=mask, max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert torch.equal(ours.generate(ids, **greedy), ref.generate(ids, **greedy))
    beam = dict(greedy, num_beams=3, max_new_tokens=4)
    assert torch.equal(ours.generate(ids, **beam), ref.generate(ids, **beam))


def test_gradient_checkpointing_and_training(lm):
    _, ref, ours = lm
    ids, mask = batch(t=8, padding="right")
    labels = ids.masked_fill(mask == 0, -100)
    ours.train()
    try:
        loss = ours(ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        grads = {n: p.grad.clone() for n, p in ours.named_parameters()}
        ours.zero_grad()
        ours.gradient_checkpointing_enable()
        ours(ids, attention_mask=mask, labels=labels).loss.backward()
        for name, p in ours.named_parameters():
            torch.testing.assert_close(p.grad, grads[name], atol=1e-6, rtol=0, msg=name)
        with torch.no_grad():
            torch.testing.assert_close(loss, ref(ids, attention_mask=mask, labels=labels).loss, atol=1e-4, rtol=0)
    finally:
        ours.gradient_checkpointing_disable()
        ours.zero_grad()
        ours.eval()


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available() and shutil.which("g++") is None,
                    reason="torch.compile on CPU needs a C++ compiler (g++)")
def test_compiled_greedy_equals_eager(tmp_path):
    _, ours = pair(tmp_path, "glm4")
    ids, mask = batch(b=2, t=5, padding="left")
    options = dict(attention_mask=mask, max_new_tokens=8, eos_token_id=None)
    assert torch.equal(generate(ours, ids, compile=True, **options), generate(ours, ids, **options))


def test_save_reload_in_transformers_and_auto_classes(lm, tmp_path):
    family, ref, ours = lm
    ours.save_pretrained(tmp_path / "saved")
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "saved").eval()
    assert type(back).__name__ == f"{PREFIX[family]}ForCausalLM"
    ids, mask = batch(t=8)
    close(full_forward(back, ids, mask), full_forward(ours, ids, mask), atol=0)
    auto = autoload.AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    assert type(auto) is type(ours)
    base = autoload.AutoModel.from_pretrained(tmp_path / "saved")
    assert type(base).__name__ == f"{PREFIX[family]}Model"
    for task in ("ForSequenceClassification", "ForTokenClassification"):
        head = getattr(autoload, f"AutoModel{task}").from_pretrained(tmp_path / "saved", num_labels=3)
        assert type(head).__name__ == f"{PREFIX[family]}{task}"
    with torch.no_grad():
        close(base(ids, attention_mask=mask).last_hidden_state,
              ref(ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1], mask=mask)


@pytest.mark.parametrize("ours_class", [GlmConfig, Glm4Config])
def test_config_defaults(ours_class):
    ours, theirs = ours_class(), getattr(transformers, ours_class.__name__)()
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps", "pad_token_id",
                "eos_token_id", "attention_bias", "rope_parameters", "model_type"):
        assert getattr(ours, key) == getattr(theirs, key), key
    assert GlmConfig(partial_rotary_factor=0.75).rope_parameters["partial_rotary_factor"] == 0.75


@pytest.mark.parametrize("family,declared", [("glm", "PreTrainedTokenizerFast"), ("glm4", "PreTrainedTokenizerFast"),
                                            ("glm4", None)])
def test_auto_tokenizer_is_the_generic_backend(tmp_path, family, declared):
    config = {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "model_max_length": 128000,
              "padding_side": "left", **({"tokenizer_class": declared} if declared else {})}
    folder = write_folder(tmp_path / family, {"tokenizer.json": train_byte_level().to_str(),
                                              "tokenizer_config.json": config,
                                              "config.json": {"model_type": family}})
    ours, theirs = autoload.AutoTokenizer.from_pretrained(folder), transformers_auto(folder)
    assert type(ours).__name__ == type(theirs).__name__ == "TokenizersBackend"
    assert_same_attributes(ours, theirs)
    assert_same_decoding(ours, theirs)
    if family == "glm":  # every call variant once
        assert_same_everywhere(ours, theirs)
