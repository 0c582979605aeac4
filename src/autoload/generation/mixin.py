"""`GenerationMixin`: what a head opts into to generate text — `generate`, `chat`, `stream_chat`.

The causal-LM heads list it first among their bases (`class LlamaForCausalLM(GenerationMixin,
LlamaPreTrainedModel)`), so that its `can_generate` and `load_extras` come before the model base class's (False, and
nothing to load); the base class knows nothing else of generation. Everything here is a thin method over the functions of this package, which
only need a model that is called like a causal LM (`input_ids`, `attention_mask`, `position_ids`,
`past_key_values`, ... -> `.logits`, `.past_key_values`) and has `.config`, `.dtype`, `.device`.
"""

from __future__ import annotations

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

    def chat(self, tokenizer, query: str, history: list | None = None, **generation_kwargs):
        """One chat turn with the tokenizer's chat template: returns (response, new history)."""
        return chat(self, tokenizer, query, history=history, **generation_kwargs)

    def stream_chat(self, tokenizer, query: str, history: list | None = None, **generation_kwargs):
        """Like chat(), yielding (partial response, history) as tokens arrive."""
        return stream_chat(self, tokenizer, query, history=history, **generation_kwargs)
