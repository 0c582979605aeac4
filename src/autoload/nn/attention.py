"""The one attention entry point of every family: softmax(q·kᵀ·scale + mask + bias)·v.

Shapes: B batch, nh query heads, nkv key/value heads (nh = nkv·groups: grouped-query attention), T queries,
K keys, hs head size. q (B, nh, T, hs); k, v (B, nkv, K, hs).

`mask` is what `masks.attention_mask` builds: boolean (True = attend), additive float, or None with
`is_causal` (query i then sees keys 0..i; with K > T the keys past T are trailing padding and are dropped).
Sliding windows and packed rows come in through the mask. A mask wider than K (built for all P + T positions)
is cut to its last K columns: a cache whose sliding layers drop the keys that left the window (transformers'
`DynamicSlidingWindowLayer`) returns the last K of them. SDPA runs unless `eager` (the weights are wanted),
`softcap` (tanh soft-capping of the scores, which SDPA lacks) or the caller asks otherwise; `bias` is an
additive (B or 1, nh, T, K) float term on the scores (ALiBi, relative-position biases).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

logger = logging.getLogger("autoload")
_warned: set[str] = set()


def is_eager(config) -> bool:
    """Whether the config asks for eager attention (the weights are returned; masks are additive)."""
    return getattr(config, "_attn_implementation", None) == "eager"


def warn_no_weights(config, output_attentions: bool) -> None:
    """Once per process: output_attentions=True under SDPA returns no weights (an empty tuple, as the
    reference); eager attention computes them."""
    if output_attentions and not is_eager(config) and "sdpa" not in _warned:
        _warned.add("sdpa")
        logger.warning("output_attentions=True: sdpa attention returns no weights (an empty tuple, as the "
                       "reference); load with attn_implementation='eager' to get them.")


def repeat_kv(x: torch.Tensor, n: int) -> torch.Tensor:
    """(B, nkv, K, hs) -> (B, nkv*n, K, hs), each key/value head repeated for its group of query heads."""
    if n == 1:
        return x
    b, h, k, d = x.shape
    return x[:, :, None].expand(b, h, n, k, d).reshape(b, h * n, k, d)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None, *,
              is_causal: bool = False, scale: float | None = None, dropout: float = 0.0, eager: bool = False,
              softmax_fp32: bool = True, upcast: bool = False, softcap: float | None = None,
              bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(y (B, nh, T, hs), weights (B, nh, T, K) or None). `scale` defaults to 1/sqrt(hs); `dropout` applies to
    the weights (pass 0 outside training). Eager only: `softmax_fp32` takes the softmax in fp32 and casts back
    (Llama, ChatGLM), `upcast` computes the scores in fp32 too (GPT-2's reorder_and_upcast_attn)."""
    if mask is not None and mask.shape[-1] > k.shape[-2]:
        mask = mask[..., -k.shape[-2]:]  # the cache returned only its last K keys (a sliding layer): their columns
    if eager or softcap is not None:
        return _eager(q, k, v, mask, is_causal, scale, dropout, softmax_fp32, upcast, softcap, bias)
    return _sdpa(q, k, v, mask, is_causal, scale, dropout, bias), None


def _causal(t: int, kv_len: int, device) -> torch.Tensor:
    """(T, K) bool: query i (at key index K-T+i) sees keys 0..K-T+i."""
    return torch.ones(t, kv_len, dtype=torch.bool, device=device).tril(kv_len - t)


def _eager(q, k, v, mask, is_causal, scale, dropout, softmax_fp32, upcast, softcap, bias):
    groups = q.shape[1] // k.shape[1]
    k, v = repeat_kv(k, groups), repeat_kv(v, groups)  # (B, nh, K, hs)
    if upcast:
        q, k = q.float(), k.float()
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale  # (B, nh, T, K)
    if softcap is not None:  # softcap·tanh(s/softcap): scores bounded to (-softcap, softcap)
        scores = torch.tanh(scores / softcap) * softcap
    if bias is not None:
        scores = scores + bias
    if mask is None and is_causal:
        mask = _causal(q.shape[-2], k.shape[-2], q.device)
    if mask is not None and mask.dtype == torch.bool:  # the dtype's most negative value: no NaN on empty rows
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    elif mask is not None:
        scores = scores + mask
    weights = F.softmax(scores, dim=-1, dtype=torch.float32 if softmax_fp32 else None).to(v.dtype)
    return torch.matmul(F.dropout(weights, p=dropout), v), weights  # (B, nh, T, hs), (B, nh, T, K)


def _sdpa(q, k, v, mask, is_causal, scale, dropout, bias):
    b, nh, t, hs = q.shape
    nkv = k.shape[1]
    groups, extra = nh // nkv, {}
    if bias is not None:  # one float mask: the bias plus the hidden keys at the dtype's most negative value
        if mask is None and is_causal:
            mask = _causal(t, k.shape[-2], q.device)
        bias = bias.to(q.dtype)
        if mask is not None and mask.dtype == torch.bool:
            mask = bias.masked_fill(~mask, torch.finfo(q.dtype).min)
        else:
            mask = bias if mask is None else bias + mask
        is_causal = False
    if groups > 1:
        if mask is None and hs <= 256:
            extra["enable_gqa"] = True
        elif t == 1 and mask is not None:  # one query: a group's query heads become rows of one key/value head
            q = q.reshape(b, nkv, groups, hs)  # (B, nkv, groups, hs)
            if mask.shape[1] != 1:
                mask = mask.reshape(b, nkv, groups, -1)
        else:
            k, v = repeat_kv(k, groups), repeat_kv(v, groups)  # (B, nh, K, hs)
    is_causal = is_causal and t > 1 and mask is None
    if is_causal and k.shape[2] > t:  # is_causal aligns upper-left: keep the first T keys
        k, v = k[:, :, :t], v[:, :, :t]
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=is_causal, scale=scale,
                                       **extra)
    return y.reshape(b, nh, t, hs)  # (B, nh, T, hs)
