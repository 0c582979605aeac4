"""Shared pieces of the decoder-only families (Llama, Mistral, Qwen2, Qwen3): RMSNorm, rotary embeddings with
their scaling types, grouped-query attention through `scaled_dot_product_attention`, the SwiGLU MLP, the
pre-norm decoder layer, the backbone, and the task heads. A family file subclasses these, names its config and
says which options its layers take (biases, q/k norms, sliding windows); module names are checkpoint keys.

Shapes: B batch, T new tokens, P cached tokens, K = P + T keys, C hidden size, nh / nkv query / key-value heads,
hs head size.
"""

from __future__ import annotations

import logging
import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..modeling import PreTrainedModel
from .activations import get_activation
from .cache import DynamicCache
from .losses import sequence_classification_loss
from .outputs import (BaseModelOutputWithPast, CausalLMOutputWithPast, QuestionAnsweringModelOutput,
                      SequenceClassifierOutputWithPast, TokenClassifierOutput)

logger = logging.getLogger("autoload")

ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "llama3")
_warned: set[str] = set()


def head_dim_of(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


class RMSNorm(nn.Module):
    """x / sqrt(mean(x²) + eps) computed in fp32, cast back to the input dtype, then scaled by `weight`."""

    def __init__(self, size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.to(torch.float32)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * x.to(dtype)  # the cast comes before the weight, as the reference does


# -- rotary position embeddings -------------------------------------------------------------------------------

def rope_frequencies(config, seq_len: torch.Tensor | None = None, device=None) -> tuple[torch.Tensor, float]:
    """(inv_freq in fp32 of shape (hs/2,), cos/sin scale) for `config.rope_parameters`. The operations follow
    the reference's order so that the fp32 frequencies are bit-identical."""
    params = config.rope_parameters
    kind = params.get("rope_type", "default")
    base = params["rope_theta"]
    dim = head_dim_of(config)
    if kind != "default":
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


class RotaryEmbedding(nn.Module):
    """cos/sin tables for the positions of a forward, in the half-split layout (frequencies repeated twice).
    `dynamic` rope recomputes its frequencies when positions grow past the longest seen, and returns to the
    original ones for sequences shorter than max_position_embeddings."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.rope_type = config.rope_parameters.get("rope_type", "default")
        if self.rope_type not in ROPE_TYPES:
            raise ValueError(f"rope_type '{self.rope_type}' is not supported (supported: {', '.join(ROPE_TYPES)}).")
        inv_freq, self.attention_scaling = rope_frequencies(config)
        self.register_buffer("inv_freq", inv_freq, persistent=False)  # (hs/2,) fp32
        self.register_buffer("original_inv_freq", inv_freq.clone(), persistent=False)
        self.max_seq_len_cached = self.original_max_seq_len = config.max_position_embeddings

    def _dynamic_update(self, position_ids: torch.Tensor) -> None:
        seq_len = torch.max(position_ids) + 1
        cached = self.max_seq_len_cached
        if seq_len > cached:  # growth
            self.inv_freq, self.attention_scaling = rope_frequencies(self.config, seq_len, position_ids.device)
            self.max_seq_len_cached = seq_len
        if seq_len < self.original_max_seq_len and cached > self.original_max_seq_len:  # reset
            self.inv_freq = self.original_inv_freq.to(position_ids.device)
            self.max_seq_len_cached = self.original_max_seq_len

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.rope_type == "dynamic":
            self._dynamic_update(position_ids)
        freqs = position_ids[..., None].float() * self.inv_freq.to(device=x.device, dtype=torch.float)  # (B, T, hs/2)
        angles = torch.cat((freqs, freqs), dim=-1)  # (B, T, hs)
        cos, sin = angles.cos() * self.attention_scaling, angles.sin() * self.attention_scaling
        return cos.to(x.dtype), sin.to(x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """[x1, x2] -> [-x2, x1] on the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(q, k, cos, sin):
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (B, 1, T, hs): one table for all heads
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


# -- masks --------------------------------------------------------------------------------------------------

def causal_mask(padding: torch.Tensor | None, segments: torch.Tensor | None, batch: int, q_len: int, past: int,
                window: int | None, eager: bool, dtype: torch.dtype, device) -> torch.Tensor | None:
    """(B, 1, T, K) mask: query i (at cache index past+i) sees key j when j <= past+i, past+i - j < window, the
    key is not padding, and both are in the same packed segment. For sdpa a boolean mask, or None where sdpa's own
    `is_causal` gives the same result (no padding, T == K or T == 1, the window not reached), as the reference;
    for eager an additive mask of 0 / finfo.min."""
    kv_len = past + q_len
    if padding is not None:
        padding = padding[:, :kv_len]
        if padding.shape[-1] < kv_len:
            padding = F.pad(padding, (0, kv_len - padding.shape[-1]))  # missing columns count as padding
    if not eager and segments is None and _sdpa_can_skip(padding, q_len, kv_len, past, window):
        return None
    q_idx = torch.arange(q_len, device=device)[:, None] + past  # (T, 1)
    k_idx = torch.arange(kv_len, device=device)[None, :]  # (1, K)
    allowed = k_idx <= q_idx  # (T, K)
    if window is not None:
        allowed = allowed & (k_idx > q_idx - window)
    allowed = allowed[None, None].expand(batch, 1, q_len, kv_len)  # (B, 1, T, K)
    if padding is not None:
        allowed = allowed & padding[:, None, None, :]
    if segments is not None:
        allowed = allowed & (segments[:, None, :, None] == segments[:, None, None, :])
    if eager:
        return torch.where(allowed, torch.zeros((), device=device, dtype=dtype), torch.finfo(dtype).min)
    return allowed


def _sdpa_can_skip(padding, q_len: int, kv_len: int, past: int, window: int | None) -> bool:
    if window is not None and kv_len >= window:
        return False
    if (q_len == 1 or kv_len == q_len) and (padding is None or bool(padding.all())):
        return True
    # prefill with only trailing padding beyond the queries: is_causal's upper-left alignment is still right
    return past == 0 and (padding is None or bool(padding[:, :q_len].all() and (~padding[:, q_len:]).all()))


def packed_segments(position_ids: torch.Tensor) -> torch.Tensor | None:
    """(B, T) segment ids where positions restart (several sequences packed in one row), or None if none do."""
    first = position_ids[:, :1] - 1
    segments = (torch.diff(position_ids, prepend=first, dim=-1) != 1).cumsum(-1)
    return None if bool((segments[:, -1] == 0).all()) else segments


# -- attention, MLP, decoder layer ----------------------------------------------------------------------------

def repeat_kv(x: torch.Tensor, n: int) -> torch.Tensor:
    """(B, nkv, K, hs) -> (B, nkv*n, K, hs), each key/value head repeated for its group of query heads."""
    if n == 1:
        return x
    b, h, k, d = x.shape
    return x[:, :, None].expand(b, h, n, k, d).reshape(b, h * n, k, d)


class Attention(nn.Module):
    """Grouped-query self-attention: q/k/v projections, optional per-head RMSNorm of q and k (Qwen3) before RoPE,
    the cache update after RoPE, softmax(q·kᵀ/sqrt(hs) + mask)·v, and the output projection."""

    def __init__(self, config, layer_idx: int, qkv_bias: bool = False, o_bias: bool = False, qk_norm: bool = False,
                 sliding_window: int | None = None):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = head_dim_of(config)
        self.num_heads, self.num_kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.num_key_value_groups = self.num_heads // self.num_kv_heads
        self.scaling = self.head_dim ** -0.5
        self.sliding_window = sliding_window
        c, hs = config.hidden_size, self.head_dim
        self.q_proj = nn.Linear(c, self.num_heads * hs, bias=qkv_bias)
        self.k_proj = nn.Linear(c, self.num_kv_heads * hs, bias=qkv_bias)
        self.v_proj = nn.Linear(c, self.num_kv_heads * hs, bias=qkv_bias)
        self.o_proj = nn.Linear(self.num_heads * hs, c, bias=o_bias)
        if qk_norm:
            self.q_norm = RMSNorm(hs, eps=config.rms_norm_eps)
            self.k_norm = RMSNorm(hs, eps=config.rms_norm_eps)

    def forward(self, x, cos, sin, mask, cache=None):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, -1, self.head_dim)  # (B, T, nh, hs)
        k = self.k_proj(x).view(b, t, -1, self.head_dim)  # (B, T, nkv, hs)
        v = self.v_proj(x).view(b, t, -1, self.head_dim).transpose(1, 2)  # (B, nkv, T, hs)
        if hasattr(self, "q_norm"):
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rotary(q.transpose(1, 2), k.transpose(1, 2), cos, sin)  # (B, nh, T, hs), (B, nkv, T, hs)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)  # (B, nkv, K, hs)
        dropout = self.config.attention_dropout if self.training else 0.0
        if getattr(self.config, "_attn_implementation", None) == "eager":
            y, weights = self._eager(q, k, v, mask, dropout)
        else:
            y, weights = self._sdpa(q, k, v, mask, dropout), None
        y = y.transpose(1, 2).reshape(b, t, -1)  # (B, T, nh*hs)
        return self.o_proj(y), weights

    def _eager(self, q, k, v, mask, dropout):
        k, v = repeat_kv(k, self.num_key_value_groups), repeat_kv(v, self.num_key_value_groups)  # (B, nh, K, hs)
        scores = torch.matmul(q, k.transpose(2, 3)) * self.scaling  # (B, nh, T, K)
        if mask is not None:
            scores = scores + mask
        weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)  # softmax in fp32, as the reference
        weights = F.dropout(weights, p=dropout, training=self.training)
        return torch.matmul(weights, v), weights  # (B, nh, T, hs)

    def _sdpa(self, q, k, v, mask, dropout):
        b, _, t, hs = q.shape
        groups, extra = self.num_key_value_groups, {}
        if groups > 1:
            if mask is None and hs <= 256:
                extra["enable_gqa"] = True
            elif t == 1:  # one query: a group's query heads become rows of one key/value head
                q = q.reshape(b, self.num_kv_heads, groups, hs)  # (B, nkv, groups, hs)
                if mask.shape[1] != 1:
                    mask = mask.reshape(b, self.num_kv_heads, groups, -1)
            else:
                k, v = repeat_kv(k, groups), repeat_kv(v, groups)  # (B, nh, K, hs)
        is_causal = t > 1 and mask is None
        if is_causal and k.shape[2] > t:  # is_causal aligns upper-left: keep the first T keys
            k, v = k[:, :, :t], v[:, :, :t]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=self.scaling,
                                           is_causal=is_causal, **extra)
        return y.reshape(b, -1, t, hs)  # (B, nh, T, hs)


class MLP(nn.Module):
    """SwiGLU: down_proj(act(gate_proj(x)) * up_proj(x))."""

    def __init__(self, config, bias: bool = False):
        super().__init__()
        c, i = config.hidden_size, config.intermediate_size
        self.gate_proj = nn.Linear(c, i, bias=bias)
        self.up_proj = nn.Linear(c, i, bias=bias)
        self.down_proj = nn.Linear(i, c, bias=bias)
        self.act_fn = get_activation(config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    """Pre-norm block: h = h + attn(norm(h)); h = h + mlp(norm(h))."""

    def __init__(self, config, layer_idx: int, mlp_bias: bool = False, **attention_options):
        super().__init__()
        self.self_attn = Attention(config, layer_idx, **attention_options)
        self.mlp = MLP(config, bias=mlp_bias)
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, h, cos, sin, mask, cache=None):
        y, weights = self.self_attn(self.input_layernorm(h), cos, sin, mask, cache)
        h = h + y
        h = h + self.mlp(self.post_attention_layernorm(h))
        return h, weights  # (B, T, C)


# -- backbone -----------------------------------------------------------------------------------------------

def forward_options(config, input_ids, inputs_embeds, past_key_values, cache, use_cache, output_attentions,
                    output_hidden_states, return_dict):
    """The checks and config defaults every decoder backbone's forward starts with: returns (cache, use_cache,
    output_attentions, output_hidden_states, return_dict); the cache comes as `past_key_values` or `cache`."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
    if past_key_values is not None and cache is not None:
        raise ValueError("Pass the cache once, as past_key_values or as cache.")
    cache = past_key_values if past_key_values is not None else cache
    return (cache, config.use_cache if use_cache is None else use_cache,
            config.output_attentions if output_attentions is None else output_attentions,
            config.output_hidden_states if output_hidden_states is None else output_hidden_states,
            config.return_dict if return_dict is None else return_dict)


class DecoderModel(PreTrainedModel):
    """embed_tokens -> layers -> norm. Families override `layer_options` (keyword arguments of each
    DecoderLayer: qkv_bias, o_bias, mlp_bias, qk_norm, sliding_window)."""

    base_model_prefix = "model"
    supports_compiled_decode: ClassVar[bool] = True  # forward reads no cache length given a 4-D mask + positions

    def __init__(self, config):
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.layers = nn.ModuleList([DecoderLayer(config, i, **self.layer_options(config, i))
                                     for i in range(config.num_hidden_layers)])
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config)
        self.post_init()

    @staticmethod
    def layer_options(config, layer_idx: int) -> dict:
        return {}

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, cache=None):
        """Hidden states (B, T, C) after the final norm; `past_key_values` (alias `cache`) holds earlier tokens,
        `attention_mask` (B, P+T) marks padding with 0, `position_ids` (B, T) default to P..P+T-1."""
        config = self.config
        cache, use_cache, output_attentions, output_hidden_states, return_dict = forward_options(
            config, input_ids, inputs_embeds, past_key_values, cache, use_cache, output_attentions,
            output_hidden_states, return_dict)
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)  # (B, T, C)
        if use_cache and cache is None:
            cache = DynamicCache()
        b, t = inputs_embeds.shape[:2]
        given_mask = attention_mask is not None and attention_mask.dim() == 4  # a ready-made mask is used as given
        # the cached length is only needed to build the mask or the positions (a compiled step passes both)
        past = cache.get_seq_length() if cache is not None and not (given_mask and position_ids is not None) else 0
        segments = None
        if position_ids is None:
            position_ids = (torch.arange(t, device=inputs_embeds.device) + past).unsqueeze(0)  # (1, T)
        elif attention_mask is None and cache is None:  # training on packed rows: positions restart per sequence
            segments = packed_segments(position_ids.expand(b, -1))

        eager = getattr(config, "_attn_implementation", None) == "eager"
        if given_mask:
            masks = {layer.self_attn.sliding_window: attention_mask for layer in self.layers}
        else:
            padding = None if attention_mask is None else attention_mask.to(inputs_embeds.device, torch.bool)
            masks = {w: causal_mask(padding, segments, b, t, past, w, eager, inputs_embeds.dtype, inputs_embeds.device)
                     for w in {layer.self_attn.sliding_window for layer in self.layers}}
        if output_attentions and not eager and "sdpa" not in _warned:
            _warned.add("sdpa")
            logger.warning("output_attentions=True: sdpa attention returns no weights (an empty tuple, as the "
                           "reference); load with attn_implementation='eager' to get them.")

        h = inputs_embeds
        cos, sin = self.rotary_emb(h, position_ids)  # (B, T, hs) each
        hidden_states = [h] if output_hidden_states else None
        attentions = [] if output_attentions else None
        for layer in self.layers:
            h, weights = layer(h, cos, sin, masks[layer.self_attn.sliding_window], cache)
            if output_hidden_states:
                hidden_states.append(h)
            if output_attentions and weights is not None:
                attentions.append(weights)
        h = self.norm(h)
        if output_hidden_states:
            hidden_states[-1] = h  # the last entry is the normed output, as the reference returns
        out = BaseModelOutputWithPast(last_hidden_state=h, past_key_values=cache if use_cache else None,
                                      hidden_states=tuple(hidden_states) if output_hidden_states else None,
                                      attentions=tuple(attentions) if output_attentions else None)
        return out if return_dict else out.to_tuple()


# -- heads ------------------------------------------------------------------------------------------------

class _Head(PreTrainedModel):
    """A family's backbone under `base_model_prefix`, plus a task layer."""

    base_model_prefix = "model"
    base_model_class: ClassVar[type[DecoderModel]] = DecoderModel

    def __init__(self, config):
        super().__init__(config)
        setattr(self, self.base_model_prefix, self.base_model_class(config))

    @property
    def backbone(self) -> DecoderModel:
        return getattr(self, self.base_model_prefix)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.backbone.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.backbone.embed_tokens = value

    def _run_backbone(self, input_ids, attention_mask, position_ids, past_key_values, inputs_embeds, use_cache,
                      output_attentions, output_hidden_states, cache) -> BaseModelOutputWithPast:
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                             past_key_values=past_key_values, inputs_embeds=inputs_embeds, use_cache=use_cache,
                             output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                             return_dict=True, cache=cache)

    def _finish(self, out, return_dict):
        return_dict = self.config.return_dict if return_dict is None else return_dict
        return out if return_dict else out.to_tuple()


def _cross_entropy(logits, labels, ignore_index=-100, num_items_in_batch=None):
    """Mean over non-ignored targets, or the sum divided by `num_items_in_batch` (gradient accumulation)."""
    if num_items_in_batch is None:
        return F.cross_entropy(logits, labels, ignore_index=ignore_index)
    return F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="sum") / num_items_in_batch


class DecoderForCausalLM(_Head):
    """Next-token logits: lm_head over the final hidden states (tied to embed_tokens with tie_word_embeddings).
    `logits_to_keep` = n keeps the last n positions (0: all), or a tensor of positions."""

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config):
        super().__init__(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, logits_to_keep=0, cache=None, num_items_in_batch=None):
        out = self._run_backbone(input_ids, attention_mask, position_ids, past_key_values, inputs_embeds, use_cache,
                                 output_attentions, output_hidden_states, cache)
        h = out.last_hidden_state  # (B, T, C)
        if isinstance(logits_to_keep, int):
            h = h[:, -logits_to_keep:, :]  # -0 == 0 keeps every position
        elif logits_to_keep.ndim == 2:
            h = h[logits_to_keep] if logits_to_keep.dtype == torch.bool else \
                torch.take_along_dim(h, logits_to_keep[..., None], dim=1)
        else:
            h = h[:, logits_to_keep, :]
        logits = self.lm_head(h)  # (B, T, vocab)
        loss = None
        if labels is not None:  # token t predicts label t+1; the loss in fp32
            shifted = F.pad(labels, (0, 1), value=-100)[..., 1:].reshape(-1).to(logits.device)
            loss = _cross_entropy(logits.float().view(-1, self.config.vocab_size), shifted,
                                  num_items_in_batch=num_items_in_batch)
        return self._finish(CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=out.past_key_values,
                                                   hidden_states=out.hidden_states, attentions=out.attentions),
                            return_dict)


class DecoderForSequenceClassification(_Head):
    """`score` (no bias) on every position, pooled at each row's right-most token that is not pad_token_id."""

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=False)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, cache=None):
        out = self._run_backbone(input_ids, attention_mask, position_ids, past_key_values, inputs_embeds, use_cache,
                                 output_attentions, output_hidden_states, cache)
        logits = self.score(out.last_hidden_state)  # (B, T, num_labels)
        b = (input_ids if input_ids is not None else inputs_embeds).shape[0]
        pad = self.config.pad_token_id
        if pad is None and b != 1:
            raise ValueError("Cannot handle batch sizes > 1 if no padding token is defined.")
        if pad is None:
            last = -1
        elif input_ids is not None:  # argmax of index * is_token: the last non-pad index (0 if all are pad)
            not_pad = (input_ids != pad).to(logits.device, torch.int32)
            last = (torch.arange(input_ids.shape[-1], device=logits.device, dtype=torch.int32) * not_pad).argmax(-1)
        else:
            last = -1
            if "embeds" not in _warned:
                _warned.add("embeds")
                logger.warning("%s will not detect padding tokens in `inputs_embeds`; the last position is used.",
                               type(self).__name__)
        pooled = logits[torch.arange(b, device=logits.device), last]  # (B, num_labels)
        loss = None if labels is None else sequence_classification_loss(self.config, pooled, labels.to(pooled.device))
        return self._finish(SequenceClassifierOutputWithPast(
            loss=loss, logits=pooled, past_key_values=out.past_key_values, hidden_states=out.hidden_states,
            attentions=out.attentions), return_dict)


class DecoderForTokenClassification(_Head):
    """Dropout then `score` (with bias) on every position."""

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        p = getattr(config, "classifier_dropout", None)
        p = getattr(config, "hidden_dropout", None) if p is None else p
        self.dropout = nn.Dropout(0.1 if p is None else p)
        self.score = nn.Linear(config.hidden_size, config.num_labels,
                               bias=getattr(config, "token_classification_bias", True))
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, cache=None):
        out = self._run_backbone(input_ids, attention_mask, position_ids, past_key_values, inputs_embeds, use_cache,
                                 output_attentions, output_hidden_states, cache)
        logits = self.score(self.dropout(out.last_hidden_state))  # (B, T, num_labels)
        loss = None
        if labels is not None:
            loss = _cross_entropy(logits.view(-1, self.num_labels).float(), labels.view(-1).to(logits.device))
        return self._finish(TokenClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                                  attentions=out.attentions), return_dict)


class DecoderForQuestionAnswering(_Head):
    """`qa_outputs` (hidden -> 2) split into start and end logits. Llama/Qwen2/Qwen3 keep the backbone under
    `transformer` (the reference's backward-compatible prefix), Mistral under `model`."""

    def __init__(self, config):
        super().__init__(config)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, start_positions=None, end_positions=None, use_cache=None,
                output_attentions=None, output_hidden_states=None, return_dict=None, cache=None):
        out = self._run_backbone(input_ids, attention_mask, position_ids, past_key_values, inputs_embeds, use_cache,
                                 output_attentions, output_hidden_states, cache)
        start, end = self.qa_outputs(out.last_hidden_state).split(1, dim=-1)  # (B, T, 1) each
        start, end = start.squeeze(-1).contiguous(), end.squeeze(-1).contiguous()  # (B, T)
        loss = None
        if start_positions is not None and end_positions is not None:
            # positions outside the sequence are clamped to T and ignored
            ignored = start.size(1)
            start_positions = (start_positions.squeeze(-1) if start_positions.dim() > 1 else start_positions)
            end_positions = (end_positions.squeeze(-1) if end_positions.dim() > 1 else end_positions)
            start_positions = start_positions.to(start.device).clamp(0, ignored)
            end_positions = end_positions.to(end.device).clamp(0, ignored)
            loss = (_cross_entropy(start, start_positions, ignored) + _cross_entropy(end, end_positions, ignored)) / 2
        return self._finish(QuestionAnsweringModelOutput(loss=loss, start_logits=start, end_logits=end,
                                                         hidden_states=out.hidden_states,
                                                         attentions=out.attentions), return_dict)
