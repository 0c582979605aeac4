"""Baichuan / Baichuan2 (model_type "baichuan") and InternLM2 (model_type "internlm2") parity with transformers
5.24's Llama, which has neither: a random LlamaForCausalLM is mapped into each repo's key layout (W_pack =
q | k | v; wqkv in the grouped layout; the NormHead's raw rows), saved with the repo's config.json (model_type,
architectures, auto_map; the repo's .py files are NOT there) as safetensors or pytorch_model.bin, and loaded by
the Auto classes with and without trust_remote_code. Baichuan2-13B's ALiBi is compared with the same Llama run
with its rotary embedding switched off and the ALiBi bias, written here from the definition with BLOOM's slopes,
passed in as its 4-D attention mask."""

from __future__ import annotations

import copy
import json
import logging

import pytest
import torch
import torch.nn.functional as F
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
from transformers.models.bloom.modeling_bloom import build_alibi_tensor

import autoload
from autoload.generation import generate
from autoload.models.baichuan import BaichuanForCausalLM, BaichuanModel, NormHead
from autoload.models.configs import BaichuanConfig, InternLM2Config
from autoload.models.internlm2 import InternLM2ForCausalLM, InternLM2ForSequenceClassification
from autoload.nn.alibi import alibi_slopes
from autoload.registry import MODEL_TYPES
from decoder_cases import batch, cached_decode, close, close_bf16, full_forward

V, H, I, LAYERS, HEADS, KV = 99, 48, 64, 2, 6, 2  # 6 heads: ALiBi slopes for a count that is not a power of two
HS = H // HEADS
DYNAMIC = {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0}  # InternLM2's rope_scaling; max_pos 8


def llama_reference(kv_heads: int = HEADS, bias: bool = False, rope: dict | None = None, max_pos: int = 64,
                    seed: int = 0):
    cfg = transformers.LlamaConfig(vocab_size=V, hidden_size=H, intermediate_size=I, num_hidden_layers=LAYERS,
                                   num_attention_heads=HEADS, num_key_value_heads=kv_heads,
                                   max_position_embeddings=max_pos, rms_norm_eps=1e-6, attention_bias=bias,
                                   pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
                                   rope_parameters=rope or {"rope_type": "default", "rope_theta": 10000.0})
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # weights scaled up so that logits are of order 1-5
        for name, p in model.named_parameters():
            p.copy_(1 + 0.15 * torch.randn_like(p) if name.endswith("norm.weight") else 0.15 * torch.randn_like(p))
    return model


def write(folder, state: dict, config: dict, fmt: str = "safetensors"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    if fmt == "safetensors":
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    else:
        torch.save(state, folder / "pytorch_model.bin")
    return folder


# -- Baichuan: the repo's layout -----------------------------------------------------------------------------------

def baichuan_config(**overrides) -> dict:
    """Baichuan2-7B's config.json keys, tiny."""
    return {"architectures": ["BaichuanForCausalLM"], "model_type": "baichuan", "tokenizer_class": "BaichuanTokenizer",
            "auto_map": {"AutoConfig": "configuration_baichuan.BaichuanConfig",
                         "AutoModelForCausalLM": "modeling_baichuan.BaichuanForCausalLM"},
            "vocab_size": V, "hidden_size": H, "intermediate_size": I, "num_hidden_layers": LAYERS,
            "num_attention_heads": HEADS, "hidden_act": "silu", "max_position_embeddings": 64,
            "model_max_length": 64, "initializer_range": 0.02, "rms_norm_eps": 1e-6, "use_cache": True,
            "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": False,
            "z_loss_weight": 0, "torch_dtype": "float32", "transformers_version": "4.29.2", **overrides}


def to_baichuan(ref, norm_head: bool = True, seed: int = 3) -> dict:
    """Llama keys -> Baichuan keys: W_pack = cat(q, k, v) along the output. With a NormHead the reference's lm_head
    becomes unit rows (what a NormHead computes with) and the checkpoint holds those rows times random positive
    scales."""
    state = ref.state_dict()
    out = {}
    for key, tensor in state.items():
        if ".k_proj." in key or ".v_proj." in key:
            continue
        if ".q_proj." in key:
            tensor = torch.cat([state[key.replace("q_proj", n)] for n in ("q_proj", "k_proj", "v_proj")])
            key = key.replace("q_proj", "W_pack")
        out[key] = tensor.contiguous()
    if norm_head:
        with torch.no_grad():
            ref.lm_head.weight.copy_(F.normalize(ref.lm_head.weight, dim=-1))
        g = torch.Generator().manual_seed(seed)
        out["lm_head.weight"] = ref.lm_head.weight * (0.5 + 2 * torch.rand(V, 1, generator=g))
    return out


def alibi_mask(mask: torch.Tensor) -> torch.Tensor:
    """(B, nh, T, T) float mask: -m_h·(i - j) for the keys query i sees (causal, not padding), else finfo.min;
    the slopes are BLOOM's (`build_alibi_tensor` of a row of ones holds m_h·position)."""
    t = mask.shape[1]
    slopes = build_alibi_tensor(torch.ones(1, 2), HEADS, torch.float32)[:, 0, 1]  # (nh,)
    index = torch.arange(t)
    bias = -slopes[:, None, None] * (index[:, None] - index[None, :]).float()  # (nh, T, T)
    allowed = (index[None, :] <= index[:, None])[None, None] & mask.bool()[:, None, None, :]  # (B, 1, T, T)
    return bias[None].masked_fill(~allowed, torch.finfo(torch.float32).min)


@torch.no_grad()
def alibi_reference(ref, ids, mask):
    """Logits of `ref` (a LlamaForCausalLM) with rotary embeddings off (cos 1, sin 0) and the ALiBi mask."""
    ref.model.rotary_emb.forward = lambda x, position_ids: (torch.ones(*position_ids.shape, HS, dtype=x.dtype),
                                                           torch.zeros(*position_ids.shape, HS, dtype=x.dtype))
    return ref(ids, attention_mask=alibi_mask(mask).to(ref.dtype), position_ids=mask.cumsum(-1) - 1).logits


@pytest.fixture(scope="module")
def baichuan7b(tmp_path_factory):
    ref = llama_reference()
    folder = write(tmp_path_factory.mktemp("b7") / "Baichuan2-7B-tiny", to_baichuan(ref), baichuan_config())
    return ref, folder


@pytest.fixture(scope="module")
def baichuan13b(tmp_path_factory):
    ref = llama_reference(seed=1)
    config = baichuan_config(position_embedding="alibi", gradient_checkpointing=[False])  # as the 13B files
    del config["max_position_embeddings"]  # the 13B files have none (no rotary table)
    folder = write(tmp_path_factory.mktemp("b13") / "Baichuan2-13B-tiny", to_baichuan(ref), config, fmt="bin")
    return ref, folder


@pytest.mark.parametrize("trust", [None, True, False])
def test_baichuan_7b_logits_and_cached_decode(baichuan7b, trust, caplog):
    ref, folder = baichuan7b
    with caplog.at_level(logging.INFO, logger="autoload"):
        ours = autoload.AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=trust)
    assert type(ours) is BaichuanForCausalLM and isinstance(ours.lm_head, NormHead)
    assert ours.config.position_embedding == "rope" and ours.config.norm_head is True
    assert "built-in 'baichuan' implementation is used instead" in caplog.text  # the auto_map was seen, not run
    ids, mask = batch(t=9, padding="left")
    expected = full_forward(ref, ids, mask)
    assert 1 < expected.abs().max() < 20
    close(full_forward(ours, ids, mask), expected, mask=mask)
    close(cached_decode(ours, ids, mask, 4), expected, mask=mask)
    with torch.no_grad():
        close(ours(ids[:1]).logits, ref(ids[:1]).logits)  # no mask, default positions


def test_baichuan_13b_alibi_logits_and_cached_decode(baichuan13b):
    ref, folder = baichuan13b
    ours = autoload.AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)  # pytorch_model.bin
    assert ours.config.position_embedding == "alibi" and ours.model.rotary_emb is None
    ids, mask = batch(t=9, padding="left")
    expected = alibi_reference(ref, ids, mask)
    close(full_forward(ours, ids, mask), expected, mask=mask)
    close(cached_decode(ours, ids, mask, 3), expected, mask=mask)
    eager = BaichuanForCausalLM.from_pretrained(folder, attn_implementation="eager")
    out = eager(ids, attention_mask=mask, position_ids=mask.cumsum(-1) - 1, output_attentions=True)
    close(out.logits, expected, mask=mask)
    assert len(out.attentions) == LAYERS and out.attentions[0].shape == (3, HEADS, 9, 9)
    with torch.no_grad():  # the ALiBi really matters: the same weights with rotary instead are far off
        rope = BaichuanForCausalLM.from_pretrained(folder, position_embedding="rope")
        assert (full_forward(rope, ids, mask) - expected)[mask.bool()].abs().max() > 0.1


@pytest.mark.parametrize("heads", [1, 2, 3, 5, 6, 8, 12, 40, 64])
def test_alibi_slopes_are_blooms(heads):
    close(alibi_slopes(heads), build_alibi_tensor(torch.ones(1, 2), heads, torch.float32)[:, 0, 1], atol=1e-7)


def test_baichuan_generate_matches_the_reference(baichuan7b, baichuan13b):
    options = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": 0, "eos_token_id": None}
    ids, mask = batch(t=7, padding="left")
    ref, folder = baichuan7b
    ours = BaichuanForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        assert torch.equal(ours.generate(ids, attention_mask=mask, **options),
                           ref.generate(ids, attention_mask=mask, **options))
        assert torch.equal(ours.generate(ids, attention_mask=mask, cache_implementation="static", **options),
                           ref.generate(ids, attention_mask=mask, **options))
    ref, folder = baichuan13b  # ALiBi: greedy steps of the reference's full forward
    ours = BaichuanForCausalLM.from_pretrained(folder)
    expected, running = ids, mask
    for _ in range(options["max_new_tokens"]):
        step = alibi_reference(ref, expected, running)[:, -1].argmax(-1, keepdim=True)
        expected, running = torch.cat([expected, step], 1), torch.cat([running, torch.ones_like(step)], 1)
    with torch.no_grad():
        assert torch.equal(ours.generate(ids, attention_mask=mask, **options), expected)


def test_baichuan_loss_and_z_loss(baichuan7b):
    ref, folder = baichuan7b
    ids, mask = batch(t=9, padding="right")
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        expected = ref(ids, attention_mask=mask, labels=labels)
        ours = BaichuanForCausalLM.from_pretrained(folder)
        close(ours(ids, attention_mask=mask, labels=labels).loss, expected.loss, atol=1e-5)
        z = BaichuanForCausalLM.from_pretrained(folder, z_loss_weight=0.01)
        got = z(ids, attention_mask=mask, labels=labels).loss
        shifted = expected.logits[:, :-1].reshape(-1, V)  # Baichuan2's z-loss: weight x mean(max logit ** 2)
        close(got, expected.loss + 0.01 * (shifted.max(-1).values ** 2).mean(), atol=1e-5)
    ours.train()  # training normalises at every call: gradients reach the raw rows through the normalisation
    ours(ids, attention_mask=mask, labels=labels).loss.backward()
    assert ours.lm_head.weight.grad is not None and ours.lm_head.weight.grad.abs().sum() > 0


def test_norm_head_follows_its_weight(baichuan7b):
    ref, folder = baichuan7b
    ours = BaichuanForCausalLM.from_pretrained(folder)
    raw = ours.lm_head.weight.detach().clone()
    ids, _ = batch(padding=None)
    with torch.no_grad():
        first = ours(ids).logits
        close(ours.lm_head.weight, F.normalize(raw, dim=-1))  # eval, no grad: normalised once, in place
        new = torch.randn(V, H)
        ours.lm_head.load_state_dict({"weight": new})  # a write in place: normalised again
        hidden = ours.model(ids).last_hidden_state
        close(ours(ids).logits, hidden @ F.normalize(new, dim=-1).T)
        ours.lm_head.weight.data = raw.clone()  # a replaced tensor: normalised again
        close(ours(ids).logits, first)
    close(ours(ids).logits, first)  # with gradients on: normalised functionally
    ours.resize_token_embeddings(V + 5)  # the new head is a NormHead too; the old rows keep their logits
    assert isinstance(ours.lm_head, NormHead) and ours.lm_head.weight.shape == (V + 5, H)
    with torch.no_grad():
        close(ours(ids).logits[..., :V], first)


def test_baichuan_plain_head_and_backbone(tmp_path):
    """norm_head false (Baichuan 1: derived from its 64000-token vocabulary) keeps a plain lm_head; AutoModel is
    the backbone."""
    assert BaichuanConfig(vocab_size=64000).norm_head is False
    ref = llama_reference(seed=2)
    state = to_baichuan(ref, norm_head=False)
    state["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.rand(HS // 2)  # Baichuan-7B's files have it
    folder = write(tmp_path / "b1", state, baichuan_config(norm_head=False))
    lm, info = BaichuanForCausalLM.from_pretrained(folder, output_loading_info=True)
    assert type(lm.lm_head) is torch.nn.Linear
    assert info["missing_keys"] == info["unexpected_keys"] == []  # the rotary table is ignored
    ids, mask = batch(t=9, padding="left")
    expected = full_forward(ref, ids, mask)
    close(full_forward(lm, ids, mask), expected, mask=mask)
    base = autoload.AutoModel.from_pretrained(folder)
    assert type(base) is BaichuanModel
    with torch.no_grad():
        hidden = base(ids, attention_mask=mask, position_ids=mask.cumsum(-1) - 1).last_hidden_state
    close(lm.lm_head(hidden), expected, mask=mask)


class CharTokenizer:
    """ids 3 + ord(c) % 90, no specials (what Baichuan2's files say: add_bos_token and add_eos_token false)."""

    def encode(self, text: str) -> list[int]:
        return [3 + ord(c) % 90 for c in text]

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return " ".join(str(int(i)) for i in ids)


def test_baichuan2_chat_messages(baichuan7b):
    """Baichuan2-Chat's chat(tokenizer, messages): its prompt (user 195 / assistant 196 ids; rounds dropped from the
    front past model_max_length - max_new_tokens), the response, and stream=True's growing texts."""
    ours = BaichuanForCausalLM.from_pretrained(baichuan7b[1])
    ours.generation_config.extra.update(user_token_id=97, assistant_token_id=98)  # ids of the tiny vocabulary
    tok = CharTokenizer()
    messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "yo"}, {"role": "user", "content": "ok?"}]
    ids = ours.build_chat_input(tok, messages, max_new_tokens=8)[0].tolist()
    assert ids == tok.encode("sys") + [97, *tok.encode("hi"), 98, *tok.encode("yo"), 97, *tok.encode("ok?"), 98]
    assert ours.build_chat_input(tok, messages, max_new_tokens=64 - 12)[0].tolist() == \
        tok.encode("sys") + [97, *tok.encode("ok?"), 98]  # 12 positions: the first round no longer fits
    options = {"max_new_tokens": 6, "do_sample": False, "eos_token_id": None}
    with torch.no_grad():
        expected = ours.generate(torch.tensor([ids]), **options)[0, len(ids):]
        response = ours.chat(tok, messages, **options)
        assert response == tok.decode(expected)
        streamed = list(ours.chat(tok, messages, stream=True, **options))
    assert streamed[-1].strip() == response and len(streamed) > 1
    with pytest.raises(ValueError, match="system"):
        ours.build_chat_input(tok, messages[1:] + messages[:1])


def test_baichuan_config_rules_and_save(baichuan13b, tmp_path):
    assert BaichuanConfig().position_embedding == "rope" and BaichuanConfig().norm_head is True
    thirteen = BaichuanConfig(hidden_size=5120, num_hidden_layers=40, num_attention_heads=40, intermediate_size=13696)
    assert thirteen.position_embedding == "alibi" and "position_embedding" not in thirteen.to_dict()
    assert BaichuanConfig(vocab_size=64000).norm_head is False
    with pytest.raises(ValueError, match="position_embedding"):
        BaichuanConfig(position_embedding="sinusoidal")
    with pytest.raises(ValueError, match="NormHead"):
        BaichuanConfig(tie_word_embeddings=True)
    ref, folder = baichuan13b
    ours = BaichuanForCausalLM.from_pretrained(folder)
    ours.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert saved["position_embedding"] == "alibi"  # not what the shape says: written back
    assert saved["architectures"] == ["BaichuanForCausalLM"] and "norm_head" not in saved
    assert not {"num_key_value_heads", "head_dim", "rope_parameters"} & set(saved)
    with safe_open(str(tmp_path / "saved" / "model.safetensors"), "pt") as f:
        assert set(f.keys()) == set(torch.load(folder / "pytorch_model.bin", weights_only=True))
    again = BaichuanForCausalLM.from_pretrained(tmp_path / "saved")
    ids, mask = batch(t=9, padding="left")
    close(full_forward(again, ids, mask), alibi_reference(ref, ids, mask), mask=mask)


# -- InternLM2: the repo's layout ----------------------------------------------------------------------------------

def internlm2_config(**overrides) -> dict:
    """internlm2-chat-7b's config.json keys, tiny."""
    return {"architectures": ["InternLM2ForCausalLM"], "model_type": "internlm2", "attn_implementation": "eager",
            "auto_map": {"AutoConfig": "configuration_internlm2.InternLM2Config",
                         "AutoModel": "modeling_internlm2.InternLM2ForCausalLM",
                         "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM"},
            "bias": False, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": H,
            "initializer_range": 0.02, "intermediate_size": I, "max_position_embeddings": 8,
            "num_attention_heads": HEADS, "num_hidden_layers": LAYERS, "num_key_value_heads": KV, "pad_token_id": 2,
            "rms_norm_eps": 1e-6, "rope_scaling": {"type": "dynamic", "factor": 2.0}, "rope_theta": 10000,
            "tie_word_embeddings": False, "torch_dtype": "float32", "transformers_version": "4.33.2",
            "use_cache": True, "vocab_size": V, **overrides}


def pack_grouped(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """q (nh·hs, ...), k and v (nkv·hs, ...) -> wqkv rows [nkv, g + 2, hs]: each kv head's g query heads, its k,
    its v (weights (…, C) or biases)."""
    rest = q.shape[1:]
    q = q.reshape(KV, HEADS // KV, HS, *rest)
    return torch.cat([q, k.reshape(KV, 1, HS, *rest), v.reshape(KV, 1, HS, *rest)], dim=1).reshape(-1, *rest)


RENAMES = {"embed_tokens": "tok_embeddings", "self_attn.o_proj": "attention.wo", "mlp.gate_proj": "feed_forward.w1",
           "mlp.up_proj": "feed_forward.w3", "mlp.down_proj": "feed_forward.w2", "input_layernorm": "attention_norm",
           "post_attention_layernorm": "ffn_norm", "lm_head": "output"}


def to_internlm2(ref) -> dict:
    state = ref.state_dict()
    out = {}
    for key, tensor in state.items():
        if ".k_proj." in key or ".v_proj." in key:
            continue
        if ".q_proj." in key:
            tensor = pack_grouped(*(state[key.replace("q_proj", n)] for n in ("q_proj", "k_proj", "v_proj")))
            key = key.replace("self_attn.q_proj", "attention.wqkv")
        for old, new in RENAMES.items():
            key = key.replace(old, new)
        out[key] = tensor.contiguous()
    return out


def internlm2_pair(folder, bias: bool):
    ref = llama_reference(kv_heads=KV, bias=bias, rope=DYNAMIC, max_pos=8)
    return ref, write(folder, to_internlm2(ref), internlm2_config(bias=bias), fmt="bin" if bias else "safetensors")


def fresh_rope(model):
    """Dynamic NTK rope keeps the largest sequence seen (its frequencies depend on the history, in transformers and
    here alike): the shared reference starts each test from its original frequencies."""
    rotary = model.model.rotary_emb
    rotary.inv_freq, rotary.max_seq_len_cached = rotary.original_inv_freq.clone(), rotary.original_max_seq_len
    return model


@pytest.fixture(scope="module")
def internlm2(tmp_path_factory):
    return internlm2_pair(tmp_path_factory.mktemp("il2") / "internlm2-tiny", bias=False)


@pytest.fixture(scope="module")
def internlm2_bias(tmp_path_factory):
    """`bias` true (the config class's default): biases on wqkv and wo; pytorch_model.bin."""
    return internlm2_pair(tmp_path_factory.mktemp("il2b") / "internlm2-bias-tiny", bias=True)


@pytest.mark.parametrize("pair,trust", [("internlm2", None), ("internlm2", True), ("internlm2_bias", None)])
def test_internlm2_logits_and_generate(request, pair, trust):
    ref, folder = request.getfixturevalue(pair)
    fresh_rope(ref)
    ours = autoload.AutoModel.from_pretrained(folder, trust_remote_code=trust)  # the auto_map's AutoModel: the LM
    assert type(ours) is InternLM2ForCausalLM and ours.config._attn_implementation is None  # SDPA
    assert ours.config.rope_parameters["rope_type"] == "dynamic"
    ids, mask = batch(t=12, padding="left")  # 12 > max_position_embeddings 8: the dynamic NTK base is in play
    expected = full_forward(ref, ids, mask)
    close(full_forward(ours, ids, mask), expected, mask=mask)
    with torch.no_grad():
        close(ours(ids[:1, :6]).logits, ref(ids[:1, :6]).logits)  # shorter than max_position_embeddings
    options = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": 2, "eos_token_id": None}
    prompt, prompt_mask = ids[:, :6], mask[:, :6]
    with torch.no_grad():
        assert torch.equal(ours.generate(prompt, attention_mask=prompt_mask, **options),
                           ref.generate(prompt, attention_mask=prompt_mask, **options))


@pytest.mark.parametrize("pair", ["internlm2", "internlm2_bias"])
def test_internlm2_loss_eager_cache_and_classification(request, pair):
    ref, folder = request.getfixturevalue(pair)
    fresh_rope(ref)
    ours = InternLM2ForCausalLM.from_pretrained(folder, attn_implementation="eager")
    ids, mask = batch(t=7, padding="right")
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        close(ours(ids, attention_mask=mask, labels=labels).loss, ref(ids, attention_mask=mask, labels=labels).loss,
              atol=1e-5)
        close(cached_decode(ours, *batch(t=7, padding="left"), 2), full_forward(ref, *batch(t=7, padding="left")),
              mask=batch(t=7, padding="left")[1])
    classifier, info = autoload.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=3,
                                                                                  output_loading_info=True)
    assert type(classifier) is InternLM2ForSequenceClassification
    assert info["missing_keys"] == ["score.weight"] and info["unexpected_keys"] == ["output.weight"]


def test_internlm2_config_and_save_round_trip(internlm2_bias, tmp_path):
    ref, folder = internlm2_bias
    fresh_rope(ref)
    ours = InternLM2ForCausalLM.from_pretrained(folder)
    ours.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert saved["rope_theta"] == 10000 and saved["rope_scaling"] == {"type": "dynamic", "factor": 2.0}
    assert "rope_parameters" not in saved and saved["num_key_value_heads"] == KV
    with safe_open(str(tmp_path / "saved" / "model.safetensors"), "pt") as f:
        assert set(f.keys()) == set(to_internlm2(ref))
    again = InternLM2ForCausalLM.from_pretrained(tmp_path / "saved")
    ids, mask = batch(t=9, padding="left")
    close(full_forward(again, ids, mask), full_forward(ref, ids, mask), mask=mask)
    assert InternLM2Config().num_key_value_heads == 32 and InternLM2Config().bias is True
    linear = InternLM2Config(rope_scaling={"type": "linear", "factor": 4.0}, rope_theta=1e6)
    assert linear.rope_parameters == {"type": "linear", "factor": 4.0, "rope_type": "linear", "rope_theta": 1e6}


# -- the native/remote policy, both families -----------------------------------------------------------------------

def test_registry_rows():
    for model_type, lm in (("baichuan", "BaichuanForCausalLM"), ("internlm2", "InternLM2ForCausalLM")):
        row = MODEL_TYPES[model_type]
        assert row["replaces_remote_code"] is True
        assert row["tasks"]["AutoModelForCausalLM"].endswith(f":{lm}")
    assert MODEL_TYPES["internlm2"]["tasks"]["AutoModel"].endswith(":InternLM2ForCausalLM")  # as the auto_map


@pytest.mark.parametrize("family,pair", [("baichuan", "baichuan7b"), ("internlm2", "internlm2")])
def test_native_false_runs_the_repos_code(request, family, pair):
    """native=False with trust_remote_code=True asks for the repo's own code (absent here: an error naming it)."""
    folder = request.getfixturevalue(pair)[1]
    with pytest.raises(OSError, match=f"configuration_{family}.py"):
        autoload.AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True, native=False)


@pytest.mark.parametrize("pair", ["baichuan13b", "internlm2"])
def test_bf16_as_close_to_fp32_as_the_reference(request, pair):
    """ALiBi (its bias relative to each query's position) and the NormHead in bf16; InternLM2's grouped wqkv: no
    further from fp32 than the reference in bf16 (measured on CPU: ~0.09 at logits of ~3.5 for both)."""
    ref, folder = request.getfixturevalue(pair)
    if pair == "internlm2":
        fresh_rope(ref)
    ids, mask = batch(t=9, padding="left")
    keep = mask.bool()
    run = alibi_reference if pair == "baichuan13b" else full_forward
    expected = run(ref, ids, mask)
    half_ref = copy.deepcopy(ref).to(torch.bfloat16)
    reference_error = (run(half_ref, ids, mask).float() - expected)[keep].abs().max().item()
    half = autoload.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)
    got = full_forward(half, ids, mask)
    assert got.dtype == torch.bfloat16 and torch.isfinite(got).all()
    assert (got.float() - expected)[keep].abs().max().item() <= 1.5 * reference_error + 1e-3
    assert (cached_decode(half, ids, mask, 4).float() - expected)[keep].abs().max().item() <= \
        1.5 * reference_error + 1e-3


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("pair", ["baichuan7b", "baichuan13b", "internlm2_bias"])
def test_cuda_bf16_generate(request, pair):
    folder = request.getfixturevalue(pair)[1]
    ours = autoload.AutoModelForCausalLM.from_pretrained(folder)
    gpu = autoload.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16, device="cuda")
    ids, mask = batch(t=6, padding="left")  # within internlm2's max_position_embeddings (8): generate checks it
    close_bf16(full_forward(gpu, ids.cuda(), mask.cuda()).float().cpu()[mask.bool()],
               full_forward(ours, ids, mask)[mask.bool()])
    options = dict(attention_mask=mask.cuda(), max_new_tokens=2, eos_token_id=None)
    eager = generate(gpu, ids.cuda(), **options)
    assert eager.shape == (3, 8) and torch.equal(eager[:, :6].cpu(), ids)
    assert torch.equal(generate(gpu, ids.cuda(), compile=True, **options), eager)


# -- compile=True --------------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("pair", ["baichuan13b", "internlm2"])
def test_compiled_generate_matches_eager(request, pair):
    """ALiBi from the position ids over the whole static cache, and the NormHead under compile; InternLM2's
    grouped wqkv (with its default rope: dynamic NTK's data-dependent growth recompiles at every step)."""
    folder = request.getfixturevalue(pair)[1]
    default_rope = {"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}} if pair == "internlm2" else {}
    ours = autoload.AutoModelForCausalLM.from_pretrained(folder, **default_rope)
    ids, mask = batch(t=7, padding="left")
    options = dict(attention_mask=mask, max_new_tokens=10, eos_token_id=None)
    assert torch.equal(generate(ours, ids, compile=True, **options), generate(ours, ids, **options))
