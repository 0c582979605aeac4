"""KV caches for decoder models: a growing one (`DynamicCache`), a preallocated one (`StaticCache`), and the pair
an encoder-decoder's decoder keeps (`EncoderDecoderCache`).

Interface used by attention layers: `k, v = cache.update(key, value, layer_idx)` with tensors shaped
(batch, kv_heads, new_tokens, head_dim), returning everything cached so far for that layer; and
`cache.get_seq_length()` for the number of cached positions.
"""

from __future__ import annotations

import torch


class DynamicCache:
    """Keys and values concatenated along the sequence axis as tokens arrive."""

    def __init__(self, config=None):
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        if layer_idx == len(self.keys):
            self.keys.append(key)
            self.values.append(value)
        else:
            self.keys[layer_idx] = torch.cat([self.keys[layer_idx], key], dim=-2)      # (B, kvh, T, D)
            self.values[layer_idx] = torch.cat([self.values[layer_idx], value], dim=-2)
        return self.keys[layer_idx], self.values[layer_idx]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.keys[layer_idx].shape[-2] if layer_idx < len(self.keys) else 0

    def crop(self, max_length: int) -> None:
        """Drop cached positions beyond `max_length`."""
        self.keys = [k[..., :max_length, :] for k in self.keys]
        self.values = [v[..., :max_length, :] for v in self.values]

    def select_batch(self, indices: torch.Tensor) -> None:
        """Keep (and reorder) batch rows, e.g. after expanding for num_return_sequences."""
        self.keys = [k.index_select(0, indices) for k in self.keys]
        self.values = [v.index_select(0, indices) for v in self.values]

    def reorder(self, beam_idx: torch.Tensor) -> None:
        """Beam search: row i becomes the old row beam_idx[i] (beam_idx: (B,) LongTensor)."""
        self.select_batch(beam_idx)

    def __len__(self) -> int:
        return len(self.keys)


class StaticCache:
    """Preallocated (batch, kv_heads, max_cache_len, head_dim) tensors written in place; `update` returns
    views of the filled part, so attention code treats both caches alike and nothing is reallocated.

    Fixed-shape path (compiled decoding): while `write_positions` holds a (T,) LongTensor of cache indices,
    `update` copies the new keys/values to those indices and returns the whole buffers, and leaves `length`
    alone: the caller then passes a full-length (B, 1, T, max_cache_len) mask and advances `length` itself, so
    no Python int read from the cache enters a compiled graph."""

    def __init__(self, num_layers: int, batch_size: int, num_kv_heads: int, head_dim: int, max_cache_len: int,
                 dtype: torch.dtype, device: torch.device | str):
        shape = (batch_size, num_kv_heads, max_cache_len, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.max_cache_len = max_cache_len
        self.length = 0
        self.write_positions: torch.Tensor | None = None

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.write_positions is not None:
            self.keys[layer_idx].index_copy_(2, self.write_positions, key)  # (B, kvh, max_cache_len, D)
            self.values[layer_idx].index_copy_(2, self.write_positions, value)
            return self.keys[layer_idx], self.values[layer_idx]
        start = self.length
        end = start + key.shape[-2]
        if end > self.max_cache_len:
            raise ValueError(f"StaticCache holds {self.max_cache_len} positions; {end} were asked for.")
        self.keys[layer_idx][:, :, start:end] = key
        self.values[layer_idx][:, :, start:end] = value
        if layer_idx == len(self.keys) - 1:
            self.length = end
        return self.keys[layer_idx][:, :, :end], self.values[layer_idx][:, :, :end]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.length

    def reorder(self, beam_idx: torch.Tensor) -> None:
        """Beam search: row i becomes the old row beam_idx[i], in place (the buffers keep their identity)."""
        for buffers in (self.keys, self.values):
            for tensor in buffers:
                tensor.copy_(tensor.index_select(0, beam_idx.to(tensor.device)))

    def __len__(self) -> int:
        return len(self.keys)


class EncoderDecoderCache:
    """The decoder caches of a seq2seq model: `self_attention_cache` grows by one position per generated token;
    `cross_attention_cache` holds the keys and values of the encoder's output, computed at the first step and
    reused by every later one (`is_updated[layer_idx]` says whether a layer's are in). The names are the
    reference's, so transformers code that reads them works.

    In a decoder layer:
        k, v = cache.self_attention_cache.update(k, v, layer_idx)                 # self-attention
        if cache.is_updated.get(layer_idx):                                        # cross-attention
            k, v = cache.cross_attention_cache.keys[layer_idx], cache.cross_attention_cache.values[layer_idx]
        else:
            k, v = cache.cross_attention_cache.update(k_enc, v_enc, layer_idx); cache.is_updated[layer_idx] = True
    """

    def __init__(self, self_attention_cache: DynamicCache | StaticCache | None = None,
                 cross_attention_cache: DynamicCache | None = None, source_repeat: int = 1):
        self.self_attention_cache = self_attention_cache if self_attention_cache is not None else DynamicCache()
        self.cross_attention_cache = cross_attention_cache if cross_attention_cache is not None else DynamicCache()
        self.is_updated: dict[int, bool] = {i: True for i in range(len(self.cross_attention_cache))}
        # generate() sets it to n when every source row is repeated n times in a row (beams, returned sequences):
        # the cross keys are then projected from one row of each group and repeated, and beam reordering (which
        # stays inside a group) leaves them alone.
        self.source_repeat = source_repeat

    def cross(self, layer_idx: int, project, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A layer's cross-attention keys and values: `project(source)` -> (k, v) of the (B, S, H) encoder output,
        run only at the first step; cached afterwards."""
        if self.is_updated.get(layer_idx):
            return self.cross_attention_cache.keys[layer_idx], self.cross_attention_cache.values[layer_idx]
        n = self.source_repeat
        if n > 1:  # rows i*n .. i*n+n-1 are equal: project one of each and repeat the result
            k, v = (t.repeat_interleave(n, dim=0) for t in project(source[::n]))
        else:
            k, v = project(source)
        k, v = self.cross_attention_cache.update(k, v, layer_idx)
        self.is_updated[layer_idx] = True
        return k, v

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.self_attention_cache.update(key, value, layer_idx)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.self_attention_cache.get_seq_length(layer_idx)

    def reorder(self, beam_idx: torch.Tensor) -> None:
        """Beam search: the self-attention cache follows the beams. The cross keys follow too, unless they are
        known equal within each beam group (`source_repeat`), where moving rows inside a group changes nothing."""
        self.self_attention_cache.reorder(beam_idx)
        if self.source_repeat == 1:
            self.cross_attention_cache.reorder(beam_idx)

    def select_batch(self, indices: torch.Tensor) -> None:
        self.self_attention_cache.select_batch(indices)
        self.cross_attention_cache.select_batch(indices)
        self.source_repeat = 1  # the groups of equal rows may be broken now

    def crop(self, max_length: int) -> None:
        self.self_attention_cache.crop(max_length)

    def __len__(self) -> int:
        return len(self.self_attention_cache)
