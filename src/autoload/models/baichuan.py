"""Baichuan and Baichuan2, 7B and 13B (model_type "baichuan"; baichuan-inc's `modeling_baichuan.py`), natively:
the repos' own code is not needed (docs/baichuan-internlm2.md).

Llama's pre-norm block (RMSNorm, SwiGLU MLP, no biases, every head its own keys and values) with one fused
projection `W_pack`: q | k | v stacked along the output, 3·C rows. Positions, per `config.position_embedding`
(derived from the shape in configs.py): rotary embeddings with base 10000 (the 7B files) or ALiBi (the 13B
files), whose bias `nn/alibi.py` builds once per forward for every layer. Baichuan2's `lm_head` is a NormHead
(`config.norm_head`): logits = h·normalize(W)ᵀ, every vocabulary row of W scaled to unit L2 norm.

Checkpoint keys: `model.embed_tokens`, `model.layers.N.self_attn.{W_pack, o_proj}`,
`model.layers.N.mlp.{gate_proj, up_proj, down_proj}`, `model.layers.N.{input,post_attention}_layernorm`,
`model.norm`, `lm_head` (a NormHead keeps the key `lm_head.weight`, holding the raw rows).

Differences from the original code, on purpose: the ALiBi bias is relative to each query's position rather than
to key index 0 (the same attention; exact in half precision at long range), padding follows the attention mask
as in every other decoder here, and the cache is autoload's DynamicCache / StaticCache, not tuples.

Shapes: B batch, T new tokens, P cached tokens, K = P + T keys, C hidden size, nh heads, hs head size,
V vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..generation.mixin import GenerationMixin
from ..modeling import PreTrainedModel
from ..nn.activations import Activation
from ..nn.alibi import alibi_bias, alibi_slopes
from ..nn.decoder import attend, is_eager, positions_and_masks, run_layers, split_heads
from ..nn.heads import causal_lm_output, finish, forward_options, keep_positions, run_backbone
from ..nn.norms import RMSNorm
from ..nn.outputs import BaseModelOutputWithPast
from ..nn.rope import RotaryEmbedding
from .configs import BaichuanConfig


class NormHead(nn.Linear):
    """Baichuan2's LM head: x·normalize(W)ᵀ, each of the V rows of W (V, C) divided by its L2 norm.

    Training (or whenever gradients reach W) normalises at every call, so the gradient goes through the
    normalisation. In eval mode without gradients the normalised rows are computed once and put in place of the
    weight, as the original's eval forward does (normalising twice changes nothing), and again only when the
    weight has been replaced or written to since."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False, **kwargs):
        super().__init__(in_features, out_features, bias=False, **kwargs)
        self._normalized = None  # (data_ptr, version) of the weight once it holds unit rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if self.training or (torch.is_grad_enabled() and w.requires_grad) or torch.compiler.is_compiling():
            return F.linear(x, F.normalize(w, dim=-1))  # compiled with frozen weights: folded to a constant
        if self._normalized != (w.data_ptr(), w._version):
            w.data = F.normalize(w.data, dim=-1)
            self._normalized = (w.data_ptr(), w._version)
        return F.linear(x, w)  # (B, T, V)


# -- attention, MLP, block ---------------------------------------------------------------------------------------

class BaichuanAttention(nn.Module):
    """`W_pack` -> q | k | v, RoPE (7B) or nothing (13B: the ALiBi bias comes in with the mask), the cache update,
    softmax(q·kᵀ/sqrt(hs) + bias + mask)·v, `o_proj`."""

    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.sliding_window = None  # full causal attention (read by generate(compile=True))
        c = config.hidden_size
        self.W_pack = nn.Linear(c, 3 * c, bias=False)
        self.o_proj = nn.Linear(c, c, bias=False)

    def forward(self, x, cos, sin, bias, mask, cache=None):
        q, k, v = (split_heads(y, self.head_dim) for y in self.W_pack(x).chunk(3, dim=-1))  # (B, nh, T, hs) each
        return attend(q, k, v, cos, sin, mask, cache, self.layer_idx, self.o_proj, scale=self.head_dim ** -0.5,
                      eager=is_eager(self.config), bias=bias)  # (B, T, C), weights


class BaichuanMLP(nn.Module):
    """SwiGLU: down_proj(act(gate_proj(x)) * up_proj(x))."""

    def __init__(self, config):
        super().__init__()
        c, i = config.hidden_size, config.intermediate_size
        self.gate_proj = nn.Linear(c, i, bias=False)
        self.down_proj = nn.Linear(i, c, bias=False)
        self.up_proj = nn.Linear(c, i, bias=False)
        self.act_fn = Activation(config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class BaichuanLayer(nn.Module):
    """Pre-norm block: h = h + attn(norm(h)); h = h + mlp(norm(h))."""

    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.self_attn = BaichuanAttention(config, layer_idx)
        self.mlp = BaichuanMLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, h, cos, sin, bias, mask, cache=None):
        y, weights = self.self_attn(self.input_layernorm(h), cos, sin, bias, mask, cache)
        h = h + y
        return h + self.mlp(self.post_attention_layernorm(h)), weights  # (B, T, C)


# -- backbone ----------------------------------------------------------------------------------------------------

class BaichuanPreTrainedModel(PreTrainedModel):
    config_class = BaichuanConfig
    base_model_prefix = "model"
    _keys_to_ignore_on_load_unexpected = [r"rotary_emb\.inv_freq$"]  # Baichuan-7B (v1) files carry the table
    supports_gradient_checkpointing = True
    _no_split_modules = ["BaichuanLayer"]

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value


class BaichuanModel(BaichuanPreTrainedModel):
    """embed_tokens -> layers -> norm; hidden states and the KV cache."""

    supports_compiled_decode = True  # forward reads no cache length given a 4-D mask + positions

    def __init__(self, config):
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.layers = nn.ModuleList([BaichuanLayer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config) if config.position_embedding == "rope" else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, cache=None):
        """Hidden states (B, T, C) after the final norm; `past_key_values` (alias `cache`) holds earlier tokens,
        `attention_mask` (B, P+T) marks padding with 0 (or is a ready-made (B, 1, T, K) mask), `position_ids`
        (B, T) default to P..P+T-1."""
        inputs_embeds, cache, use_cache, output_attentions, output_hidden_states, return_dict = forward_options(
            self, self.embed_tokens, input_ids, inputs_embeds, past_key_values, cache, use_cache, output_attentions,
            output_hidden_states, return_dict)  # inputs_embeds (B, T, C)
        past, position_ids, masks = positions_and_masks(inputs_embeds, attention_mask, position_ids, cache,
                                                        eager=is_eager(self.config), packed=True)
        mask = masks[None]
        cos = sin = bias = None
        if self.rotary_emb is not None:
            cos, sin = self.rotary_emb(inputs_embeds, position_ids)  # (B, T, hs) each
        else:  # ALiBi over the K keys this step attends to: P + T, or a given 4-D mask's width
            given_mask = attention_mask is not None and attention_mask.dim() == 4
            kv_len = attention_mask.shape[-1] if given_mask else past + inputs_embeds.shape[1]
            bias = alibi_bias(alibi_slopes(self.config.num_attention_heads, inputs_embeds.device), position_ids, kv_len)
        fields, _ = run_layers(self, inputs_embeds, lambda layer: (cos, sin, bias, mask, cache), cache, use_cache,
                               output_attentions, output_hidden_states)
        out = BaseModelOutputWithPast(**fields)
        return out if return_dict else out.to_tuple()


# -- the language-model head -------------------------------------------------------------------------------------

class BaichuanForCausalLM(GenerationMixin, BaichuanPreTrainedModel):
    """`model` plus `lm_head` (a NormHead with `config.norm_head`, else a plain Linear). Labels give the shifted
    next-token loss, plus `z_loss_weight` x the mean over positions of the squared largest logit when the config
    sets it (Baichuan2's z-loss; 0 in the released files)."""

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}
    accepts_loss_kwargs = True  # Trainer passes num_items_in_batch (the loss over all accumulated tokens)

    def __init__(self, config):
        super().__init__(config)
        self.model = BaichuanModel(config)
        self.vocab_size = config.vocab_size
        head = NormHead if config.norm_head else nn.Linear
        self.lm_head = head(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        """The new head (resize_token_embeddings builds a plain Linear) stays a NormHead with `norm_head`."""
        if self.config.norm_head and not isinstance(value, NormHead):
            head = NormHead(value.in_features, value.out_features, device="meta")
            head.weight = value.weight
            value = head
        self.lm_head = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, logits_to_keep=0, cache=None, num_items_in_batch=None):
        out = run_backbone(self.model, input_ids, attention_mask, position_ids, past_key_values, inputs_embeds,
                           use_cache, output_attentions, output_hidden_states, cache)
        logits = self.lm_head(keep_positions(out.last_hidden_state, logits_to_keep))  # (B, T, V)
        result = causal_lm_output(logits, labels, num_items_in_batch, out)
        if result.loss is not None and self.config.z_loss_weight:
            z = logits[:, :-1].float().amax(-1) ** 2  # (B, T-1): every shifted position, labelled or not
            result.loss = result.loss + self.config.z_loss_weight * z.mean()
        return finish(self.config, result, return_dict)

    # -- Baichuan2-Chat's chat(tokenizer, messages) ----------------------------------------------------------------

    def chat(self, tokenizer, messages, stream: bool = False, **generation_kwargs):
        """Baichuan2-Chat's `model.chat(tokenizer, messages)`: `messages` are {"role", "content"} dicts (an optional
        first "system" one, then user / assistant turns); returns the response text, or with `stream=True` a
        generator of the response so far, as the repo's method does. Options (`max_new_tokens`, `do_sample`, ...,
        `generation_config`) default to the model's generation_config (the Chat repos': top_k 5, top_p 0.85,
        temperature 0.3, repetition_penalty 1.05). A string query (with `history=`) goes through the generic
        chat-template chat() instead."""
        if isinstance(messages, str):
            return super().chat(tokenizer, messages, stream=stream, **generation_kwargs)
        config = generation_kwargs.get("generation_config") or self.generation_config
        max_new_tokens = generation_kwargs.get("max_new_tokens") or getattr(config, "max_new_tokens", None) or 2048
        input_ids = self.build_chat_input(tokenizer, messages, max_new_tokens)
        if not stream:
            out = self.generate(input_ids, **generation_kwargs)
            return tokenizer.decode(out[0, input_ids.shape[1]:], skip_special_tokens=True)
        return self._stream_chat(tokenizer, input_ids, generation_kwargs)

    def _stream_chat(self, tokenizer, input_ids, generation_kwargs):
        from ..generation.streamers import BackgroundGeneration, TextIteratorStreamer
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        text = ""
        for chunk in BackgroundGeneration(self, streamer, input_ids=input_ids, **generation_kwargs):
            text += chunk
            yield text

    def build_chat_input(self, tokenizer, messages: list[dict], max_new_tokens: int = 2048) -> torch.Tensor:
        """(1, T) ids of the repo's prompt: the system text, then each turn as `user_token_id` (195) or
        `assistant_token_id` (196; both from generation_config.json) followed by the ids of its text, then the
        assistant id unless the last turn is the assistant's. Whole rounds (a user turn and what follows it) are
        dropped from the front so that the prompt fits model_max_length - max_new_tokens."""
        extra = getattr(self.generation_config, "extra", {}) or {}
        user, assistant = extra.get("user_token_id", 195), extra.get("assistant_token_id", 196)
        budget = self.config.model_max_length - max_new_tokens
        system, rounds = "", []
        for i, message in enumerate(messages):
            if message["role"] == "system":
                if i:
                    raise ValueError("Baichuan2's chat takes a system message only as the first message.")
                system = message["content"]
            elif message["role"] == "user" or not rounds:
                rounds.append([message])
            else:
                rounds[-1].append(message)
        system_ids = tokenizer.encode(system)
        history: list[int] = []
        for turns in reversed(rounds):  # newest first, while they fit
            ids = [i for m in turns for i in (user if m["role"] == "user" else assistant,
                                                *tokenizer.encode(m["content"]))]
            if history and len(history) + len(ids) > budget - len(system_ids):
                break
            history = ids + history
            if len(history) >= budget - len(system_ids):
                break
        ids = system_ids + history + ([] if messages[-1]["role"] == "assistant" else [assistant])
        return torch.tensor([ids[-budget:]], device=self.device)  # (1, T), cut on the left
