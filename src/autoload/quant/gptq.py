"""GPTQ and AWQ checkpoints (config.json `quantization_config`), and `from_pretrained(quantize=...)`.

Both formats store, per quantized Linear `P` (those with a `P.qweight` in the checkpoint; the rest load as
usual), int32 words of packed codes with fp16 scales and packed zero points, and define
    W[o, i] = scales[g(i), o] * (q[i, o] - zeros[g(i), o]):

GPTQ (AutoGPTQ / GPTQModel / optimum; quant_method "gptq", bits 4 or 8, pack = 32 / bits codes a word):
    qweight int32 [in / pack, out]    code of input i in bits (i % pack) * bits of word i // pack
    qzeros  int32 [groups, out / pack] zero of output o in bits (o % pack) * bits of word o // pack;
                                       checkpoint_format "gptq" (v1) stores zero - 1, "gptq_v2" the zero itself
    scales  fp16  [groups, out]
    g_idx   int32 [in] (optional)     g(i); without it (or when trivial) g(i) = i // group_size
    group_size -1: one group per row. desc_act=True writes a g_idx that is a permutation of i // group_size:
    the input features are then sorted by group (the layer gathers its activations in that order), which
    makes every group contiguous again for the kernel.
AWQ "gemm" (AutoAWQ; quant_method "awq", 4 bits):
    qweight int32 [in, out / 8]       nibble j of word c holds output 8c + [0, 2, 4, 6, 1, 3, 5, 7][j]
    qzeros  int32 [groups, out / 8]   the same interleaving; zeros stored as they are
    scales  fp16  [groups, out]       g(i) = i // group_size

Conversion is exact: codes are kept, scale = scales and offset = -scales * zeros are exact in float32 (an fp16
times an integer up to 256), so `Int4Linear.dequantize()` equals the definition evaluated in float32. 4-bit
layers become `Int4Linear`; 8-bit GPTQ becomes `Int8Linear` (per-channel kernel when it is one symmetric group a
row, else dequantized on the fly, act-order included). Sources read for the formats: AutoGPTQ's `qlinear` pack/unpack, GPTQModel's
v1 <-> v2 zero conversion, AutoAWQ's `pack_awq`/`unpack_awq` (order map [0, 2, 4, 6, 1, 3, 5, 7]) and
transformers' quantizer configs.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from ..errors import ConfigError
from .linear import Int4Linear, Int8Linear
from .quantize import has_quantized, pack_model, quantize_model

logger = logging.getLogger("autoload")

AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)  # nibble j of an AWQ word holds output column 8c + AWQ_ORDER[j]
DEFAULT_GROUP_SIZE = 128


class QuantizationConfigError(ConfigError):
    """A `quantization_config` (or `quantize=`) that autoload cannot load: names the file and the key."""


def _config_dict(qconfig) -> dict:
    return qconfig if isinstance(qconfig, dict) else dict(getattr(qconfig, "__dict__", {}))


def check_config(qconfig, where: str = "config.json") -> dict:
    """The settings of a GPTQ/AWQ `quantization_config`, normalised:
    {method, bits, group_size (-1: per row), v2 (GPTQ zero format)}; typed errors name the key."""
    q = _config_dict(qconfig)

    def refuse(key: str, message: str):
        raise QuantizationConfigError(f"{where}: quantization_config.{key}: {message}")

    method = str(q.get("quant_method", "")).lower()
    if method not in ("gptq", "awq"):
        refuse("quant_method", f"{q.get('quant_method')!r} is not supported (supported: 'gptq', 'awq', "
                               "'autoload' (save_pretrained of a quantized model); use "
                               "quantize='int4'/'int8' to quantize a float checkpoint at load).")
    bits = q.get("bits", q.get("w_bit"))
    group_size = q.get("group_size", q.get("q_group_size", DEFAULT_GROUP_SIZE))
    if method == "gptq":
        if bits not in (4, 8):
            refuse("bits", f"{bits!r}: GPTQ loads with 4 or 8 bits only.")
        fmt = str(q.get("checkpoint_format", q.get("format", "gptq")) or "gptq").lower()
        if fmt not in ("gptq", "gptq_v2"):
            refuse("checkpoint_format", f"{fmt!r} (an exllama/marlin/bitblas repacked layout) is not supported: "
                                        "only 'gptq' and 'gptq_v2'.")
        v2 = fmt == "gptq_v2"
    else:
        if bits != 4:
            refuse("bits", f"{bits!r}: AWQ loads with 4 bits only.")
        version = str(q.get("version", "gemm")).lower()
        if version != "gemm":
            refuse("version", f"{version!r} is not supported: only AWQ 'gemm' checkpoints (gemv/exllama/marlin/"
                              "ipex layouts differ).")
        if q.get("zero_point", True) is False:
            refuse("zero_point", "False is not supported (AWQ gemm checkpoints carry zero points).")
        v2 = True
    if not isinstance(group_size, int) or isinstance(group_size, bool) or (group_size <= 0 and group_size != -1):
        refuse("group_size", f"{group_size!r} must be a positive int or -1.")
    return {"method": method, "bits": bits, "group_size": group_size, "v2": v2}


def _unpack_rows(words: torch.Tensor, bits: int) -> torch.Tensor:
    """int32 [r, c] -> codes [r * pack, c]: code k of word (r, c) from bits k * bits (GPTQ qweight)."""
    pack = 32 // bits
    shifts = torch.arange(0, 32, bits, dtype=torch.int32).reshape(1, pack, 1)
    codes = (words.to(torch.int32).unsqueeze(1) >> shifts) & (2 ** bits - 1)  # [r, pack, c]
    return codes.reshape(-1, words.shape[1])


def _unpack_cols(words: torch.Tensor, bits: int, order=None) -> torch.Tensor:
    """int32 [r, c] -> codes [r, c * pack]; code k of word (r, c) goes to column c * pack + order[k]."""
    pack = 32 // bits
    shifts = torch.arange(0, 32, bits, dtype=torch.int32)
    codes = (words.to(torch.int32).unsqueeze(-1) >> shifts) & (2 ** bits - 1)  # [r, c, pack]
    if order is not None:
        placed = torch.empty_like(codes)
        placed[:, :, list(order)] = codes
        codes = placed
    return codes.reshape(words.shape[0], -1)


def gptq_affine(qweight, qzeros, scales, g_idx, bits: int, group_size: int, v2: bool, key: str = ""):
    """(q [out, in] uint8, scale [out, groups], offset [out, groups], group size, input_perm or None)."""
    q = _unpack_rows(qweight, bits)  # [in, out]
    in_features, out_features = q.shape
    zeros = _unpack_cols(qzeros, bits)[:, :out_features]  # [groups, out]
    if not v2:
        zeros = zeros + 1  # v1 stores zero - 1
    group = in_features if group_size == -1 else group_size
    groups = -(-in_features // group)
    if scales.shape[0] != groups or zeros.shape[0] != groups or scales.shape[1] != out_features:
        raise QuantizationConfigError(f"{key}: scales {tuple(scales.shape)} / qzeros {tuple(qzeros.shape)} do not "
                                      f"fit {in_features} inputs in groups of {group} (quantization_config."
                                      "group_size) and qweight's {out_features} outputs.")
    scale = scales.float().t().contiguous()  # [out, groups]
    offset = -(scales.float() * zeros.float()).t().contiguous()
    perm = None
    natural = torch.arange(in_features) // group
    if g_idx is not None and not torch.equal(g_idx.to(torch.int64), natural):
        perm = torch.argsort(g_idx.to(torch.int64), stable=True)
        if not torch.equal(g_idx.to(torch.int64)[perm], natural):
            raise QuantizationConfigError(f"{key}.g_idx: groups are not of size {group}; cannot sort them into "
                                          "contiguous groups.")
        q = q[perm]
    return q.t().contiguous().to(torch.uint8), scale, offset, group, perm


def awq_affine(qweight, qzeros, scales, group_size: int, key: str = ""):
    """(q [out, in] uint8, scale [out, groups], offset [out, groups], group size)."""
    q = _unpack_cols(qweight, 4, AWQ_ORDER)  # [in, out]
    zeros = _unpack_cols(qzeros, 4, AWQ_ORDER)  # [groups, out]
    in_features = q.shape[0]
    group = in_features if group_size == -1 else group_size
    if scales.shape[0] != -(-in_features // group) or scales.shape != zeros.shape or scales.shape[1] != q.shape[1]:
        raise QuantizationConfigError(f"{key}: scales {tuple(scales.shape)} / qzeros {tuple(qzeros.shape)} do not "
                                      f"fit qweight {tuple(qweight.shape)} with group size {group}.")
    return q.t().contiguous().to(torch.uint8), scales.float().t().contiguous(), \
        -(scales.float() * zeros.float()).t().contiguous(), group


def quantized_layer(settings: dict, tensors: dict, bias, key: str) -> nn.Module:
    """The Int4Linear / Int8Linear for one checkpoint layer `key` (tensors: qweight, qzeros, scales, g_idx)."""
    for name in ("qweight", "qzeros", "scales"):
        if name not in tensors:
            raise QuantizationConfigError(f"{key}.{name} is missing from the checkpoint (a quantized layer needs "
                                          "qweight, qzeros and scales).")
    if settings["method"] == "awq":
        q, scale, offset, group = awq_affine(tensors["qweight"], tensors["qzeros"], tensors["scales"],
                                             settings["group_size"], key)
        return Int4Linear.from_affine(q, scale, offset, group, bias)
    q, scale, offset, group, perm = gptq_affine(tensors["qweight"], tensors["qzeros"], tensors["scales"],
                                                tensors.get("g_idx"), settings["bits"], settings["group_size"],
                                                settings["v2"], key)
    if settings["bits"] == 4:
        return Int4Linear.from_affine(q, scale, offset, group, bias, input_perm=perm)
    zeros = -offset / torch.where(scale == 0, torch.ones_like(scale), scale)
    if perm is None and scale.shape[1] == 1 and bool((zeros == 128).all()):  # symmetric, one group a row: kernel
        return Int8Linear.from_symmetric((q.to(torch.int16) - 128).to(torch.int8), scale.reshape(-1), bias)
    return Int8Linear.from_affine(q, scale, offset, group, bias, input_perm=perm)


# -- the hooks from_pretrained calls (loading.py) ---------------------------------------------------------

def _quantized_prefixes(files: list[str]) -> list[str]:
    from safetensors import safe_open
    prefixes = []
    for path in files:
        if not path.endswith(".safetensors"):
            raise QuantizationConfigError(f"{path}: quantized checkpoints load from safetensors files only.")
        with safe_open(path, framework="pt", device="cpu") as f:
            prefixes += [k[:-len(".qweight")] for k in f.keys() if k.endswith(".qweight")]
    return prefixes


def _read(files: list[str], keys: set[str]) -> dict[str, torch.Tensor]:
    from safetensors import safe_open
    out = {}
    for path in files:
        with safe_open(path, framework="pt", device="cpu") as f:
            for key in f.keys():
                if key in keys:
                    out[key] = f.get_tensor(key)
    return out


def before_load(model: nn.Module, config, files: list[str], quantize, state_dict, tp_plan) -> set[str]:
    """Called on the meta-device skeleton, before the float weights load. A GPTQ/AWQ checkpoint: every Linear with
    a `qweight` becomes an Int4Linear/Int8Linear built from its packed tensors; returns the checkpoint keys used
    (the float loading skips them). `quantize=`: only checks the request (the layers are quantized after loading)."""
    qconfig = getattr(config, "quantization_config", None)
    if qconfig is None:
        if quantize is not None:
            quantize_bits(quantize)
            if tp_plan is not None:
                raise QuantizationConfigError("quantize= cannot be combined with tp_plan (tensor parallel).")
        return set()
    if quantize is not None:
        raise QuantizationConfigError("config.json: quantization_config: the checkpoint is already quantized; "
                                      "quantize= applies to float checkpoints only.")
    if tp_plan is not None or state_dict is not None:
        raise QuantizationConfigError("config.json: quantization_config: GPTQ/AWQ checkpoints load from their "
                                      "files, without tp_plan or state_dict=.")
    if _config_dict(qconfig).get("quant_method") == "autoload":
        _install_saved_layers(model, _config_dict(qconfig), files)
        return set()
    settings = check_config(qconfig)
    prefixes = _quantized_prefixes(files)
    if not prefixes:
        raise QuantizationConfigError(f"config.json: quantization_config.quant_method is {settings['method']!r} but "
                                      "no tensor of the checkpoint ends in '.qweight'.")
    wanted = {f"{p}.{n}" for p in prefixes for n in ("qweight", "qzeros", "scales", "g_idx")}
    tensors = _read(files, wanted)
    modules = dict(model.named_modules())
    prefix = getattr(model, "base_model_prefix", "")
    for key in prefixes:
        name = key if key in modules else key[len(prefix) + 1:] if key.startswith(prefix + ".") else f"{prefix}.{key}"
        linear = modules.get(name)
        if not isinstance(linear, nn.Linear):
            raise QuantizationConfigError(f"{key}.qweight: the model has no Linear layer '{name}' to load it into.")
        parts = {n: tensors[f"{key}.{n}"] for n in ("qweight", "qzeros", "scales", "g_idx") if f"{key}.{n}" in tensors}
        bias = None if linear.bias is None else torch.zeros(linear.out_features, dtype=linear.bias.dtype)
        layer = quantized_layer(settings, parts, bias, key)
        if (layer.in_features, layer.out_features) != (linear.in_features, linear.out_features):
            raise QuantizationConfigError(f"{key}.qweight unpacks to {layer.in_features} x {layer.out_features} "
                                          f"(in x out); the model's layer is {linear.in_features} x "
                                          f"{linear.out_features}.")
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, layer)
    return set(tensors)


def _install_saved_layers(model: nn.Module, qconfig: dict, files: list[str]) -> None:
    """autoload's own format (save_pretrained of a quantized model): empty layers of the recorded kinds and shapes,
    which the float loading then fills by key (every key is checked to be in the checkpoint first)."""
    from safetensors import safe_open

    from .quantize import FORMAT_VERSION, empty_layer
    if qconfig.get("version") != FORMAT_VERSION or not isinstance(qconfig.get("layers"), dict):
        raise QuantizationConfigError(f"config.json: quantization_config.version: {qconfig.get('version')!r} (with "
                                      f"a 'layers' table) is not autoload's format version {FORMAT_VERSION}.")
    keys = set()
    for path in files:
        if not path.endswith(".safetensors"):
            raise QuantizationConfigError(f"{path}: quantized checkpoints load from safetensors files only.")
        with safe_open(path, framework="pt", device="cpu") as f:
            keys.update(f.keys())
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    for name, spec in qconfig["layers"].items():
        try:
            layer = empty_layer(spec, dtype)
            linear = model.get_submodule(name)
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            raise QuantizationConfigError(f"config.json: quantization_config.layers[{name!r}]: {err}") from None
        if not isinstance(linear, nn.Linear) or (linear.in_features, linear.out_features) != \
                (spec.get("inputs", layer.in_features), layer.out_features):
            raise QuantizationConfigError(f"config.json: quantization_config.layers[{name!r}] does not describe a "
                                          "Linear layer of this model with those features.")
        for key in layer.state_dict():
            if f"{name}.{key}" not in keys:
                raise QuantizationConfigError(f"{name}.{key} is missing from the checkpoint (config.json's "
                                              "quantization_config lists the layer).")
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, layer)


def quantize_bits(quantize) -> int:
    if quantize in ("int4", 4):
        return 4
    if quantize in ("int8", 8):
        return 8
    raise QuantizationConfigError(f"quantize={quantize!r}: use 'int4' or 'int8' (weight-only, see "
                                  "docs/quantization.md).")


def after_load(model: nn.Module, quantize, group_size: int | None, device: torch.device) -> None:
    """`quantize=`: round-to-nearest weight-only quantization of the loaded float Linear layers (loaded on the CPU,
    memory-mapped), then the model moves to `device`; every Int4Linear is packed for its device."""
    if quantize is not None:
        quantize_model(model, quantize_bits(quantize), group_size or DEFAULT_GROUP_SIZE)
        model.to(device)
    elif group_size is not None:
        raise QuantizationConfigError("quantize_group_size= needs quantize='int4'.")
    if has_quantized(model):
        pack_model(model)
