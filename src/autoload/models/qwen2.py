"""Qwen2 (Qwen1.5, Qwen2, Qwen2.5): the Llama architecture with q/k/v biases always on and no o_proj bias.
With `use_sliding_window`, layers listed as "sliding_attention" in `config.layer_types` (by default those from
`max_window_layers` on) use a sliding-window causal mask of `sliding_window` positions. Shared pieces live in
`layers.py`; checkpoint keys are Llama's plus the q/k/v biases.
"""

from __future__ import annotations

from .configs import Qwen2Config
from .layers import (DecoderForCausalLM, DecoderForQuestionAnswering, DecoderForSequenceClassification,
                     DecoderForTokenClassification, DecoderModel)


class Qwen2Model(DecoderModel):
    """The Qwen2 backbone: embeddings, decoder layers, final norm."""

    config_class = Qwen2Config

    @staticmethod
    def layer_options(config, layer_idx: int) -> dict:
        sliding = config.layer_types[layer_idx] == "sliding_attention"
        return {"qkv_bias": True, "o_bias": False, "sliding_window": config.sliding_window if sliding else None}


class Qwen2ForCausalLM(DecoderForCausalLM):
    """Qwen2 with its language-model head (`lm_head`, tied to `model.embed_tokens` when tie_word_embeddings)."""

    config_class = Qwen2Config
    base_model_class = Qwen2Model


class Qwen2ForSequenceClassification(DecoderForSequenceClassification):
    """Qwen2 with a `score` head read at the last non-padding token."""

    config_class = Qwen2Config
    base_model_class = Qwen2Model


class Qwen2ForTokenClassification(DecoderForTokenClassification):
    """Qwen2 with a per-token `score` head."""

    config_class = Qwen2Config
    base_model_class = Qwen2Model


class Qwen2ForQuestionAnswering(DecoderForQuestionAnswering):
    """Qwen2 with a span head; the backbone sits under `transformer` (the reference's backward-compatible name)."""

    config_class = Qwen2Config
    base_model_class = Qwen2Model
    base_model_prefix = "transformer"
