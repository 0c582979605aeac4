"""InternLM2 and InternLM2.5 (model_type "internlm2"; internlm's `modeling_internlm2.py`), natively: the repos'
own code is not needed (docs/baichuan-internlm2.md).

Llama's pre-norm block under InternLM's own names: grouped-query attention from one packed projection `wqkv`,
SwiGLU `feed_forward` (w1 gate, w3 up, w2 down), RMSNorm, rotary embeddings (`rope_theta`; `rope_scaling`
dynamic NTK or linear). `wqkv` is packed in the grouped layout: its nkv·(g + 2)·hs output rows, g = nh / nkv,
read as [nkv, g + 2, hs]: for each key-value head, the g query heads that share it, then its key, then its value.
Biases on `wqkv` and `wo` when `config.bias`.

Checkpoint keys: `model.tok_embeddings`, `model.layers.N.attention.{wqkv, wo}`,
`model.layers.N.feed_forward.{w1, w3, w2}`, `model.layers.N.{attention_norm, ffn_norm}`, `model.norm`, `output`
(the LM head; `score` for sequence classification).

Shapes: B batch, T new tokens, P cached tokens, K = P + T keys, C hidden size, nh / nkv query / key-value heads,
g = nh / nkv, hs head size, I intermediate size, V vocabulary.
"""

from __future__ import annotations

import torch
from torch import nn

from ..generation.mixin import GenerationMixin
from ..modeling import PreTrainedModel
from ..nn.activations import Activation
from ..nn.decoder import attend, is_eager, positions_and_masks, run_layers
from ..nn.heads import (LastTokenClassifierHead, causal_lm_output, finish, forward_options, keep_positions,
                        run_backbone)
from ..nn.norms import RMSNorm
from ..nn.outputs import BaseModelOutputWithPast
from ..nn.rope import RotaryEmbedding
from .configs import InternLM2Config


class InternLM2Attention(nn.Module):
    """`wqkv` -> grouped q / k / v, RoPE, the cache update, attention, `wo`."""

    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = hs = config.head_dim
        self.num_heads, self.num_kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.groups = self.num_heads // self.num_kv_heads
        c = config.hidden_size
        self.wqkv = nn.Linear(c, (self.num_heads + 2 * self.num_kv_heads) * hs, bias=config.bias)
        self.wo = nn.Linear(self.num_heads * hs, c, bias=config.bias)

    def forward(self, x, cos, sin, mask, cache=None):
        b, t, _ = x.shape
        qkv = self.wqkv(x).view(b, t, self.num_kv_heads, self.groups + 2, self.head_dim)  # (B, T, nkv, g+2, hs)
        q = qkv[..., :self.groups, :].reshape(b, t, self.num_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        k = qkv[..., -2, :].transpose(1, 2)  # (B, nkv, T, hs)
        v = qkv[..., -1, :].transpose(1, 2)  # (B, nkv, T, hs)
        return attend(q, k, v, cos, sin, mask, cache, self.layer_idx, self.wo, scale=self.head_dim ** -0.5,
                      eager=is_eager(self.config))  # (B, T, C), weights


class InternLM2MLP(nn.Module):
    """SwiGLU: w2(act(w1(x)) * w3(x))."""

    def __init__(self, config):
        super().__init__()
        c, i = config.hidden_size, config.intermediate_size
        self.w1 = nn.Linear(c, i, bias=False)
        self.w3 = nn.Linear(c, i, bias=False)
        self.w2 = nn.Linear(i, c, bias=False)
        self.act_fn = Activation(config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(self.act_fn(self.w1(x)) * self.w3(x))


class InternLM2DecoderLayer(nn.Module):
    """Pre-norm block: h = h + attention(attention_norm(h)); h = h + feed_forward(ffn_norm(h))."""

    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.attention = InternLM2Attention(config, layer_idx)
        self.feed_forward = InternLM2MLP(config)
        self.attention_norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.ffn_norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, h, cos, sin, mask, cache=None):
        y, weights = self.attention(self.attention_norm(h), cos, sin, mask, cache)
        h = h + y
        return h + self.feed_forward(self.ffn_norm(h)), weights  # (B, T, C)


# -- backbone ----------------------------------------------------------------------------------------------------

class InternLM2PreTrainedModel(PreTrainedModel):
    config_class = InternLM2Config
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["InternLM2DecoderLayer"]

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.tok_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.tok_embeddings = value


class InternLM2Model(InternLM2PreTrainedModel):
    """tok_embeddings -> layers -> norm; hidden states and the KV cache."""

    supports_compiled_decode = True  # forward reads no cache length given a 4-D mask + positions
    compiled_sliding_window = True  # no sliding windows: nothing for generate(compile=True) to check per layer

    def __init__(self, config):
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.layers = nn.ModuleList([InternLM2DecoderLayer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.tok_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.tok_embeddings = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, cache=None):
        """Hidden states (B, T, C) after the final norm; `past_key_values` (alias `cache`) holds earlier tokens,
        `attention_mask` (B, P+T) marks padding with 0 (or is a ready-made (B, 1, T, K) mask), `position_ids`
        (B, T) default to P..P+T-1."""
        inputs_embeds, cache, use_cache, output_attentions, output_hidden_states, return_dict = forward_options(
            self, self.tok_embeddings, input_ids, inputs_embeds, past_key_values, cache, use_cache,
            output_attentions, output_hidden_states, return_dict)  # inputs_embeds (B, T, C)
        _, position_ids, masks = positions_and_masks(inputs_embeds, attention_mask, position_ids, cache,
                                                     eager=is_eager(self.config), packed=True)
        cos, sin = self.rotary_emb(inputs_embeds, position_ids)  # (B, T, hs) each
        fields, _ = run_layers(self, inputs_embeds, lambda layer: (cos, sin, masks[None], cache), cache, use_cache,
                               output_attentions, output_hidden_states)
        out = BaseModelOutputWithPast(**fields)
        return out if return_dict else out.to_tuple()


# -- heads -------------------------------------------------------------------------------------------------------

# the repos' chat() default system prompt
META_INSTRUCTION = (
    "You are an AI assistant whose name is InternLM (书生·浦语).\n"
    "- InternLM (书生·浦语) is a conversational language model that is developed by Shanghai AI Laboratory "
    "(上海人工智能实验室). It is designed to be helpful, honest, and harmless.\n"
    "- InternLM (书生·浦语) can understand and communicate fluently in the language chosen by the user such as "
    "English and 中文.")


class InternLM2ForCausalLM(GenerationMixin, InternLM2PreTrainedModel):
    """`model` plus the LM head `output` (tied to tok_embeddings with tie_word_embeddings). What AutoModel returns
    for internlm2, as the repos' auto_map says."""

    _tied_weights_keys = {"output.weight": "model.tok_embeddings.weight"}
    accepts_loss_kwargs = True  # Trainer passes num_items_in_batch (the loss over all accumulated tokens)

    def __init__(self, config):
        super().__init__(config)
        self.model = InternLM2Model(config)
        self.vocab_size = config.vocab_size
        self.output = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.output

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, logits_to_keep=0, cache=None, num_items_in_batch=None):
        out = run_backbone(self.model, input_ids, attention_mask, position_ids, past_key_values, inputs_embeds,
                           use_cache, output_attentions, output_hidden_states, cache)
        logits = self.output(keep_positions(out.last_hidden_state, logits_to_keep))  # (B, T, V)
        return finish(self.config, causal_lm_output(logits, labels, num_items_in_batch, out), return_dict)

    # -- InternLM2-Chat's chat() / stream_chat(): the repos' prompt and defaults ---------------------------------

    def build_inputs(self, tokenizer, query: str, history: list | None = None, meta_instruction: str = ""):
        """The repos' prompt, tokenized (a batch of one): `<s>` (written here only when the tokenizer does not add
        it), the system turn `<|im_start|>system\n{meta_instruction}<|im_end|>\n` when given, each past
        (query, response) pair as a user and an assistant turn, the query's user turn, `<|im_start|>assistant\n`."""
        prompt = "" if tokenizer.add_bos_token else tokenizer.bos_token
        if meta_instruction:
            prompt += f"<|im_start|>system\n{meta_instruction}<|im_end|>\n"
        for past_query, past_response in history or []:
            prompt += (f"<|im_start|>user\n{past_query}<|im_end|>\n"
                       f"<|im_start|>assistant\n{past_response}<|im_end|>\n")
        prompt += f"<|im_start|>user\n{query}<|im_end|>\n<|im_start|>assistant\n"
        return tokenizer([prompt], return_tensors="pt")

    def chat(self, tokenizer, query: str, history: list | None = None, streamer=None, max_new_tokens: int = 1024,
             do_sample: bool = True, temperature: float = 0.8, top_p: float = 0.8,
             meta_instruction: str = META_INSTRUCTION, **generation_kwargs):
        """(response, history + [(query, response)]), as the repos' chat(): their prompt (`build_inputs`), their
        defaults (sampling, temperature 0.8, top_p 0.8, 1024 new tokens, the InternLM system prompt), the turn
        ending at `</s>` or `<|im_end|>`."""
        ids, options = self._chat_call(tokenizer, query, history, meta_instruction, max_new_tokens, do_sample,
                                       temperature, top_p, generation_kwargs)
        out = self.generate(ids, streamer=streamer, **options)
        response = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).split("<|im_end|>")[0]
        return response, list(history or []) + [(query, response)]

    def stream_chat(self, tokenizer, query: str, history: list | None = None, max_new_tokens: int = 1024,
                    do_sample: bool = True, temperature: float = 0.8, top_p: float = 0.8,
                    meta_instruction: str = META_INSTRUCTION, **generation_kwargs):
        """Like chat(), a generator of (response so far, history + [(query, response so far)])."""
        from ..generation.streamers import BackgroundGeneration, TextIteratorStreamer
        ids, options = self._chat_call(tokenizer, query, history, meta_instruction, max_new_tokens, do_sample,
                                       temperature, top_p, generation_kwargs)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        text = ""
        for chunk in BackgroundGeneration(self, streamer, input_ids=ids, **options):
            text += chunk
            response = text.split("<|im_end|>")[0]
            yield response, list(history or []) + [(query, response)]

    def _chat_call(self, tokenizer, query, history, meta_instruction, max_new_tokens, do_sample, temperature, top_p,
                   generation_kwargs):
        inputs = self.build_inputs(tokenizer, query, history, meta_instruction)
        ids = inputs["input_ids"].to(self.device)  # (1, T)
        end = tokenizer.convert_tokens_to_ids("<|im_end|>")
        eos = [tokenizer.eos_token_id] + ([end] if end is not None and end != tokenizer.unk_token_id else [])
        sampling = {"temperature": temperature, "top_p": top_p} if do_sample else {}  # greedy: no sampling options
        options = {"max_new_tokens": max_new_tokens, "do_sample": do_sample, **sampling, "eos_token_id": eos,
                   **generation_kwargs}
        return ids, options


class InternLM2ForSequenceClassification(LastTokenClassifierHead, InternLM2PreTrainedModel):
    """`score` (no bias) on every position, pooled at each row's last token that is not pad_token_id (the repo's
    InternLM2ForSequenceClassification)."""

    model_class = InternLM2Model
