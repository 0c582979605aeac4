"""Llama parity with transformers 5.24 (the oracle): shapes, tying, every rope scaling type, padding, losses,
hidden states / attentions, the KV cache, training, saving and sharded loading."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

import autoload
from autoload.models.llama import LlamaForCausalLM, LlamaModel
from autoload.nn.cache import StaticCache
from decoder_cases import batch, cached_decode, close, close_bf16, full_forward, make_pair, tiny_config


@pytest.mark.parametrize("heads,kv_heads,hidden,head_dim", [
    (4, 4, 32, None),   # multi-head (GQA ratio 1)
    (4, 2, 32, None),   # ratio 2
    (8, 2, 32, None),   # ratio 4, head_dim 4
    (4, 1, 32, 12),     # multi-query, head_dim != hidden/heads
    (3, 1, 30, None),   # odd head count, ratio 3
    (6, 3, 36, 10),     # odd kv heads, head_dim != hidden/heads
])
@pytest.mark.parametrize("padding", [None, "left", "right"])
def test_shapes_and_padding(tmp_path, heads, kv_heads, hidden, head_dim, padding):
    cfg = tiny_config("llama", num_attention_heads=heads, num_key_value_heads=kv_heads, hidden_size=hidden,
                      head_dim=head_dim)
    ref, ours, _ = make_pair(tmp_path, "llama", "ForCausalLM", cfg)
    ids, mask = batch(padding=padding)
    with torch.no_grad():
        close(ours(ids, attention_mask=mask).logits, ref(ids, attention_mask=mask).logits)
        close(ours(ids).logits, ref(ids).logits)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_biases_and_eager(tmp_path, attn):
    cfg = tiny_config("llama", attention_bias=True, mlp_bias=True)
    ref, ours, _ = make_pair(tmp_path, "llama", "ForCausalLM", cfg, attn=attn)
    assert ours.model.layers[0].self_attn.o_proj.bias is not None and ours.model.layers[0].mlp.up_proj.bias is not None
    for padding in ("left", "right", None):
        ids, mask = batch(padding=padding)
        with torch.no_grad():
            close(ours(ids, attention_mask=mask).logits, ref(ids, attention_mask=mask).logits)


@pytest.mark.parametrize("tied", [True, False])
def test_tied_and_untied_embeddings(tmp_path, tied):
    cfg = tiny_config("llama", tie_word_embeddings=tied)
    ref, ours, folder = make_pair(tmp_path, "llama", "ForCausalLM", cfg)
    assert (ours.lm_head.weight is ours.model.embed_tokens.weight) == tied
    ids, mask = batch()
    with torch.no_grad():
        close(ours(ids, attention_mask=mask).logits, ref(ids, attention_mask=mask).logits)
    # a model constructed directly ties (or not) as well
    fresh = LlamaForCausalLM(autoload.AutoConfig.from_pretrained(folder))
    assert (fresh.lm_head.weight is fresh.model.embed_tokens.weight) == tied


ROPES = {
    "linear": {"rope_type": "linear", "factor": 2.0},
    "dynamic": {"rope_type": "dynamic", "factor": 3.0},
    "yarn": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16},
    "yarn-attention-factor": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16,
                              "attention_factor": 0.8, "beta_fast": 16.0, "beta_slow": 2.0},
    "yarn-mscale": {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 8, "mscale": 0.9,
                    "mscale_all_dim": 0.5},
    "yarn-no-truncate": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16,
                         "truncate": False},
    "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 16},
}


@pytest.mark.parametrize("name", list(ROPES))
def test_rope_scaling(tmp_path, name):
    rope = {"rope_theta": 500.0, **ROPES[name]}
    cfg = tiny_config("llama", rope_parameters=rope, max_position_embeddings=16, head_dim=16)
    ref, ours, _ = make_pair(tmp_path, "llama", "ForCausalLM", cfg)
    torch.testing.assert_close(ours.model.rotary_emb.inv_freq, ref.model.rotary_emb.inv_freq, atol=0, rtol=0)
    assert ours.model.rotary_emb.attention_scaling == pytest.approx(ref.model.rotary_emb.attention_scaling)
    # beyond max_position_embeddings (dynamic grows its base), then shorter again (dynamic resets), padded
    for t, padding in ((40, None), (24, "left"), (10, "right"), (40, "left")):
        ids, mask = batch(t=t, padding=padding)
        with torch.no_grad():
            close(ours(ids, attention_mask=mask).logits, ref(ids, attention_mask=mask).logits)
        torch.testing.assert_close(ours.model.rotary_emb.inv_freq, ref.model.rotary_emb.inv_freq, atol=0, rtol=0)


def test_rope_theta_from_legacy_config_json(tmp_path):
    """An old config.json with rope_theta and rope_scaling at the top level."""
    ref, _, folder = make_pair(tmp_path, "llama", "ForCausalLM")
    data = json.loads((folder / "config.json").read_text())
    data.pop("rope_parameters")
    data.update(rope_theta=1234.0, rope_scaling={"type": "linear", "factor": 2.0})
    (folder / "config.json").write_text(json.dumps(data))
    ref = transformers.LlamaForCausalLM.from_pretrained(folder).eval()
    ours = LlamaForCausalLM.from_pretrained(folder)
    ids, mask = batch()
    with torch.no_grad():
        close(ours(ids, attention_mask=mask).logits, ref(ids, attention_mask=mask).logits)


def test_losses(tmp_path):
    ref, ours, _ = make_pair(tmp_path, "llama", "ForCausalLM")
    ids, mask = batch(padding="right")
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        r, o = ref(ids, attention_mask=mask, labels=labels), ours(ids, attention_mask=mask, labels=labels)
        close(o.loss, r.loss, atol=1e-5)
        n = torch.tensor(11)
        close(ours(ids, labels=labels, num_items_in_batch=n).loss, ref(ids, labels=labels, num_items_in_batch=n).loss)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_hidden_states_and_attentions(tmp_path, attn):
    ref, ours, _ = make_pair(tmp_path, "llama", "ForCausalLM", attn=attn)
    ids, mask = batch()
    with torch.no_grad():
        r = ref(ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
        o = ours(ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    assert len(o.hidden_states) == len(r.hidden_states) == 3  # embeddings, layer 1, final norm
    for a, b in zip(o.hidden_states, r.hidden_states):
        close(a, b)
    assert len(o.attentions) == len(r.attentions) == (2 if attn == "eager" else 0)  # sdpa returns no weights
    for a, b in zip(o.attentions, r.attentions):
        close(a, b)
    base = LlamaModel.from_pretrained(tmp_path / "llama-ForCausalLM-0", attn_implementation=attn)
    with torch.no_grad():
        close(base(ids, attention_mask=mask).last_hidden_state, r.hidden_states[-1])


def test_return_dict_false_and_logits_to_keep(tmp_path):
    ref, ours, _ = make_pair(tmp_path, "llama", "ForCausalLM")
    ids, mask = batch()
    with torch.no_grad():
        logits, cache = ours(ids, attention_mask=mask, return_dict=False)
        close(logits, ref(ids, attention_mask=mask).logits)
        assert cache.get_seq_length() == ids.shape[1]
        assert ours(ids, use_cache=False, return_dict=False)[0].shape == logits.shape
        close(ours(ids, logits_to_keep=1).logits, ref(ids, logits_to_keep=1).logits)
        keep = torch.tensor([0, 3])
        close(ours(ids, logits_to_keep=keep).logits, ref(ids, logits_to_keep=keep).logits)
        emb = ours.model.embed_tokens(ids)
        close(ours(inputs_embeds=emb, attention_mask=mask).logits, ref(inputs_embeds=emb, attention_mask=mask).logits)
    with pytest.raises(ValueError, match="exactly one of input_ids or inputs_embeds"):
        ours(ids, inputs_embeds=emb)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_cached_decode_equals_full_forward(tmp_path, attn, kv_heads):
    cfg = tiny_config("llama", num_key_value_heads=kv_heads)
    ref, ours, _ = make_pair(tmp_path, "llama", "ForCausalLM", cfg, attn=attn)
    ids, mask = batch(t=10, padding="left")
    expected = full_forward(ref, ids, mask)
    close(full_forward(ours, ids, mask), expected, mask=mask)
    for prefill in (1, 4):
        close(cached_decode(ours, ids, mask, prefill), expected, mask=mask)
    # no padding, default positions: prefill then steps without a mask
    ids = ids[:1, :]
    with torch.no_grad():
        out = ours(ids[:, :5], use_cache=True)
        steps = [out.logits]
        for t in range(5, ids.shape[1]):
            out = ours(ids[:, t:t + 1], past_key_values=out.past_key_values)
            steps.append(out.logits)
        close(torch.cat(steps, 1), ref(ids).logits)


def test_static_cache_decode(tmp_path):
    ref, ours, _ = make_pair(tmp_path, "llama", "ForCausalLM")
    ids, mask = batch(t=8, padding="left")
    cfg = ours.config
    cache = StaticCache(cfg.num_hidden_layers, ids.shape[0], cfg.num_key_value_heads, cfg.head_dim, 16,
                        torch.float32, "cpu")
    close(cached_decode(ours, ids, mask, 3, cache=cache), full_forward(ref, ids, mask), mask=mask)


def test_bf16(tmp_path):
    ref, ours, _ = make_pair(tmp_path, "llama", "ForCausalLM", dtype=torch.bfloat16)
    assert ours.dtype == torch.bfloat16 and ours.model.rotary_emb.inv_freq.dtype == torch.float32
    ids, mask = batch()
    with torch.no_grad():
        o, r = ours(ids, attention_mask=mask, labels=ids), ref(ids, attention_mask=mask, labels=ids)
    assert o.logits.dtype == torch.bfloat16
    close_bf16(o.logits, r.logits)
    close_bf16(o.loss, r.loss)
    # the same operations in the same order (RMSNorm's cast before the weight, fp32 rope and softmax): same bits
    torch.testing.assert_close(o.logits, r.logits, atol=0, rtol=0)


def test_training_step_lowers_the_loss(tmp_path):
    _, ours, _ = make_pair(tmp_path, "llama", "ForCausalLM", tiny_config("llama", tie_word_embeddings=False))
    ours.train()
    ids, mask = batch(padding="right")
    labels = ids.masked_fill(mask == 0, -100)
    optimizer = torch.optim.AdamW(ours.parameters(), lr=1e-2)
    losses = []
    for _ in range(5):
        loss = ours(ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        assert ours.model.embed_tokens.weight.grad.abs().sum() > 0
        assert ours.model.embed_tokens.weight.grad[0].abs().sum() == 0  # the padding row gets no gradient
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_save_pretrained_round_trip(tmp_path):
    ref, ours, _ = make_pair(tmp_path, "llama", "ForCausalLM",
                             tiny_config("llama", rope_parameters={"rope_type": "linear", "factor": 2.0,
                                                                   "rope_theta": 100.0}))
    ours.save_pretrained(tmp_path / "saved")
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "saved").eval()
    ids, mask = batch()
    with torch.no_grad():
        close(back(ids, attention_mask=mask).logits, ours(ids, attention_mask=mask).logits, atol=0)
        close(back(ids, attention_mask=mask).logits, ref(ids, attention_mask=mask).logits, atol=0)
    again = LlamaForCausalLM.from_pretrained(tmp_path / "saved")
    with torch.no_grad():
        close(again(ids).logits, ours(ids).logits, atol=0)


def test_sharded_checkpoint(tmp_path):
    ref, ours, folder = make_pair(tmp_path, "llama", "ForCausalLM", max_shard_size="20KB")
    assert (folder / "model.safetensors.index.json").exists()
    ids, mask = batch()
    with torch.no_grad():
        close(ours(ids, attention_mask=mask).logits, ref(ids, attention_mask=mask).logits, atol=0)
    auto = autoload.AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        close(auto(ids).logits, ref(ids).logits, atol=0)


def test_auto_classes(tmp_path):
    ref, _, folder = make_pair(tmp_path, "llama", "ForCausalLM")
    ids, mask = batch()
    lm = autoload.AutoModelForCausalLM.from_pretrained(folder)
    assert type(lm).__name__ == "LlamaForCausalLM" and not lm.training
    base = autoload.AutoModel.from_pretrained(folder)
    assert isinstance(base, LlamaModel)
    classifier, info = autoload.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=3,
                                                                                  output_loading_info=True)
    assert info["missing_keys"] == ["score.weight"] and info["unexpected_keys"] == ["lm_head.weight"]
    with torch.no_grad():
        r = ref(ids, attention_mask=mask, output_hidden_states=True)
        close(lm(ids, attention_mask=mask).logits, r.logits)
        close(base(ids, attention_mask=mask).last_hidden_state, r.hidden_states[-1])
        assert classifier(ids, attention_mask=mask).logits.shape == (3, 3)
