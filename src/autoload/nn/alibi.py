"""ALiBi (attention with linear biases, Press et al. 2022), as BLOOM, MPT and the Baichuan-13B models use it in
place of position embeddings: head h adds -m_h·(i - j) to the score of query i on key j.

The slopes m_h form a geometric sequence: 2^(-8/n), 2^(-16/n), ... for n heads when n is a power of two; otherwise
the slopes of the largest power of two n' < n, then the odd-numbered slopes of 2n' for the n - n' heads left
(Baichuan's `_get_interleave`, BLOOM's `build_alibi_tensor`).

Softmax ignores a constant added to a whole row of scores, so any per-query offset gives the same attention. The
bias built here is m_h·(j - p), for key index j and the query's position p: exact near the diagonal (small
numbers, which half precision keeps), right under left padding (index and position differ by a per-row constant),
and computable from the position ids alone, so a compiled step with a static cache builds it too.
"""

from __future__ import annotations

import math

import torch


def alibi_slopes(num_heads: int, device=None) -> torch.Tensor:
    """(nh,) fp32 slopes, one per head, in head order."""
    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    closest = 2 ** math.floor(math.log2(num_heads))
    slopes = power_of_two(closest)
    if closest < num_heads:  # the rest interleaved: slopes 1, 3, 5, ... of the next power of two
        slopes += power_of_two(2 * closest)[0::2][:num_heads - closest]
    return torch.tensor(slopes, dtype=torch.float32, device=device)


def alibi_bias(slopes: torch.Tensor, position_ids: torch.Tensor, kv_len: int) -> torch.Tensor:
    """(B or 1, nh, T, K) fp32 bias m_h·(j - p_t) for queries at `position_ids` (B or 1, T) over keys 0..K-1 (cache
    indices). Keys after the query (j > p_t) get a positive bias: the causal mask hides them."""
    keys = torch.arange(kv_len, device=position_ids.device, dtype=torch.float32)  # (K,)
    distance = keys[None, None, :] - position_ids[:, :, None].float()  # (B, T, K)
    return slopes.to(position_ids.device)[None, :, None, None] * distance[:, None]  # (B, nh, T, K)
