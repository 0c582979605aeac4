"""`from_pretrained(..., gguf_file=...)` for models: the config from the metadata, the weights from the blocks.

`read_gguf` gives the config and a state dict under the model's own keys (the reference's names, llama's q/k
rows un-permuted, gemma's norms stored as 1 + w brought back to w). With a `dtype` every tensor is
dequantized (bit-identical to the `gguf` package) and cast once; float tensors of the file (F32 norms) stay
views of the memory map when no cast is needed.
"""

from __future__ import annotations

import logging

import torch

from . import gguf_blocks
from .gguf import (IGNORED, GGUFError, GGUFFile, architecture, checkpoint_name, config_from_gguf,
                   open_gguf, permuted_heads, reverse_permute)

logger = logging.getLogger("autoload")


def tensors(gf: GGUFFile, config: dict):
    """Yield (checkpoint key, GGUF name, stored bytes, un-permute heads or None, norm shift) for every tensor
    the model loads. Unknown names are an error naming the tensor (a file of a layout autoload does not map)."""
    arch = architecture(gf)
    for name, info in gf.tensors.items():
        if name in IGNORED:
            continue
        key = checkpoint_name(arch, name)
        if key is None:
            raise GGUFError(f"{gf.path}: tensor '{name}' has no counterpart in autoload's {arch} model.")
        if info.type_id not in gguf_blocks.TYPES:
            gf.raw(name)  # raises the typed error naming the type
        shift = arch in ("gemma2", "gemma3") and name.endswith("norm.weight")
        yield key, name, info, permuted_heads(arch, name, config), shift


def dequantized_state_dict(gf: GGUFFile, config: dict, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """Every tensor as floats in `dtype` (None: float32), under the model's keys."""
    state = {}
    for key, name, info, heads, shift in tensors(gf, config):
        weight = gguf_blocks.dequantize(gf.raw(name), info.type_id).reshape(info.shape)
        if heads is not None:
            weight = reverse_permute(weight, heads)
        if shift:
            weight = weight - 1.0  # gemma's GGUF norms hold 1 + w; the model adds the 1 itself
        state[key] = weight if dtype in (None, torch.float32) else weight.to(dtype)
    return state


def read_gguf(model_class, source, gguf_file: str, config, dtype, overrides: dict):
    """(config, state dict, unused overrides) for `model_class.from_pretrained(..., gguf_file=...)`."""
    gf = open_gguf(source, gguf_file)
    if config is None:
        config, overrides = config_from_gguf(gf, model_class.config_class, **overrides)
    wanted = None if dtype in (None, "auto") else dtype
    if isinstance(wanted, str):
        wanted = getattr(torch, wanted)
    state = dequantized_state_dict(gf, config.to_dict(), wanted)
    return config, state, overrides
