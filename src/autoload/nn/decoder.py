"""What the Llama-style decoder families (llama, phi3, glm, baichuan, internlm2) share around their own layers: the
positions and masks a backbone's forward builds before its layers, the layer loop, and the tail of an attention
layer (RoPE, the cache update, attention, the output projection). Each family keeps its projections, its block
and whatever is its own (fused or grouped q/k/v, ALiBi, windows cut for a compiled step, MoE).

Shapes: B batch, T new tokens, P cached tokens, K = P + T keys, C hidden size, nh / nkv query / key-value heads,
hs head size.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import attention, is_eager, warn_no_weights  # noqa: F401  (the families' import point)
from .masks import attention_mask as build_mask
from .masks import packed_segments, within_window
from .rope import apply_rotary


def positions_and_masks(h: torch.Tensor, attention_mask, position_ids, cache, windows=(None,), *, eager: bool,
                        packed: bool = False, cut_given: bool = False):
    """What a decoder backbone needs before its layers, for the new tokens h (B, T, C): (P, position_ids, masks).

    P: the cached length, read only to build a mask or the positions (a compiled step passes a 4-D mask and the
    positions, and reads none unless a given mask is cut to a window by a cache without `write_positions`).
    position_ids: as given, else (1, T) P..P+T-1.
    masks: {window: (B, 1, T, K) mask or None} for each window in `windows` (None: full causal). A ready-made 4-D
    `attention_mask` is used as given (`cut_given`: cut to the window at the queries' cache indices); else
    masks.attention_mask builds it from the (B, P+T) padding mask (0 = padding), additive for eager attention.
    `packed`: given positions without a mask or a cache (training on packed rows) keep each sequence to itself
    where its positions restart."""
    b, t = h.shape[:2]
    device = h.device
    given_mask = attention_mask is not None and attention_mask.dim() == 4
    writing = getattr(cache, "write_positions", None)
    cut = cut_given and any(w is not None for w in windows)
    needs_past = not (given_mask and position_ids is not None and (writing is not None or not cut))
    past = cache.get_seq_length() if cache is not None and needs_past else 0
    segments = None
    if position_ids is None:
        position_ids = (torch.arange(t, device=device) + past).unsqueeze(0)  # (1, T)
    elif packed and attention_mask is None and cache is None:  # positions restart per sequence
        segments = packed_segments(position_ids.expand(b, -1))
    if given_mask:
        if not cut:
            return past, position_ids, {w: attention_mask for w in windows}
        queries = writing if writing is not None else torch.arange(past, past + t, device=device)
        return past, position_ids, {w: attention_mask if w is None else within_window(attention_mask, w, queries)
                                    for w in windows}
    padding = None if attention_mask is None else attention_mask.to(device, torch.bool)
    return past, position_ids, {w: build_mask(padding, b, t, past, window=w, segments=segments, additive=eager,
                                              dtype=h.dtype, device=device) for w in windows}


def run_layers(backbone: nn.Module, h: torch.Tensor, args_of, cache, use_cache: bool, output_attentions: bool,
               output_hidden_states: bool):
    """The layer loop of a decoder backbone: h (B, T, C) through each of `backbone.layers` by
    `backbone.run_layer(layer, h, *args_of(layer))` (gradient checkpointing), then `backbone.norm`. A layer
    returns (h, attention weights or None) and, for MoE layers, its router logits (None where dense). Returns
    the fields of a BaseModelOutputWithPast (the last hidden state replaced by the normed output, as the
    reference) and the router logits collected."""
    hidden_states = [h] if output_hidden_states else None
    attentions = [] if output_attentions else None
    router_logits = []
    for layer in backbone.layers:
        h, weights, *logits = backbone.run_layer(layer, h, *args_of(layer))
        if output_hidden_states:
            hidden_states.append(h)
        if output_attentions and weights is not None:
            attentions.append(weights)
        if logits and logits[0] is not None:
            router_logits.append(logits[0])
    h = backbone.norm(h)
    if output_hidden_states:
        hidden_states[-1] = h
    fields = dict(last_hidden_state=h, past_key_values=cache if use_cache else None,
                  hidden_states=tuple(hidden_states) if output_hidden_states else None,
                  attentions=tuple(attentions) if output_attentions else None)
    return fields, router_logits


def split_heads(x: torch.Tensor, head_dim: int) -> torch.Tensor:
    """(B, T, n·hs) -> (B, n, T, hs)."""
    b, t = x.shape[:2]
    return x.view(b, t, -1, head_dim).transpose(1, 2)


def attend(q, k, v, cos, sin, mask, cache, layer_idx: int, o_proj: nn.Module, *, scale: float, eager: bool,
           dropout: float = 0.0, bias=None):
    """The tail of a decoder's self-attention: q (B, nh, T, hs), k, v (B, nkv, T, hs) -> RoPE on q and k (none
    when cos is None), the cache update after RoPE, causal attention (dropout on the weights, an additive ALiBi
    `bias`), the heads concatenated through `o_proj`. Returns (B, T, C) and the weights (B, nh, T, K) or None."""
    if cos is not None:
        q, k = apply_rotary(q, k, cos, sin)
    if cache is not None:
        k, v = cache.update(k, v, layer_idx)  # (B, nkv, K, hs)
    y, weights = attention(q, k, v, mask, is_causal=True, scale=scale, dropout=dropout, eager=eager, bias=bias)
    b, _, t, _ = y.shape
    return o_proj(y.transpose(1, 2).reshape(b, t, -1)), weights  # (B, T, C)
