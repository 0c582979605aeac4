"""The one mask builder of the attention layers.

`attention_mask(...)` gives the (B, 1, T, K) mask of T new queries (at cache indices past..past+T-1) over
K = past + T keys: causal (or bidirectional for encoders), padding keys hidden, an optional sliding window and
packed-sequence segments. For SDPA a boolean mask (True = attend), or None where SDPA's own `is_causal` (or no
mask at all) gives the same result; for eager attention an additive mask of 0 / finfo.min.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def attention_mask(padding: torch.Tensor | None, batch: int, q_len: int, past: int = 0, *, causal: bool = True,
                   window: int | None = None, segments: torch.Tensor | None = None, additive: bool = False,
                   dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor | None:
    """(B, 1, T, K) mask: query i (at cache index past+i) sees key j when (causal) j <= past+i, (window)
    past+i - j < window, the key is not padding (`padding` (B, >=K) bool, True = token), and both are in the same
    packed segment (`segments` (B, T)). None when SDPA needs no mask (`additive` False): no padding, and T == K
    or T == 1 or only trailing padding past the queries, the window not reached."""
    kv_len = past + q_len
    if padding is not None:
        padding = padding[:, :kv_len]
        if padding.shape[-1] < kv_len:
            padding = F.pad(padding, (0, kv_len - padding.shape[-1]))  # missing columns count as padding
    if not additive and segments is None and _sdpa_can_skip(padding, q_len, kv_len, past, window, causal):
        return None
    q_idx = torch.arange(q_len, device=device)[:, None] + past  # (T, 1)
    k_idx = torch.arange(kv_len, device=device)[None, :]  # (1, K)
    allowed = k_idx <= q_idx if causal else torch.ones(q_len, kv_len, dtype=torch.bool, device=device)  # (T, K)
    if window is not None:
        allowed = allowed & (k_idx > q_idx - window)
    allowed = allowed[None, None].expand(batch, 1, q_len, kv_len)  # (B, 1, T, K)
    if padding is not None:
        allowed = allowed & padding[:, None, None, :]
    if segments is not None:
        allowed = allowed & (segments[:, None, :, None] == segments[:, None, None, :])
    if additive:
        return torch.where(allowed, torch.zeros((), device=device, dtype=dtype), torch.finfo(dtype).min)
    return allowed


def _sdpa_can_skip(padding, q_len: int, kv_len: int, past: int, window: int | None, causal: bool) -> bool:
    if window is not None and kv_len >= window:
        return False
    no_padding = padding is None or bool(padding.all())
    if not causal:
        return no_padding
    if (q_len == 1 or kv_len == q_len) and no_padding:
        return True
    # prefill with only trailing padding beyond the queries: is_causal's upper-left alignment is still right
    return past == 0 and (padding is None or bool(padding[:, :q_len].all() and (~padding[:, q_len:]).all()))


def packed_segments(position_ids: torch.Tensor) -> torch.Tensor | None:
    """(B, T) segment ids where positions restart (several sequences packed in one row), or None if none do."""
    first = position_ids[:, :1] - 1
    segments = (torch.diff(position_ids, prepend=first, dim=-1) != 1).cumsum(-1)
    return None if bool((segments[:, -1] == 0).all()) else segments



def within_window(mask: torch.Tensor, window: int, query_index: torch.Tensor) -> torch.Tensor:
    """A ready-made (B, 1, T, K) mask (bool or additive) cut to a sliding window: query i, at cache index
    query_index[i] ((T,) tensor), keeps the keys j with query_index[i] - window < j. Static shapes: a compiled
    decode step passes its cache write index."""
    keys = torch.arange(mask.shape[-1], device=mask.device)
    inside = keys[None, :] > query_index.to(mask.device)[:, None] - window  # (T, K)
    if mask.dtype == torch.bool:
        return mask & inside
    return mask.masked_fill(~inside, torch.finfo(mask.dtype).min)
