"""`GenerationMixin`: what a head opts into to generate text — `generate`, `chat`, `stream_chat`.

The causal-LM heads list it first among their bases (`class LlamaForCausalLM(GenerationMixin,
LlamaPreTrainedModel)`), so that its `can_generate` and `load_extras` come before the model base class's (False, and
nothing to load); the base class knows nothing else of generation. Everything here is a thin method over the functions of this package, which
only need a model that is called like a causal LM (`input_ids`, `attention_mask`, `position_ids`,
`past_key_values`, ... -> `.logits`, `.past_key_values`) and has `.config`, `.dtype`, `.device`.
"""

from __future__ import annotations

from .beam import compute_transition_scores
from .chat import chat, stream_chat
from .config import GenerationConfig
from .decode import generate


class GenerationMixin:
    """Adds `generate`, `chat` and `stream_chat` to a model; `can_generate()` is True for every class that
    inherits it. The compiled decoding state of `generate(compile=True)` lives on the instance
    (`_compiled_decoder`), never in the process."""

    @classmethod
    def can_generate(cls) -> bool:
        """True: this class generates text."""
        return True

    def load_extras(self, source) -> None:
        """From from_pretrained: generation_config.json of `source`, else the generation fields of config.json."""
        self.generation_config = GenerationConfig.from_source(source, self.config)

    def generate(self, *args, **kwargs):
        """Generate token ids; see `autoload.generation.generate` for the options."""
        return generate(self, *args, **kwargs)

    def prepare_inputs_for_generation(self, input_ids, past_key_values=None, attention_mask=None,
                                      inputs_embeds=None, cache_position=None, position_ids=None, use_cache=True,
                                      **kwargs) -> dict:
        """The keyword arguments of one decoding forward, with the reference's signature (PEFT wraps this method
        and calls it). Only the tokens the cache does not hold yet are kept: (B, T) -> (B, T - cached); position
        ids default to each row's count of real tokens from the (B, past + new) `attention_mask`. Other keywords
        are passed through to the forward. `inputs_embeds` is used only while the cache is empty. An encoder-decoder
        gets `decoder_input_ids` (the uncached decoder tokens) and its encoder mask as `attention_mask`."""
        cached = past_key_values.get_seq_length() if past_key_values is not None else 0
        if cache_position is not None:
            cached = int(cache_position[0])
        if getattr(self.config, "is_encoder_decoder", False):
            # input_ids are the decoder's ids; attention_mask is the encoder's (B, S), kept whole; the encoder's
            # inputs_embeds are not re-read (encoder_outputs comes through kwargs), as the reference
            inputs = {"decoder_input_ids": input_ids[:, cached:], "past_key_values": past_key_values,
                      "use_cache": use_cache}
            if attention_mask is not None:
                inputs["attention_mask"] = attention_mask
            inputs.update(kwargs)
            return inputs
        if position_ids is None and attention_mask is not None:
            position_ids = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
        inputs = {"past_key_values": past_key_values, "attention_mask": attention_mask, "use_cache": use_cache}
        if inputs_embeds is not None and cached == 0:
            inputs["inputs_embeds"] = inputs_embeds
            length = inputs_embeds.shape[1]
        else:
            inputs["input_ids"] = input_ids[:, cached:]
            length = inputs["input_ids"].shape[1]
        if position_ids is not None:
            inputs["position_ids"] = position_ids[:, -length:]
        inputs.update(kwargs)
        return inputs

    def compute_transition_scores(self, sequences, scores, beam_indices=None, normalize_logits: bool = False):
        """Per-token scores of generated `sequences`; see `autoload.generation.beam.compute_transition_scores`."""
        return compute_transition_scores(sequences, scores, beam_indices, normalize_logits)

    def chat(self, tokenizer, query: str, history: list | None = None, **generation_kwargs):
        """One chat turn with the tokenizer's chat template: returns (response, new history)."""
        return chat(self, tokenizer, query, history=history, **generation_kwargs)

    def stream_chat(self, tokenizer, query: str, history: list | None = None, **generation_kwargs):
        """Like chat(), yielding (partial response, history) as tokens arrive."""
        return stream_chat(self, tokenizer, query, history=history, **generation_kwargs)
