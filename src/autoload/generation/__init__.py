"""Text generation for the causal language models: `generate`, `chat` / `stream_chat`, streamers, and the
`GenerationConfig` read from generation_config.json.

- config.py: GenerationConfig and the merging of options (call > passed config > model file > defaults);
- sampling.py: logits processing in the reference's order, `logits_to_probs`, `sample`;
- beam.py: beam search (`num_beams` > 1) and `compute_transition_scores`;
- decode.py: the loop (`prefill`, `decode_one_token`), padding, stopping, caches, outputs;
- streamers.py: TextStreamer, TextIteratorStreamer;
- chat.py: chat templates and histories;
- mixin.py: GenerationMixin, the generate / chat / stream_chat methods the causal-LM heads opt into.
"""

from __future__ import annotations

from .beam import GenerateBeamDecoderOnlyOutput, compute_transition_scores
from .chat import chat, stream_chat
from .config import GenerationConfig
from .decode import GenerateDecoderOnlyOutput, StopStrings, decode_one_token, generate, prefill
from .mixin import GenerationMixin
from .sampling import LogitsRules, logits_to_probs, sample, warp
from .streamers import TextIteratorStreamer, TextStreamer

__all__ = ["GenerateBeamDecoderOnlyOutput", "GenerateDecoderOnlyOutput", "GenerationConfig", "GenerationMixin",
           "LogitsRules", "StopStrings", "TextIteratorStreamer", "TextStreamer", "chat", "compute_transition_scores",
           "decode_one_token", "generate", "logits_to_probs", "prefill", "sample", "stream_chat", "warp"]
