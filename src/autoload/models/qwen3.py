"""Qwen3: the Qwen2 layout with `attention_bias` for all four projections (off by default), a per-head RMSNorm
on queries and keys (`q_norm`, `k_norm`, over head_dim, applied before RoPE), and `head_dim` 128 by default
independent of hidden_size. Sliding windows follow `config.layer_types` as in Qwen2. Shared pieces live in
`layers.py`; checkpoint keys are Llama's plus `self_attn.q_norm` / `self_attn.k_norm`.
"""

from __future__ import annotations

from .configs import Qwen3Config
from .layers import (DecoderForCausalLM, DecoderForQuestionAnswering, DecoderForSequenceClassification,
                     DecoderForTokenClassification, DecoderModel)


class Qwen3Model(DecoderModel):
    """The Qwen3 backbone: embeddings, decoder layers with q/k norms, final norm."""

    config_class = Qwen3Config

    @staticmethod
    def layer_options(config, layer_idx: int) -> dict:
        sliding = config.layer_types[layer_idx] == "sliding_attention"
        bias = config.attention_bias
        return {"qkv_bias": bias, "o_bias": bias, "qk_norm": True,
                "sliding_window": config.sliding_window if sliding else None}


class Qwen3ForCausalLM(DecoderForCausalLM):
    """Qwen3 with its language-model head (`lm_head`, tied to `model.embed_tokens` when tie_word_embeddings)."""

    config_class = Qwen3Config
    base_model_class = Qwen3Model


class Qwen3ForSequenceClassification(DecoderForSequenceClassification):
    """Qwen3 with a `score` head read at the last non-padding token."""

    config_class = Qwen3Config
    base_model_class = Qwen3Model


class Qwen3ForTokenClassification(DecoderForTokenClassification):
    """Qwen3 with a per-token `score` head."""

    config_class = Qwen3Config
    base_model_class = Qwen3Model


class Qwen3ForQuestionAnswering(DecoderForQuestionAnswering):
    """Qwen3 with a span head; the backbone sits under `transformer` (the reference's backward-compatible name)."""

    config_class = Qwen3Config
    base_model_class = Qwen3Model
    base_model_prefix = "transformer"
