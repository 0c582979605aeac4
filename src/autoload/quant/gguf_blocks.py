"""GGUF (ggml) block formats: decoding to floats and to the affine form W = scale * q + offset.

Every function takes the raw bytes of one tensor as a uint8 torch tensor of shape [rows, bytes_per_row] (the
file's memory map, not copied) and works on whole tensors at once. A block holds 32 (legacy types) or 256
(k-quants) consecutive values of a row; fp16 fields are little-endian. Layouts, per block:

    Q4_0  18 B: d fp16, 16 B nibbles               w = d * (q - 8)            q in 0..15
    Q4_1  20 B: d fp16, m fp16, 16 B nibbles       w = d * q + m              q in 0..15
    Q5_0  22 B: d fp16, qh u32 (5th bits), 16 B    w = d * (q - 16)           q in 0..31
    Q8_0  34 B: d fp16, 32 x int8                  w = d * q                  q in -128..127
    Q4_K 144 B: d, dmin fp16, 12 B packed 6-bit (sc, m) x 8, 128 B nibbles
                                                   w = (d*sc) * q - (dmin*m)  per 32, q in 0..15
    Q5_K 176 B: as Q4_K plus 32 B of 5th bits      w = (d*sc) * q - (dmin*m)  per 32, q in 0..31
    Q6_K 210 B: 128 B low nibbles, 64 B 2-bit highs, 16 x int8 scales, d fp16
                                                   w = (d*sc) * (q - 32)      per 16, q in 0..63

`dequantize` performs the operations of the `gguf` package's numpy reference in the same order, in float32,
so its result is bit-identical to `gguf.quants.dequantize` (tests/test_gguf.py checks every type).
`to_affine` gives the integer codes with a float32 scale and offset per group; for Q4_0, Q4_1, Q4_K, Q5_0,
Q5_K and Q8_0 `scale * q + offset` equals the dequantized value exactly (each product is exact in float32);
for Q6_K the product d*sc*q can need 25 bits, so the affine form may differ in the last bit.
`q6_k_as_8bit` re-quantizes Q6_K's groups of 16 into 8-bit codes over groups of 32, the smallest group the
int4 kernels take (see its docstring for the error bound).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

QK = 32  # values per block, legacy types
QK_K = 256  # values per super-block, k-quants
# ggml type id -> (name, values per block, bytes per block)
TYPES = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 30: ("BF16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
         6: ("Q5_0", 32, 22), 8: ("Q8_0", 32, 34), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176),
         14: ("Q6_K", 256, 210)}
TYPE_IDS = {name: type_id for type_id, (name, _, _) in TYPES.items()}


class Affine(NamedTuple):
    """W[o, i] = scale[o, i // group_size] * q[o, i] + offset[o, i // group_size] (offset None: zero)."""

    q: torch.Tensor  # uint8 [out, in] (int8 for Q8_0)
    scale: torch.Tensor  # float32 [out, in // group_size]
    offset: torch.Tensor | None  # float32 [out, in // group_size], None for symmetric Q8_0
    group_size: int
    bits: int


def type_name(type_id: int) -> str:
    return TYPES[type_id][0]


def row_values(type_id: int, row_bytes: int) -> int:
    """Values in a row of `row_bytes` bytes."""
    _, per_block, block_bytes = TYPES[type_id]
    return row_bytes // block_bytes * per_block


def _blocks(raw: torch.Tensor, type_id: int) -> torch.Tensor:
    """[rows, bytes] -> [rows * blocks_per_row, bytes_per_block] (a view)."""
    return raw.reshape(-1, TYPES[type_id][2])


def _f16(block: torch.Tensor, start: int) -> torch.Tensor:
    """The fp16 at byte `start` (even) of each block, as float32 [n, 1] (read through an int16 view, no copy)."""
    return block.view(torch.int16)[:, start // 2:start // 2 + 1].view(torch.float16).float()


_WORDS = ((8, torch.int64), (4, torch.int32), (2, torch.int16), (1, torch.uint8))
_NIBBLE_MASK = 0x0F0F0F0F0F0F0F0F
# byte value v -> 8 bytes, byte i = bit i of v moved to bit 4 (the fifth bit of a Q5_0 code), as one int64
_HIGH_BITS = torch.tensor([sum(((v >> i) & 1) << (8 * i + 4) for i in range(8)) for v in range(256)],
                          dtype=torch.int64)


def _slice64(block: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Bytes [start, stop) of each block (stop - start a multiple of 8) as contiguous int64 words: gathered
    through the widest integer view the block layout allows, so the copy moves words, not single bytes."""
    width, dtype = next((w, t) for w, t in _WORDS if not (block.shape[1] % w or start % w))
    words = block.view(dtype)[:, start // width:stop // width]
    if not words.is_contiguous() or words.storage_offset() * width % 8:  # a copy (one block: already contiguous,
        words = words.clone(memory_format=torch.contiguous_format)      # but maybe not 8-byte aligned)
    return words.view(torch.int64)


def _nibbles(block: torch.Tensor, start: int, stop: int, chunk: int) -> torch.Tensor:
    """The 4-bit codes in bytes [start, stop) of each block -> [n, 2 * (stop - start)] uint8: per `chunk / 2`
    bytes, their low nibbles then their high nibbles (ggml's order). Worked on 64-bit words: masking with
    0x0F0F... keeps the right nibble of all 8 bytes at once (the shift's sign bits land in masked-off bits)."""
    words = _slice64(block, start, stop).reshape(-1, chunk // 16)
    return torch.cat((words & _NIBBLE_MASK, (words >> 4) & _NIBBLE_MASK), dim=1).view(torch.uint8) \
        .reshape(block.shape[0], -1)


def _scale_min_k4(scales: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Q4_K/Q5_K: 12 bytes -> 8 six-bit scales and 8 six-bit mins per super-block (ggml's get_scale_min_k4)."""
    s = scales.reshape(-1, 3, 4)
    d, m, md = s[:, 0], s[:, 1], s[:, 2]
    sc = torch.cat([d & 0x3F, (md & 0x0F) | ((d >> 2) & 0x30)], dim=-1)
    mn = torch.cat([m & 0x3F, (md >> 4) | ((m >> 2) & 0x30)], dim=-1)
    return sc, mn


def codes(raw: torch.Tensor, type_id: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(q [n_blocks, values] uint8/int8 as stored, per-block float32 fields) for a block type."""
    name = type_name(type_id)
    b = _blocks(raw, type_id)
    if name == "Q4_0":
        return _nibbles(b, 2, 18, QK), [_f16(b, 0)]
    if name == "Q4_1":
        return _nibbles(b, 4, 20, QK), [_f16(b, 0), _f16(b, 2)]
    if name == "Q5_0":  # bit j of the 32-bit qh is the fifth bit of code j: 8 codes per qh byte, by table
        high = _HIGH_BITS[b[:, 2:6].long()].reshape(-1, 4)
        low = _nibbles(b, 6, 22, QK).view(torch.int64)
        return (low | high).view(torch.uint8), [_f16(b, 0)]
    if name == "Q8_0":
        return b[:, 2:].contiguous().view(torch.int8), [_f16(b, 0)]
    if name in ("Q4_K", "Q5_K"):
        sc, mn = _scale_min_k4(b[:, 4:16])
        q = _nibbles(b, 16, 144, 64) if name == "Q4_K" else _nibbles(b, 48, 176, 64)  # [n, 256]: 8 sub-blocks of 32
        if name == "Q5_K":
            qh = b[:, 16:48].reshape(-1, 1, 32) >> torch.arange(8, dtype=torch.uint8).reshape(1, 8, 1)
            q = q | ((qh & 1) << 4).reshape(-1, QK_K)
        return q, [_f16(b, 0), _f16(b, 2), sc.float(), mn.float()]
    if name == "Q6_K":
        n = b.shape[0]
        ql = b[:, :128].reshape(n, 2, 1, 64) >> torch.tensor([0, 4], dtype=torch.uint8).reshape(1, 1, 2, 1)
        qh = b[:, 128:192].reshape(n, 2, 1, 32) >> torch.tensor([0, 2, 4, 6], dtype=torch.uint8).reshape(1, 1, 4, 1)
        q = (ql & 0x0F).reshape(n, -1) | ((qh & 0x03) << 4).reshape(n, -1)
        return q, [_f16(b, 208), b[:, 192:208].contiguous().view(torch.int8).float()]
    raise ValueError(f"ggml type {name} has no block codes")


def dequantize(raw: torch.Tensor, type_id: int) -> torch.Tensor:
    """float32 [rows, values per row], bit-identical to `gguf.quants.dequantize` (same operations, same order)."""
    name, rows = type_name(type_id), raw.shape[0]
    if name in ("F32", "F16", "BF16"):
        dtype = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[name]
        return raw.contiguous().view(dtype).float().reshape(rows, -1)
    q, fields = codes(raw, type_id)
    if name in ("Q4_0", "Q5_0"):
        zero = 8 if name == "Q4_0" else 16
        out = fields[0] * (q.to(torch.int8) - zero).float()
    elif name == "Q4_1":
        out = fields[0] * q.float() + fields[1]
    elif name == "Q8_0":
        out = q.float() * fields[0]
    elif name in ("Q4_K", "Q5_K"):
        d, dmin, sc, mn = fields
        scale = (d * sc).reshape(-1, 8, 1)
        dm = (dmin * mn).reshape(-1, 8, 1)
        out = scale * q.reshape(-1, 8, 32).float() - dm
    else:  # Q6_K
        d, sc = fields
        scale = (d * sc).reshape(-1, 16, 1)
        out = scale * (q.to(torch.int8) - 32).reshape(-1, 16, 16).float()
    return out.reshape(rows, -1)


def to_affine(raw: torch.Tensor, type_id: int) -> Affine:
    """The integer codes with a float32 scale and offset per group (see the module docstring)."""
    name, rows = type_name(type_id), raw.shape[0]
    q, fields = codes(raw, type_id)
    q = q.reshape(rows, -1)
    if name in ("Q4_0", "Q5_0"):
        d = fields[0].reshape(rows, -1)
        return Affine(q, d, d * -(8.0 if name == "Q4_0" else 16.0), QK, 4 if name == "Q4_0" else 5)
    if name == "Q4_1":
        return Affine(q, fields[0].reshape(rows, -1), fields[1].reshape(rows, -1), QK, 4)
    if name == "Q8_0":
        return Affine(q, fields[0].reshape(rows, -1), None, QK, 8)
    if name in ("Q4_K", "Q5_K"):
        d, dmin, sc, mn = fields
        return Affine(q, (d * sc).reshape(rows, -1), -(dmin * mn).reshape(rows, -1), QK, 4 if name == "Q4_K" else 5)
    if name == "Q6_K":
        d, sc = fields
        scale = (d * sc).reshape(rows, -1)
        return Affine(q, scale, scale * -32.0, 16, 6)
    raise ValueError(f"ggml type {name} is stored as plain floats; it has no affine form")


def q6_k_as_8bit(q: torch.Tensor, scale: torch.Tensor) -> Affine:
    """Q6_K (W = scale * (q - 32), q 0..63, a scale per 16 values) as 8-bit codes with one scale and offset per
    32: W' = step * c + offset, c in 0..255. Each group of 32 holds two of Q6_K's groups, with scales s1, s2;
    step = max(|s1|, |s2|) / 4, so the half with the larger scale keeps its codes exactly (4 * (q - 32), from
    128, or 127 when that scale is negative; its values equal to float32 rounding, as Q6_K's own affine form);
    the other half is rounded to the nearest step: |W' - W| <= step / 2, an eighth of that group's largest Q6_K
    step (a full step at the one clamped code when |s1| = |s2| with opposite signs). Both halves keep their
    codes when s1 = s2. q: uint8 [rows, in]; scale: float32 [rows, in / 16]."""
    rows, cols = q.shape
    s = scale.reshape(rows, -1, 2)  # the two 16-value scales of each group of 32
    larger = s.abs().argmax(-1, keepdim=True)
    top = s.gather(-1, larger)  # the larger scale, signed
    step = top.abs() / 4
    base = torch.where(top < 0, 127.0, 128.0)  # -4 * (q - 32) reaches +128, 4 * (q - 32) reaches -128
    w = s.unsqueeze(-1) * (q.reshape(rows, -1, 2, 16).float() - 32.0)
    step4 = step.unsqueeze(-1)  # [rows, groups, 1, 1] against w's [rows, groups, 2, 16]
    c = torch.where(step4 > 0, w / step4.where(step4 > 0, 1.0), 0.0).round() + base.unsqueeze(-1)
    codes = c.clamp(0, 255).to(torch.uint8).reshape(rows, cols)
    step = step.reshape(rows, -1)
    return Affine(codes, step, -base.reshape(rows, -1) * step, QK, 8)
