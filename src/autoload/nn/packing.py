"""Unpadded execution of a padded batch: the layers of an encoder run on the real tokens only.

A batch (B, T) with padding holds N <= B*T real tokens. Every token-wise operation (linear layers, LayerNorm,
activations, dropout) gives the same result on the packed (N, H) rows as on the padded (B, T, H) tensor, without
spending work on the padding; only attention needs the per-text structure, so it scatters q, k and v back to
(B, T) for one SDPA call with a key-padding mask and gathers the result again. The outputs at the real
positions equal the padded path's; at padded positions the unpacked output is zero (the padded path computes
values there that mean nothing).

    packing = Packing(attention_mask)          # (B, T), 1 = token
    x = packing.pack(embeddings)               # (B, T, H) -> (N, H)
    ... layers; attention: q = packing.unpack(q_rows) -> (B, T, H), mask=packing.key_mask ...
    hidden = packing.unpack(x)                 # (N, H) -> (B, T, H), zeros at padding
"""

from __future__ import annotations

import torch


class Packing:
    """Where the real tokens of a padded (B, T) batch are, to pack (B, T, ...) tensors to (N, ...) and back."""

    def __init__(self, attention_mask: torch.Tensor):
        keep = attention_mask.bool()  # (B, T)
        self.B, self.T = keep.shape
        self.index = keep.reshape(-1).nonzero().squeeze(1)  # (N,) flat positions of the real tokens
        self.key_mask = keep[:, None, None, :]  # (B, 1, 1, T) True = attend: every query sees its text's tokens

    @property
    def tokens(self) -> int:
        return self.index.numel()

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, ...) -> (N, ...): the real tokens, text after text."""
        return x.reshape(self.B * self.T, *x.shape[2:]).index_select(0, self.index)

    def unpack_states(self, states: list[torch.Tensor]) -> list[torch.Tensor]:
        """Packed (N, H) hidden states back to (B, T, H); padded ones (the embeddings' output) as they are."""
        return [self.unpack(x) if x.dim() == 2 else x for x in states]

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """(N, ...) -> (B, T, ...), zeros at padding."""
        out = x.new_zeros(self.B * self.T, *x.shape[1:])
        out.index_copy_(0, self.index, x)
        return out.view(self.B, self.T, *x.shape[1:])


def packing_for(attention_mask: torch.Tensor | None, unpad: bool, *, cached: bool = False,
                weights: bool = False) -> Packing | None:
    """A Packing when unpadded execution is asked for and applies: a padded batch of a bidirectional encoder
    without a KV cache, whose attention weights are not asked for (they need the padded layout). Else None."""
    if not unpad or attention_mask is None or cached or weights or bool(attention_mask.all()):
        return None
    return Packing(attention_mask)
