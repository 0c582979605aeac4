"""Rotary position embeddings.

Half-split layout (Llama family): `RotaryEmbedding` builds cos/sin tables (B, T, rd) for every scaling type in
`config.rope_parameters` (default, linear, dynamic, yarn, llama3, longrope) and `apply_rotary` rotates q and k
with them; rd < hs (partial rotary, Phi-3) rotates the first rd dims of each head only.
Interleaved pairs on part of each head (ChatGLM): `interleaved_cos_sin` and `apply_interleaved_rotary` (GLM-4's
HF port takes the first half of `RotaryEmbedding`'s table instead, which gives the same angles).
Configs are read duck-typed (`rope_parameters`, `head_dim`, `hidden_size`, `num_attention_heads`,
`max_position_embeddings`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "llama3", "longrope")


def head_dim_of(config) -> int:
    """The config's `head_dim`, else hidden_size // num_attention_heads."""
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def rope_frequencies(config, seq_len: torch.Tensor | None = None, device=None,
                     partial_default: bool = False) -> tuple[torch.Tensor, float]:
    """(inv_freq in fp32 of shape (rd/2,), cos/sin scale) for `config.rope_parameters`. The operations follow
    the reference's order so that the fp32 frequencies are bit-identical. rd = hs·partial_rotary_factor for the
    scaled types, and for the default one too with `partial_default` (Phi-3, GLM; Llama's default ignores it)."""
    params = config.rope_parameters
    kind = params.get("rope_type", "default")
    base = params["rope_theta"]
    dim = head_dim_of(config)
    if kind != "default" or partial_default:
        dim = int(dim * params.get("partial_rotary_factor", 1.0))
    exponents = torch.arange(0, dim, 2, dtype=torch.int64).to(device=device, dtype=torch.float) / dim  # 2i/d
    if kind == "default":
        return 1.0 / (base ** exponents), 1.0
    factor = params.get("factor")
    if kind == "linear":  # positions squeezed by `factor`: every frequency divided by it
        return 1.0 / (base ** exponents) / factor, 1.0
    if kind == "dynamic":  # NTK: a larger base once the sequence outgrows max_position_embeddings
        max_pos = config.max_position_embeddings
        if seq_len is None:
            seq_len = max_pos
        else:
            seq_len = torch.maximum(seq_len, torch.tensor(max_pos, dtype=seq_len.dtype, device=seq_len.device))
        base = base * ((factor * seq_len / max_pos) - (factor - 1)) ** (dim / (dim - 2))
        return 1.0 / (base ** exponents), 1.0
    original = params["original_max_position_embeddings"]
    if kind == "longrope":
        return _longrope(params, base, dim, original, config.max_position_embeddings,
                         seq_len is not None and seq_len > original, device)
    if kind == "yarn":
        return _yarn(params, base, dim, factor, original, config.max_position_embeddings, device)
    if kind == "llama3":
        inv_freq = 1.0 / (base ** exponents)
        low, high = params["low_freq_factor"], params["high_freq_factor"]
        wavelen = 2 * math.pi / inv_freq
        # long wavelengths (> original/low) are interpolated, short ones (< original/high) kept, the band between
        # blends the two with s = (original/wavelen - low) / (high - low)
        scaled = torch.where(wavelen > original / low, inv_freq / factor, inv_freq)
        smooth = (original / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < original / high) * ~(wavelen > original / low)
        return torch.where(medium, smoothed, scaled), 1.0
    raise ValueError(f"rope_type '{kind}' is not supported (supported: {', '.join(ROPE_TYPES)}).")


def _yarn(params, base, dim, factor, original, max_pos, device) -> tuple[torch.Tensor, float]:
    """YaRN: interpolated (÷factor) frequencies for dimensions that rotate fewer than `beta_slow` times over the
    original context, extrapolated (unchanged) ones above `beta_fast` rotations, a linear ramp in between; cos/sin
    are scaled by `attention_factor` (default 0.1·ln(factor)+1, or its mscale/mscale_all_dim ratio)."""
    if factor is None:
        factor = max_pos / original

    def mscale(scale, m=1):
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    attention_factor = params.get("attention_factor")
    if attention_factor is None:
        m, m_all = params.get("mscale"), params.get("mscale_all_dim")
        attention_factor = float(mscale(factor, m) / mscale(factor, m_all)) if m and m_all else mscale(factor)

    def correction_dim(rotations):  # the dimension whose wavelength fits `rotations` times in the context
        return (dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(params.get("beta_fast") or 32), correction_dim(params.get("beta_slow") or 1)
    if params.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # avoid a zero-width ramp
    ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1)  # (hs/2,)
    pos_freqs = base ** (torch.arange(0, dim, 2).to(device=device, dtype=torch.float) / dim)
    extrapolated, interpolated = 1.0 / pos_freqs, 1.0 / (factor * pos_freqs)
    keep = 1 - ramp.to(device=device, dtype=torch.float)  # 1: extrapolate, 0: interpolate
    return interpolated * (1 - keep) + extrapolated * keep, attention_factor


def _longrope(params, base, dim, original, max_pos, long: bool, device) -> tuple[torch.Tensor, float]:
    """LongRoPE (Phi-3): each frequency divided by its own factor, `long_factor` once the sequence is longer than
    original_max_position_embeddings, else `short_factor`; cos/sin scaled by `attention_factor` (default
    sqrt(1 + ln(factor) / ln(original)), factor = max_position_embeddings / original unless given)."""
    factor = params.get("factor")
    if factor is None:
        factor = max_pos / original
    attention_factor = params.get("attention_factor")
    if attention_factor is None:
        attention_factor = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original))
    ext = torch.tensor(params["long_factor" if long else "short_factor"], dtype=torch.float32, device=device)
    exponents = torch.arange(0, dim, 2, dtype=torch.int64, device=device).float() / dim  # 2i/rd
    return 1.0 / (ext * base ** exponents), attention_factor


class RotaryEmbedding(nn.Module):
    """cos/sin tables for the positions of a forward, in the half-split layout (frequencies repeated twice).
    `dynamic` rope recomputes its frequencies when positions grow past the longest seen, and returns to the
    original ones for sequences shorter than max_position_embeddings. `longrope` picks its long frequencies for
    the whole batch when the largest position is at or past original_max_position_embeddings (a tensor `where`:
    no recompilation). `partial_default`: see `rope_frequencies`."""

    def __init__(self, config, partial_default: bool = False):
        super().__init__()
        self.config = config
        self.partial_default = partial_default
        self.rope_type = config.rope_parameters.get("rope_type", "default")
        if self.rope_type not in ROPE_TYPES:
            raise ValueError(f"rope_type '{self.rope_type}' is not supported (supported: {', '.join(ROPE_TYPES)}).")
        inv_freq, self.attention_scaling = rope_frequencies(config, partial_default=partial_default)
        self.register_buffer("inv_freq", inv_freq, persistent=False)  # (rd/2,) fp32
        self.register_buffer("original_inv_freq", inv_freq.clone(), persistent=False)
        self.max_seq_len_cached = self.original_max_seq_len = config.max_position_embeddings
        if self.rope_type == "longrope":
            self.original_positions = config.rope_parameters["original_max_position_embeddings"]
            long_inv_freq, _ = rope_frequencies(config, self.original_positions + 1)
            self.register_buffer("long_inv_freq", long_inv_freq, persistent=False)  # (rd/2,) fp32

    def _dynamic_update(self, position_ids: torch.Tensor) -> None:
        seq_len = torch.max(position_ids) + 1
        cached = self.max_seq_len_cached
        if seq_len > cached:  # growth
            self.inv_freq, self.attention_scaling = rope_frequencies(self.config, seq_len, position_ids.device,
                                                                     self.partial_default)
            self.max_seq_len_cached = seq_len
        if seq_len < self.original_max_seq_len and cached > self.original_max_seq_len:  # reset
            self.inv_freq = self.original_inv_freq.to(position_ids.device)
            self.max_seq_len_cached = self.original_max_seq_len

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inv_freq = self.inv_freq
        if self.rope_type == "dynamic":
            self._dynamic_update(position_ids)
            inv_freq = self.inv_freq
        elif self.rope_type == "longrope":  # long factors past the original context, for every row
            inv_freq = torch.where(position_ids.max() + 1 > self.original_positions, self.long_inv_freq, inv_freq)
        freqs = position_ids[..., None].float() * inv_freq.to(device=x.device, dtype=torch.float)  # (B, T, rd/2)
        angles = torch.cat((freqs, freqs), dim=-1)  # (B, T, rd)
        cos, sin = angles.cos() * self.attention_scaling, angles.sin() * self.attention_scaling
        return cos.to(x.dtype), sin.to(x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """[x1, x2] -> [-x2, x1] on the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(q, k, cos, sin):
    """q (B, nh, T, hs), k (B, nkv, T, hs) rotated by (B, T, rd) tables; with rd < hs (partial rotary) the first
    rd dims of each head rotate and the rest pass through."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (B, 1, T, rd): one table for all heads
    rd = cos.shape[-1]
    if rd < q.shape[-1]:
        return (torch.cat((q[..., :rd] * cos + rotate_half(q[..., :rd]) * sin, q[..., rd:]), dim=-1),
                torch.cat((k[..., :rd] * cos + rotate_half(k[..., :rd]) * sin, k[..., rd:]), dim=-1))
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin



# -- interleaved pairs on part of each head (ChatGLM) -----------------------------------------------------------

def interleaved_cos_sin(position_ids: torch.Tensor, rotary_dim: int, base: float, position_scale: float,
                        dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin), each (B, T, rd/2) in `dtype`, for (B, T) positions over rd = `rotary_dim` rotated dims:
    theta_i = base^(-2i/rd), angle = (p / position_scale)·theta_i. Everything up to the final cast is fp32,
    from integer positions."""
    rd = rotary_dim
    exponents = torch.arange(0, rd, 2, dtype=torch.int64, device=position_ids.device).float() / rd  # 2i/rd
    theta = 1.0 / (base ** exponents)  # (rd/2,)
    positions = position_ids.float()
    if position_scale != 1.0:
        positions = positions / position_scale
    angles = positions[..., None] * theta  # (B, T, rd/2)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_interleaved_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the pairs (x[2i], x[2i+1]) of the first rd dims of each head by angle i; the rest pass through.
    x (B, n, T, hs), cos/sin (B, T, rd/2)."""
    rd = 2 * cos.shape[-1]
    rot, rest = x[..., :rd], x[..., rd:]
    x0, x1 = rot.unflatten(-1, (-1, 2)).unbind(-1)  # (B, n, T, rd/2) each: even and odd lanes
    cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, rd/2): one table for all heads
    rot = torch.stack((x0 * cos - x1 * sin, x1 * cos + x0 * sin), dim=-1).flatten(-2)  # (B, n, T, rd)
    return torch.cat((rot, rest), dim=-1)
