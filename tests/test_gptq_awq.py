"""GPTQ and AWQ checkpoints through AutoModelForCausalLM, against a reference written here from each format's
definition (no GPTQ/AWQ package: packing and dequantization below follow the definitions in AutoGPTQ's qlinear
pack/unpack, GPTQModel's v1/v2 zero convention and AutoAWQ's pack_awq order map [0, 2, 4, 6, 1, 3, 5, 7]).

Tiny random llama / qwen2 checkpoints are saved by transformers; the Linear layers of the blocks are replaced by
random packed codes, scales and zeros, and config.json gets a quantization_config. Checked: autoload's
dequantized weights equal the reference dequantization exactly; logits of the quantized model are within 1e-4
(fp32) of transformers' fp32 model carrying the reference-dequantized weights; greedy ids equal."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from autoload import AutoModelForCausalLM
from autoload.quant.gptq import QuantizationConfigError
from autoload.quant.linear import Int4Linear, Int8Linear

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

AWQ_ORDER_MAP = [0, 2, 4, 6, 1, 3, 5, 7]
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


# -- packing from the definitions -------------------------------------------------------------------------

def words(values: np.ndarray) -> torch.Tensor:
    """uint64 sums of shifted codes -> the int32 words as stored (two's complement)."""
    return torch.from_numpy(values.astype(np.uint32).view(np.int32).copy())


def gptq_pack(intweight: np.ndarray, zeros_stored: np.ndarray, bits: int):
    """intweight [in, out], zeros_stored [groups, out] -> qweight [in / pack, out], qzeros [groups, out / pack]:
    value j of a word sits in bits [bits * j, bits * (j + 1))."""
    pack = 32 // bits
    qweight = np.zeros((intweight.shape[0] // pack, intweight.shape[1]), dtype=np.uint64)
    for row in range(qweight.shape[0]):
        for j in range(pack):
            qweight[row] |= intweight[row * pack + j].astype(np.uint64) << np.uint64(bits * j)
    qzeros = np.zeros((zeros_stored.shape[0], zeros_stored.shape[1] // pack), dtype=np.uint64)
    for col in range(qzeros.shape[1]):
        for j in range(pack):
            qzeros[:, col] |= zeros_stored[:, col * pack + j].astype(np.uint64) << np.uint64(bits * j)
    return words(qweight), words(qzeros)


def awq_pack(values: np.ndarray) -> torch.Tensor:
    """[rows, out] -> [rows, out / 8]: word c holds column 8c + AWQ_ORDER_MAP[i] in bits [4i, 4i + 4)."""
    packed = np.zeros((values.shape[0], values.shape[1] // 8), dtype=np.uint64)
    for col in range(packed.shape[1]):
        for i in range(8):
            packed[:, col] |= values[:, col * 8 + AWQ_ORDER_MAP[i]].astype(np.uint64) << np.uint64(4 * i)
    return words(packed)


def reference_dequant(intweight, zeros, scales, g_idx) -> torch.Tensor:
    """W [out, in] = scales[g(i), o] * (q[i, o] - zeros[g(i), o]), evaluated in float64 (exact), as float32."""
    s = scales.double().numpy()
    w = s[g_idx] * (intweight.astype(np.float64) - zeros[g_idx].astype(np.float64))  # [in, out]
    return torch.from_numpy(w.T.copy()).float()


def quantize_checkpoint(folder, method: str, bits: int = 4, group_size: int = 32, desc_act: bool = False,
                        v2: bool = False, sym: bool = False, seed: int = 0) -> dict[str, torch.Tensor]:
    """Replace the block Linears of a saved float checkpoint by random packed ones; returns {layer: W_ref}."""
    rng = np.random.default_rng(seed)
    state = load_file(folder / "model.safetensors")
    refs = {}
    for key in [k for k in state if k.endswith(".weight") and k.split(".")[-2] in LINEARS]:
        prefix = key[:-len(".weight")]
        out_features, in_features = state.pop(key).shape
        group = in_features if group_size == -1 else group_size
        groups = -(-in_features // group)  # a partial last group where group does not divide in_features
        top = 2 ** bits
        intweight = rng.integers(0, top, size=(in_features, out_features))
        if sym:
            zeros = np.full((groups, out_features), top // 2)
        else:
            zeros = rng.integers(1 if (method == "gptq" and not v2) else 0, top, size=(groups, out_features))
        scales = torch.from_numpy(rng.uniform(0.002, 0.02, size=(groups, out_features))).half()
        g_idx = np.arange(in_features) // group
        if desc_act:  # act-order: input i is the rank(i)-th one quantized
            order = rng.permutation(in_features)
            g_idx = np.empty(in_features, dtype=np.int64)
            g_idx[order] = np.arange(in_features) // group
        if method == "gptq":
            stored = zeros if v2 else zeros - 1
            state[f"{prefix}.qweight"], state[f"{prefix}.qzeros"] = gptq_pack(intweight, stored, bits)
            state[f"{prefix}.g_idx"] = torch.from_numpy(g_idx.astype(np.int32))
        else:
            state[f"{prefix}.qweight"], state[f"{prefix}.qzeros"] = awq_pack(intweight), awq_pack(zeros)
        state[f"{prefix}.scales"] = scales
        refs[prefix] = reference_dequant(intweight, zeros, scales, g_idx)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    if method == "gptq":
        config["quantization_config"] = {"quant_method": "gptq", "bits": bits, "group_size": group_size,
                                         "desc_act": desc_act, "sym": sym, "damp_percent": 0.01,
                                         "checkpoint_format": "gptq_v2" if v2 else "gptq"}
    else:
        config["quantization_config"] = {"quant_method": "awq", "bits": 4, "group_size": group_size,
                                         "version": "gemm", "zero_point": True}
    (folder / "config.json").write_text(json.dumps(config))
    return refs


def tiny(family: str):
    torch.manual_seed(0)
    if family == "llama":
        config = transformers.LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
        return config, transformers.LlamaForCausalLM(config)
    config = transformers.Qwen2Config(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    return config, transformers.Qwen2ForCausalLM(config)


CASES = {  # name: (family, quantize_checkpoint keywords, layer class)
    "gptq4-g32": ("llama", dict(method="gptq"), Int4Linear),
    "gptq4-act-order-bias": ("qwen2", dict(method="gptq", desc_act=True), Int4Linear),
    "gptq4-v2-per-row": ("llama", dict(method="gptq", v2=True, group_size=-1), Int4Linear),
    "gptq4-sym-g64": ("qwen2", dict(method="gptq", sym=True, group_size=64), Int4Linear),
    "gptq8-g32": ("llama", dict(method="gptq", bits=8), Int8Linear),
    "gptq8-act-order-bias": ("qwen2", dict(method="gptq", bits=8, desc_act=True), Int8Linear),
    "gptq8-sym-per-row": ("qwen2", dict(method="gptq", bits=8, sym=True, group_size=-1), Int8Linear),
    "awq-g32": ("llama", dict(method="awq"), Int4Linear),
    "awq-g64-bias": ("qwen2", dict(method="awq", group_size=64), Int4Linear),
}


@pytest.mark.parametrize("case", list(CASES))
def test_quantized_checkpoint_matches_reference(case, tmp_path):
    family, options, layer_class = CASES[case]
    config, reference_model = tiny(family)
    reference_model.save_pretrained(tmp_path)
    refs = quantize_checkpoint(tmp_path, **options)
    model = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    for prefix, w_ref in refs.items():  # exact: the codes, scales and zeros are kept
        layer = model.get_submodule(prefix)
        assert isinstance(layer, layer_class), prefix
        assert torch.equal(layer.dequantize(), w_ref), prefix
    if case == "gptq8-sym-per-row":
        assert model.model.layers[0].mlp.up_proj.group_size is None  # the per-channel int8 kernel
    if "act-order" in case:
        assert model.model.layers[0].self_attn.q_proj.input_perm is not None
    state = reference_model.state_dict()
    state.update({f"{prefix}.weight": w for prefix, w in refs.items()})
    reference_model.load_state_dict(state)
    reference_model.eval()
    ids = torch.randint(0, 96, (2, 11), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model(ids).logits, reference_model(ids).logits
    assert (ours - theirs).abs().max() < 1e-4
    assert torch.equal(model.generate(ids[:1], max_new_tokens=6, do_sample=False),
                       reference_model.generate(ids[:1], max_new_tokens=6, do_sample=False))
    model.save_pretrained(tmp_path / "saved")  # autoload's portable layout: the same layers come back
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, ours)


@pytest.fixture(scope="module")
def gptq_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gptq")
    tiny("llama")[1].save_pretrained(folder)
    quantize_checkpoint(folder, method="gptq")
    return folder


@pytest.mark.parametrize("change,match", [
    ({"bits": 3}, r"config\.json: quantization_config\.bits: 3"),
    ({"checkpoint_format": "marlin"}, r"quantization_config\.checkpoint_format: 'marlin'"),
    ({"quant_method": "bitsandbytes"}, r"quantization_config\.quant_method: 'bitsandbytes'"),
    ({"quant_method": "awq", "version": "gemv"}, r"quantization_config\.version: 'gemv'"),
    ({"group_size": 0}, r"quantization_config\.group_size"),
])
def test_unsupported_configs_are_typed_errors(gptq_folder, tmp_path, change, match):
    for name in ("model.safetensors", "config.json"):
        (tmp_path / name).write_bytes((gptq_folder / name).read_bytes())
    config = json.loads((tmp_path / "config.json").read_text())
    config["quantization_config"].update(change)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(QuantizationConfigError, match=match):
        AutoModelForCausalLM.from_pretrained(tmp_path)


def test_quantized_checkpoint_refuses_requantize_and_saves_in_autoload_format(gptq_folder, tmp_path):
    with pytest.raises(QuantizationConfigError, match="already quantized"):
        AutoModelForCausalLM.from_pretrained(gptq_folder, quantize="int8")
    model = AutoModelForCausalLM.from_pretrained(gptq_folder)
    assert model.dtype == torch.float32  # the activations' dtype: the config's
    model.save_pretrained(tmp_path)  # GPTQ in, autoload's portable layout out
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    layer, again = model.model.layers[1].mlp.down_proj, loaded.model.layers[1].mlp.down_proj
    assert isinstance(again, Int4Linear) and torch.equal(again.dequantize(), layer.dequantize())
    ids = torch.randint(0, 96, (1, 7), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
