"""Llama (Llama 1/2/3, and the many checkpoints that reuse its architecture).

Pre-norm decoder with RMSNorm, rotary embeddings (default, linear, dynamic, yarn, llama3 scaling),
grouped-query attention and a SwiGLU MLP; the shared pieces live in `layers.py`. Llama specifics:
`attention_bias` (q/k/v/o biases), `mlp_bias`, and an explicit `head_dim` that may differ from hidden/heads.
Checkpoint keys: `model.embed_tokens`, `model.layers.N.self_attn.{q,k,v,o}_proj`, `model.layers.N.mlp.{gate,
up,down}_proj`, `model.layers.N.{input,post_attention}_layernorm`, `model.norm`, `lm_head`.
"""

from __future__ import annotations

from .configs import LlamaConfig
from .layers import (DecoderForCausalLM, DecoderForQuestionAnswering, DecoderForSequenceClassification,
                     DecoderForTokenClassification, DecoderModel)


class LlamaModel(DecoderModel):
    """The Llama backbone: embeddings, decoder layers, final norm; returns hidden states and the KV cache."""

    config_class = LlamaConfig

    @staticmethod
    def layer_options(config, layer_idx: int) -> dict:
        bias = config.attention_bias
        return {"qkv_bias": bias, "o_bias": bias, "mlp_bias": config.mlp_bias}


class LlamaForCausalLM(DecoderForCausalLM):
    """Llama with its language-model head (`lm_head`, tied to `model.embed_tokens` when tie_word_embeddings)."""

    config_class = LlamaConfig
    base_model_class = LlamaModel


class LlamaForSequenceClassification(DecoderForSequenceClassification):
    """Llama with a `score` head read at the last non-padding token."""

    config_class = LlamaConfig
    base_model_class = LlamaModel


class LlamaForTokenClassification(DecoderForTokenClassification):
    """Llama with a per-token `score` head."""

    config_class = LlamaConfig
    base_model_class = LlamaModel


class LlamaForQuestionAnswering(DecoderForQuestionAnswering):
    """Llama with a span head; the backbone sits under `transformer` (the reference's backward-compatible name)."""

    config_class = LlamaConfig
    base_model_class = LlamaModel
    base_model_prefix = "transformer"
