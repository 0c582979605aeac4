"""`from_pretrained(..., gguf_file=...)` for models: the config from the metadata, the weights from the blocks.

`read_gguf` gives the config and a state dict under the model's own keys (the reference's names, llama's q/k
rows un-permuted, gemma's norms stored as 1 + w brought back to w). With a `dtype` every tensor is
dequantized (bit-identical to the `gguf` package) and cast once; without one (the default) the Linear layers
stay quantized (`quantized_state_dict`). Float tensors of the file (F32 norms) stay views of the memory map
when no cast is needed.
"""

from __future__ import annotations

import logging

import torch

from . import gguf_blocks
from .gguf import (IGNORED, GGUFError, GGUFFile, architecture, checkpoint_name, config_from_gguf,
                   open_gguf, permuted_heads, reverse_permute)

logger = logging.getLogger("autoload")
KEPT = ("Q4_0", "Q4_1", "Q4_K", "Q5_0", "Q5_K", "Q6_K", "Q8_0")  # the block types the default load keeps quantized


def tensors(gf: GGUFFile, config: dict):
    """Yield (checkpoint key, GGUF name, TensorInfo, un-permute heads or None, norm shift) for every tensor
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


def _floats(gf: GGUFFile, name: str, info, heads: int | None, shift: bool) -> torch.Tensor:
    """One tensor as float32 in the model's layout (a view of the file for an unshifted F32 tensor)."""
    weight = gguf_blocks.dequantize(gf.raw(name), info.type_id).reshape(info.shape)
    if heads is not None:
        weight = reverse_permute(weight, heads)
    return weight - 1.0 if shift else weight  # gemma's GGUF norms hold 1 + w; the model adds the 1 itself


def dequantized_state_dict(gf: GGUFFile, config: dict, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """Every tensor as floats in `dtype` (None: float32), under the model's keys."""
    state = {}
    for key, name, info, heads, shift in tensors(gf, config):
        weight = _floats(gf, name, info, heads, shift)
        state[key] = weight if dtype in (None, torch.float32) else weight.to(dtype)
    return state


def quantized_state_dict(gf: GGUFFile, config: dict):
    """(state dict, prepare(model)) for the default load. `prepare`, called on the model skeleton, replaces each
    nn.Linear whose weight is stored in blocks of groups of 32 by an Int4Linear holding the file's own codes,
    scales and offsets (`gguf_blocks.to_affine`): Q4_0, Q4_1 and Q4_K directly; Q5_0, Q5_K and Q8_0 as one int4
    layer twice as wide, their codes split into low and high nibbles (`split_wide_codes`, exact). The matmuls
    run on torch's packed-int4 kernel in bf16 (`compute_dtype`: on the CPU torch 2.13 vectorizes only the bf16
    kernel; the fp32 one is ~25x slower, see docs/quantization.md). Q6_K's groups of 16 are below the kernel's
    smallest group (32): re-quantized to 8-bit codes in groups of 32 (`gguf_blocks.q6_k_as_8bit`: the half of
    each group with the larger scale exact, the other within an eighth of its Q6_K step), then split the same
    way. Embeddings in blocks stay in the file (`GGUFEmbedding`), and a head tied to them gets its own layer on
    their codes; any other block tensor becomes float32; float tensors of the file stay views of it."""
    blocks, state = {}, {}
    for key, name, info, heads, shift in tensors(gf, config):
        if key.endswith(".weight") and gguf_blocks.TYPES[info.type_id][1] > 1:
            blocks[key[:-len(".weight")]] = (name, info, heads)
        else:
            state[key] = _floats(gf, name, info, heads, shift)

    def make(module_name: str, linear: torch.nn.Linear):
        from .linear import Int4Linear, split_wide_codes
        if module_name not in blocks or gguf_blocks.type_name(blocks[module_name][1].type_id) not in KEPT:
            return None  # not in blocks, or a type not kept: float32 (prepare below)
        name, info, heads = blocks.pop(module_name)
        bias = state.pop(f"{module_name}.bias", None)
        q, scale, offset, group, bits = gguf_blocks.to_affine(gf.raw(name), info.type_id)
        if offset is None:  # Q8_0's signed codes: shifted to 0..255 (flipping the sign bit adds 128)
            q, offset = q.view(torch.uint8) ^ 0x80, scale * -128.0
        if bits == 6:  # Q6_K's groups of 16: re-quantized to 8-bit codes in groups of 32 (gguf_blocks)
            q, scale, offset, group, bits = gguf_blocks.q6_k_as_8bit(q, scale)
        if heads is not None:  # a row permutation: codes, scales and offsets alike
            q, scale, offset = (reverse_permute(t, heads) for t in (q, scale, offset))
        q, scale = q.contiguous(), scale.contiguous()
        layer = Int4Linear.from_affine(q, scale, offset, group, bias) if bits == 4 else \
            split_wide_codes(q, scale, offset, group, bias)
        layer.compute_dtype = torch.bfloat16  # the fast kernel (see the docstring); CUDA's is bf16-only anyway
        return layer

    def prepare(model: torch.nn.Module) -> None:
        from .linear import replace_linears
        names = {id(module): name for name, module in model.named_modules()}
        embed = model.get_input_embeddings()
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        embed_name, head_name = names.get(id(embed)), names.get(id(head))
        if getattr(model.config, "tie_word_embeddings", False) and embed_name in blocks and head_name \
                and head_name not in blocks and type(head) is torch.nn.Linear:
            blocks[head_name] = blocks[embed_name]  # the tied head: its own quantized layer on the same codes
            model.config.tie_word_embeddings = False  # nothing to re-tie: the table and the head read the file
        replace_linears(model, make)
        if embed_name in blocks and type(embed) is torch.nn.Embedding:  # rows decoded from the file on lookup
            name, info, heads = blocks.pop(embed_name)
            parent, _, attr = embed_name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr,
                    GGUFEmbedding(gf.raw(name), info.type_id, embed.padding_idx))
        for module_name, (name, info, heads) in blocks.items():  # anything else in blocks: float32
            state[f"{module_name}.weight"] = _floats(gf, name, info, heads, False)

    return state, prepare


class GGUFEmbedding(torch.nn.Module):
    """An embedding table left in the file's blocks (a view of the memory map, no copy): a lookup decodes only the
    rows it reads, bit-identically to `gguf.quants.dequantize` (float32), then casts them to the dtype and device
    the model was moved to (`.to()` / `.half()` / `.cuda()` move no table: the blocks stay in the file's memory
    map on the CPU, and only the looked-up rows travel). `weight` decodes the whole table, and so does
    `state_dict()`, which therefore saves a plain embedding. The module has no parameters or persistent buffers
    (`state_dict(keep_vars=True)` lists none): frozen, for inference."""

    def __init__(self, blocks: torch.Tensor, type_id: int, padding_idx: int | None = None):
        super().__init__()
        self.blocks = blocks  # uint8 [V, bytes per row], a plain attribute: never moved or cast
        self.type_id, self.padding_idx = type_id, padding_idx
        self.num_embeddings = blocks.shape[0]
        _, values, size = gguf_blocks.TYPES[type_id]
        self.embedding_dim = blocks.shape[1] // size * values
        self.output = torch.empty(0)  # the dtype and device of what forward returns (float32 on the CPU)

    def _apply(self, fn, recurse=True):
        self.output = fn(self.output)  # what a float tensor of the model becomes
        return self

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        rows = self.blocks.index_select(0, input_ids.reshape(-1).cpu())
        rows = gguf_blocks.dequantize(rows, self.type_id).to(device=self.output.device, dtype=self.output.dtype)
        return rows.reshape(*input_ids.shape, self.embedding_dim)

    @property
    def weight(self) -> torch.Tensor:
        return gguf_blocks.dequantize(self.blocks, self.type_id).to(device=self.output.device,
                                                                     dtype=self.output.dtype)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, {gguf_blocks.type_name(self.type_id)} blocks"

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        if not keep_vars:
            destination[prefix + "weight"] = self.weight


def read_gguf(model_class, source, gguf_file: str, config, dtype, overrides: dict):
    """(config, state dict, prepare or None, unused overrides) for `model_class.from_pretrained(...,
    gguf_file=...)`. No dtype (or "auto"): quantized layers (`prepare(model)` installs them on the skeleton);
    a dtype: everything dequantized to it."""
    gf = open_gguf(source, gguf_file)
    if config is None:
        config, overrides = config_from_gguf(gf, model_class.config_class, **overrides)
    if dtype in (None, "auto"):
        dtype = config._dtype  # AutoModel* hands dtype= over as a config override
    if dtype in (None, "auto"):
        state, prepare = quantized_state_dict(gf, config.to_dict())
        return config, state, prepare, overrides
    dtype = getattr(torch, dtype.removeprefix("torch.")) if isinstance(dtype, str) else dtype
    return config, dequantized_state_dict(gf, config.to_dict(), dtype), None, overrides
