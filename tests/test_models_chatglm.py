"""ChatGLM2/3 / GLM-4 (model_type "chatglm") parity with transformers 5.24's GlmForCausalLM, the same architecture
under other names: a random Glm model is inverse-mapped to the chatglm checkpoint layout (fused q/k/v, chatglm key
names), saved with a chatglm config.json, and loaded by autoload. Also: the config (aliases, rope_ratio meaning,
unsupported variants), checkpoint formats, dtypes, saving, and the heads."""

from __future__ import annotations

import json
import logging
import re

import pytest
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file

import autoload
from autoload.models.chatglm import (ChatGLMForCausalLM, ChatGLMForConditionalGeneration,
                                     ChatGLMForSequenceClassification, ChatGLMModel)
from autoload.models.configs import ChatGLMConfig
from autoload.registry import MODEL_TYPES
from decoder_cases import batch, cached_decode, close, full_forward

V, H, FFN, LAYERS, HEADS, GROUPS, D = 128, 64, 96, 3, 4, 2, 16
CASES = [("base", 1.0), ("base", 500.0), ("positions", 4.0)]


# -- a random GlmForCausalLM and its chatglm checkpoint ---------------------------------------------------------

def glm_reference(meaning: str = "base", ratio: float = 1.0, kv_heads: int = GROUPS, seed: int = 0):
    """GlmForCausalLM with chatglm's rope: base 10000·r ("base"), or positions / r = linear scaling ("positions")."""
    rope = {"rope_type": "default", "rope_theta": 10000.0 * ratio} if meaning == "base" else \
        {"rope_type": "linear", "factor": ratio, "rope_theta": 10000.0}
    cfg = transformers.GlmConfig(vocab_size=V, hidden_size=H, intermediate_size=FFN, num_hidden_layers=LAYERS,
                                 num_attention_heads=HEADS, num_key_value_heads=kv_heads, head_dim=D,
                                 max_position_embeddings=64, rms_norm_eps=1e-5, attention_bias=True, pad_token_id=0,
                                 eos_token_id=2, tie_word_embeddings=False,
                                 rope_parameters={**rope, "partial_rotary_factor": 0.5})
    torch.manual_seed(seed)
    model = transformers.GlmForCausalLM(cfg).eval()
    with torch.no_grad():  # weights, biases and norm gains scaled up so that logits are of order 5
        for name, p in model.named_parameters():
            p.copy_(1 + 0.15 * torch.randn_like(p) if name.endswith("norm.weight") else 0.15 * torch.randn_like(p))
    return model


RENAMES = [(r"^model\.embed_tokens\.", "transformer.embedding.word_embeddings."),
           (r"^model\.norm\.", "transformer.encoder.final_layernorm."), (r"^lm_head\.", "transformer.output_layer."),
           (r"^model\.layers\.", "transformer.encoder.layers."), (r"self_attn\.o_proj", "self_attention.dense"),
           (r"mlp\.gate_up_proj", "mlp.dense_h_to_4h"), (r"mlp\.down_proj", "mlp.dense_4h_to_h")]


def to_chatglm(state: dict, interleaved: bool = False) -> dict:
    """Glm keys -> chatglm keys; q/k/v concatenated as blocks (multi-query layout) or per head [q_h|k_h|v_h]."""
    out = {}
    for key, tensor in state.items():
        if ".k_proj." in key or ".v_proj." in key:
            continue
        if ".q_proj." in key:
            q, k, v = (state[key.replace("q_proj", n)] for n in ("q_proj", "k_proj", "v_proj"))
            if interleaved:
                tensor = torch.cat([t.unflatten(0, (HEADS, D)) for t in (q, k, v)], dim=1).flatten(0, 1)
            else:
                tensor = torch.cat([q, k, v], dim=0)
            key = key.replace("self_attn.q_proj", "self_attention.query_key_value")
        for pattern, replacement in RENAMES:
            key = re.sub(pattern, replacement, key)
        out[key] = tensor.contiguous()
    return out


def chatglm_config(ratio: float = 1.0, meaning: str | None = None, **overrides) -> dict:
    data = {"model_type": "chatglm", "architectures": ["ChatGLMModel"], "num_layers": LAYERS,
            "padded_vocab_size": V, "hidden_size": H, "ffn_hidden_size": FFN, "kv_channels": D,
            "num_attention_heads": HEADS, "seq_length": 64, "layernorm_epsilon": 1e-5, "rmsnorm": True,
            "apply_residual_connection_post_layernorm": False, "post_layer_norm": True, "add_bias_linear": False,
            "add_qkv_bias": True, "bias_dropout_fusion": True, "multi_query_attention": True,
            "multi_query_group_num": GROUPS, "rope_ratio": ratio, "original_rope": True,
            "apply_query_key_layer_scaling": True, "attention_softmax_in_fp32": True,
            "fp32_residual_connection": False, "hidden_dropout": 0.0, "attention_dropout": 0.0, "quantization_bit": 0,
            "pre_seq_len": None, "prefix_projection": False, "torch_dtype": "float32", "use_cache": True,
            "tie_word_embeddings": False, "eos_token_id": 2, "pad_token_id": 0}
    if meaning is not None:
        data["rope_ratio_meaning"] = meaning
    return {**data, **overrides}


def write_chatglm(folder, ref, config: dict, shards: int = 0, inv_freq: bool = True, dtype=None,
                  interleaved: bool = False):
    """The chatglm checkpoint of `ref` in `folder`: model.safetensors, or `shards` pytorch_model-*.bin + index."""
    folder.mkdir(parents=True, exist_ok=True)
    state = to_chatglm(ref.state_dict(), interleaved)
    if dtype is not None:
        state = {k: v.to(dtype) for k, v in state.items()}
    if inv_freq:  # the original files carry it (fp16 in chatglm2); its values are never used
        state["transformer.rotary_pos_emb.inv_freq"] = torch.rand(D // 4).half()
    (folder / "config.json").write_text(json.dumps(config))
    if not shards:
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
        return folder
    keys, weight_map = sorted(state), {}
    for i in range(shards):
        name = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        part = {k: state[k] for k in keys[i::shards]}
        torch.save(part, folder / name)
        weight_map.update(dict.fromkeys(part, name))
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


def make_pair(tmp_path, meaning="base", ratio=1.0, **write_options):
    ref = glm_reference(meaning, ratio)
    folder = write_chatglm(tmp_path / f"chatglm-{meaning}-{ratio}", ref, chatglm_config(ratio, meaning),
                           **write_options)
    return ref, ChatGLMForConditionalGeneration.from_pretrained(folder), folder


def max_diff(a, b, mask=None) -> float:
    if mask is not None:
        a, b = a[mask.bool()], b[mask.bool()]
    return (a.float() - b.float()).abs().max().item()


# -- parity ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("meaning,ratio", CASES)
def test_logits_match_glm(tmp_path, meaning, ratio):
    ref, ours, _ = make_pair(tmp_path, meaning, ratio)
    assert ours.config.rope_ratio_meaning == meaning
    ids, mask = batch(t=9, padding="left")
    with torch.no_grad():
        expected = ref(ids).logits
        assert 2 < expected.abs().max() < 20  # the scaled-up weights give logits of order 5
        close(ours(ids).logits, expected)  # full sequence, default positions
        padded = full_forward(ours, ids, mask)  # left padding, position_ids = cumsum(mask) - 1
        assert torch.isfinite(padded).all()  # pad query rows included
        close(padded, full_forward(ref, ids, mask), mask=mask)


def test_rope_ratio_meanings_really_differ(tmp_path):
    """The parity cases can tell the meanings apart: the same weights read the other way are far off."""
    ref = glm_reference("positions", 4.0)
    folder = write_chatglm(tmp_path / "m", ref, chatglm_config(4.0, "base"))
    ids, _ = batch(t=9, padding=None)
    with torch.no_grad():
        assert max_diff(ChatGLMForCausalLM.from_pretrained(folder)(ids).logits, ref(ids).logits) > 0.1


@pytest.mark.parametrize("meaning,ratio", [("base", 500.0), ("positions", 4.0)])
def test_cached_decode_and_chunked_prefill(tmp_path, meaning, ratio):
    ref, ours, _ = make_pair(tmp_path, meaning, ratio)
    ids, mask = batch(t=9, padding="left")
    expected = full_forward(ref, ids, mask)
    for prefill in (1, 4):  # one token at a time after the prefill
        close(cached_decode(ours, ids, mask, prefill), expected, mask=mask)
    positions = mask.cumsum(-1) - 1
    with torch.no_grad():  # chunked prefill: 4 tokens, then 5 at once against the cache
        first = ours(ids[:, :4], attention_mask=mask[:, :4], position_ids=positions[:, :4], use_cache=True)
        second = ours(ids[:, 4:], attention_mask=mask, position_ids=positions[:, 4:],
                      past_key_values=first.past_key_values, use_cache=True)
        assert second.past_key_values.get_seq_length() == 9
        close(torch.cat([first.logits, second.logits], 1), expected, mask=mask)
        # no padding, no mask, default positions: prefill 4, chunk of 5
        out = ours(ids[:1, :4], use_cache=True)
        rest = ours(ids[:1, 4:], past_key_values=out.past_key_values)
        close(torch.cat([out.logits, rest.logits], 1), ref(ids[:1]).logits)


@pytest.mark.parametrize("cache_implementation", [None, "static"])
def test_generate_matches_transformers(tmp_path, cache_implementation):
    ref, ours, _ = make_pair(tmp_path, "base", 500.0)
    ids, mask = batch(t=7, padding="left")
    options = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": 0}
    extra = {"cache_implementation": cache_implementation} if cache_implementation else {}
    with torch.no_grad():
        single = ours.generate(ids[:1], **options, **extra)
        assert torch.equal(single, ref.generate(ids[:1], **options))
        padded = ours.generate(ids, attention_mask=mask, **options, **extra)
        assert torch.equal(padded, ref.generate(ids, attention_mask=mask, **options))


def test_multi_head_interleaved_qkv_layout(tmp_path):
    """multi_query_attention false: the Megatron per-head [q_h | k_h | v_h] layout, every head its own k/v."""
    ref = glm_reference("base", 1.0, kv_heads=HEADS)
    config = chatglm_config(multi_query_attention=False)
    folder = write_chatglm(tmp_path / "mha", ref, config, interleaved=True)
    ours = ChatGLMForCausalLM.from_pretrained(folder)
    assert ours.config.num_key_value_heads == HEADS
    ids, mask = batch(t=9, padding="left")
    close(full_forward(ours, ids, mask), full_forward(ref, ids, mask), mask=mask)
    close(cached_decode(ours, ids, mask, 3), full_forward(ref, ids, mask), mask=mask)


def test_eager_hidden_states_loss_and_backbone(tmp_path):
    ref, _, folder = make_pair(tmp_path)
    eager = ChatGLMForCausalLM.from_pretrained(folder, attn_implementation="eager")
    ids, mask = batch(t=9, padding="right")
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        loss = ref(ids, attention_mask=mask, labels=labels).loss
        close(eager(ids, attention_mask=mask, labels=labels).loss, loss, atol=1e-5)
        ids, mask = batch(t=9, padding="left")
        pos = mask.cumsum(-1) - 1
        r = ref(ids, attention_mask=mask, position_ids=pos, output_hidden_states=True)
        o = eager(ids, attention_mask=mask, position_ids=pos, output_hidden_states=True, output_attentions=True)
        close(o.logits, r.logits, mask=mask)
        assert torch.isfinite(o.logits).all() and len(o.attentions) == LAYERS
        assert len(o.hidden_states) == len(r.hidden_states) == LAYERS + 1
        close(o.hidden_states[-1], r.hidden_states[-1], mask=mask)
        base = ChatGLMModel.from_pretrained(folder)  # stops at final_layernorm, owns output_layer
        hidden = base(ids, attention_mask=mask, position_ids=pos).last_hidden_state
        close(hidden, r.hidden_states[-1], mask=mask)
        close(base.output_layer(hidden), r.logits, mask=mask)
        close(eager(ids, logits_to_keep=1).logits, ref(ids).logits[:, -1:])


# -- Auto classes, heads, checkpoint formats ---------------------------------------------------------------------

def test_registry_row_mirrors_the_auto_map():
    tasks = {k: v.rpartition(":")[2] for k, v in MODEL_TYPES["chatglm"]["tasks"].items()}
    assert tasks == {"AutoModel": "ChatGLMForConditionalGeneration",
                     "AutoModelForCausalLM": "ChatGLMForConditionalGeneration",
                     "AutoModelForSequenceClassification": "ChatGLMForSequenceClassification"}
    assert ChatGLMForCausalLM is ChatGLMForConditionalGeneration and ChatGLMForConditionalGeneration.can_generate()
    assert not ChatGLMForSequenceClassification.can_generate()


def test_auto_classes(tmp_path):
    ref, _, folder = make_pair(tmp_path)
    ids, mask = batch(t=9, padding="left")
    model = autoload.AutoModel.from_pretrained(folder)
    assert type(model) is ChatGLMForConditionalGeneration and not model.training
    lm = autoload.AutoModelForCausalLM.from_pretrained(folder)
    assert type(lm) is ChatGLMForConditionalGeneration
    classifier, info = autoload.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=3,
                                                                                  output_loading_info=True)
    assert type(classifier) is ChatGLMForSequenceClassification
    assert sorted(info["missing_keys"]) == ["classifier_head.bias", "classifier_head.weight"]
    assert info["unexpected_keys"] == []
    with torch.no_grad():
        close(full_forward(model, ids, mask), full_forward(ref, ids, mask), mask=mask)
        out = classifier(ids, attention_mask=mask, position_ids=mask.cumsum(-1) - 1, labels=torch.tensor([0, 2, 1]))
        hidden = classifier.transformer(ids, attention_mask=mask, position_ids=mask.cumsum(-1) - 1).last_hidden_state
        close(out.logits, classifier.classifier_head(hidden[:, -1]))  # pooled at each row's last position
        assert out.logits.shape == (3, 3) and out.loss.ndim == 0


@pytest.mark.parametrize("shards,inv_freq", [(2, True), (0, True), (0, False)])
def test_checkpoint_formats_and_inv_freq(tmp_path, caplog, shards, inv_freq):
    ref = glm_reference()
    folder = write_chatglm(tmp_path / "ckpt", ref, chatglm_config(), shards=shards, inv_freq=inv_freq)
    assert (folder / "pytorch_model.bin.index.json").exists() == bool(shards)
    with caplog.at_level(logging.WARNING, logger="autoload"):
        ours, info = ChatGLMForCausalLM.from_pretrained(folder, output_loading_info=True)
    assert info == {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": [], "error_msgs": []}
    assert "load report" not in caplog.text  # inv_freq is ignored silently, and never required
    ids, mask = batch()
    close(full_forward(ours, ids, mask), full_forward(ref, ids, mask), mask=mask)


def test_dtype_auto_and_no_floating_buffers(tmp_path):
    ref = glm_reference()
    folder = write_chatglm(tmp_path / "fp16", ref, chatglm_config(torch_dtype="float16"), dtype=torch.float16)
    ours = autoload.AutoModel.from_pretrained(folder)  # dtype="auto": the config's torch_dtype
    assert ours.dtype == torch.float16
    assert all(p.dtype == torch.float16 for p in ours.parameters())
    assert [name for name, b in ours.named_buffers() if b.is_floating_point()] == []  # rope angles: fp32, call time
    assert ChatGLMForCausalLM.from_pretrained(folder, dtype=torch.float32).dtype == torch.float32


@pytest.mark.parametrize("dtype,atol", [(torch.float16, 0.05), (torch.bfloat16, 0.3)])
def test_half_precision_close_to_fp32(tmp_path, dtype, atol):
    """Measured on CPU (logits up to ~4): fp16 0.011-0.013 and bf16 0.09-0.13 from fp32; transformers' Glm in
    the same dtype is within 0.008 (fp16) and 0.07 (bf16) of ours."""
    ref, ours, _ = make_pair(tmp_path, "base", 500.0)
    ids, mask = batch(t=9, padding="left")
    expected = full_forward(ours, ids, mask)
    half = ours.half() if dtype == torch.float16 else ours.to(torch.bfloat16)
    got = full_forward(half, ids, mask)
    assert got.dtype == dtype and torch.isfinite(got).all()
    assert max_diff(got, expected, mask) < atol
    assert max_diff(cached_decode(half, ids, mask, 4), expected, mask) < atol


def test_save_pretrained_round_trip(tmp_path):
    ref, ours, folder = make_pair(tmp_path, "positions", 4.0)
    original = json.loads((folder / "config.json").read_text())
    ours.save_pretrained(tmp_path / "saved")
    with safe_open(str(tmp_path / "saved" / "model.safetensors"), "pt") as f:
        saved_keys = set(f.keys())
    assert saved_keys == set(to_chatglm(ref.state_dict()))  # chatglm names, no inv_freq, no generic names
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert saved["model_type"] == "chatglm" and saved["rope_ratio_meaning"] == "positions"  # explicit: kept
    changed = {k for k, v in original.items() if saved.get(k) != v}
    assert changed == {"architectures", "torch_dtype"}  # the saving class; `dtype`, autoload's current name
    assert saved["architectures"] == ["ChatGLMForConditionalGeneration"] and saved["dtype"] == "float32"
    generic = {"num_hidden_layers", "vocab_size", "head_dim", "num_key_value_heads", "max_position_embeddings",
               "intermediate_size", "rms_norm_eps"}
    assert not generic & set(saved)
    again = ChatGLMForCausalLM.from_pretrained(tmp_path / "saved")
    ids, _ = batch(padding=None)
    with torch.no_grad():
        close(again(ids).logits, ours(ids).logits, atol=0)
    # a derived meaning is written back only where it matters (rope_ratio != 1): a folder name may not tell it
    config = ChatGLMConfig(**chatglm_config(500.0, padded_vocab_size=151552))
    assert config.rope_ratio_meaning == "base" and config.to_dict()["rope_ratio_meaning"] == "base"
    config = ChatGLMConfig(**chatglm_config(1.0, _name_or_path="THUDM/chatglm2-6b"))
    assert config.rope_ratio_meaning == "positions" and "rope_ratio_meaning" not in config.to_dict()


# -- config ------------------------------------------------------------------------------------------------------

def test_config_defaults_and_aliases():
    config = ChatGLMConfig()
    assert (config.num_layers, config.padded_vocab_size, config.kv_channels) == (28, 65024, 128)
    assert (config.seq_length, config.ffn_hidden_size, config.layernorm_epsilon) == (2048, 13696, 1e-5)
    assert config.multi_query_attention is False and config.add_qkv_bias is False and config.rope_ratio == 1
    assert (config.eos_token_id, config.pad_token_id, config.quantization_bit, config.pre_seq_len) == (2, 0, 0, None)
    assert config.num_key_value_heads == 32  # no multi-query: every head has its own k/v
    glm4 = ChatGLMConfig(**chatglm_config(500, num_layers=40, num_hidden_layers=40, padded_vocab_size=151552,
                                          vocab_size=151552, eos_token_id=[151329, 151336, 151338]))
    assert (glm4.num_hidden_layers, glm4.vocab_size, glm4.head_dim, glm4.num_key_value_heads) == (40, 151552, D, 2)
    assert (glm4.max_position_embeddings, glm4.intermediate_size, glm4.rms_norm_eps) == (64, FFN, 1e-5)
    assert "num_hidden_layers" not in glm4.to_dict() and glm4.to_dict()["num_layers"] == 40
    with pytest.raises(AttributeError):
        glm4.num_key_value_heads = 4  # derived, read-only


def test_rope_ratio_meaning_derivation(caplog):
    def meaning(name="", **overrides):
        return ChatGLMConfig(**chatglm_config(**overrides), _name_or_path=name).rope_ratio_meaning

    with caplog.at_level(logging.WARNING, logger="autoload"):
        assert meaning("THUDM/glm-4-9b-chat-1m", ratio=10000, padded_vocab_size=151552) == "base"
        assert meaning("some/local-copy", ratio=500, padded_vocab_size=151552) == "base"
        assert meaning("THUDM/chatglm2-6b-32k", ratio=16) == "positions"
        assert meaning("THUDM/codegeex2-6b", ratio=1) == "positions"
        assert meaning("THUDM/chatglm3-6b-32k", ratio=50) == "base"
        assert meaning("/models/chatglm2-6b-32k", ratio=16, rope_ratio_meaning="base") == "base"  # explicit wins
        assert meaning("/data/my-model", ratio=1) == "base"  # rope_ratio 1: either meaning is the same
        assert caplog.text == ""
        assert meaning("/data/my-model", ratio=16) == "base"
    assert "assuming 'base'" in caplog.text and 'rope_ratio_meaning="positions"' in caplog.text
    with pytest.raises(ValueError, match="rope_ratio_meaning"):
        ChatGLMConfig(rope_ratio_meaning="halves")


def test_rope_ratio_meaning_from_pretrained_keyword(tmp_path, caplog):
    ref = glm_reference("positions", 4.0)
    folder = write_chatglm(tmp_path / "ambiguous", ref, chatglm_config(4.0))  # no meaning, no telling name
    with caplog.at_level(logging.WARNING, logger="autoload"):
        ours = autoload.AutoModelForCausalLM.from_pretrained(folder, rope_ratio_meaning="positions")
    assert ours.config.rope_ratio_meaning == "positions" and "assuming" not in caplog.text
    ids, _ = batch(padding=None)
    with torch.no_grad():
        close(ours(ids).logits, ref(ids).logits)


def test_unsupported_reason():
    chatglm_v1 = {"model_type": "chatglm", "vocab_size": 130528, "hidden_size": 4096, "num_layers": 28,
                  "inner_hidden_size": 16384, "max_sequence_length": 2048, "position_encoding_2d": True}
    assert "first-generation" in ChatGLMConfig.unsupported_reason(chatglm_v1)
    assert "2-D" in ChatGLMConfig.unsupported_reason({"model_type": "chatglm", "num_layers": 28})
    assert "quantization_bit=4" in ChatGLMConfig.unsupported_reason(chatglm_config(quantization_bit=4))
    assert "P-tuning" in ChatGLMConfig.unsupported_reason(chatglm_config(pre_seq_len=128))
    for key, value in (("rmsnorm", False), ("post_layer_norm", False),
                       ("apply_residual_connection_post_layernorm", True), ("add_bias_linear", True)):
        assert key in ChatGLMConfig.unsupported_reason(chatglm_config(**{key: value}))
    chatglm2 = chatglm_config(seq_length=32768)
    del chatglm2["rope_ratio"], chatglm2["pre_seq_len"], chatglm2["quantization_bit"]
    glm4 = chatglm_config(500, padded_vocab_size=151552, vocab_size=151552, num_hidden_layers=40,
                          eos_token_id=[151329, 151336, 151338], classifier_dropout=None)
    for data in (chatglm2, chatglm_config(), glm4):
        assert ChatGLMConfig.unsupported_reason(data) is None


# -- CUDA --------------------------------------------------------------------------------------------------------

@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_half_cuda_matches_fp32(tmp_path):
    ref, ours, _ = make_pair(tmp_path, "base", 500.0)
    ids, mask = batch(t=9, padding="left")
    expected = full_forward(ref, ids, mask)
    gpu = ours.half().cuda()
    assert gpu.device.type == "cuda"
    got = full_forward(gpu, ids.cuda(), mask.cuda()).cpu()
    assert torch.isfinite(got).all() and max_diff(got, expected, mask) < 0.05
    assert max_diff(cached_decode(gpu, ids.cuda(), mask.cuda(), 4).cpu(), expected, mask) < 0.05
    with torch.no_grad():
        generated = gpu.generate(ids.cuda(), attention_mask=mask.cuda(), max_new_tokens=4, do_sample=False)
    t = ids.shape[1]
    assert generated.shape[0] == 3 and t < generated.shape[1] <= t + 4  # the prompt plus 1..4 new tokens
    assert torch.equal(generated[:, :t].cpu(), ids)
