"""Weight-only quantized Linear layers (autoload.quant.linear) and from_pretrained(quantize=...).

Tolerances (docs/quantization.md): the kernels dequantize exactly in fp32 but accumulate in their own order, so
with fp32 activations forward equals x @ dequantize()^T + b within 1e-5 of the output's largest magnitude; with
bf16 activations (scales and zeros rounded to bf16 too) within 2e-2. A model quantized at load gives logits within
1e-4 (fp32) of the same model carrying the dequantized weights in float, and the same greedy ids."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from torch import nn

from autoload import AutoModelForCausalLM
from autoload.quant import linear as ql
from autoload.quant import quantize as qm
from autoload.quant.gptq import QuantizationConfigError

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

FP32_REL, BF16_REL = 1e-5, 2e-2


def rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    return ((y.float() - ref).abs().max() / ref.abs().max()).item()


def affine_int4(out_features, in_features, group_size, seed=0):
    g = torch.Generator().manual_seed(seed)
    groups = -(-in_features // group_size)
    q = torch.randint(0, 16, (out_features, in_features), generator=g, dtype=torch.uint8)
    scale = torch.rand(out_features, groups, generator=g) * 0.1
    offset = torch.randn(out_features, groups, generator=g) * 0.1
    return q, scale, offset


def reference(q, scale, offset, group_size):
    """W from the definition, element by element over groups: scale[o, i // g] * q[o, i] + offset[o, i // g]."""
    w = torch.empty(q.shape)
    for start in range(0, q.shape[1], group_size):
        j = start // group_size
        w[:, start:start + group_size] = q[:, start:start + group_size].float() * scale[:, j:j + 1] + offset[:, j:j + 1]
    return w


# (out, in, group): kernel groups, a group wider than 256 split, one group a row (GPTQ -1), padding of out
# (not a multiple of 16) and of in (not a multiple of the group)
SHAPES = [(64, 256, 64), (48, 256, 128), (32, 512, 512), (48, 96, 96), (33, 100, 32), (40, 72, 256)]


@pytest.mark.parametrize("out_features,in_features,group_size", SHAPES)
def test_int4_exact_dequant_and_forward(out_features, in_features, group_size):
    q, scale, offset = affine_int4(out_features, in_features, group_size)
    bias = torch.randn(out_features)
    layer = ql.Int4Linear.from_affine(q, scale, offset, group_size, bias)
    w = reference(q, scale, offset, group_size)
    assert torch.equal(layer.dequantize(), w)
    x = torch.randn(2, 3, in_features)
    ref = x @ w.T + bias
    y = layer(x)  # packs for the CPU kernel, drops the portable codes
    assert layer.qweight is None and layer.packed is not None
    assert y.shape == (2, 3, out_features) and rel_err(y, ref) < FP32_REL
    assert torch.equal(layer.dequantize(), w)  # unpacked exactly from the kernel's layout
    yb = layer(x.to(torch.bfloat16))
    assert yb.dtype == torch.bfloat16 and rel_err(yb, ref) < BF16_REL


def test_int4_device_move_dtype_cast_and_state_dict():
    q, scale, offset = affine_int4(32, 128, 32)
    layer = ql.Int4Linear.from_affine(q, scale, offset, 32, torch.randn(32))
    w = layer.dequantize()
    x = torch.randn(4, 128)
    y = layer(x)
    layer.to("cpu")  # a move: back to the portable form, packed again at the next forward
    assert layer.packed is None and torch.equal(layer.dequantize(), w)
    layer.to(torch.bfloat16)  # the bias follows the model dtype; scales and offsets stay float32
    assert layer.bias.dtype == torch.bfloat16 and layer.scales.dtype == torch.float32
    assert torch.equal(layer.dequantize(), w)
    layer.float()
    assert torch.allclose(layer(x), y, atol=1e-2)  # the bias went through bf16
    layer(x)
    state = layer.state_dict()
    assert set(state) == {"qweight", "scales", "offsets", "bias"}
    assert state["qweight"].dtype == torch.uint8 and tuple(state["qweight"].shape) == (32, 64)
    assert torch.equal(ql.unpack_nibbles(state["qweight"], 128), q)


def test_int4_act_order_permutation():
    q, scale, offset = affine_int4(32, 128, 32)
    perm = torch.randperm(128, generator=torch.Generator().manual_seed(1))
    layer = ql.Int4Linear.from_affine(q, scale, offset, 32, input_perm=perm)
    x = torch.randn(3, 128)
    w_sorted = reference(q, scale, offset, 32)  # the weight over x[..., perm]
    ref = x[:, perm] @ w_sorted.T
    assert rel_err(layer(x), ref) < FP32_REL
    assert rel_err(x @ layer.dequantize().T, ref) < FP32_REL  # dequantize() is in x's own order


@pytest.mark.parametrize("bits", [5, 8])
def test_split_wide_codes_is_exact(bits):
    """5- to 8-bit groupwise codes as one int4 layer twice as wide ([lo | hi] nibbles over [x | x]): the same
    weight, bit for bit in fp32, and the same products; act-order style gathers with repeats dequantize by sum."""
    g = torch.Generator().manual_seed(3)
    out_features, in_features, group = 48, 96, 32
    q = torch.randint(0, 2 ** bits, (out_features, in_features), generator=g, dtype=torch.int16)
    scale = torch.rand(out_features, in_features // group, generator=g) * 0.01 + 1e-3
    offset = -scale * (2 ** (bits - 1))
    layer = ql.split_wide_codes(q.to(torch.uint8), scale, offset, group)
    expected = q.float() * scale.repeat_interleave(group, 1) + offset.repeat_interleave(group, 1)
    assert layer.in_features == 2 * in_features
    torch.testing.assert_close(layer.dequantize(), expected, rtol=1e-6, atol=1e-7)
    x = torch.randn(3, in_features, generator=g)
    assert rel_err(layer(x), x @ expected.T) < FP32_REL
    with pytest.raises(ValueError, match="multiple of the group size"):
        ql.split_wide_codes(q[:, :40].to(torch.uint8), scale[:, :2], offset[:, :2], group)


@pytest.mark.parametrize("rows, cols", [(16, 32), (64, 96), (80, 64), (208, 256), (1040, 128)])
def test_cpu_packing_in_uint8_equals_torchs_packer(rows, cols):
    """The CPU layout written in uint8 (whole blocks of `_cpu_pack_block()` rows, 64 with AVX-512; a tail by torch;
    everything by torch where no block size matched) is byte-equal to torch's own packer, and `_unpack` reads the
    codes back, through the direct path and the probing one."""
    from autoload.quant import linear
    q = torch.randint(0, 16, (rows, cols), generator=torch.Generator().manual_seed(rows), dtype=torch.uint8)
    packed = linear._device_pack(q)
    assert torch.equal(packed, linear._cpu_pack_torch(q))
    assert torch.equal(linear._unpack(packed, rows, cols), q)
    assert torch.equal(linear._unpack_probed(packed, rows, cols), q)


def test_int4_rejects_bad_inputs():
    with pytest.raises(ValueError, match="group size 48"):
        ql.Int4Linear.from_affine(*affine_int4(16, 128, 48), 48)
    q, scale, offset = affine_int4(16, 64, 32)
    with pytest.raises(ValueError, match="0..15"):
        ql.Int4Linear.from_affine(q + 16, scale, offset, 32)
    with pytest.raises(ValueError, match="scale/offset"):
        ql.Int4Linear.from_affine(q, scale[:, :1], offset[:, :1], 32)


@pytest.mark.parametrize("out_features,in_features", [(7, 40), (64, 96), (16, 100)])
def test_int8_per_channel(out_features, in_features):
    w = torch.randn(out_features, in_features)
    q, scale = ql.quantize_int8(w)
    bias = torch.randn(out_features)
    layer = ql.Int8Linear.from_symmetric(q, scale, bias)
    deq = q.float() * scale[:, None]
    assert torch.equal(layer.dequantize(), deq)
    assert (layer.dequantize() - w).abs().max() <= scale.max() / 2 + 1e-6  # round to nearest
    x = torch.randn(5, in_features)
    ref = x @ deq.T + bias
    assert rel_err(layer(x), ref) < FP32_REL
    for dtype in (torch.bfloat16, torch.float16):  # bf16 with in % 16 != 0 runs in fp32 (a torch kernel bug)
        y = layer(x.to(dtype))
        assert y.dtype == dtype and rel_err(y, ref) < BF16_REL
    layer._int8_kernel = False  # the path of a device without torch's int8 kernel (CUDA in most builds)
    assert rel_err(layer(x), ref) < FP32_REL


@pytest.mark.parametrize("signed", [True, False])
def test_int8_groupwise_dequantized_on_the_fly(signed):
    g = torch.Generator().manual_seed(0)
    q = torch.randint(-128, 128, (24, 80), generator=g, dtype=torch.int8) if signed else \
        torch.randint(0, 256, (24, 80), generator=g, dtype=torch.uint8)
    scale, offset = torch.rand(24, 3, generator=g), torch.randn(24, 3, generator=g)
    layer = ql.Int8Linear.from_affine(q, scale, None if signed else offset, 32)
    w = reference(q, scale, torch.zeros_like(scale) if signed else offset, 32)
    assert torch.equal(layer.dequantize(), w)
    x = torch.randn(2, 80)
    assert rel_err(layer(x), x @ w.T) < FP32_REL


def test_quantize_int4_round_to_nearest_error():
    w = torch.randn(32, 100)
    q, scale, offset = ql.quantize_int4(w, 32)
    assert q.dtype == torch.uint8 and int(q.max()) <= 15
    deq = reference(q, scale, offset, 32)
    step = scale.repeat_interleave(32, dim=1)[:, :100]
    assert bool(((deq - w).abs() <= step / 2 + 1e-6).all())


def test_replace_linears():
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16))
    seen = []
    names = ql.replace_linears(model, lambda name, lin: seen.append(name) or (
        ql.Int8Linear.from_symmetric(*ql.quantize_int8(lin.weight)) if name == "2" else None))
    assert seen == ["0", "2"] and names == ["2"]
    assert type(model[0]) is nn.Linear and isinstance(model[2], ql.Int8Linear)


# -- from_pretrained(quantize=...) --------------------------------------------------------------------

@pytest.fixture(scope="module", params=["llama", "qwen2-tied"])
def checkpoint(request, tmp_path_factory):
    torch.manual_seed(0)
    if request.param == "llama":
        config = transformers.LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
        model = transformers.LlamaForCausalLM(config)
    else:  # biases on q/k/v, a tied lm_head
        config = transformers.Qwen2Config(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
        model = transformers.Qwen2ForCausalLM(config)
    folder = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(folder)
    return folder


def dequantized_twin(folder, quantized):
    """The float model from the same folder with every quantized layer's dequantized weight put in."""
    twin = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    for name, module in quantized.named_modules():
        if getattr(module, "is_quantized", False):
            twin.get_submodule(name).weight = nn.Parameter(module.dequantize(), requires_grad=False)
    return twin


@pytest.mark.parametrize("quantize,group_size", [("int4", None), ("int4", 32), ("int8", None)])
def test_from_pretrained_quantize(checkpoint, quantize, group_size):
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32, quantize=quantize,
                                                 quantize_group_size=group_size)
    float_model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    kinds = {type(m) for m in model.modules()}
    assert (ql.Int4Linear in kinds) == (quantize == "int4") and ql.Int8Linear in kinds and nn.Linear not in kinds
    assert isinstance(model.lm_head, ql.Int8Linear)  # the head: per-channel int8; embeddings stay float
    assert type(model.model.embed_tokens) is nn.Embedding
    if quantize == "int4":
        assert model.model.layers[0].mlp.down_proj.group_size == (group_size or 128)
    twin = dequantized_twin(checkpoint, model)
    ids = torch.randint(0, 96, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, twin_logits, float_logits = model(ids).logits, twin(ids).logits, float_model(ids).logits
    assert torch.allclose(logits, twin_logits, atol=1e-4, rtol=0)
    assert (logits - float_logits).abs().max() < 0.25 * float_logits.abs().max()  # rounding error of the weights
    out = model.generate(ids[:1], max_new_tokens=6, do_sample=False)
    assert torch.equal(out, twin.generate(ids[:1], max_new_tokens=6, do_sample=False))
    assert model.get_memory_footprint() < 0.6 * float_model.get_memory_footprint()


def test_quantize_errors(checkpoint, tmp_path):
    with pytest.raises(QuantizationConfigError, match="quantize='int3'"):
        AutoModelForCausalLM.from_pretrained(checkpoint, quantize="int3")
    with pytest.raises(QuantizationConfigError, match="quantize_group_size"):
        AutoModelForCausalLM.from_pretrained(checkpoint, quantize_group_size=64)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, quantize="int8")
    with pytest.raises(qm.QuantizedSaveError, match="safe_serialization=True"):
        model.save_pretrained(tmp_path / "out", safe_serialization=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("quantize", ["int4", "int8"])
def test_save_and_load_a_quantized_model(checkpoint, tmp_path, quantize):
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32, quantize=quantize,
                                                 quantize_group_size=32 if quantize == "int4" else None)
    ids = torch.randint(0, 96, (1, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(ids).logits
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())["quantization_config"]
    assert config["quant_method"] == "autoload" and config["layers"]["lm_head"]["type"] == "int8"
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert {n: type(m) for n, m in loaded.named_modules()} == {n: type(m) for n, m in model.named_modules()}
    for name, module in model.named_modules():
        if getattr(module, "is_quantized", False):
            assert torch.equal(loaded.get_submodule(name).dequantize(), module.dequantize()), name
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, before)
    assert torch.equal(model(ids).logits, before)  # saving unpacked the layers; they repack and still agree


# -- CUDA (run by the lead on a GPU machine) ----------------------------------------------------------

@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("out_features,in_features,group_size", SHAPES)
def test_int4_cuda(out_features, in_features, group_size):
    q, scale, offset = affine_int4(out_features, in_features, group_size)
    bias = torch.randn(out_features)
    layer = ql.Int4Linear.from_affine(q, scale, offset, group_size, bias)
    w = reference(q, scale, offset, group_size)
    x = torch.randn(2, 3, in_features)
    ref = x @ w.T + bias
    layer.to("cuda")
    for dtype in (torch.bfloat16, torch.float32):  # tinygemm on CUDA runs bf16; fp32 in and out
        y = layer(x.to("cuda", dtype))
        assert y.dtype == dtype and rel_err(y.cpu(), ref) < BF16_REL
    assert torch.equal(layer.dequantize().cpu(), w)  # unpacked from the CUDA layout
    layer.to("cpu")
    assert rel_err(layer(x), ref) < FP32_REL


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_int8_and_quantize_cuda(checkpoint):
    w = torch.randn(64, 96)
    layer = ql.Int8Linear.from_symmetric(*ql.quantize_int8(w)).to("cuda")
    x = torch.randn(3, 96, device="cuda")
    assert rel_err(layer(x).cpu(), (x @ layer.dequantize().T).cpu()) < FP32_REL
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.bfloat16, quantize="int4", device="cuda")
    ids = torch.randint(0, 96, (1, 9), device="cuda")
    assert model.generate(ids, max_new_tokens=4, do_sample=False).shape == (1, 13)


def test_compute_dtype_runs_the_bf16_kernels_for_fp32_activations(checkpoint):
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32, quantize="int4")
    twin = dequantized_twin(checkpoint, model)
    ids = torch.randint(0, 96, (1, 9), generator=torch.Generator().manual_seed(0))
    qm.set_compute_dtype(model, torch.bfloat16)
    assert all(m.compute_dtype == torch.bfloat16 for m in model.modules() if getattr(m, "is_quantized", False))
    with torch.no_grad():
        logits, twin_logits = model(ids).logits, twin(ids).logits
    assert logits.dtype == torch.float32 and rel_err(logits, twin_logits) < BF16_REL
    q, scale = ql.quantize_int8(torch.randn(16, 40))
    layer = ql.Int8Linear.from_symmetric(q, scale)
    layer.compute_dtype = torch.bfloat16
    x = torch.randn(3, 40)
    assert layer(x).dtype == torch.float32 and rel_err(layer(x), x @ layer.dequantize().T) < BF16_REL


@pytest.mark.parametrize("kind", ["int4", "int4-act-order", "int8", "int8-groupwise", "int8-act-order"])
def test_gradients_reach_the_activations(kind):
    g = torch.Generator().manual_seed(0)
    if kind.startswith("int4"):
        q, scale, offset = affine_int4(32, 96, 32)
        perm = torch.randperm(96, generator=g) if kind == "int4-act-order" else None
        layer = ql.Int4Linear.from_affine(q, scale, offset, 32, torch.randn(32), input_perm=perm)
    elif kind == "int8":
        layer = ql.Int8Linear.from_symmetric(*ql.quantize_int8(torch.randn(32, 96)), torch.randn(32))
    else:
        perm = torch.randperm(96, generator=g) if kind == "int8-act-order" else None
        layer = ql.Int8Linear.from_affine(torch.randint(0, 256, (32, 96), dtype=torch.uint8, generator=g),
                                          torch.rand(32, 3), torch.randn(32, 3), 32, input_perm=perm)
    w = layer.dequantize()
    x = torch.randn(2, 5, 96, requires_grad=True)
    dy = torch.randn(2, 5, 32)
    (layer(x) * dy).sum().backward()
    assert rel_err(x.grad, dy @ w) < FP32_REL


def test_whole_model_casts_and_moves_after_packing(checkpoint):
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32, quantize="int4")
    ids = torch.randint(0, 96, (1, 7), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        reference = model(ids).logits
    model.to(torch.bfloat16)  # every layer unpacks, keeps float32 scales, repacks at its next forward
    assert model.dtype == torch.bfloat16 and model.model.layers[0].mlp.up_proj.scales.dtype == torch.float32
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.dtype == torch.bfloat16 and rel_err(logits, reference) < 5e-2
    model.to("cpu").float()
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, reference, atol=1e-2)  # the biases/norms went through bf16
