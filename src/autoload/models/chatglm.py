"""ChatGLM2, ChatGLM3 and GLM-4 (model_type "chatglm"; THUDM's `modeling_chatglm.py` architecture).

Pre-norm decoder with RMSNorm, one fused q/k/v projection (with bias), multi-query / grouped attention over
`multi_query_group_num` key-value heads, a SwiGLU MLP whose first half is the gate, and rotary embeddings on the
first half of each head only, as adjacent interleaved pairs (x[2i], x[2i+1]). Module names are the checkpoint
keys, so the original `.bin` / safetensors files load with no renames:
`transformer.embedding.word_embeddings`, `transformer.encoder.layers.N.{input_layernorm, self_attention.
{query_key_value, dense}, post_attention_layernorm, mlp.{dense_h_to_4h, dense_4h_to_h}}`,
`transformer.encoder.final_layernorm`, `transformer.output_layer` (the LM head lives inside the backbone, as in
the original code). `transformer.rotary_pos_emb.inv_freq` in the files is ignored: the rotary angles are computed
in fp32 at call time, so there is no floating buffer for `.half()` to round.

Differences from the original code, on purpose: everything is batch-first (hidden states (B, T, C); chatglm2/3
return them sequence-first) and the KV cache is autoload's `DynamicCache` / `StaticCache`, not tuples. RMSNorm
rounds to the activation dtype before the gain (as transformers' Glm; chatglm2/3 multiply in fp32 and round
once): identical in fp32, a last-bit difference in half precision.

Shapes: B batch, T new tokens, P cached tokens, K = P + T keys, C hidden size, nh / nkv query / key-value heads,
hs head size (kv_channels), rd = hs // 2 rotated dims per head, Fi ffn_hidden_size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..generation.mixin import GenerationMixin
from ..modeling import PreTrainedModel
from ..nn.attention import attention, is_eager
from ..nn.heads import finish, forward_options, keep_positions
from ..nn.losses import causal_lm_loss, sequence_classification_loss
from ..nn.masks import attention_mask as build_mask
from ..nn.norms import RMSNorm
from ..nn.outputs import BaseModelOutputWithPast, CausalLMOutputWithPast, SequenceClassifierOutputWithPast
from ..nn.rope import apply_interleaved_rotary, interleaved_cos_sin
from . import chatglm_chat
from .configs import ChatGLMConfig


def rotary_cos_sin(config, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin), each (B, T, rd/2), for rd = kv_channels // 2 rotated dims: rope_ratio r multiplies the base
    (base = 10000·r) or divides the positions (p/r), per rope_ratio_meaning."""
    r = float(config.rope_ratio)
    by_positions = config.rope_ratio_meaning == "positions"
    return interleaved_cos_sin(position_ids, config.kv_channels // 2, 10000.0 if by_positions else 10000.0 * r,
                               r if by_positions else 1.0, dtype)


# -- attention, MLP, block ---------------------------------------------------------------------------------------

class SelfAttention(nn.Module):
    """Fused q/k/v projection, RoPE, the cache update (after RoPE, before the key-value heads are repeated),
    softmax(q·kᵀ/sqrt(hs) + mask)·v, and the output projection `dense`."""

    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.num_heads, self.num_kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = config.kv_channels
        qkv = (self.num_heads + 2 * self.num_kv_heads) * self.head_dim
        self.query_key_value = nn.Linear(config.hidden_size, qkv, bias=config.add_bias_linear or config.add_qkv_bias)
        self.dense = nn.Linear(self.num_heads * self.head_dim, config.hidden_size, bias=config.add_bias_linear)

    def forward(self, x, cos, sin, mask, cache=None):
        b, t, _ = x.shape
        nh, nkv, hs = self.num_heads, self.num_kv_heads, self.head_dim
        qkv = self.query_key_value(x)  # (B, T, (nh + 2·nkv)·hs)
        if self.config.multi_query_attention:  # contiguous blocks: q (nh·hs) | k (nkv·hs) | v (nkv·hs)
            q, k, v = qkv.split([nh * hs, nkv * hs, nkv * hs], dim=-1)
        else:  # Megatron layout: per head [q_h | k_h | v_h]
            q, k, v = qkv.view(b, t, nh, 3 * hs).split(hs, dim=-1)
        q = q.reshape(b, t, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.reshape(b, t, nkv, hs).transpose(1, 2)  # (B, nkv, T, hs)
        v = v.reshape(b, t, nkv, hs).transpose(1, 2)  # (B, nkv, T, hs)
        q, k = apply_interleaved_rotary(q, cos, sin), apply_interleaved_rotary(k, cos, sin)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)  # (B, nkv, K, hs)
        y, weights = attention(q, k, v, mask, is_causal=True, scale=1 / math.sqrt(hs),
                               dropout=self.config.attention_dropout if self.training else 0.0,
                               eager=is_eager(self.config))
        y = y.transpose(1, 2).reshape(b, t, nh * hs)  # (B, T, nh·hs)
        return self.dense(y), weights


class MLP(nn.Module):
    """SwiGLU: dense_4h_to_h(silu(gate) * up), with [gate | up] = dense_h_to_4h(x) (the gate is the first half)."""

    def __init__(self, config):
        super().__init__()
        self.dense_h_to_4h = nn.Linear(config.hidden_size, 2 * config.ffn_hidden_size, bias=config.add_bias_linear)
        self.dense_4h_to_h = nn.Linear(config.ffn_hidden_size, config.hidden_size, bias=config.add_bias_linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.dense_h_to_4h(x).chunk(2, dim=-1)  # (B, T, Fi) each
        return self.dense_4h_to_h(F.silu(gate) * up)


class GLMBlock(nn.Module):
    """Pre-norm block: h = h + attn(norm(h)); h = h + mlp(norm(h)) (dropout on each branch while training)."""

    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.layernorm_epsilon)
        self.self_attention = SelfAttention(config, layer_idx)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.layernorm_epsilon)
        self.mlp = MLP(config)
        self.hidden_dropout = config.hidden_dropout

    def forward(self, h, cos, sin, mask, cache=None):
        y, weights = self.self_attention(self.input_layernorm(h), cos, sin, mask, cache)
        h = h + F.dropout(y, p=self.hidden_dropout, training=self.training)
        y = self.mlp(self.post_attention_layernorm(h))
        return h + F.dropout(y, p=self.hidden_dropout, training=self.training), weights  # (B, T, C)


# -- backbone ----------------------------------------------------------------------------------------------------

class ChatGLMModel(PreTrainedModel):
    """embedding -> encoder (blocks, final_layernorm); also owns `output_layer`, the LM head, as the original
    code does (its forward stops at the final norm; ChatGLMForConditionalGeneration applies the head)."""

    config_class = ChatGLMConfig
    base_model_prefix = "transformer"
    _keys_to_ignore_on_load_unexpected = [r"rotary_pos_emb\.inv_freq$"]
    supports_gradient_checkpointing = True
    _no_split_modules = ["GLMBlock"]
    supports_compiled_decode = True  # generate(compile=True): no cache length is read given a 4-D mask + positions

    def __init__(self, config):
        super().__init__(config)
        c = config.hidden_size
        self.embedding = nn.ModuleDict({"word_embeddings": nn.Embedding(config.padded_vocab_size, c)})
        self.encoder = nn.ModuleDict({
            "layers": nn.ModuleList([GLMBlock(config, i) for i in range(config.num_layers)]),
            "final_layernorm": RMSNorm(c, eps=config.layernorm_epsilon),
        })
        self.output_layer = nn.Linear(c, config.padded_vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embedding.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embedding.word_embeddings = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, cache=None):
        """Hidden states (B, T, C) after final_layernorm; `past_key_values` (alias `cache`) holds earlier tokens,
        `attention_mask` (B, P+T) marks padding with 0, `position_ids` (B, T) default to P..P+T-1 (with left
        padding pass cumsum(mask)-1, as generate() and the ChatGLM tokenizers do)."""
        config = self.config
        inputs_embeds, cache, use_cache, output_attentions, output_hidden_states, return_dict = forward_options(
            self, self.embedding.word_embeddings, input_ids, inputs_embeds, past_key_values, cache, use_cache, output_attentions,
            output_hidden_states, return_dict)  # inputs_embeds (B, T, C)
        b, t = inputs_embeds.shape[:2]
        device = inputs_embeds.device
        given_mask = attention_mask is not None and attention_mask.dim() == 4  # a ready-made mask is used as given
        # the cached length is only needed to build the mask or the positions (a compiled step passes both)
        past = cache.get_seq_length() if cache is not None and not (given_mask and position_ids is not None) else 0
        if position_ids is None:
            position_ids = (torch.arange(t, device=device) + past).unsqueeze(0)  # (1, T)
        position_ids = position_ids.to(device).expand(b, -1)  # (B, T)

        if given_mask:  # (B, 1, T, K)
            mask = attention_mask.to(device, torch.bool)
        else:
            padding = None if attention_mask is None else attention_mask.to(device, torch.bool)
            mask = build_mask(padding, b, t, past, device=device)  # bool or None
        if mask is not None:  # a query row that sees nothing (a left pad) sees everything instead: no NaN
            mask = mask | ~mask.any(-1, keepdim=True)

        h = inputs_embeds
        cos, sin = rotary_cos_sin(config, position_ids, h.dtype)  # (B, T, rd/2) each
        hidden_states = [h] if output_hidden_states else None
        attentions = [] if output_attentions else None
        for layer in self.encoder.layers:
            h, weights = self.run_layer(layer, h, cos, sin, mask, cache)
            if output_hidden_states:
                hidden_states.append(h)
            if output_attentions and weights is not None:
                attentions.append(weights)
        h = self.encoder.final_layernorm(h)
        if output_hidden_states:
            hidden_states[-1] = h  # the last entry is the normed output
        out = BaseModelOutputWithPast(last_hidden_state=h, past_key_values=cache if use_cache else None,
                                      hidden_states=tuple(hidden_states) if output_hidden_states else None,
                                      attentions=tuple(attentions) if output_attentions else None)
        return out if return_dict else out.to_tuple()


# -- heads: the backbone under `transformer` plus a task layer --------------------------------------------------

class ChatGLMPreTrainedModel(PreTrainedModel):
    config_class = ChatGLMConfig
    base_model_prefix = "transformer"
    _keys_to_ignore_on_load_unexpected = ChatGLMModel._keys_to_ignore_on_load_unexpected
    supports_gradient_checkpointing = True
    _no_split_modules = ["GLMBlock"]

    def __init__(self, config):
        super().__init__(config)
        self.transformer = ChatGLMModel(config)

    def _backbone(self, input_ids, attention_mask, position_ids, past_key_values, inputs_embeds, use_cache,
                  output_attentions, output_hidden_states, cache) -> BaseModelOutputWithPast:
        return self.transformer(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                past_key_values=past_key_values, inputs_embeds=inputs_embeds, use_cache=use_cache,
                                output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                                return_dict=True, cache=cache)


class ChatGLMForConditionalGeneration(GenerationMixin, ChatGLMPreTrainedModel):
    """ChatGLM with its language-model head `transformer.output_layer` (labels, logits_to_keep and outputs as the
    Llama heads). What AutoModel returns for chatglm (as the repos' auto_map does), and what generate() drives."""

    _tied_weights_keys = {"transformer.output_layer.weight": "transformer.embedding.word_embeddings.weight"}
    accepts_loss_kwargs = True  # Trainer passes num_items_in_batch (the loss over all accumulated tokens)

    def __init__(self, config):
        super().__init__(config)
        self.vocab_size = config.padded_vocab_size
        self.post_init()

    @property
    def lm_head(self) -> nn.Linear:
        return self.transformer.output_layer

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, logits_to_keep=0, cache=None, num_items_in_batch=None):
        out = self._backbone(input_ids, attention_mask, position_ids, past_key_values, inputs_embeds, use_cache,
                             output_attentions, output_hidden_states, cache)
        logits = self.lm_head(keep_positions(out.last_hidden_state, logits_to_keep))  # (B, T, vocab)
        loss = None if labels is None else causal_lm_loss(logits, labels, num_items_in_batch)
        return finish(self.config, CausalLMOutputWithPast(
            loss=loss, logits=logits, past_key_values=out.past_key_values, hidden_states=out.hidden_states,
            attentions=out.attentions), return_dict)

    def chat(self, tokenizer, query: str, history: list | None = None, role: str = "user", **kwargs):
        """One turn in the tokenizer's ChatGLM format (chatglm2 Round prompt / chatglm3 roles / GLM-4 template):
        returns (response, new_history); see `autoload.models.chatglm_chat.chat`. A tokenizer that is not a
        ChatGLM one (no `.variant`) goes through the generic chat template path."""
        if chatglm_chat.variant_of(tokenizer) is None:
            return super().chat(tokenizer, query, history=history, **kwargs)
        with torch.inference_mode():
            return chatglm_chat.chat(self, tokenizer, query, history, role, **kwargs)

    def stream_chat(self, tokenizer, query: str, history: list | None = None, role: str = "user", **kwargs):
        """Like chat(), a generator of (partial_response, new_history) as tokens arrive."""
        if chatglm_chat.variant_of(tokenizer) is None:
            return super().stream_chat(tokenizer, query, history=history, **kwargs)
        return chatglm_chat.stream_chat(self, tokenizer, query, history, role, **kwargs)


ChatGLMForCausalLM = ChatGLMForConditionalGeneration


class ChatGLMForSequenceClassification(ChatGLMPreTrainedModel):
    """`classifier_head` (with bias) on the hidden state of each row's last position, as the original code pools
    (with left padding, the last real token); dropout first when classifier_dropout is set."""

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.dropout = nn.Dropout(config.classifier_dropout or 0.0)
        self.classifier_head = nn.Linear(config.hidden_size, config.num_labels, bias=True)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, cache=None):
        out = self._backbone(input_ids, attention_mask, position_ids, past_key_values, inputs_embeds, use_cache,
                             output_attentions, output_hidden_states, cache)
        logits = self.classifier_head(self.dropout(out.last_hidden_state[:, -1]))  # (B, num_labels)
        loss = None if labels is None else sequence_classification_loss(self.config, logits, labels.to(logits.device))
        return finish(self.config, SequenceClassifierOutputWithPast(
            loss=loss, logits=logits, past_key_values=out.past_key_values, hidden_states=out.hidden_states,
            attentions=out.attentions), return_dict)
