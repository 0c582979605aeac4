"""Mistral: the Llama architecture without biases, with a sliding-window causal mask on every layer whenever
`config.sliding_window` is set (each token attends to the `sliding_window` most recent positions, itself
included). The shared pieces live in `layers.py`; checkpoint keys are Llama's.
"""

from __future__ import annotations

from .configs import MistralConfig
from .layers import (DecoderForCausalLM, DecoderForQuestionAnswering, DecoderForSequenceClassification,
                     DecoderForTokenClassification, DecoderModel)


class MistralModel(DecoderModel):
    """The Mistral backbone: embeddings, decoder layers (sliding-window attention), final norm."""

    config_class = MistralConfig

    @staticmethod
    def layer_options(config, layer_idx: int) -> dict:
        return {"sliding_window": config.sliding_window}


class MistralForCausalLM(DecoderForCausalLM):
    """Mistral with its language-model head (`lm_head`, tied to `model.embed_tokens` when tie_word_embeddings)."""

    config_class = MistralConfig
    base_model_class = MistralModel


class MistralForSequenceClassification(DecoderForSequenceClassification):
    """Mistral with a `score` head read at the last non-padding token."""

    config_class = MistralConfig
    base_model_class = MistralModel


class MistralForTokenClassification(DecoderForTokenClassification):
    """Mistral with a per-token `score` head."""

    config_class = MistralConfig
    base_model_class = MistralModel


class MistralForQuestionAnswering(DecoderForQuestionAnswering):
    """Mistral with a span head; unlike Llama/Qwen, the backbone keeps the `model` prefix (as the reference)."""

    config_class = MistralConfig
    base_model_class = MistralModel
