"""Phi-3 (model_type "phi3": Phi-3 / Phi-3.5 mini and medium, Phi-4-mini).

Llama's pre-norm block with two fused projections: `qkv_proj` (q | k | v stacked along the output, nh·hs +
2·nkv·hs rows) and `gate_up_proj` (gate | up, 2·intermediate rows); residual dropout (`resid_pdrop`) on both
branches; a sliding window on every layer when `sliding_window` is set. Rotary embeddings are the default ones or
LongRoPE (`nn/rope.py`): short factors while every position is below original_max_position_embeddings, long
factors (for the whole batch) once one reaches it, cos/sin scaled by the attention factor; with
`partial_rotary_factor` < 1 (Phi-4-mini) only the first rd = hs·factor dims of each head rotate.

LongRoPE and the KV cache: keys cached while the sequence was short were rotated with the short factors. As the
reference's `prepare_inputs_for_generation`, generate() drops such a cache and runs the whole sequence again at
the step that crosses original_max_position_embeddings (`cache_is_stale`); a hand-written decoding loop that
crosses it keeps the stale keys, as the reference's forward does.

Checkpoint keys: `model.embed_tokens`, `model.layers.N.self_attn.{qkv_proj, o_proj}`,
`model.layers.N.mlp.{gate_up_proj, down_proj}`, `model.layers.N.{input,post_attention}_layernorm`, `model.norm`,
`lm_head`. Heads as the reference: ForCausalLM, ForSequenceClassification, ForTokenClassification.

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
from ..nn.rope import RotaryEmbedding, head_dim_of
from .configs import Phi3Config


class Phi3Attention(nn.Module):
    """Grouped-query self-attention from one fused projection: qkv_proj -> q | k | v, RoPE on the first rd dims,
    the cache update after RoPE, attention over the window, o_proj."""

    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = hs = head_dim_of(config)
        self.sliding_window = config.window_of(layer_idx)  # None: full causal attention
        c, nh, nkv = config.hidden_size, config.num_attention_heads, config.num_key_value_heads
        self.sizes = [nh * hs, nkv * hs, nkv * hs]
        self.o_proj = nn.Linear(nh * hs, c, bias=False)  # before qkv_proj, as the reference: the same init draws
        self.qkv_proj = nn.Linear(c, sum(self.sizes), bias=False)

    def forward(self, x, cos, sin, mask, cache=None):
        q, k, v = (split_heads(y, self.head_dim) for y in self.qkv_proj(x).split(self.sizes, dim=-1))
        # q (B, nh, T, hs), k and v (B, nkv, T, hs)
        return attend(q, k, v, cos, sin, mask, cache, self.layer_idx, self.o_proj, scale=self.head_dim ** -0.5,
                      eager=is_eager(self.config), dropout=self.config.attention_dropout if self.training else 0.0)


class Phi3MLP(nn.Module):
    """SwiGLU from one fused projection: down_proj(act(gate) * up), [gate | up] = gate_up_proj(x)."""

    def __init__(self, config):
        super().__init__()
        self.gate_up_proj = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.activation_fn = Activation(config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)  # (B, T, I) each
        return self.down_proj(up * self.activation_fn(gate))


class Phi3DecoderLayer(nn.Module):
    """Pre-norm block: h = h + drop(attn(norm(h))); h = h + drop(mlp(norm(h)))."""

    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.self_attn = Phi3Attention(config, layer_idx)
        self.mlp = Phi3MLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.resid_attn_dropout = nn.Dropout(config.resid_pdrop)
        self.resid_mlp_dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, h, cos, sin, mask, cache=None):
        y, weights = self.self_attn(self.input_layernorm(h), cos, sin, mask, cache)
        h = h + self.resid_attn_dropout(y)
        h = h + self.resid_mlp_dropout(self.mlp(self.post_attention_layernorm(h)))
        return h, weights  # (B, T, C)


class Phi3PreTrainedModel(PreTrainedModel):
    config_class = Phi3Config
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["Phi3DecoderLayer"]

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value


class Phi3Model(Phi3PreTrainedModel):
    """The backbone: embed_tokens -> layers -> norm; returns hidden states and the KV cache."""

    supports_compiled_decode = True  # forward reads no cache length given a 4-D mask + positions
    compiled_sliding_window = True  # a compiled step's full-cache mask is cut to the window here

    def __init__(self, config):
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.layers = nn.ModuleList([Phi3DecoderLayer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config, partial_default=True)  # (B, T, rd) tables
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
        window = self.config.window_of(0)  # the same on every layer; a given mask is cut to it
        _, position_ids, masks = positions_and_masks(inputs_embeds, attention_mask, position_ids, cache, (window,),
                                                     eager=eager, cut_given=True)
        warn_no_weights(self.config, output_attentions)
        cos, sin = self.rotary_emb(inputs_embeds, position_ids)  # (B, T, rd) each
        fields, _ = run_layers(self, inputs_embeds, lambda layer: (cos, sin, masks[window], cache), cache, use_cache,
                               output_attentions, output_hidden_states)
        out = BaseModelOutputWithPast(**fields)
        return out if return_dict else out.to_tuple()


class Phi3ForCausalLM(GenerationMixin, CausalLMHead, Phi3PreTrainedModel):
    """Next-token logits: `lm_head` over the final hidden states (tied to embed_tokens with tie_word_embeddings).
    `logits_to_keep` = n keeps the last n positions (0: all), or a tensor of positions."""

    model_class = Phi3Model

    def cache_is_stale(self, cached: int, total: int) -> bool:
        """True when the cache holds `cached` positions rotated with LongRoPE's short factors and the sequence
        has grown to `total` > original_max_position_embeddings: generate() then runs it again from scratch."""
        params = self.config.rope_parameters
        if params.get("rope_type") != "longrope":
            return False
        original = params["original_max_position_embeddings"]
        return 0 < cached <= original < total

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, logits_to_keep=0, cache=None, num_items_in_batch=None):
        out = run_backbone(self.model, input_ids, attention_mask, position_ids, past_key_values, inputs_embeds,
                           use_cache, output_attentions, output_hidden_states, cache)
        logits = self.lm_head(keep_positions(out.last_hidden_state, logits_to_keep))  # (B, T, vocab)
        return finish(self.config, causal_lm_output(logits, labels, num_items_in_batch, out), return_dict)


class Phi3ForSequenceClassification(LastTokenClassifierHead, Phi3PreTrainedModel):
    """`score` (no bias) on every position, pooled at each row's right-most token that is not pad_token_id."""

    model_class = Phi3Model


class Phi3ForTokenClassification(TokenClassifierHead, Phi3PreTrainedModel):
    """Dropout (classifier_dropout, else hidden_dropout, else 0.1) then `score` (with bias) on every position."""

    model_class = Phi3Model
