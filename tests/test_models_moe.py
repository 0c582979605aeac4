"""The Llama family's mixture-of-experts members (mixtral, qwen2_moe, qwen3_moe) vs transformers 5 (the oracle) on
tiny random checkpoints: logits with padding from both checkpoint layouts (one module per expert, as transformers
saves, and fused 3-D expert tensors), router logits, the loss with the auxiliary load-balancing loss, cached
decoding, greedy generation (eager and compile=True), save -> transformers, training gradients, the heads, the
Auto classes and configs, and the grouped expert computation."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import transformers
from safetensors import safe_open

import autoload
from autoload.generation import generate
from autoload.models import llama
from autoload.nn import moe
from decoder_cases import batch, cached_decode, close, close_bf16, full_forward

PREFIX = {"mixtral": "Mixtral", "qwen2_moe": "Qwen2Moe", "qwen3_moe": "Qwen3Moe"}
FAMILIES = list(PREFIX)
COMMON = dict(vocab_size=99, hidden_size=32, intermediate_size=40, num_hidden_layers=3, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, rms_norm_eps=1e-6,
              initializer_range=0.2, num_experts_per_tok=2)
SIZES = {  # mixtral: 4 experts on every layer; qwen2_moe: shared expert, a dense layer; qwen3_moe: every 2nd sparse
    "mixtral": dict(num_local_experts=4),
    "qwen2_moe": dict(num_experts=6, moe_intermediate_size=16, shared_expert_intermediate_size=24,
                      mlp_only_layers=[1]),
    "qwen3_moe": dict(num_experts=8, moe_intermediate_size=16, norm_topk_prob=True, head_dim=16,
                      decoder_sparse_step=2, num_hidden_layers=4),
}


def tiny_config(family: str, **overrides):
    return getattr(transformers, f"{PREFIX[family]}Config")(**{**COMMON, **SIZES[family], **overrides})


def ref_class(family: str, task: str = "ForCausalLM"):
    return getattr(transformers, f"{PREFIX[family]}{task}")


def our_class(family: str, task: str = "ForCausalLM"):
    return getattr(llama, f"{PREFIX[family]}{task}")


def build(folder, family: str, task: str = "ForCausalLM", fused: bool = False, seed: int = 0, **overrides):
    """(reference, ours): a random reference model saved to `folder` (fused: transformers' in-memory layout,
    save_original_format=False; else one tensor per expert, its default) and autoload's load of it."""
    config = tiny_config(family, **overrides)
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    ref = ref_class(family, task)(config).eval()
    ref.save_pretrained(folder, save_original_format=not fused)
    return ref, our_class(family, task).from_pretrained(folder)


@pytest.fixture(scope="module", params=FAMILIES)
def pair(request, tmp_path_factory):
    family = request.param
    ref, ours = build(tmp_path_factory.mktemp(family), family)
    return family, ref, ours


def keys_of(folder) -> set[str]:
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        return set(f.keys())


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("family", FAMILIES)
def test_logits_from_both_checkpoint_layouts(tmp_path, family, fused):
    ref, ours = build(tmp_path, family, fused=fused)
    block = "block_sparse_moe" if family == "mixtral" else "mlp"
    assert any(f"{block}.experts.0." in k for k in keys_of(tmp_path)) != fused  # the layout really differs
    sparse = next(i for i, layer in enumerate(ours.model.layers) if layer.sparse)
    assert ours.model.layers[sparse].mlp.experts.gate_up_proj.shape == \
        ref.model.layers[sparse].mlp.experts.gate_up_proj.shape
    for padding in ("left", "right", None):
        ids, mask = batch(padding=padding)
        with torch.no_grad():
            close(ours(ids, attention_mask=mask).logits, ref(ids, attention_mask=mask).logits)


@pytest.mark.parametrize("family,overrides", [
    ("mixtral", dict(sliding_window=4)),  # every layer
    ("qwen2_moe", dict(use_sliding_window=True, sliding_window=4, max_window_layers=2, qkv_bias=False)),  # layer 0
    ("qwen3_moe", dict(use_sliding_window=True, sliding_window=4, attention_bias=True)),  # every layer
])
def test_sliding_windows_and_biases(tmp_path, family, overrides):
    ref, ours = build(tmp_path, family, **overrides)
    assert [layer.self_attn.sliding_window for layer in ours.model.layers] == \
        [ours.config.window_of(i) for i in range(ours.config.num_hidden_layers)]
    assert any(layer.self_attn.sliding_window for layer in ours.model.layers)
    assert (ours.model.layers[0].self_attn.q_proj.bias is None) == (ref.model.layers[0].self_attn.q_proj.bias is None)
    ids, mask = batch(padding="left", t=12)
    with torch.no_grad():
        close(ours(ids, attention_mask=mask).logits, ref(ids, attention_mask=mask).logits)
    close(cached_decode(ours, ids, mask, prefill=5), full_forward(ref, ids, mask), mask=mask)


def test_sparse_and_dense_layers_follow_the_config(pair):
    family, ref, ours = pair
    for mine, theirs in zip(ours.model.layers, ref.model.layers):
        assert type(mine.mlp).__name__.endswith("SparseMoeBlock") == type(theirs.mlp).__name__.endswith("SparseMoeBlock")
        assert hasattr(mine.mlp, "shared_expert") == hasattr(theirs.mlp, "shared_expert")
    assert set(ours.state_dict()) == set(ref.state_dict())  # the module names are transformers' in-memory keys


def test_loss_aux_loss_and_router_logits(pair):
    family, ref, ours = pair
    ids, mask = batch(padding="left")
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        r = ref(ids, attention_mask=mask, labels=labels, output_router_logits=True)
        o = ours(ids, attention_mask=mask, labels=labels, output_router_logits=True)
        assert len(o.router_logits) == len(r.router_logits) == sum(layer.sparse for layer in ours.model.layers)
        for mine, theirs in zip(o.router_logits, r.router_logits):
            assert mine.shape == theirs.shape  # (B*T, E)
            close(mine, theirs, atol=1e-5)
        close(o.aux_loss, r.aux_loss, atol=1e-6)
        close(o.loss, r.loss, atol=1e-5)  # includes router_aux_loss_coef * aux_loss
        plain_r, plain_o = ref(ids, attention_mask=mask, labels=labels), ours(ids, attention_mask=mask, labels=labels)
        assert plain_o.aux_loss is None and plain_o.router_logits is None
        close(plain_o.loss, plain_r.loss, atol=1e-5)
        no_mask_r, no_mask_o = (m(ids, labels=labels, output_router_logits=True) for m in (ref, ours))
        close(no_mask_o.aux_loss, no_mask_r.aux_loss, atol=1e-6)  # without a mask every row counts
        ours.config.output_router_logits = True  # the config's default, as the reference reads it
        try:
            close(ours(ids, attention_mask=mask, labels=labels).loss, r.loss, atol=1e-5)
            base = ours.model(ids, attention_mask=mask)
            assert type(base).__name__ == "MoeModelOutputWithPast" and len(base.router_logits) == len(r.router_logits)
        finally:
            ours.config.output_router_logits = False
        tup = ours(ids, attention_mask=mask, labels=labels, output_router_logits=True, return_dict=False)
        close(tup[0], r.loss, atol=1e-5)
        close(tup[1], r.aux_loss, atol=1e-6)


def test_cached_decoding_equals_the_full_forward(pair):
    family, ref, ours = pair
    ids, mask = batch(padding="left", t=10)
    expected = full_forward(ref, ids, mask)
    close(full_forward(ours, ids, mask), expected)
    close(cached_decode(ours, ids, mask, prefill=4), expected, mask=mask)


def test_greedy_generation_equals_the_reference(pair):
    family, ref, ours = pair
    ids, mask = batch(padding="left", t=7)
    expected = ref.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=False, eos_token_id=None,
                            pad_token_id=0)
    assert torch.equal(generate(ours, ids, attention_mask=mask, max_new_tokens=10, eos_token_id=None), expected)
    assert torch.equal(generate(ours, ids, attention_mask=mask, max_new_tokens=10, eos_token_id=None,
                                cache_implementation="dynamic"), expected)


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available() and shutil.which("g++") is None,
                    reason="torch.compile on CPU needs a C++ compiler (g++)")
def test_compiled_greedy_equals_eager(tmp_path):
    """qwen2_moe covers routed experts, the shared expert and a dense layer in one compiled decode step."""
    _, ours = build(tmp_path, "qwen2_moe")
    ids, mask = batch(padding="left", t=7)
    options = dict(attention_mask=mask, max_new_tokens=10, eos_token_id=None)
    assert torch.equal(generate(ours, ids, compile=True, **options), generate(ours, ids, **options))


def test_bf16(tmp_path):
    ref, _ = build(tmp_path, "qwen2_moe")
    ref = ref_class("qwen2_moe").from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    ours = our_class("qwen2_moe").from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert ours.model.layers[0].mlp.experts.gate_up_proj.dtype == torch.bfloat16
    ids, mask = batch()
    with torch.no_grad():
        out = ours(ids, attention_mask=mask, output_router_logits=True)
        close_bf16(out.logits, ref(ids, attention_mask=mask).logits)
    assert out.logits.dtype == torch.bfloat16 and out.router_logits[0].dtype == torch.bfloat16


@pytest.mark.parametrize("family", FAMILIES)
def test_save_pretrained_writes_what_transformers_writes(tmp_path, family):
    ref, ours = build(tmp_path / "ref", family, fused=True)  # loaded from the fused layout ...
    ref.save_pretrained(tmp_path / "ref-default")
    ours.save_pretrained(tmp_path / "ours")
    assert keys_of(tmp_path / "ours") == keys_of(tmp_path / "ref-default")  # ... saved one tensor per expert
    saved = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert saved["model_type"] == family and saved["architectures"] == [f"{PREFIX[family]}ForCausalLM"]
    back = ref_class(family).from_pretrained(tmp_path / "ours").eval()
    again = our_class(family).from_pretrained(tmp_path / "ours")
    ids, mask = batch()
    with torch.no_grad():
        expected = ref(ids, attention_mask=mask).logits
        close(back(ids, attention_mask=mask).logits, expected, atol=1e-6)
        close(again(ids, attention_mask=mask).logits, expected, atol=1e-4)


def test_sharded_per_expert_checkpoint(tmp_path):
    """A layer's experts spread over several shards are stacked all the same."""
    ref, _ = build(tmp_path / "one", "mixtral")
    ref.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert len(list((tmp_path / "sharded").glob("model-*.safetensors"))) > 3
    ours = autoload.AutoModelForCausalLM.from_pretrained(tmp_path / "sharded")
    assert type(ours) is llama.MixtralForCausalLM
    ids, mask = batch()
    with torch.no_grad():
        close(ours(ids, attention_mask=mask).logits, ref(ids, attention_mask=mask).logits)


def test_an_incomplete_expert_layer_is_reported(tmp_path):
    ref, _ = build(tmp_path / "full", "qwen3_moe")
    with safe_open(str(tmp_path / "full" / "model.safetensors"), "pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys() if k != "model.layers.1.mlp.experts.2.up_proj.weight"}
    model, info = llama.Qwen3MoeForCausalLM.from_pretrained(tmp_path / "full", state_dict=state,
                                                            output_loading_info=True)
    assert "model.layers.1.mlp.experts.gate_up_proj" in info["missing_keys"]
    assert "model.layers.1.mlp.experts.2.gate_proj.weight" in info["unexpected_keys"]
    assert "model.layers.3.mlp.experts.gate_up_proj" not in info["missing_keys"]


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("family", FAMILIES)
def test_training_step_gradients_equal_the_reference(tmp_path, family, checkpointing):
    ref, ours = build(tmp_path, family)
    for model in (ref, ours):
        model.train()
        if checkpointing:
            model.activation_checkpointing_enable()
    ids, mask = batch(padding="right")
    labels = ids.masked_fill(mask == 0, -100)
    r = ref(ids, attention_mask=mask, labels=labels, output_router_logits=True)
    o = ours(ids, attention_mask=mask, labels=labels, output_router_logits=True)
    close(o.loss, r.loss, atol=1e-5)
    r.loss.backward()
    o.loss.backward()
    theirs = dict(ref.named_parameters())
    for name, param in ours.named_parameters():
        assert param.grad is not None, name
        close(param.grad, theirs[name].grad, atol=1e-5)


def test_heads_equal_the_reference(tmp_path):
    ids, mask = batch(padding="right")
    for family, task in (("mixtral", "ForSequenceClassification"), ("qwen2_moe", "ForTokenClassification"),
                         ("qwen3_moe", "ForQuestionAnswering"), ("qwen2_moe", "Model")):
        ref, ours = build(tmp_path / f"{family}-{task}", family, task)
        with torch.no_grad():
            r, o = ref(ids, attention_mask=mask), ours(ids, attention_mask=mask)
        for key in ("logits", "start_logits", "end_logits", "last_hidden_state"):
            if key in r:
                close(o[key], r[key])
    assert llama.Qwen3MoeForQuestionAnswering.base_model_prefix == "transformer"
    assert llama.MixtralForQuestionAnswering.base_model_prefix == llama.Qwen2MoeForQuestionAnswering.base_model_prefix \
        == "model"


@pytest.mark.parametrize("family", FAMILIES)
def test_configs_and_auto_classes(tmp_path, family):
    ours, ref = getattr(autoload, f"{PREFIX[family]}Config")(), getattr(transformers, f"{PREFIX[family]}Config")()
    drop = ("transformers_version", "_name_or_path")
    assert {k: v for k, v in ours.to_dict().items() if k not in drop} == \
        {k: v for k, v in ref.to_dict().items() if k not in drop}
    build(tmp_path, family)
    config = autoload.AutoConfig.from_pretrained(tmp_path)
    assert type(config).__name__ == f"{PREFIX[family]}Config" and config.num_experts == SIZES[family].get(
        "num_experts", SIZES[family].get("num_local_experts"))
    for auto, task in ((autoload.AutoModel, "Model"), (autoload.AutoModelForCausalLM, "ForCausalLM")):
        assert type(auto.from_pretrained(tmp_path)) is our_class(family, task)
    with pytest.raises(autoload.ConfigError, match="num_experts_per_tok"):
        type(config)(num_experts_per_tok=1000)


def test_qwen3_moe_reads_num_experts_and_saves_num_local_experts():
    config = autoload.Qwen3MoeConfig(num_experts=16)  # the hub's spelling
    assert config.num_experts == 16 and config.to_dict()["num_local_experts"] == 16
    assert transformers.Qwen3MoeConfig(**config.to_dict()).num_experts == 16


def test_the_experts_run_grouped():
    """Each expert's projections run once per layer, on all of its tokens (not once per token); the grouped
    result equals a per-token computation."""
    config = autoload.MixtralConfig(**{**COMMON, "num_local_experts": 4})
    block = llama.MixtralForCausalLM(config).model.layers[0].mlp
    x = torch.randn(2, 13, 32)
    calls = []

    class Count(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func in (torch.nn.functional.linear, torch.matmul, torch.bmm, torch.Tensor.__matmul__):
                calls.append(func)
            return func(*args, **(kwargs or {}))

    with torch.no_grad(), Count():
        y, _ = block(x)
    assert len(calls) <= 1 + 2 * 4  # the router, then gate_up and down once per expert
    flat, experts = x.reshape(-1, 32), block.experts
    with torch.no_grad():
        _, weights, chosen = block.gate(flat)
        expected = torch.zeros_like(flat)
        for n, token in enumerate(flat):
            for w, e in zip(weights[n], chosen[n].tolist()):
                gate, up = (experts.gate_up_proj[e] @ token).chunk(2)
                expected[n] += w * (experts.down_proj[e] @ (torch.nn.functional.silu(gate) * up))
    close(y.reshape(-1, 32), expected, atol=1e-5)


def test_load_balancing_loss_equals_the_reference():
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func
    g = torch.Generator().manual_seed(3)
    logits = tuple(torch.randn(12, 6, generator=g) for _ in range(3))  # 3 layers, B*T = 12 rows, 6 experts
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]])
    for top_k in (1, 2, 3):
        close(moe.load_balancing_loss(logits, 6, top_k), load_balancing_loss_func(logits, 6, top_k), atol=1e-6)
        close(moe.load_balancing_loss(logits, 6, top_k, mask), load_balancing_loss_func(logits, 6, top_k, mask),
              atol=1e-6)
