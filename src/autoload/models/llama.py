"""The Llama family: model_types llama (Llama 1/2/3 and the many checkpoints that reuse it), mistral, qwen2
(Qwen1.5/2/2.5) and qwen3, and the mixture-of-experts members mixtral, qwen2_moe and qwen3_moe.

Pre-norm decoder with RMSNorm, rotary embeddings (default, linear, dynamic, yarn, llama3 scaling),
grouped-query attention and a SwiGLU MLP, built from `autoload.nn`. What differs between the four model_types is
read from the config's hooks (`models/configs.py`, `_LlamaFamilyConfig`), each stated once:

    hook              llama             mistral           qwen2                   qwen3
    qkv_bias          attention_bias    False             True                    attention_bias
    o_bias            attention_bias    False             False                   attention_bias
    mlp_proj_bias     mlp_bias          False             False                   False
    qk_norm           False             False             False                   True (q_norm, k_norm)
    window_of(i)      None              sliding_window    sliding_window on the layers `layer_types` marks
                                                          "sliding_attention" (from max_window_layers on)

The MoE members have the attention of mistral (mixtral), qwen2 (qwen2_moe: `qkv_bias` is a key) and qwen3
(qwen3_moe) and replace the MLP of each layer where `is_sparse(i)` (mixtral: all; qwen: every
`decoder_sparse_step`-th, not in `mlp_only_layers`) by `nn/moe.py`'s SparseMoeBlock: router `mlp.gate`, stacked
experts `mlp.experts.gate_up_proj` / `down_proj`, and for qwen2_moe `mlp.shared_expert` + `shared_expert_gate`.
Their outputs are the Moe* ones: `router_logits` with `output_router_logits`, and the causal LM's loss adds
`router_aux_loss_coef` x the load-balancing loss (`aux_loss`). Checkpoints with one module per expert (the hub's,
transformers' save_pretrained) are stacked on load and written back in that layout (`from_checkpoint_layout`,
`to_checkpoint_layout`).

`head_dim` may differ from hidden/heads (Llama, Mistral and Qwen3 configs carry it). The other model_types have
the same classes under their own names (thin subclasses at the end that set `config_class`); the
question-answering heads of Mistral, Mixtral and Qwen2-MoE keep their backbone under `model`, the others under
`transformer`, as the reference.
Checkpoint keys: `model.embed_tokens`, `model.layers.N.self_attn.{q,k,v,o}_proj` (+ `{q,k}_norm`),
`model.layers.N.mlp.{gate,up,down}_proj`, `model.layers.N.{input,post_attention}_layernorm`, `model.norm`,
`lm_head`.

Shapes: B batch, T new tokens, P cached tokens, K = P + T keys, C hidden size, nh / nkv query / key-value heads,
hs head size.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from ..generation.mixin import GenerationMixin
from ..modeling import PreTrainedModel
from ..nn.activations import Activation
from ..nn.decoder import attend, is_eager, positions_and_masks, run_layers, split_heads, warn_no_weights
from ..nn.heads import (CausalLMHead, LastTokenClassifierHead, TokenClassifierHead, causal_lm_output, finish,
                        forward_options, keep_positions, last_token_output, run_backbone, span_output)
from ..nn.moe import Experts, SparseMoeBlock, TopKRouter, load_balancing_loss, stack_experts, unstack_experts
from ..nn.norms import RMSNorm
from ..nn.outputs import BaseModelOutputWithPast, MoeCausalLMOutputWithPast, MoeModelOutputWithPast
from ..nn.rope import RotaryEmbedding, head_dim_of
from .configs import (LlamaConfig, MistralConfig, MixtralConfig, Qwen2Config, Qwen2MoeConfig, Qwen3Config,
                      Qwen3MoeConfig)

logger = logging.getLogger("autoload")
_warned: set[str] = set()
MOE_CONFIGS = (MixtralConfig, Qwen2MoeConfig, Qwen3MoeConfig)


# -- attention, MLP, block ------------------------------------------------------------------------------------

class LlamaAttention(nn.Module):
    """Grouped-query self-attention: q/k/v projections, (Qwen3) q/k norms, RoPE, the cache update after RoPE,
    attention over the layer's window, `o_proj`."""

    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = hs = head_dim_of(config)
        self.scaling = hs ** -0.5
        self.sliding_window = config.window_of(layer_idx)  # None: full causal attention
        c, nh, nkv = config.hidden_size, config.num_attention_heads, config.num_key_value_heads
        self.q_proj = nn.Linear(c, nh * hs, bias=config.qkv_bias)
        self.k_proj = nn.Linear(c, nkv * hs, bias=config.qkv_bias)
        self.v_proj = nn.Linear(c, nkv * hs, bias=config.qkv_bias)
        self.o_proj = nn.Linear(nh * hs, c, bias=config.o_bias)
        self.qk_norm = config.qk_norm
        if self.qk_norm:
            self.q_norm = RMSNorm(hs, eps=config.rms_norm_eps)  # per head, over hs
            self.k_norm = RMSNorm(hs, eps=config.rms_norm_eps)

    def forward(self, x, cos, sin, mask, cache=None):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, -1, self.head_dim)  # (B, T, nh, hs)
        k = self.k_proj(x).view(b, t, -1, self.head_dim)  # (B, T, nkv, hs)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)  # (B, nh, T, hs), (B, nkv, T, hs)
        v = split_heads(self.v_proj(x), self.head_dim)  # (B, nkv, T, hs)
        return attend(q, k, v, cos, sin, mask, cache, self.layer_idx, self.o_proj, scale=self.scaling,
                      eager=is_eager(self.config), dropout=self.config.attention_dropout if self.training else 0.0)


class LlamaMLP(nn.Module):
    """SwiGLU: down_proj(act(gate_proj(x)) * up_proj(x)), of `intermediate_size` unless told otherwise."""

    def __init__(self, config, intermediate_size: int | None = None):
        super().__init__()
        c, bias = config.hidden_size, config.mlp_proj_bias
        i = config.intermediate_size if intermediate_size is None else intermediate_size
        self.gate_proj = nn.Linear(c, i, bias=bias)
        self.up_proj = nn.Linear(c, i, bias=bias)
        self.down_proj = nn.Linear(i, c, bias=bias)
        self.act_fn = Activation(config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    """Pre-norm block: h = h + attn(norm(h)); h = h + mlp(norm(h)), the MLP a sparse MoE block where
    `config.is_sparse(layer_idx)`. Returns h, the attention weights and the router logits (None: dense)."""

    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.self_attn = LlamaAttention(config, layer_idx)
        self.sparse = config.is_sparse(layer_idx)
        if self.sparse:
            shared = LlamaMLP(config, config.shared_expert_size) if config.shared_expert_size else None
            self.mlp = SparseMoeBlock(config, shared)
        else:
            self.mlp = LlamaMLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, h, cos, sin, mask, cache=None):
        y, weights = self.self_attn(self.input_layernorm(h), cos, sin, mask, cache)
        h = h + y
        if self.sparse:
            y, router_logits = self.mlp(self.post_attention_layernorm(h))  # (B, T, C), (B*T, E)
        else:
            y, router_logits = self.mlp(self.post_attention_layernorm(h)), None
        return h + y, weights, router_logits  # (B, T, C)


# -- backbone -------------------------------------------------------------------------------------------------

class LlamaPreTrainedModel(PreTrainedModel):
    config_class = LlamaConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["LlamaDecoderLayer"]

    def get_input_embeddings(self) -> nn.Embedding:
        return getattr(self, self.base_model_prefix).embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        getattr(self, self.base_model_prefix).embed_tokens = value

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, (Experts, TopKRouter)):  # the stacked experts and the router: normal(0, std)
            for param in module.parameters(recurse=False):
                param.data.normal_(0.0, self.config.initializer_range)

    def from_checkpoint_layout(self, items):
        """The loader's hook: per-expert checkpoint tensors stacked into the experts' 3-D tensors (MoE)."""
        return stack_experts(items, self.config) if isinstance(self.config, MOE_CONFIGS) else items

    def to_checkpoint_layout(self, state: dict) -> dict:
        """save_pretrained's hook: the experts written one tensor per expert, as transformers writes them."""
        return unstack_experts(state, self.config) if isinstance(self.config, MOE_CONFIGS) else state


class LlamaModel(LlamaPreTrainedModel):
    """The backbone: embed_tokens -> layers -> norm; returns hidden states and the KV cache."""

    supports_compiled_decode = True  # forward reads no cache length given a 4-D mask + positions

    def __init__(self, config):
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.layers = nn.ModuleList([LlamaDecoderLayer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, cache=None, output_router_logits=None):
        """Hidden states (B, T, C) after the final norm; `past_key_values` (alias `cache`) holds earlier tokens,
        `attention_mask` (B, P+T) marks padding with 0, `position_ids` (B, T) default to P..P+T-1. MoE members
        return a MoeModelOutputWithPast, with each sparse layer's (B*T, E) `router_logits` when asked."""
        config = self.config
        inputs_embeds, cache, use_cache, output_attentions, output_hidden_states, return_dict = forward_options(
            self, self.embed_tokens, input_ids, inputs_embeds, past_key_values, cache, use_cache, output_attentions,
            output_hidden_states, return_dict)  # inputs_embeds (B, T, C)
        eager = is_eager(config)
        windows = {layer.self_attn.sliding_window for layer in self.layers}  # one mask per window (None: full)
        _, position_ids, masks = positions_and_masks(inputs_embeds, attention_mask, position_ids, cache, windows,
                                                     eager=eager, packed=True)
        warn_no_weights(self.config, output_attentions)

        moe = isinstance(config, MOE_CONFIGS)
        if output_router_logits is None:
            output_router_logits = moe and config.output_router_logits
        cos, sin = self.rotary_emb(inputs_embeds, position_ids)  # (B, T, hs) each
        fields, router_logits = run_layers(
            self, inputs_embeds, lambda layer: (cos, sin, masks[layer.self_attn.sliding_window], cache), cache,
            use_cache, output_attentions, output_hidden_states)
        if moe:
            out = MoeModelOutputWithPast(**fields, router_logits=tuple(router_logits) if output_router_logits else None)
        else:
            out = BaseModelOutputWithPast(**fields)
        return out if return_dict else out.to_tuple()


# -- heads: a LlamaModel under `model` (QA: `transformer`; Mistral's QA: `model`) plus a task layer -------------

def _backbone(head, *args, **moe) -> BaseModelOutputWithPast:
    """run_backbone on the head's backbone, found under its base_model_prefix (QA: `transformer`)."""
    return run_backbone(getattr(head, head.base_model_prefix), *args, **moe)


class LlamaForCausalLM(GenerationMixin, CausalLMHead, LlamaPreTrainedModel):
    """Next-token logits: `lm_head` over the final hidden states (tied to embed_tokens with tie_word_embeddings).
    `logits_to_keep` = n keeps the last n positions (0: all), or a tensor of positions. MoE members: with
    `output_router_logits`, `aux_loss` is the load-balancing loss (padding left out by a (B, T) attention_mask),
    added to the loss times `router_aux_loss_coef`."""

    model_class = LlamaModel

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, logits_to_keep=0, cache=None, num_items_in_batch=None, output_router_logits=None):
        config = self.config
        moe = {"output_router_logits": output_router_logits} if isinstance(config, MOE_CONFIGS) else {}
        out = _backbone(self, input_ids, attention_mask, position_ids, past_key_values, inputs_embeds, use_cache,
                        output_attentions, output_hidden_states, cache, **moe)
        logits = self.lm_head(keep_positions(out.last_hidden_state, logits_to_keep))  # (B, T, vocab)
        if not moe:
            return finish(config, causal_lm_output(logits, labels, num_items_in_batch, out), return_dict)
        aux_loss = None
        if out.router_logits:
            keep = attention_mask if attention_mask is not None and attention_mask.dim() == 2 else None
            if keep is not None and keep.numel() != out.router_logits[0].shape[0]:  # cached: the new tokens' part
                keep = keep[:, -out.last_hidden_state.shape[1]:]
            aux_loss = load_balancing_loss(out.router_logits, config.num_experts, config.num_experts_per_tok, keep)
        result = causal_lm_output(logits, labels, num_items_in_batch, out, MoeCausalLMOutputWithPast,
                                  aux_loss=aux_loss, router_logits=out.router_logits)
        if aux_loss is not None and result.loss is not None:
            result.loss = result.loss + config.router_aux_loss_coef * aux_loss.to(result.loss.device)
        return finish(config, result, return_dict)


class LlamaForSequenceClassification(LastTokenClassifierHead, LlamaPreTrainedModel):
    """`score` (no bias) on every position, pooled at each row's right-most token that is not pad_token_id; the
    forward warns once that padding in `inputs_embeds` is not detected."""

    model_class = LlamaModel

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, cache=None):
        out = _backbone(self, input_ids, attention_mask, position_ids, past_key_values, inputs_embeds, use_cache,
                        output_attentions, output_hidden_states, cache)
        logits = self.score(out.last_hidden_state)  # (B, T, num_labels)
        if input_ids is None and self.config.pad_token_id is not None and "embeds" not in _warned:
            _warned.add("embeds")
            logger.warning("%s will not detect padding tokens in `inputs_embeds`; the last position is used.",
                           type(self).__name__)
        return finish(self.config, last_token_output(self.config, logits, input_ids, labels, out), return_dict)


class LlamaForTokenClassification(TokenClassifierHead, LlamaPreTrainedModel):
    """Dropout then `score` (with bias) on every position."""

    model_class = LlamaModel


class LlamaForQuestionAnswering(LlamaPreTrainedModel):
    """`qa_outputs` (hidden -> 2) split into start and end logits; the backbone sits under `transformer` (the
    reference's backward-compatible name; Mistral's keeps `model`)."""

    base_model_prefix = "transformer"

    def __init__(self, config):
        super().__init__(config)
        setattr(self, self.base_model_prefix, LlamaModel(config))  # self.transformer (Mistral: self.model)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, start_positions=None, end_positions=None, use_cache=None,
                output_attentions=None, output_hidden_states=None, return_dict=None, cache=None):
        out = _backbone(self, input_ids, attention_mask, position_ids, past_key_values, inputs_embeds, use_cache,
                        output_attentions, output_hidden_states, cache)
        logits = self.qa_outputs(out.last_hidden_state)  # (B, T, 2)
        return finish(self.config, span_output(logits, start_positions, end_positions, out), return_dict)


# -- the other model_types of the family: the same classes under their names, with their config --------------

class MistralModel(LlamaModel):
    config_class = MistralConfig


class MistralForCausalLM(LlamaForCausalLM):
    config_class = MistralConfig


class MistralForSequenceClassification(LlamaForSequenceClassification):
    config_class = MistralConfig


class MistralForTokenClassification(LlamaForTokenClassification):
    config_class = MistralConfig


class MistralForQuestionAnswering(LlamaForQuestionAnswering):
    config_class, base_model_prefix = MistralConfig, "model"


class Qwen2Model(LlamaModel):
    config_class = Qwen2Config


class Qwen2ForCausalLM(LlamaForCausalLM):
    config_class = Qwen2Config


class Qwen2ForSequenceClassification(LlamaForSequenceClassification):
    config_class = Qwen2Config


class Qwen2ForTokenClassification(LlamaForTokenClassification):
    config_class = Qwen2Config


class Qwen2ForQuestionAnswering(LlamaForQuestionAnswering):
    config_class = Qwen2Config


class Qwen3Model(LlamaModel):
    config_class = Qwen3Config


class Qwen3ForCausalLM(LlamaForCausalLM):
    config_class = Qwen3Config


class Qwen3ForSequenceClassification(LlamaForSequenceClassification):
    config_class = Qwen3Config


class Qwen3ForTokenClassification(LlamaForTokenClassification):
    config_class = Qwen3Config


class Qwen3ForQuestionAnswering(LlamaForQuestionAnswering):
    config_class = Qwen3Config


class MixtralModel(LlamaModel):
    config_class = MixtralConfig


class MixtralForCausalLM(LlamaForCausalLM):
    config_class = MixtralConfig


class MixtralForSequenceClassification(LlamaForSequenceClassification):
    config_class = MixtralConfig


class MixtralForTokenClassification(LlamaForTokenClassification):
    config_class = MixtralConfig


class MixtralForQuestionAnswering(LlamaForQuestionAnswering):
    config_class, base_model_prefix = MixtralConfig, "model"


class Qwen2MoeModel(LlamaModel):
    config_class = Qwen2MoeConfig


class Qwen2MoeForCausalLM(LlamaForCausalLM):
    config_class = Qwen2MoeConfig


class Qwen2MoeForSequenceClassification(LlamaForSequenceClassification):
    config_class = Qwen2MoeConfig


class Qwen2MoeForTokenClassification(LlamaForTokenClassification):
    config_class = Qwen2MoeConfig


class Qwen2MoeForQuestionAnswering(LlamaForQuestionAnswering):
    config_class, base_model_prefix = Qwen2MoeConfig, "model"


class Qwen3MoeModel(LlamaModel):
    config_class = Qwen3MoeConfig


class Qwen3MoeForCausalLM(LlamaForCausalLM):
    config_class = Qwen3MoeConfig


class Qwen3MoeForSequenceClassification(LlamaForSequenceClassification):
    config_class = Qwen3MoeConfig


class Qwen3MoeForTokenClassification(LlamaForTokenClassification):
    config_class = Qwen3MoeConfig


class Qwen3MoeForQuestionAnswering(LlamaForQuestionAnswering):
    config_class = Qwen3MoeConfig
