"""Whole-model operations on the quantized layers of quant/linear.py: `quantize_model` (what
`from_pretrained(quantize=...)` runs), `set_compute_dtype`, `pack_model`, and autoload's own saved format.

Saved format: save_pretrained of a quantized model writes each layer's portable tensors (Int4Linear: qweight uint8
[out, ceil(in / 2)], scales and offsets float32 [out, groups], input_perm int64 [in] for act-order; Int8Linear:
qweight int8/uint8 [out, in], scales [out, groups], offsets when groupwise-affine, input_perm) and, in config.json,
quantization_config = {"quant_method": "autoload", "version": 1, "layers": {name: layer_spec}}; quant/gptq.py
reads it back into `empty_layer`s that the ordinary loading fills by key.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .linear import Int4Linear, Int8Linear, quantize_int4, quantize_int8, replace_linears

FORMAT_VERSION = 1


class QuantizedSaveError(NotImplementedError):
    """A quantized model that cannot be saved in autoload's format (pickled .bin files)."""


def quantize_model(model: nn.Module, bits: int, group_size: int = 128, skip: Callable[[str], bool] | None = None,
                   lm_head_bits: int | None = 8) -> list[str]:
    """Weight-only round-to-nearest quantization of a float model's nn.Linear layers, in place.

    bits=4: `Int4Linear`, asymmetric groups of `group_size`; bits=8: `Int8Linear`, symmetric per channel.
    The output projection (the model's `get_output_embeddings()`, also when tied to the input embeddings) gets
    `lm_head_bits` (8: per-channel int8, its own copy; None: left in float); embeddings stay float.
    `skip(name)` leaves a layer in float. Returns the names of the replaced layers."""
    if bits not in (4, 8):
        raise ValueError(f"quantize: bits must be 4 or 8, got {bits}.")
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None

    def make(name: str, linear: nn.Linear) -> nn.Module | None:
        if skip is not None and skip(name):
            return None
        layer_bits = bits
        if linear is head:
            if lm_head_bits is None:
                return None
            layer_bits = lm_head_bits
        bias = None if linear.bias is None else linear.bias.detach()
        if layer_bits == 8:
            q, scale = quantize_int8(linear.weight)
            return Int8Linear.from_symmetric(q, scale, bias)
        q, scale, offset = quantize_int4(linear.weight, group_size)
        return Int4Linear.from_affine(q, scale, offset, group_size, bias)

    replaced = replace_linears(model, make)
    if head is not None and hasattr(model, "config") and getattr(model.config, "tie_word_embeddings", False) \
            and type(model.get_output_embeddings()) is not nn.Linear:
        model.config.tie_word_embeddings = False  # the head is its own quantized copy now; nothing to re-tie
    return replaced


# -- autoload's own saved format ---------------------------------------------------------------------------

COMPUTE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def layer_spec(module: nn.Module) -> dict:
    """What `empty_layer` needs to rebuild a quantized layer before its tensors load (with its compute dtype, so
    a reloaded GGUF model keeps the fast bf16 kernel)."""
    spec = _shape_spec(module)
    if module.compute_dtype is not None:
        spec["compute_dtype"] = str(module.compute_dtype).removeprefix("torch.")
    return spec


def _shape_spec(module: nn.Module) -> dict:
    if isinstance(module, Int4Linear):
        spec = {"type": "int4", "in_features": module.in_features, "out_features": module.out_features,
                "group_size": module.group_size, "bias": module.bias is not None,
                "act_order": module.input_perm is not None}
        if module.input_perm is not None and int(module.input_perm.max()) + 1 != module.in_features:
            spec["inputs"] = int(module.input_perm.max()) + 1  # split_wide_codes: the activations gathered twice
        return spec
    return {"type": "int8", "in_features": module.in_features, "out_features": module.out_features,
            "group_size": module.group_size, "bias": module.bias is not None, "offsets": module.offsets is not None,
            "unsigned": module.qweight.dtype == torch.uint8, "act_order": module.input_perm is not None}


def quantization_config(model: nn.Module) -> dict:
    return {"quant_method": "autoload", "version": FORMAT_VERSION,
            "layers": {name: layer_spec(m) for name, m in model.named_modules() if getattr(m, "is_quantized", False)}}


def empty_layer(spec: dict, dtype: torch.dtype) -> nn.Module:
    """A layer of the spec's shape with zero tensors on the CPU, for the loader to fill by key."""
    layer = _empty_layer(spec, dtype)
    if "compute_dtype" in spec:
        if spec["compute_dtype"] not in COMPUTE_DTYPES:
            raise ValueError(f"compute_dtype {str(spec['compute_dtype'])[:40]!r} is not one of {sorted(COMPUTE_DTYPES)}")
        layer.compute_dtype = COMPUTE_DTYPES[spec["compute_dtype"]]
    return layer


def _empty_layer(spec: dict, dtype: torch.dtype) -> nn.Module:
    n_in, n_out = spec["in_features"], spec["out_features"]
    if spec["type"] == "int4":
        layer = Int4Linear(n_in, n_out, spec["group_size"], spec["bias"], dtype=dtype)
        if spec.get("act_order"):
            layer.input_perm = torch.zeros(n_in, dtype=torch.int64)
        return layer
    layer = Int8Linear(n_in, n_out, spec["group_size"], spec.get("offsets", False), spec["bias"], dtype=dtype)
    if spec.get("unsigned"):
        layer.qweight = layer.qweight.to(torch.uint8)
    if spec.get("act_order"):
        layer.input_perm = torch.zeros(n_in, dtype=torch.int64)
    return layer


def set_compute_dtype(model: nn.Module, dtype: torch.dtype | None) -> None:
    """Run every quantized layer's matmul in `dtype` (activations cast in and out; None: the activations' own).
    On the CPU only the bf16 kernels are vectorized in torch 2.13 (fp32 and fp16 ones are ~10-25x slower at
    batch 1): `set_compute_dtype(model, torch.bfloat16)` keeps an fp32 model's other layers in fp32 and runs the
    quantized matmuls fast, at bf16 activation precision."""
    for module in model.modules():
        if getattr(module, "is_quantized", False):
            module.compute_dtype = dtype


def pack_model(model: nn.Module) -> None:
    """Pack every Int4Linear for its device now (instead of at its first forward)."""
    for module in model.modules():
        if isinstance(module, Int4Linear):
            module.pack()


def has_quantized(model: nn.Module) -> bool:
    return any(getattr(m, "is_quantized", False) for m in model.modules())
