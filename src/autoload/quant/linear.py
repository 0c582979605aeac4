"""Weight-only quantized Linear layers on torch's own int4/int8 kernels, and model-wide replacement.

Two layers, both `y = x @ W^T + b` with a quantized W and float activations:

`Int4Linear`: groupwise 4-bit, W[o, i] = scale[o, i // g] * q[o, i] + offset[o, i // g], q in 0..15. Runs on
torch's packed-int4 ("tinygemm") matmul: on the CPU `aten._weight_int4pack_mm_for_cpu` over a weight packed by
`aten._convert_weight_to_int4pack_for_cpu`, on CUDA `aten._weight_int4pack_mm` over `_convert_weight_to_int4pack`.
The kernels dequantize as W = (q - 8) * scale + zero with a float zero per group, so zero = offset + 8 * scale
(exact whenever offset is a small multiple of scale, as for GPTQ/AWQ/Q4_0; otherwise rounded once in fp32).
Kernel constraints (torch 2.13) and how they are met:
  - group size 32, 64, 128 or 256: a larger multiple of 32 is split (its scale repeated); a single group wider
    than the row (GPTQ group_size=-1) too; anything else is refused (ValueError);
  - in_features a multiple of the group: the row is padded with zero codes and the activations with zeros;
  - out_features a multiple of 16 (CPU) / 8 (CUDA): padded rows, output sliced;
  - scales_and_zeros in the activation dtype on the CPU (fp32, bf16 or fp16; fp32 keeps the mapping exact);
    bf16 only on CUDA (other activations are cast to bf16 and back).
The packed layout depends on the device (and on the CPU's instruction set), so the layer keeps a portable form
(`qweight`: two codes a byte, low nibble first, [out, ceil(in / 2)] uint8; `scales`/`offsets`: float32 [out,
groups]) and packs for the device at the first forward (or `pack()`); the portable form is then dropped, and
rebuilt exactly from the packed one when needed (`.to(device)`, `dequantize()`, `state_dict()`), by probing the
pack function with index patterns (`_unpack`).

`Int8Linear`: per output channel symmetric, W[o, i] = scale[o] * q[o, i], q int8, on `aten._weight_int8pack_mm`
(the CPU; on a device where torch lacks it, CUDA in most builds, the codes are converted per call). With a group
size (and optionally offsets: GGUF Q8_0 / Q5_*, GPTQ 8-bit with groups) there is no torch kernel: the weight is
dequantized on the fly each call (memory stays int8; speed is that of a float matmul plus the dequantization,
see docs/quantization.md).

On CPUs, torch 2.13 vectorizes only the bf16 variants of these kernels: `compute_dtype` / `set_compute_dtype`
run them in bf16 under fp32 activations. Gradients reach the activations (`_WeightOnly`); weights are frozen.
`state_dict()` holds the portable tensors named above; save_pretrained writes them (see quant/quantize.py).
Whole-model operations (quantize_model, set_compute_dtype, the saved format) are in quant/quantize.py.
"""

from __future__ import annotations

import functools
import threading
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

KERNEL_GROUP_SIZES = (256, 128, 64, 32)
_PACK_LOCK = threading.Lock()


def _kernel_group(group_size: int, in_features: int) -> int:
    """The kernel's group size for a checkpoint's group size (a divisor in 32..256); ValueError if none fits."""
    if group_size in KERNEL_GROUP_SIZES:
        return group_size
    if group_size >= in_features:  # one group per row: the smallest kernel group covering it (at most 256)
        return next((g for g in KERNEL_GROUP_SIZES[::-1] if g >= in_features), 256)
    for g in KERNEL_GROUP_SIZES:
        if group_size % g == 0:
            return g
    raise ValueError(f"group size {group_size} is not supported by the int4 kernels: it must be a multiple of 32 "
                     "(kernel groups are 32, 64, 128 or 256) or cover the whole row.")


def _round_up(n: int, multiple: int) -> int:
    return (n + multiple - 1) // multiple * multiple


def pack_nibbles(q: torch.Tensor) -> torch.Tensor:
    """uint8 codes 0..15 [out, in] -> [out, ceil(in / 2)], column 2j in the low nibble of byte j."""
    if q.shape[1] % 2:
        q = F.pad(q, (0, 1))
    return (q[:, 0::2] | (q[:, 1::2] << 4)).to(torch.uint8)


def unpack_nibbles(packed: torch.Tensor, in_features: int) -> torch.Tensor:
    """Inverse of `pack_nibbles`: uint8 [out, in_features]."""
    return torch.stack([packed & 0x0F, packed >> 4], dim=-1).reshape(packed.shape[0], -1)[:, :in_features]


def _device_pack(q: torch.Tensor) -> torch.Tensor:
    """int codes [Np, Kp] (0..15, on the target device) -> the device kernel's packed weight."""
    if q.device.type == "cuda":
        inner = 8 if q.shape[1] % 256 == 0 else 4 if q.shape[1] % 128 == 0 else 2
        q = q.to(torch.uint8)
        return torch.ops.aten._convert_weight_to_int4pack((q[:, 0::2] << 4) | q[:, 1::2], inner)
    return _cpu_pack(q, _cpu_pack_block())


def _cpu_pack(q: torch.Tensor, block: int) -> torch.Tensor:
    """torch's CPU int4 layout, written in uint8 for the whole blocks of `block` rows (0: none); the rows past the
    last whole block are packed by torch itself."""
    full = q.shape[0] // block * block if block else 0
    if not full:
        return _cpu_pack_torch(q)
    head = q[:full].to(torch.uint8).reshape(-1, 2, block // 2, q.shape[1]).permute(0, 3, 2, 1)
    head = (head[..., 0] | (head[..., 1] << 4)).contiguous().reshape(full, -1)
    return head if full == q.shape[0] else torch.cat([head, _cpu_pack_torch(q[full:])])


def _cpu_pack_torch(q: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32), 2)


@functools.cache
def _cpu_pack_block() -> int:
    """The CPU packer lays each block of B rows out as [K, B / 2] bytes, row n in the low nibble and row n + B/2 in
    the high one (B = 64 with AVX-512). Doing that in uint8 avoids the int32 copy torch's packer takes (4 bytes a
    code; most of a GGUF load). B is found once per process by comparing with torch's own packer on random codes
    (rows past the last whole block stay with torch); 0 when no B matches, and torch packs everything."""
    g = torch.Generator().manual_seed(0)
    probe = torch.randint(0, 16, (208, 96), generator=g, dtype=torch.int32)  # 3 blocks of 64 + 16 rows
    expected = _cpu_pack_torch(probe)
    return next((block for block in (64, 32, 16) if torch.equal(_cpu_pack(probe, block), expected)), 0)


def _nibble_slots(packed: torch.Tensor) -> torch.Tensor:
    """Every nibble of a packed tensor's bytes, low then high: uint8 [2 * bytes]."""
    raw = packed.contiguous().view(torch.uint8).reshape(-1)
    return torch.stack([raw & 0x0F, raw >> 4], dim=-1).reshape(-1)


def _unpack(packed: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """The codes [rows, cols] a device-packed weight was made from. The kernels' packing only moves nibbles, so
    packing index patterns (4 bits of each position's index per probe) tells where each code went; on the CPU
    the whole row blocks of the known layout (`_cpu_pack_block`) are read back directly."""
    block = _cpu_pack_block() if packed.device.type == "cpu" else 0
    if block and rows >= block:
        full = rows // block * block
        head = packed[:full].reshape(-1, cols, block // 2)  # [blocks, K, B / 2]: rows n | n + B/2 << 4
        head = torch.stack([head & 0x0F, head >> 4], dim=1).permute(0, 1, 3, 2).contiguous().reshape(full, cols)
        return head if full == rows else torch.cat([head, _unpack_probed(packed[full:], rows - full, cols)])
    return _unpack_probed(packed, rows, cols)


def _unpack_probed(packed: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    n = rows * cols
    kind = torch.int32 if n < 2 ** 31 else torch.int64  # 4 bytes a code of temporary memory where it suffices
    index = torch.arange(n, device=packed.device, dtype=kind)
    where = torch.zeros(n, device=packed.device, dtype=kind)  # slot s holds code number where[s]
    for shift in range(0, max(n - 1, 1).bit_length(), 4):
        where |= _nibble_slots(_device_pack(((index >> shift) & 15).reshape(rows, cols))).to(kind) << shift
    del index
    if not torch.equal(torch.bincount(where, minlength=n), torch.ones(n, dtype=torch.int64, device=where.device)):
        raise RuntimeError("this torch's int4 packing is not a permutation of nibbles; cannot unpack it")
    codes = torch.empty(n, dtype=torch.uint8, device=packed.device)
    codes[where] = _nibble_slots(packed)
    return codes.reshape(rows, cols)


class _WeightOnly(torch.autograd.Function):
    """y = x @ W^T on a quantized layer's kernel, with the gradient to x (the weights are frozen): dx = dy @ W,
    W dequantized in the backward (the kernels have no derivative). Lets adapters (LoRA) train over quantized
    layers; the backward costs a dequantization per layer."""

    @staticmethod
    def forward(ctx, x, layer):
        ctx.layer = layer
        return layer._matmul(x)

    @staticmethod
    def backward(ctx, grad):
        return grad @ ctx.layer.dequantize().to(device=grad.device, dtype=grad.dtype), None


class Int4Linear(nn.Module):
    """Groupwise 4-bit weight-only Linear (see the module docstring). Build with `from_affine`."""

    is_quantized = True

    def __init__(self, in_features: int, out_features: int, group_size: int, bias: bool = False,
                 device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        self.kernel_group = _kernel_group(group_size, in_features)
        groups = -(-in_features // group_size)
        self.register_buffer("qweight", torch.zeros(out_features, -(-in_features // 2), dtype=torch.uint8,
                                                    device=device))
        self.register_buffer("scales", torch.zeros(out_features, groups, dtype=torch.float32, device=device))
        self.register_buffer("offsets", torch.zeros(out_features, groups, dtype=torch.float32, device=device))
        self.register_buffer("input_perm", None)  # desc_act: activations are gathered in this order first
        self.bias = nn.Parameter(torch.zeros(out_features, device=device, dtype=dtype), requires_grad=False) \
            if bias else None
        self.compute_dtype: torch.dtype | None = None  # run the kernel in this dtype (None: the activations')
        self.register_buffer("packed", None, persistent=False)  # the device kernel's weight (then qweight is None)
        self._scales_and_zeros: dict[torch.dtype, torch.Tensor] = {}

    @classmethod
    def from_affine(cls, q: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor | None, group_size: int,
                    bias: torch.Tensor | None = None, input_perm: torch.Tensor | None = None) -> Int4Linear:
        """W[o, i] = scale[o, i // group_size] * q[o, i] + offset[o, i // group_size].

        q: integer codes 0..15 [out, in]; scale, offset: [out, ceil(in / group_size)] (offset None: zero);
        input_perm: optional long [in], meaning y = x[..., input_perm] @ W^T (GPTQ act-order). An index may
        repeat (`split_wide_codes`: the activations' columns gathered twice), so the layer's `in_features` is
        the length of input_perm and x's last dimension may be shorter."""
        out_features, in_features = q.shape
        groups = -(-in_features // group_size)
        if tuple(scale.shape) != (out_features, groups) or (offset is not None and offset.shape != scale.shape):
            raise ValueError(f"Int4Linear: scale/offset must be [{out_features}, {groups}] for q {tuple(q.shape)} "
                             f"and group size {group_size}; got {tuple(scale.shape)}"
                             f"{'' if offset is None else ' / ' + str(tuple(offset.shape))}.")
        if q.numel() and (int(q.min()) < 0 or int(q.max()) > 15):
            raise ValueError("Int4Linear: codes must lie in 0..15.")
        layer = cls(in_features, out_features, group_size, bias is not None, device=q.device,
                    dtype=None if bias is None else bias.dtype)
        layer.qweight = pack_nibbles(q.to(torch.uint8))
        layer.scales = scale.to(torch.float32).contiguous()
        layer.offsets = torch.zeros_like(layer.scales) if offset is None else offset.to(torch.float32).contiguous()
        if input_perm is not None:
            layer.input_perm = input_perm.to(device=q.device, dtype=torch.int64)
        if bias is not None:
            layer.bias.data = bias.detach().clone()
        return layer

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, group_size={self.group_size}, " \
               f"bias={self.bias is not None}{', act_order' if self.input_perm is not None else ''}"

    # -- shapes the kernel runs on -----------------------------------------------------------------
    def _padded(self, device: torch.device) -> tuple[int, int]:
        return (_round_up(self.out_features, 8 if device.type == "cuda" else 16),
                _round_up(self.in_features, self.kernel_group))

    def _codes(self) -> torch.Tensor:
        """uint8 codes [out, in] from whichever form is held."""
        if self.qweight is not None:
            return unpack_nibbles(self.qweight, self.in_features)
        rows, cols = self._padded(self.packed.device)
        return _unpack(self.packed, rows, cols)[:self.out_features, :self.in_features]

    def _portable(self) -> None:
        """Hold the portable qweight again (unpacking the device weight exactly), drop the packed one."""
        if self.qweight is None:
            self.qweight = pack_nibbles(self._codes())
        self.packed = None
        self._scales_and_zeros = {}

    def pack(self) -> Int4Linear:
        """Pack for the kernel on the current device now (forward does it on first use); frees the portable
        codes."""
        if self.packed is None:
            with _PACK_LOCK:  # two threads' first forwards: one packs, the other waits
                if self.packed is None:
                    device = self.scales.device
                    rows, cols = self._padded(device)
                    q = F.pad(unpack_nibbles(self.qweight, self.in_features),
                              (0, cols - self.in_features, 0, rows - self.out_features))
                    self.packed = _device_pack(q.to(device))
                    self.qweight = None
        return self

    def _kernel_scales(self, dtype: torch.dtype) -> torch.Tensor:
        """[padded in / kernel_group, padded out, 2] (scale, zero) in `dtype`: zero = offset + 8 * scale."""
        if dtype not in self._scales_and_zeros:
            rows, cols = self._padded(self.scales.device)
            groups = cols // self.kernel_group
            repeat = self.group_size // self.kernel_group if self.group_size < self.in_features else groups
            scale = self.scales.repeat_interleave(repeat, dim=1)[:, :groups]
            zero = (self.offsets + 8 * self.scales).repeat_interleave(repeat, dim=1)[:, :groups]
            both = torch.stack([scale, zero], dim=-1)  # [out, groups, 2]
            both = F.pad(both, (0, 0, 0, 0, 0, rows - self.out_features))
            self._scales_and_zeros[dtype] = both.transpose(0, 1).contiguous().to(dtype)
        return self._scales_and_zeros[dtype]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _WeightOnly.apply(x, self) if x.requires_grad and torch.is_grad_enabled() else self._matmul(x)
        return y if self.bias is None else y + self.bias.to(y.dtype)

    def _matmul(self, x: torch.Tensor) -> torch.Tensor:
        """x @ W^T on the kernel, in x's dtype (no bias)."""
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])  # (M, in), or fewer columns gathered by input_perm into in
        if self.input_perm is not None:
            x2 = x2.index_select(-1, self.input_perm)
        rows, cols = self._padded(x.device)
        if cols != self.in_features:
            x2 = F.pad(x2, (0, cols - self.in_features))
        self.pack()
        if x.device.type == "cuda":  # tinygemm on CUDA: bf16 activations and scales only
            y = torch.ops.aten._weight_int4pack_mm(x2.to(torch.bfloat16).contiguous(), self.packed,
                                                   self.kernel_group, self._kernel_scales(torch.bfloat16))
        else:
            dtype = self.compute_dtype or x.dtype
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(x2.to(dtype).contiguous(), self.packed,
                                                           self.kernel_group, self._kernel_scales(dtype))
        y = y.to(x.dtype)
        if rows != self.out_features:
            y = y[:, :self.out_features]
        return y.reshape(*lead, self.out_features)

    def dequantize(self) -> torch.Tensor:
        """float32 W [out, in], in the input order of forward's x (act-order undone): scale * q + offset."""
        g = self.group_size
        w = self._codes().float() * self.scales.repeat_interleave(g, dim=1)[:, :self.in_features] \
            + self.offsets.repeat_interleave(g, dim=1)[:, :self.in_features]
        if self.input_perm is not None:  # y = x[perm] @ W^T = x @ W'^T with W'[:, j] = sum of W[:, perm == j]
            w = w.new_zeros(w.shape[0], int(self.input_perm.max()) + 1).index_add_(1, self.input_perm, w)
        return w

    # -- device moves and state ----------------------------------------------------------------------
    def _apply(self, fn, recurse=True):
        """`.to()`, `.cuda()`, `.half()`...: the portable codes move (and are packed again on the new device at
        the next forward); scales and offsets keep float32 whatever dtype the model is cast to."""
        self._portable()
        scales, offsets = self.scales, self.offsets
        super()._apply(fn, recurse)
        self.scales, self.offsets = scales.to(self.qweight.device), offsets.to(self.qweight.device)
        return self

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        if self.qweight is None:
            self._portable()
        super()._save_to_state_dict(destination, prefix, keep_vars)


_INT8_KERNEL: dict[str, bool] = {}


def _has_int8_kernel(device_type: str) -> bool:
    """Whether this torch has `_weight_int8pack_mm` for the device type (CPU always; CUDA only in some builds).
    Asked once per device type, outside any compiled region (at construction and device moves)."""
    if device_type not in _INT8_KERNEL:
        _INT8_KERNEL[device_type] = torch._C._dispatch_has_kernel_for_dispatch_key("aten::_weight_int8pack_mm",
                                                                                   device_type.upper())
    return _INT8_KERNEL[device_type]


def split_wide_codes(q: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor | None, group_size: int,
                     bias: torch.Tensor | None = None) -> Int4Linear:
    """An exact Int4Linear for codes of 5 to 8 bits (uint8 0..255 [out, in]; in a multiple of group_size):
    W = scale * q + offset = (scale * lo + offset) + (16 * scale) * hi with lo = q & 15, hi = q >> 4, i.e. one
    int4 layer twice as wide, [lo | hi] against the activations gathered twice ([x | x], input_perm); one
    kernel call on 1 byte per weight (GGUF Q5_0, Q5_K, Q8_0)."""
    out_features, in_features = q.shape
    if in_features % group_size:
        raise ValueError(f"split_wide_codes: in_features {in_features} must be a multiple of the group size "
                         f"{group_size}.")
    q = q.to(torch.uint8)
    codes = torch.cat([q & 15, q >> 4], dim=1)  # [out, 2 * in]
    zero = torch.zeros_like(scale)
    offsets = torch.cat([zero if offset is None else offset, zero], dim=1)
    columns = torch.arange(in_features, device=q.device)
    return Int4Linear.from_affine(codes, torch.cat([scale, 16 * scale], dim=1), offsets, group_size, bias,
                                  input_perm=torch.cat([columns, columns]))


class Int8Linear(nn.Module):
    """8-bit weight-only Linear. Per output channel (group_size None, no offsets): W = scale[o] * q[o, i] on
    `aten._weight_int8pack_mm`. Groupwise (GGUF Q8_0, GPTQ 8-bit with groups): W = scale[o, i // g] * q + offset,
    dequantized on the fly (no torch kernel). Build with `from_symmetric` or `from_affine`."""

    is_quantized = True

    def __init__(self, in_features: int, out_features: int, group_size: int | None = None, offsets: bool = False,
                 bias: bool = False, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        groups = 1 if group_size is None else -(-in_features // group_size)
        self.register_buffer("qweight", torch.zeros(out_features, in_features, dtype=torch.int8, device=device))
        # int8 codes (uint8 codes 0..255 for groupwise layers built from unsigned formats)
        self.register_buffer("scales", torch.zeros(out_features, groups, dtype=torch.float32, device=device))
        self.register_buffer("offsets", torch.zeros(out_features, groups, dtype=torch.float32, device=device)
                             if offsets else None)
        self.register_buffer("input_perm", None)  # groupwise with act-order: activations gathered in this order
        self.bias = nn.Parameter(torch.zeros(out_features, device=device, dtype=dtype), requires_grad=False) \
            if bias else None
        self._kernel_scales: dict[torch.dtype, torch.Tensor] = {}
        self.compute_dtype: torch.dtype | None = None  # run the matmul in this dtype (None: the activations')
        self._int8_kernel = _has_int8_kernel(self.qweight.device.type)  # set again on device moves

    @classmethod
    def from_symmetric(cls, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None) -> Int8Linear:
        """W[o, i] = scale[o] * q[o, i]; q int8 [out, in], scale [out] (or [out, 1])."""
        out_features, in_features = q.shape
        if q.dtype != torch.int8 or scale.numel() != out_features:
            raise ValueError(f"Int8Linear.from_symmetric: q must be int8 [out, in] and scale [out]; got {q.dtype} "
                             f"{tuple(q.shape)} and {tuple(scale.shape)}.")
        layer = cls(in_features, out_features, None, False, bias is not None, device=q.device,
                    dtype=None if bias is None else bias.dtype)
        layer.qweight = q.contiguous()
        layer.scales = scale.reshape(out_features, 1).to(torch.float32).contiguous()
        if bias is not None:
            layer.bias.data = bias.detach().clone()
        return layer

    @classmethod
    def from_affine(cls, q: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor | None, group_size: int,
                    bias: torch.Tensor | None = None, input_perm: torch.Tensor | None = None) -> Int8Linear:
        """W[o, i] = scale[o, i // g] * q[o, i] + offset[o, i // g] (offset None: zero). q int8, or uint8 codes
        0..255 (kept as they are: the dequantization stays exact). Symmetric int8 with one group per row goes to
        the per-channel kernel; everything else is dequantized on the fly. input_perm: y = x[..., perm] @ W^T
        (GPTQ act-order)."""
        out_features, in_features = q.shape
        groups = -(-in_features // group_size)
        if tuple(scale.shape) != (out_features, groups) or (offset is not None and offset.shape != scale.shape):
            raise ValueError(f"Int8Linear: scale/offset must be [{out_features}, {groups}] for q {tuple(q.shape)} "
                             f"and group size {group_size}; got {tuple(scale.shape)}.")
        if q.dtype not in (torch.int8, torch.uint8):
            raise ValueError(f"Int8Linear.from_affine: q must be int8 or uint8, got {q.dtype}.")
        scale = scale.to(torch.float32)
        if offset is None and groups == 1 and q.dtype == torch.int8 and input_perm is None:
            return cls.from_symmetric(q, scale.reshape(-1), bias)
        layer = cls(in_features, out_features, group_size, offset is not None, bias is not None, device=q.device,
                    dtype=None if bias is None else bias.dtype)
        if input_perm is not None:
            layer.input_perm = input_perm.to(device=q.device, dtype=torch.int64)
        layer.qweight = q.contiguous()
        layer.scales = scale.contiguous()
        if offset is not None:
            layer.offsets = offset.to(torch.float32).contiguous()
        if bias is not None:
            layer.bias.data = bias.detach().clone()
        return layer

    def extra_repr(self) -> str:
        kind = "per-channel" if self.group_size is None else f"group_size={self.group_size}"
        return f"in_features={self.in_features}, out_features={self.out_features}, {kind}, " \
               f"bias={self.bias is not None}"

    def _stored(self) -> torch.Tensor:
        """float32 W over the stored input order: scale * q + offset."""
        g = self.group_size or self.in_features
        w = self.qweight.float() * self.scales.repeat_interleave(g, dim=1)[:, :self.in_features]
        if self.offsets is not None:
            w = w + self.offsets.repeat_interleave(g, dim=1)[:, :self.in_features]
        return w

    def dequantize(self) -> torch.Tensor:
        """float32 W [out, in], in the input order of forward's x (act-order undone)."""
        w = self._stored()
        if self.input_perm is not None:
            unpermuted = torch.empty_like(w)
            unpermuted[:, self.input_perm] = w
            w = unpermuted
        return w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _WeightOnly.apply(x, self) if x.requires_grad and torch.is_grad_enabled() else self._matmul(x)
        return y if self.bias is None else y + self.bias.to(y.dtype)

    def _matmul(self, x: torch.Tensor) -> torch.Tensor:
        """x @ W^T in x's dtype (no bias)."""
        dtype = self.compute_dtype or x.dtype
        if self.group_size is not None:  # no kernel: dequantize into the compute dtype
            if self.input_perm is not None:
                x = x.index_select(-1, self.input_perm)
            return F.linear(x.to(dtype), self._stored().to(dtype)).to(x.dtype)
        if not self._int8_kernel:  # no torch kernel on this device: convert the codes per call
            return (F.linear(x.to(dtype), self.qweight.to(dtype)) * self.scales.reshape(-1).to(dtype)).to(x.dtype)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        if dtype == torch.bfloat16 and self.in_features % 16 and x.device.type == "cpu":
            dtype = torch.float32  # torch 2.13's bf16 CPU kernel reads past rows whose length is not a multiple of 16
        if dtype not in self._kernel_scales:
            self._kernel_scales[dtype] = self.scales.reshape(-1).to(dtype)
        y = torch.ops.aten._weight_int8pack_mm(x2.to(dtype).contiguous(), self.qweight, self._kernel_scales[dtype])
        return y.to(x.dtype).reshape(*lead, self.out_features)

    def _apply(self, fn, recurse=True):
        """Scales and offsets keep float32 whatever dtype the model is cast to."""
        self._kernel_scales = {}
        scales, offsets = self.scales, self.offsets
        super()._apply(fn, recurse)
        self.scales = scales.to(self.qweight.device)
        self.offsets = None if offsets is None else offsets.to(self.qweight.device)
        self._int8_kernel = _has_int8_kernel(self.qweight.device.type)
        return self


# -- quantizing float weights (round to nearest) ---------------------------------------------------------

def quantize_int4(weight: torch.Tensor, group_size: int = 128):
    """Asymmetric min/max round-to-nearest per group of `group_size` inputs: (q uint8 0..15, scale, offset),
    W ~ scale * q + offset with offset = the group's minimum and scale = (max - min) / 15."""
    out_features, in_features = weight.shape
    cols = _round_up(in_features, group_size)
    w = weight.detach().float()
    padded = F.pad(w, (0, cols - in_features)).reshape(out_features, -1, group_size)
    if cols != in_features:  # the padding must not widen the last group's range: repeat its first value
        last = padded[:, -1, :]
        width = group_size - (cols - in_features)
        last[:, width:] = last[:, :1]
    low, high = padded.amin(dim=-1), padded.amax(dim=-1)  # [out, groups]
    scale = (high - low) / 15
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round((padded - low[..., None]) / safe[..., None]).clamp(0, 15).to(torch.uint8)
    return q.reshape(out_features, cols)[:, :in_features], scale, low


def quantize_int8(weight: torch.Tensor):
    """Symmetric round-to-nearest per output channel: (q int8 -127..127, scale [out]), W ~ scale * q."""
    w = weight.detach().float()
    scale = w.abs().amax(dim=1) / 127
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(w / safe[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


def replace_linears(model: nn.Module, make: Callable[[str, nn.Linear], nn.Module | None]) -> list[str]:
    """Replace every nn.Linear for which `make(qualified_name, linear)` returns a module; returns those names."""
    replaced = []
    for name, module in list(model.named_modules()):
        if type(module) is not nn.Linear:
            continue
        new = make(name, module)
        if new is None:
            continue
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, new)
        replaced.append(name)
    return replaced
