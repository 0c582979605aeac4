"""The Gemma family: model_types gemma (Gemma 1, CodeGemma), gemma2, gemma3_text (Gemma 3's language model) and
gemma3 (the multimodal wrapper, of which autoload builds the language model only).

Llama's pre-norm decoder with Gemma's parts: an RMSNorm scaled by (1 + w) in fp32, token embeddings multiplied by
sqrt(hidden_size) (a model-dtype tensor, as the reference rounds it), a GeGLU MLP with tanh GELU, head_dim 256 and
tied embeddings. What differs between the model_types is read from the config's hooks (`models/configs.py`,
`_GemmaFamilyConfig`), each stated once:

    hook               gemma            gemma2                            gemma3_text
    activation         hidden_act       hidden_activation                 hidden_activation
    sandwich_norms     False            True (pre/post attn and MLP)      True
    qk_norm            False            False                             True (q_norm, k_norm over head_dim)
    attention_scale    head_dim^-1/2    query_pre_attn_scalar^-1/2        query_pre_attn_scalar^-1/2
    attention_softcap  None             attn_logit_softcapping            None (as the reference)
    final_softcap      None             final_logit_softcapping           final_logit_softcapping
    window_of(i)       None             sliding_window on the layers `layer_types` marks "sliding_attention"
    rope_of(type)      rope_parameters  rope_parameters                   rope_parameters[type]: local / global bases

Soft-capping is softcap·tanh(x / softcap). Sliding windows come in through the mask (nn/masks.py); a
compiled decode step (`generate(compile=True)`) passes one full-cache mask, and the sliding layers cut it to their
window here (`_windowed`). gemma3: `Gemma3Model`, `Gemma3ForConditionalGeneration` (AutoModelForCausalLM) and
`Gemma3ForSequenceClassification` take a gemma3 config and build the text model of its `text_config`; they read
the multimodal checkpoints' keys (`language_model.model.*` as saved, `model.language_model.*` as the reference
names them in memory, `language_model.lm_head`), ignore the vision tower and projector, refuse `pixel_values`, and
save a plain gemma3_text checkpoint. The gemma3_text classes read those checkpoints too. gemma3_text with
`use_bidirectional_attention` (EmbeddingGemma) attends both ways (`_bidirectional_mask`).
Checkpoint keys: `model.embed_tokens`, `model.layers.N.self_attn.{q,k,v,o}_proj` (+ `{q,k}_norm`),
`model.layers.N.mlp.{gate,up,down}_proj`, `model.layers.N.{input,post_attention}_layernorm` (+
`{pre,post}_feedforward_layernorm`), `model.norm`, `lm_head` (tied by default).

Shapes: B batch, T new tokens, K keys, C hidden size, nh / nkv query / key-value heads, hs head size.
"""

from __future__ import annotations

import logging
import types

import torch
from torch import nn

from ..generation.mixin import GenerationMixin
from ..modeling import PreTrainedModel
from ..nn.activations import Activation
from ..nn.attention import attention, is_eager
from ..nn.heads import (CausalLMHead, LastTokenClassifierHead, causal_lm_output, classifier_dropout, finish,
                        forward_options, keep_positions, last_token_output, run_backbone, token_output)
from ..nn.masks import attention_mask as build_mask
from ..nn.outputs import BaseModelOutputWithPast
from ..nn.rope import RotaryEmbedding, apply_rotary
from .configs import Gemma2Config, Gemma3Config, Gemma3TextConfig, GemmaConfig

logger = logging.getLogger("autoload")
_warned: set[str] = set()


def softcap(x: torch.Tensor, cap: float | None) -> torch.Tensor:
    return x if cap is None else torch.tanh(x / cap) * cap


class GemmaRMSNorm(nn.Module):
    """x / sqrt(mean(x²) + eps) · (1 + weight), all in fp32, then cast to the input dtype (weight starts at 0)."""

    def __init__(self, size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.float()
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * (1.0 + self.weight.float())).type_as(x)


class GemmaScaledEmbedding(nn.Embedding):
    """Embeddings times sqrt(hidden_size), the factor rounded to the weights' dtype (bf16: sqrt(3072) -> 55.5)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None):
        super().__init__(num_embeddings, embedding_dim, padding_idx)
        self.register_buffer("embed_scale", torch.tensor(embedding_dim ** 0.5, dtype=torch.float32), persistent=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return super().forward(input_ids) * self.embed_scale.to(self.weight.dtype)


# -- attention, MLP, block ------------------------------------------------------------------------------------

class GemmaAttention(nn.Module):
    """Grouped-query self-attention: q/k/v projections, (gemma3) q/k norms, RoPE, the cache update, soft-capped
    (gemma2) attention over the layer's window, `o_proj`."""

    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = hs = config.head_dim
        self.scaling = config.attention_scale
        self.softcap = config.attention_softcap
        self.sliding_window = config.window_of(layer_idx)  # None: full causal attention
        self.causal = not getattr(config, "use_bidirectional_attention", None)  # EmbeddingGemma: bidirectional
        c, nh, nkv, bias = config.hidden_size, config.num_attention_heads, config.num_key_value_heads, \
            config.attention_bias
        self.q_proj = nn.Linear(c, nh * hs, bias=bias)
        self.k_proj = nn.Linear(c, nkv * hs, bias=bias)
        self.v_proj = nn.Linear(c, nkv * hs, bias=bias)
        self.o_proj = nn.Linear(nh * hs, c, bias=bias)
        self.qk_norm = config.qk_norm
        if self.qk_norm:
            self.q_norm = GemmaRMSNorm(hs, eps=config.rms_norm_eps)  # per head, over hs
            self.k_norm = GemmaRMSNorm(hs, eps=config.rms_norm_eps)

    def forward(self, x, cos, sin, mask, cache=None):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, -1, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        k = self.k_proj(x).view(b, t, -1, self.head_dim).transpose(1, 2)  # (B, nkv, T, hs)
        v = self.v_proj(x).view(b, t, -1, self.head_dim).transpose(1, 2)  # (B, nkv, T, hs)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rotary(q, k, cos, sin)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)  # (B, nkv, K, hs)
        y, weights = attention(q, k, v, mask, is_causal=self.causal, scale=self.scaling, softcap=self.softcap,
                               dropout=self.config.attention_dropout if self.training else 0.0,
                               eager=is_eager(self.config))
        return self.o_proj(y.transpose(1, 2).reshape(b, t, -1)), weights  # (B, T, C)


class GemmaMLP(nn.Module):
    """GeGLU: down_proj(gelu_tanh(gate_proj(x)) * up_proj(x))."""

    def __init__(self, config):
        super().__init__()
        c, i = config.hidden_size, config.intermediate_size
        self.gate_proj = nn.Linear(c, i, bias=False)
        self.up_proj = nn.Linear(c, i, bias=False)
        self.down_proj = nn.Linear(i, c, bias=False)
        self.act_fn = Activation(config.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class GemmaDecoderLayer(nn.Module):
    """gemma: h += attn(norm(h)); h += mlp(norm(h)). gemma2/3 (sandwich): h += norm(attn(norm(h)));
    h += norm(mlp(norm(h)))."""

    def __init__(self, config, layer_idx: int):
        super().__init__()
        c, eps = config.hidden_size, config.rms_norm_eps
        self.self_attn = GemmaAttention(config, layer_idx)
        self.mlp = GemmaMLP(config)
        self.input_layernorm = GemmaRMSNorm(c, eps)
        self.post_attention_layernorm = GemmaRMSNorm(c, eps)
        self.sandwich = config.sandwich_norms
        if self.sandwich:
            self.pre_feedforward_layernorm = GemmaRMSNorm(c, eps)
            self.post_feedforward_layernorm = GemmaRMSNorm(c, eps)

    def forward(self, h, cos, sin, mask, cache=None):
        y, weights = self.self_attn(self.input_layernorm(h), cos, sin, mask, cache)
        if not self.sandwich:
            h = h + y
            return h + self.mlp(self.post_attention_layernorm(h)), weights
        h = h + self.post_attention_layernorm(y)
        h = h + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(h)))
        return h, weights  # (B, T, C)


# -- backbone -------------------------------------------------------------------------------------------------

def _text_of(config):
    """A gemma3 (multimodal) config's text_config, with what loading set on the outer config (dtype, attention,
    labels); any other config as it is."""
    if not isinstance(config, Gemma3Config):
        return config
    text = config.text_config
    text.dtype = config.dtype or text.dtype
    if config._attn_implementation is not None:
        text._attn_implementation = config._attn_implementation
    text.id2label, text.label2id, text.problem_type = config.id2label, config.label2id, config.problem_type
    return text


class GemmaPreTrainedModel(PreTrainedModel):
    config_class = GemmaConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["GemmaDecoderLayer"]
    # gemma3's multimodal checkpoints: the language model's keys as saved (language_model.model.*, and
    # language_model.lm_head) and as the reference names them in memory (model.language_model.*); no vision tower
    _checkpoint_renames = [(r"^(model\.language_model|language_model\.model|language_model)\.", "")]
    _keys_to_ignore_on_load_unexpected = [r"^(model\.)?(vision_tower|multi_modal_projector)\."]

    def __init__(self, config, *args, **kwargs):
        super().__init__(_text_of(config), *args, **kwargs)

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, GemmaRMSNorm):
            module.weight.data.zero_()  # (1 + w): the identity at 0


def _windowed(mask: torch.Tensor, window: int, query_index: torch.Tensor) -> torch.Tensor:
    """A given (B, 1, T, K) mask restricted to a sliding window: query i (at cache index query_index[i]) keeps the
    keys j with query_index[i] - window < j. Static shapes: a compiled step passes its cache write index."""
    keys = torch.arange(mask.shape[-1], device=mask.device)
    inside = keys[None, :] > query_index.to(mask.device)[:, None] - window  # (T, K)
    if mask.dtype == torch.bool:
        return mask & inside
    return mask.masked_fill(~inside, torch.finfo(mask.dtype).min)


def _bidirectional_mask(padding, batch: int, q_len: int, past: int, *, window: int | None, additive: bool, dtype,
                        device) -> torch.Tensor | None:
    """EmbeddingGemma's (B, 1, T, K) mask: every key that is not padding, within |q - k| < window on the sliding
    layers; None when that is every key (SDPA then runs unmasked)."""
    kv_len = past + q_len
    if (padding is None or bool(padding.all())) and (window is None or window >= kv_len):
        return None
    q_idx = torch.arange(q_len, device=device)[:, None] + past  # (T, 1)
    k_idx = torch.arange(kv_len, device=device)[None, :]  # (1, K)
    allowed = torch.ones(q_len, kv_len, dtype=torch.bool, device=device) if window is None else \
        (q_idx - k_idx).abs() < window
    allowed = allowed[None, None].expand(batch, 1, q_len, kv_len)  # (B, 1, T, K)
    if padding is not None:
        allowed = allowed & padding[:, None, None, :kv_len]
    if additive:
        return torch.where(allowed, torch.zeros((), device=device, dtype=dtype), torch.finfo(dtype).min)
    return allowed


class GemmaModel(GemmaPreTrainedModel):
    """The backbone: scaled embed_tokens -> layers -> norm; returns hidden states and the KV cache."""

    supports_compiled_decode = True  # forward reads no cache length given a 4-D mask + positions
    compiled_sliding_window = True  # a compiled step's full-cache mask is cut to each sliding layer's window

    def __init__(self, config):
        super().__init__(config)
        config = self.config
        self.bidirectional = bool(getattr(config, "use_bidirectional_attention", None))
        if self.bidirectional and not isinstance(config, Gemma3TextConfig):
            raise NotImplementedError(f"{type(self).__name__}: use_bidirectional_attention=True is implemented for "
                                      "gemma3_text (EmbeddingGemma) only, as the reference's masks are.")
        self.padding_idx = config.pad_token_id
        self.embed_tokens = GemmaScaledEmbedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.layers = nn.ModuleList([GemmaDecoderLayer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = GemmaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        # one rope per layer type where the bases differ (gemma3: local 10k, global 1M + scaling), else one
        per_type = isinstance(config.rope_parameters, dict) and "full_attention" in config.rope_parameters
        self.rope_keys = [config.layer_types[i] if per_type else "default" for i in range(config.num_hidden_layers)]
        self.rotary_emb = nn.ModuleDict({key: RotaryEmbedding(types.SimpleNamespace(
            rope_parameters=config.rope_of(key), head_dim=config.head_dim, hidden_size=config.hidden_size,
            num_attention_heads=config.num_attention_heads, max_position_embeddings=config.max_position_embeddings))
            for key in sorted(set(self.rope_keys))})
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, cache=None):
        """Hidden states (B, T, C) after the final norm; `past_key_values` (alias `cache`) holds earlier tokens,
        `attention_mask` (B, P+T) marks padding with 0, `position_ids` (B, T) default to P..P+T-1. Given
        `inputs_embeds` are used as they are (not scaled), as in the reference."""
        config = self.config
        inputs_embeds, cache, use_cache, output_attentions, output_hidden_states, return_dict = forward_options(
            self, self.embed_tokens, input_ids, inputs_embeds, past_key_values, cache, use_cache, output_attentions,
            output_hidden_states, return_dict)  # inputs_embeds (B, T, C), scaled
        b, t = inputs_embeds.shape[:2]
        device = inputs_embeds.device
        given_mask = attention_mask is not None and attention_mask.dim() == 4  # a ready-made mask is used as given
        windows = {layer.self_attn.sliding_window for layer in self.layers}
        # the cached length is only needed to build masks or positions (a compiled step passes both, and its
        # cache's write index places the sliding windows)
        writing = getattr(cache, "write_positions", None)
        needs_past = not (given_mask and position_ids is not None and (writing is not None or windows == {None}))
        past = cache.get_seq_length() if cache is not None and needs_past else 0
        if position_ids is None:
            position_ids = (torch.arange(t, device=device) + past).unsqueeze(0)  # (1, T)

        eager = is_eager(config)
        if given_mask:  # the sliding layers see the given mask cut to their window
            queries = writing if writing is not None else torch.arange(past, past + t, device=device)
            masks = {w: attention_mask if w is None else _windowed(attention_mask, w, queries) for w in windows}
        else:  # one mask per window size in use (None: full causal, or all keys when bidirectional)
            padding = None if attention_mask is None else attention_mask.to(device, torch.bool)
            build = _bidirectional_mask if self.bidirectional else build_mask
            masks = {w: build(padding, b, t, past, window=w, additive=eager, dtype=inputs_embeds.dtype,
                              device=device) for w in windows}
        if output_attentions and not eager and "sdpa" not in _warned:
            _warned.add("sdpa")
            logger.warning("output_attentions=True: sdpa attention returns no weights (an empty tuple, as the "
                           "reference); load with attn_implementation='eager' to get them.")

        h = inputs_embeds
        tables = {key: rope(h, position_ids) for key, rope in self.rotary_emb.items()}  # (B, T, hs) cos, sin
        hidden_states = [h] if output_hidden_states else None
        attentions = [] if output_attentions else None
        for layer, key in zip(self.layers, self.rope_keys):
            h, weights = self.run_layer(layer, h, *tables[key], masks[layer.self_attn.sliding_window], cache)
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


# -- heads: a GemmaModel under `model` plus a task layer ------------------------------------------------------

def _backbone(head, input_ids, attention_mask, position_ids, past_key_values, inputs_embeds, use_cache,
              output_attentions, output_hidden_states, cache, pixel_values=None) -> BaseModelOutputWithPast:
    if pixel_values is not None:
        raise NotImplementedError(f"{type(head).__name__}: autoload implements Gemma 3's language model only; "
                                  "pixel_values (images) need the vision tower, which it does not build.")
    return run_backbone(head.model, input_ids, attention_mask, position_ids, past_key_values, inputs_embeds,
                        use_cache, output_attentions, output_hidden_states, cache)


class GemmaForCausalLM(GenerationMixin, CausalLMHead, GemmaPreTrainedModel):
    """Next-token logits: `lm_head` (tied to embed_tokens by default) over the final hidden states, soft-capped by
    final_logit_softcapping (gemma2/3). `logits_to_keep` = n keeps the last n positions (0: all), or a tensor."""

    model_class = GemmaModel
    caps_logits = True  # final_logit_softcapping applies (not in gemma3's multimodal class, as the reference)

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, logits_to_keep=0, cache=None, num_items_in_batch=None, pixel_values=None):
        out = _backbone(self, input_ids, attention_mask, position_ids, past_key_values, inputs_embeds, use_cache,
                        output_attentions, output_hidden_states, cache, pixel_values)
        logits = self.lm_head(keep_positions(out.last_hidden_state, logits_to_keep))  # (B, T, vocab)
        if self.caps_logits:
            logits = softcap(logits, self.config.final_softcap)
        return finish(self.config, causal_lm_output(logits, labels, num_items_in_batch, out), return_dict)


class GemmaForSequenceClassification(LastTokenClassifierHead, GemmaPreTrainedModel):
    """`score` (no bias) on every position, pooled at each row's right-most token that is not pad_token_id; the
    forward takes `pixel_values` too (refused: no vision tower)."""

    model_class = GemmaModel

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, cache=None, pixel_values=None):
        out = _backbone(self, input_ids, attention_mask, position_ids, past_key_values, inputs_embeds, use_cache,
                        output_attentions, output_hidden_states, cache, pixel_values)
        logits = self.score(out.last_hidden_state)  # (B, T, num_labels)
        return finish(self.config, last_token_output(self.config, logits, input_ids, labels, out), return_dict)


class GemmaForTokenClassification(GemmaPreTrainedModel):
    """Dropout then `score` (with bias) on every position."""

    def __init__(self, config):
        super().__init__(config)
        self.model = GemmaModel(self.config)
        self.num_labels = self.config.num_labels
        self.dropout = nn.Dropout(classifier_dropout(self.config))
        self.score = nn.Linear(self.config.hidden_size, self.config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, cache=None):
        out = _backbone(self, input_ids, attention_mask, position_ids, past_key_values, inputs_embeds, use_cache,
                        output_attentions, output_hidden_states, cache)
        logits = self.score(self.dropout(out.last_hidden_state))  # (B, T, num_labels)
        return finish(self.config, token_output(logits, labels, out), return_dict)


# -- the other model_types: the same classes under the reference's names, with their config -------------------

class Gemma2Model(GemmaModel):
    config_class = Gemma2Config


class Gemma2ForCausalLM(GemmaForCausalLM):
    config_class = Gemma2Config


class Gemma2ForSequenceClassification(GemmaForSequenceClassification):
    config_class = Gemma2Config


class Gemma2ForTokenClassification(GemmaForTokenClassification):
    config_class = Gemma2Config


class Gemma3TextModel(GemmaModel):
    config_class = Gemma3TextConfig


class Gemma3ForCausalLM(GemmaForCausalLM):
    config_class = Gemma3TextConfig


class Gemma3TextForSequenceClassification(GemmaForSequenceClassification):
    config_class = Gemma3TextConfig


# gemma3 (multimodal config): the language model of its text_config, under the reference's class names

class Gemma3Model(GemmaModel):
    """The text backbone of a gemma3 checkpoint (the reference's Gemma3Model adds the vision tower)."""

    config_class = Gemma3Config


class Gemma3ForConditionalGeneration(GemmaForCausalLM):
    """The causal LM of a gemma3 checkpoint (AutoModelForCausalLM): the text model only, which gives the
    reference's logits for text input; `self.config` is the text_config, so save_pretrained writes gemma3_text.
    As the reference's class, it leaves final_logit_softcapping unused (None in the released configs)."""

    config_class = Gemma3Config
    caps_logits = False


class Gemma3ForSequenceClassification(GemmaForSequenceClassification):
    """Sequence classification over the text model of a gemma3 checkpoint (no vision tower)."""

    config_class = Gemma3Config
