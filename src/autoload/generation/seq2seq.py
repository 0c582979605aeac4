"""Generation for encoder-decoder models (T5, BART, mBART, Marian), on the same decoding loop as the causal LMs.

The encoder runs once on the (B, S) source ids; its (B, S, H) output and the source mask are held by a
`DecoderStep`, which the loop of decode.py calls as if it were a causal LM whose "prompt" is the decoder's start
(B, 1): each call runs the decoder on the new decoder tokens against the `EncoderDecoderCache` (self-attention keys
grow by one position per step; the cross-attention keys are computed at the first step and reused). Beams and
num_return_sequences repeat the encoder output row by row (`repeat_interleave`), as the reference expands it.

The returned sequences are the decoder's ids, starting with `decoder_start_token_id`, as the reference's.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch

from ..nn.outputs import BaseModelOutput, ModelOutput


def is_encoder_decoder(model) -> bool:
    return bool(getattr(model.config, "is_encoder_decoder", False)) and hasattr(model, "get_encoder")


@dataclass
class GenerateEncoderDecoderOutput(ModelOutput):
    """`generate(..., return_dict_in_generate=True)` of an encoder-decoder: the (B, L) decoder sequences, the
    per-step scores / logits, the encoder's attentions and hidden states (once), and per step the decoder's
    self-attention weights, its cross-attention weights and its hidden states (a tuple per layer), and the cache."""

    sequences: torch.Tensor | None = None
    scores: tuple[torch.Tensor, ...] | None = None
    logits: tuple[torch.Tensor, ...] | None = None
    encoder_attentions: tuple[torch.Tensor, ...] | None = None
    encoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    decoder_attentions: tuple[tuple[torch.Tensor, ...], ...] | None = None
    cross_attentions: tuple[tuple[torch.Tensor, ...], ...] | None = None
    decoder_hidden_states: tuple[tuple[torch.Tensor, ...], ...] | None = None
    past_key_values: Any = None


@dataclass
class GenerateBeamEncoderDecoderOutput(ModelOutput):
    """Beam search's dict output for an encoder-decoder: as GenerateEncoderDecoderOutput, plus the (B*n,)
    `sequences_scores` and the (B*n, new) `beam_indices`."""

    sequences: torch.Tensor | None = None
    sequences_scores: torch.Tensor | None = None
    scores: tuple[torch.Tensor, ...] | None = None
    logits: tuple[torch.Tensor, ...] | None = None
    beam_indices: torch.Tensor | None = None
    encoder_attentions: tuple[torch.Tensor, ...] | None = None
    encoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    decoder_attentions: tuple[tuple[torch.Tensor, ...], ...] | None = None
    cross_attentions: tuple[tuple[torch.Tensor, ...], ...] | None = None
    decoder_hidden_states: tuple[tuple[torch.Tensor, ...], ...] | None = None
    past_key_values: Any = None


class DecoderStep:
    """A seq2seq model seen by the decoding loop as a causal LM over the decoder's tokens.

    `encoder_outputs`: the encoder's BaseModelOutput for the (B, S) source; `encoder_mask`: its (B, S) mask (None:
    no padding). Position ids from the loop are ignored: the decoder counts positions from its cache."""

    def __init__(self, model, encoder_outputs, encoder_mask: torch.Tensor | None):
        self.model = model
        self.config = model.config
        self.encoder_outputs = encoder_outputs
        self.encoder_mask = encoder_mask

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def named_modules(self, *args, **kwargs):
        return self.model.named_modules(*args, **kwargs)

    def repeat_interleave(self, n: int) -> None:
        """Each source row n times in a row (beams / num_return_sequences)."""
        hidden = self.encoder_outputs.last_hidden_state.repeat_interleave(n, dim=0)  # (B*n, S, H)
        self.encoder_outputs = BaseModelOutput(last_hidden_state=hidden,
                                               hidden_states=self.encoder_outputs.hidden_states,
                                               attentions=self.encoder_outputs.attentions)
        if self.encoder_mask is not None:
            self.encoder_mask = self.encoder_mask.repeat_interleave(n, dim=0)

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=True,
                return_dict=True, output_attentions=None, output_hidden_states=None):
        out = self.model(encoder_outputs=self.encoder_outputs, attention_mask=self.encoder_mask,
                         decoder_input_ids=input_ids, decoder_attention_mask=attention_mask,
                         past_key_values=past_key_values, use_cache=use_cache, return_dict=True,
                         output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        return SimpleNamespace(logits=out.logits, past_key_values=out.past_key_values,
                               attentions=out.decoder_attentions, hidden_states=out.decoder_hidden_states,
                               cross_attentions=out.cross_attentions)

    __call__ = forward


def encode(model, input_ids, attention_mask, encoder_outputs, output_attentions: bool, output_hidden_states: bool):
    """Run the encoder once on the (B, S) source (or take the caller's `encoder_outputs`); returns a
    BaseModelOutput."""
    if encoder_outputs is None:
        encoder_outputs = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask,
                                              output_attentions=output_attentions or None,
                                              output_hidden_states=output_hidden_states or None, return_dict=True)
    elif isinstance(encoder_outputs, (tuple, list)):
        encoder_outputs = BaseModelOutput(*encoder_outputs)
    elif not hasattr(encoder_outputs, "last_hidden_state"):
        raise TypeError("encoder_outputs must be the encoder's output (a BaseModelOutput or a tuple whose first item "
                        f"is the (batch, length, hidden) tensor), got {type(encoder_outputs).__name__}.")
    return encoder_outputs


def start_ids(model, cfg, batch: int, decoder_input_ids, device) -> torch.Tensor:
    """The decoder's (B, T) first ids: `decoder_input_ids` if given (with the start token put in front when they do
    not begin with it, as the reference), else the start token alone. Start = decoder_start_token_id, else bos."""
    start = cfg.decoder_start_token_id if cfg.decoder_start_token_id is not None else cfg.bos_token_id
    if start is None:
        raise ValueError(f"{type(model).__name__} has no decoder_start_token_id or bos_token_id in its generation "
                         "config or config.json: pass generate(..., decoder_start_token_id=ID).")
    begin = torch.full((batch, 1), int(start), dtype=torch.long, device=device)
    if decoder_input_ids is None:
        return begin
    ids = torch.as_tensor(decoder_input_ids, device=device).long()
    ids = ids[None] if ids.dim() == 1 else ids
    if ids.dim() != 2 or ids.shape[0] != batch:
        raise ValueError(f"decoder_input_ids must be (batch={batch}, length) token ids, got shape {tuple(ids.shape)}.")
    if bool((ids[:, 0] != int(start)).all()):
        ids = torch.cat([begin, ids], dim=-1)
    return ids


def dict_output(out, encoder_outputs, record):
    """The decoder-only dict output of the loop, renamed into the reference's encoder-decoder fields."""
    fields = dict(out.items()) if out is not None else {}
    fields.pop("attentions", None)
    fields.pop("hidden_states", None)
    steps = record.result() if record is not None else {}
    cls = GenerateBeamEncoderDecoderOutput if "beam_indices" in fields else GenerateEncoderDecoderOutput
    return cls(**fields, encoder_attentions=encoder_outputs.attentions,
               encoder_hidden_states=encoder_outputs.hidden_states,
               decoder_attentions=steps.get("attentions"), decoder_hidden_states=steps.get("hidden_states"),
               cross_attentions=steps.get("cross_attentions"))
