"""GLM-4 in the HF-native layout: model_types "glm" (THUDM/glm-4-9b-hf and -chat-hf) and "glm4" (GLM-4-0414,
GLM-Z1). ChatGLM's own repos (model_type "chatglm", THUDM's keys) are `models/chatglm.py`.

Pre-norm decoder with RMSNorm, grouped-query attention with q/k/v biases (`attention_bias`; none on o_proj), a
SwiGLU MLP from one fused `gate_up_proj` (gate first), and rotary embeddings on the first `partial_rotary_factor`
(0.5) of each head, as adjacent interleaved pairs (x[2i], x[2i+1]) rotated by angle i: the reference builds the
half-split (B, T, rd) table of `nn/rope.py` and repeats its first half pairwise, which is
`apply_interleaved_rotary` on that first half (same angles, same operations). Every rope scaling of
`RotaryEmbedding` applies. glm4 (the config's `post_norms` hook) adds `post_self_attn_layernorm` and
`post_mlp_layernorm`, on each branch's output before the residual add.

Checkpoint keys: `model.embed_tokens`, `model.layers.N.self_attn.{q,k,v,o}_proj`,
`model.layers.N.mlp.{gate_up_proj, down_proj}`, `model.layers.N.{input,post_attention}_layernorm` (glm4 also
`post_self_attn_layernorm`, `post_mlp_layernorm`), `model.norm`, `lm_head`. Heads as the reference: ForCausalLM,
ForSequenceClassification, ForTokenClassification; Glm4* are the same classes with Glm4Config.

Shapes: B batch, T new tokens, P cached tokens, K = P + T keys, C hidden size, nh / nkv query / key-value heads,
hs head size, rd rotated dims, I intermediate size.
"""

from __future__ import annotations

import torch
from torch import nn

from ..generation.mixin import GenerationMixin
from ..modeling import PreTrainedModel
from ..nn.activations import Activation
from ..nn.decoder import attend, is_eager, positions_and_masks, run_layers, split_heads, warn_no_weights
from ..nn.heads import (CausalLMHead, LastTokenClassifierHead, TokenClassifierHead, causal_lm_output, finish,
                        forward_options, keep_positions, run_backbone)
from ..nn.norms import RMSNorm
from ..nn.outputs import BaseModelOutputWithPast
from ..nn.rope import RotaryEmbedding, apply_interleaved_rotary, head_dim_of
from .configs import Glm4Config, GlmConfig


class GlmAttention(nn.Module):
    """Grouped-query self-attention: q/k/v projections (biased), interleaved RoPE on the first rd dims of each
    head, the cache update after RoPE, `o_proj`."""

    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = hs = head_dim_of(config)
        self.sliding_window = None  # full causal attention on every layer
        c, nh, nkv, bias = config.hidden_size, config.num_attention_heads, config.num_key_value_heads, \
            config.attention_bias
        self.q_proj = nn.Linear(c, nh * hs, bias=bias)
        self.k_proj = nn.Linear(c, nkv * hs, bias=bias)
        self.v_proj = nn.Linear(c, nkv * hs, bias=bias)
        self.o_proj = nn.Linear(nh * hs, c, bias=False)

    def forward(self, x, cos, sin, mask, cache=None):
        q = split_heads(self.q_proj(x), self.head_dim)  # (B, nh, T, hs)
        k = split_heads(self.k_proj(x), self.head_dim)  # (B, nkv, T, hs)
        v = split_heads(self.v_proj(x), self.head_dim)  # (B, nkv, T, hs)
        q, k = apply_interleaved_rotary(q, cos, sin), apply_interleaved_rotary(k, cos, sin)
        return attend(q, k, v, None, None, mask, cache, self.layer_idx, self.o_proj, scale=self.head_dim ** -0.5,
                      eager=is_eager(self.config), dropout=self.config.attention_dropout if self.training else 0.0)


class GlmMLP(nn.Module):
    """SwiGLU from one fused projection: down_proj(up * act(gate)), [gate | up] = gate_up_proj(x)."""

    def __init__(self, config):
        super().__init__()
        self.gate_up_proj = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.activation_fn = Activation(config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)  # (B, T, I) each
        return self.down_proj(up * self.activation_fn(gate))


class GlmDecoderLayer(nn.Module):
    """Pre-norm block: h = h + attn(norm(h)); h = h + mlp(norm(h)); glm4 norms each branch's output too:
    h = h + post_norm(attn(norm(h)))."""

    def __init__(self, config, layer_idx: int):
        super().__init__()
        c, eps = config.hidden_size, config.rms_norm_eps
        self.self_attn = GlmAttention(config, layer_idx)
        self.mlp = GlmMLP(config)
        self.input_layernorm = RMSNorm(c, eps=eps)
        self.post_attention_layernorm = RMSNorm(c, eps=eps)
        self.post_norms = config.post_norms
        if self.post_norms:
            self.post_self_attn_layernorm = RMSNorm(c, eps=eps)
            self.post_mlp_layernorm = RMSNorm(c, eps=eps)

    def forward(self, h, cos, sin, mask, cache=None):
        y, weights = self.self_attn(self.input_layernorm(h), cos, sin, mask, cache)
        h = h + (self.post_self_attn_layernorm(y) if self.post_norms else y)
        y = self.mlp(self.post_attention_layernorm(h))
        h = h + (self.post_mlp_layernorm(y) if self.post_norms else y)
        return h, weights  # (B, T, C)


class GlmPreTrainedModel(PreTrainedModel):
    config_class = GlmConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["GlmDecoderLayer"]

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value


class GlmModel(GlmPreTrainedModel):
    """The backbone: embed_tokens -> layers -> norm; returns hidden states and the KV cache."""

    supports_compiled_decode = True  # forward reads no cache length given a 4-D mask + positions

    def __init__(self, config):
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.layers = nn.ModuleList([GlmDecoderLayer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config, partial_default=True)  # (B, T, rd) half-split tables
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, cache=None):
        """Hidden states (B, T, C) after the final norm; `past_key_values` (alias `cache`) holds earlier tokens,
        `attention_mask` (B, P+T) marks padding with 0, `position_ids` (B, T) default to P..P+T-1."""
        inputs_embeds, cache, use_cache, output_attentions, output_hidden_states, return_dict = forward_options(
            self, self.embed_tokens, input_ids, inputs_embeds, past_key_values, cache, use_cache, output_attentions,
            output_hidden_states, return_dict)  # inputs_embeds (B, T, C)
        eager = is_eager(self.config)
        _, position_ids, masks = positions_and_masks(inputs_embeds, attention_mask, position_ids, cache, eager=eager)
        warn_no_weights(self.config, output_attentions)
        cos, sin = self.rotary_emb(inputs_embeds, position_ids)  # (B, T, rd) each, angle i in columns i and rd/2 + i
        rd = cos.shape[-1]
        cos, sin = cos[..., :rd // 2], sin[..., :rd // 2]  # (B, T, rd/2): one angle per interleaved pair
        fields, _ = run_layers(self, inputs_embeds, lambda layer: (cos, sin, masks[None], cache), cache, use_cache,
                               output_attentions, output_hidden_states)
        out = BaseModelOutputWithPast(**fields)
        return out if return_dict else out.to_tuple()


class GlmForCausalLM(GenerationMixin, CausalLMHead, GlmPreTrainedModel):
    """Next-token logits: `lm_head` over the final hidden states (tied to embed_tokens with tie_word_embeddings).
    `logits_to_keep` = n keeps the last n positions (0: all), or a tensor of positions."""

    model_class = GlmModel

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, logits_to_keep=0, cache=None, num_items_in_batch=None):
        out = run_backbone(self.model, input_ids, attention_mask, position_ids, past_key_values, inputs_embeds,
                           use_cache, output_attentions, output_hidden_states, cache)
        logits = self.lm_head(keep_positions(out.last_hidden_state, logits_to_keep))  # (B, T, vocab)
        return finish(self.config, causal_lm_output(logits, labels, num_items_in_batch, out), return_dict)


class GlmForSequenceClassification(LastTokenClassifierHead, GlmPreTrainedModel):
    """`score` (no bias) on every position, pooled at each row's right-most token that is not pad_token_id."""

    model_class = GlmModel


class GlmForTokenClassification(TokenClassifierHead, GlmPreTrainedModel):
    """Dropout (classifier_dropout, else hidden_dropout, else 0.1) then `score` (with bias) on every position."""

    model_class = GlmModel


# -- glm4: the same classes with Glm4Config (its post_norms hook adds the two branch norms) -------------------

class Glm4Model(GlmModel):
    config_class = Glm4Config


class Glm4ForCausalLM(GlmForCausalLM):
    config_class = Glm4Config


class Glm4ForSequenceClassification(GlmForSequenceClassification):
    config_class = Glm4Config


class Glm4ForTokenClassification(GlmForTokenClassification):
    config_class = Glm4Config
