"""`generate()`: greedy decoding and sampling for the causal language models, gpt-fast style.

The loop is four small pieces: `prefill` runs the prompt through the model once and fills the KV cache,
`decode_one_token` feeds one new token per row against the cache, `LogitsRules.process` + `sample`
(sampling.py) turn the last logits into the next token. Around them: option merging (config.py), left padding
(position ids = cumsum(mask) - 1, the mask grows by one column per step), EOS / stop-string / length stopping,
finished rows filled with the pad id, streamers, and the optional static cache.

Shapes: B rows (batch x num_return_sequences), T prompt length, L current length, V vocabulary.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from ..nn.outputs import ModelOutput
from .beam import beam_search, emptied_cache, stale_cache
from .compiled import CACHE_MULTIPLE, CompiledSteps
from .config import CACHE_IMPLEMENTATIONS, DEFAULT_NEW_TOKENS, NEUTRAL, GenerationConfig, resolve
from .sampling import LogitsRules, bad_words, sample, seen_tokens
from .seq2seq import DecoderStep, dict_output, encode, is_encoder_decoder, start_ids

logger = logging.getLogger("autoload")


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


UNSET = _Unset()  # default of the options whose explicit None means something (no EOS, no pad id)


@dataclass
class GenerateDecoderOnlyOutput(ModelOutput):
    """`generate(..., return_dict_in_generate=True)`: the (B, L) sequences, the processed (B, V) scores of each
    step when output_scores=True, the raw (B, V) logits when output_logits=True, per step a tuple per layer of
    the (B, heads, new, past + new) attention weights (output_attentions=True, eager attention) and of the
    (B, new, hidden) hidden states, embeddings first (output_hidden_states=True) — new is the prompt length at
    the first step, then 1 — and the KV cache."""

    sequences: torch.Tensor | None = None
    scores: tuple[torch.Tensor, ...] | None = None
    logits: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[tuple[torch.Tensor, ...], ...] | None = None
    hidden_states: tuple[tuple[torch.Tensor, ...], ...] | None = None
    past_key_values: Any = None


class StepOutputs:
    """Collects the attentions / hidden states of every forward of a generate() call (return_dict_in_generate
    with output_attentions / output_hidden_states): `flags` are the forward's keywords, calling it records one
    step's output."""

    def __init__(self, attentions: bool, hidden_states: bool, key_length: int | None = None):
        self.key_length = key_length  # static cache: the reference's weights span all its max_length - 1 slots
        self.flags = {"output_attentions": True} if attentions else {}
        if hidden_states:
            self.flags["output_hidden_states"] = True
        self.attentions = [] if attentions else None
        self.cross_attentions = [] if attentions else None  # encoder-decoders' cross-attention weights
        self.hidden_states = [] if hidden_states else None

    def __call__(self, out) -> None:
        if self.attentions is not None:
            weights = out.attentions
            if self.key_length is not None and weights:  # zeros over the slots not written yet, as the reference
                weights = tuple(torch.nn.functional.pad(w, (0, max(self.key_length - w.shape[-1], 0)))
                                for w in weights)
            self.attentions.append(weights)
            cross = getattr(out, "cross_attentions", None)
            if cross is not None:
                self.cross_attentions.append(cross)
        if self.hidden_states is not None:
            self.hidden_states.append(out.hidden_states)

    def result(self, cross: bool = True) -> dict:
        """The `attentions` and `hidden_states` fields of the output (None when not asked for), and with `cross`
        the encoder-decoders' `cross_attentions`."""
        if not cross:
            return {k: v for k, v in self.result().items() if k != "cross_attentions"}
        return {"attentions": tuple(self.attentions) if self.attentions is not None else None,
                "hidden_states": tuple(self.hidden_states) if self.hidden_states is not None else None,
                "cross_attentions": tuple(self.cross_attentions) if self.cross_attentions else None}


# -- the four pieces -------------------------------------------------------------------------------------------

def _forward(model, input_ids, attention_mask, position_ids, cache, record=None):
    kwargs = {"logits_to_keep": 1} if _keeps_logits(model) else {}
    if record is not None:
        kwargs.update(record.flags)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                past_key_values=cache, use_cache=cache is not None, return_dict=True, **kwargs)
    if record is not None:
        record(out)
    return out.logits[:, -1].float(), out.past_key_values  # (B, V) in fp32, as the reference processes them


def prefill(model, input_ids, attention_mask, position_ids, cache, record=None):
    """Run the (B, T) prompt once; returns the (B, V) fp32 logits of the last position and the filled cache.
    `record`: a StepOutputs that keeps the step's attentions / hidden states."""
    return _forward(model, input_ids, attention_mask, position_ids, cache, record)


def decode_one_token(model, tokens, attention_mask, position_ids, cache, record=None):
    """One step: (B, 1) new tokens at (B, 1) positions against the cache; `attention_mask` is (B, past + 1)."""
    return _forward(model, tokens, attention_mask, position_ids, cache, record)


def _decode_step(model, tokens, attention_mask, position_ids, cache):
    """The function `compile=True` hands to torch.compile (compiled.py): `decode_one_token` with fixed shapes —
    (B, 1) tokens and positions, a (B, 1, 1, max_len) mask, and a StaticCache in its `write_positions` mode."""
    return _forward(model, tokens, attention_mask, position_ids, cache)[0]  # (B, V)


def _seq2seq_decode_step(model, tokens, attention_mask, position_ids, cache, source, source_mask):
    """`_decode_step` of an encoder-decoder: the decoder's (B, 1) tokens against its static self-attention cache
    (the (B, 1, 1, max_len) mask) and the cross-attention keys the prompt step cached; `source` (B, S, H) and
    `source_mask` (B, S) or None are the encoder's output and mask. Positions come from the cache index."""
    out = model(encoder_outputs=(source,), attention_mask=source_mask, decoder_input_ids=tokens,
                decoder_attention_mask=attention_mask, past_key_values=cache, use_cache=True, return_dict=True)
    return out.logits[:, -1].float()  # (B, V)


def _keeps_logits(model) -> bool:
    cls = type(model)
    if "_autoload_keeps_logits" not in cls.__dict__:
        cls._autoload_keeps_logits = "logits_to_keep" in inspect.signature(cls.forward).parameters
    return cls._autoload_keeps_logits


# -- generate ----------------------------------------------------------------------------------------------------

def generate(model, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, *,
             generation_config=None, max_new_tokens: int | None = None, min_new_tokens: int | None = None,
             max_length: int | None = None, min_length: int | None = None, do_sample: bool | None = None,
             temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
             min_p: float | None = None, repetition_penalty: float | None = None, eos_token_id=UNSET,
             pad_token_id=UNSET, bos_token_id: int | None = None, stop_strings=None, tokenizer=None,
             num_return_sequences: int | None = None, generator: torch.Generator | None = None,
             seed: int | None = None, streamer=None, cache_implementation: str | None = None,
             use_cache: bool | None = None, return_dict_in_generate: bool | None = None,
             output_scores: bool | None = None, output_logits: bool | None = None,
             output_attentions: bool | None = None, output_hidden_states: bool | None = None,
             num_beams: int | None = None,
             length_penalty: float | None = None, early_stopping: bool | str | None = None,
             no_repeat_ngram_size: int | None = None, logits_processor=None, stopping_criteria=None, inputs=None,
             position_ids: torch.Tensor | None = None, past_key_values=None, compile: bool = False,
             decoder_start_token_id: int | None = None, forced_bos_token_id: int | None = None,
             forced_eos_token_id=None, decoder_input_ids: torch.Tensor | None = None, encoder_outputs=None,
             bad_words_ids=None, **unknown):
    """Generate continuations of `input_ids` (B, T) — left-padded with `attention_mask` for a batch.

    Options left None come from `generation_config` (a GenerationConfig, dict or transformers object), then the
    model's generation_config.json, then the defaults (20 new tokens, greedy, top_k=50 when sampling). Returns
    the (B * num_return_sequences, T + new) LongTensor, or a `GenerateDecoderOnlyOutput` with
    return_dict_in_generate=True. `seed` / `generator` make sampling reproducible; `stop_strings` needs
    `tokenizer`; `streamer` (TextStreamer, TextIteratorStreamer) receives the tokens as they come;
    `cache_implementation="static"` preallocates the KV cache for prompt + max_new_tokens.
    `logits_processor` / `stopping_criteria`: extra callables `(input_ids, scores) -> scores / bool (B,)`; the
    processors run after the repetition penalty and min-length rules and before the sampling warpers.
    `position_ids` (B, T), e.g. from a ChatGLM tokenizer, are used for the prompt (default: counted from each
    row's first real token); later tokens continue from the last one. `past_key_values`: a cache returned by an
    earlier call (`return_dict_in_generate=True`) that already holds the tokens before `input_ids`, which are
    then only the new tokens; the returned sequences hold only those new tokens and the generated ones.
    `compile=True` (implies the static cache) runs each one-token step through torch.compile with fixed shapes
    (see `autoload.generation.compiled`; the compiled graphs are the model's own, nothing process-wide is reset):
    the first call per batch size and cache length (prompt + max_new_tokens rounded up to a multiple of 256)
    compiles for tens of seconds, later ones are faster than eager; the prompt runs eagerly.
    `num_beams` > 1 runs beam search (generation/beam.py, the reference's algorithm) with `length_penalty`,
    `early_stopping` (True / False / "never") and up to `num_beams` `num_return_sequences`; the dict output then
    has `sequences_scores` and `beam_indices` (for `compute_transition_scores`). `output_attentions` /
    `output_hidden_states` (with return_dict_in_generate=True; ignored without it, as the reference) add the
    `attentions` / `hidden_states` of every step's forward, a tuple per layer (attentions need eager attention).
    `no_repeat_ngram_size` bans any n-gram from occurring twice in a row (every decoding mode).
    An explicit `eos_token_id=None` (or []) turns EOS stopping off and `pad_token_id=None` drops the model's pad
    id, as in the reference; every other option given as None counts as not set.

    Encoder-decoders (T5, BART, Marian, ...; see generation/seq2seq.py): `input_ids` / `attention_mask` are the
    source, which the encoder reads once (or pass its `encoder_outputs`); the decoder starts from
    `decoder_start_token_id` (or `decoder_input_ids`), and the lengths count the decoder's tokens. The returned
    sequences are the decoder's ids. `forced_bos_token_id` forces the first generated token (mBART's target
    language), `forced_eos_token_id` the last one at max_length (every model). `bad_words_ids` (a list of token-id
    lists) bans each sequence's last token where the row ends with the rest of it (one-token sequences: always;
    a lone EOS id is never banned), as the reference's NoBadWordsLogitsProcessor.
    """
    call = {k: v for k, v in locals().items()
            if k in _FIELDS and v is not UNSET and (v is not None or k in ("eos_token_id", "pad_token_id"))}
    try:
        _check_unknown(unknown)
        if inputs is not None:
            if input_ids is not None:
                raise ValueError("Pass the prompt once, as input_ids or as inputs.")
            input_ids = inputs
        if input_ids is not None and not isinstance(input_ids, torch.Tensor) and hasattr(input_ids, "keys"):
            encoding = input_ids  # a tokenizer output passed whole: take its ids and mask
            input_ids = encoding["input_ids"]
            if attention_mask is None:
                attention_mask = encoding.get("attention_mask")
            if position_ids is None:
                position_ids = encoding.get("position_ids")
        with torch.no_grad():
            return _generate(model, input_ids, attention_mask, call, generation_config, tokenizer, generator, seed,
                             streamer, logits_processor or [], stopping_criteria or [], position_ids,
                             past_key_values, compile, decoder_input_ids, encoder_outputs)
    except BaseException as err:  # let an iterating consumer in another thread see the failure instead of hanging
        if streamer is not None and hasattr(streamer, "on_error"):
            streamer.on_error(err)
        raise


_FIELDS = set(GenerationConfig.field_names())


# keywords of the forward that the reference's generate accepts and never forwards (Seq2SeqTrainer's
# predict_with_generate passes the whole batch, labels included)
IGNORED = ("labels",)


def _check_unknown(unknown: dict) -> None:
    for key, value in unknown.items():
        if key in IGNORED:
            continue
        if key in NEUTRAL:
            if value is None or value == NEUTRAL[key]:
                continue
            raise NotImplementedError(f"generate({key}={value!r}) is not implemented by autoload (greedy decoding, "
                                      "sampling and beam search only).")
        valid = [p for p in inspect.signature(generate).parameters if p not in ("model", "unknown")]
        close = difflib.get_close_matches(key, valid, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else f" Valid options: {', '.join(sorted(valid))}."
        raise TypeError(f"generate() got an unknown option '{key}'.{hint}")


def _generate(model, input_ids, attention_mask, call, passed, tokenizer, generator, seed, streamer, processors,
              criteria, position_ids=None, past=None, compile=False, decoder_input_ids=None, encoder_outputs=None):
    model_config = getattr(model, "generation_config", None)
    if model_config is None:
        model_config = GenerationConfig.from_model_config(model.config)
    cfg, user_set = resolve(call, passed, model_config)
    if compile:
        if ("cache_implementation" in user_set and cfg.cache_implementation != "static") or not cfg.use_cache:
            raise ValueError("compile=True decodes on the static KV cache: leave cache_implementation and "
                             "use_cache unset.")
        cfg.cache_implementation = "static"
    device = model.device
    seq2seq = is_encoder_decoder(model)
    if seq2seq and input_ids is None and encoder_outputs is not None:
        batch, length = encoder_outputs[0].shape[:2]  # no source ids: placeholders, attended unless masked
        input_ids = torch.zeros(batch, length, dtype=torch.long, device=device)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
    elif decoder_input_ids is not None or encoder_outputs is not None:
        if not seq2seq:
            raise ValueError(f"decoder_input_ids / encoder_outputs are for encoder-decoder models; "
                             f"{type(model).__name__} is decoder-only: pass the prompt as input_ids.")
    input_ids = _prompt_ids(input_ids, cfg.bos_token_id, device)
    batch, prompt_len = input_ids.shape
    if attention_mask is not None:
        attention_mask = attention_mask.to(device)
        if attention_mask.dim() != 2:
            raise ValueError("attention_mask passed to generate() must be 2-D (batch, length).")
    eos = _ids_tensor(cfg.eos_token_id, device)
    pad = cfg.pad_token_id
    if pad is None and eos is not None:
        if attention_mask is None and batch > 1:
            logger.warning("The attention mask and the pad token id were not set, with a batched input. As a "
                           "consequence, you may observe unexpected behavior. Please pass your input's "
                           "`attention_mask` to obtain reliable results.")
        pad = int(eos[0])
    _validate(cfg, user_set)
    if attention_mask is None:
        attention_mask = _infer_mask(input_ids, pad, eos)
    encoded = None
    if seq2seq:  # the encoder runs once; from here on the loop sees the decoder (seq2seq.DecoderStep)
        if past is not None:
            raise ValueError("Encoder-decoder generation starts from the encoder: past_key_values are for "
                             "decoder-only models.")
        with_outputs = bool(cfg.return_dict_in_generate)
        encoded = encode(model, input_ids, attention_mask, encoder_outputs,
                         with_outputs and bool(cfg.output_attentions), with_outputs and bool(cfg.output_hidden_states))
        model = DecoderStep(model, encoded, None if bool((attention_mask == 1).all()) else attention_mask)
        input_ids = start_ids(model, cfg, batch, decoder_input_ids, device)
        prompt_len = input_ids.shape[1]
        attention_mask = torch.ones_like(input_ids)
    elif pad is not None and batch > 1 and bool((attention_mask[:, -1] == 0).any()):
        logger.warning("A decoder-only architecture is being used, but right-padding was detected! For correct "
                       "generation results, please set `padding_side='left'` when initializing the tokenizer.")
    past_len = past.get_seq_length() if past is not None else 0
    if position_ids is not None:
        position_ids = torch.as_tensor(position_ids, device=device).long().reshape(batch, prompt_len)
    beams = cfg.num_beams > 1
    if beams and (streamer is not None or past is not None):
        raise ValueError("Beam search (num_beams > 1) cannot be used with a streamer or past_key_values: set "
                         "num_beams=1 for those.")
    n = cfg.num_beams if beams else cfg.num_return_sequences
    if n > 1:  # each prompt repeated n times in a row, as the reference's _expand_inputs_for_generation
        if past is not None:
            raise ValueError("num_return_sequences > 1 cannot continue from past_key_values (one cache per row).")
        input_ids = input_ids.repeat_interleave(n, dim=0)
        attention_mask = attention_mask.repeat_interleave(n, dim=0)
        position_ids = position_ids.repeat_interleave(n, dim=0) if position_ids is not None else None
        if seq2seq:
            model.repeat_interleave(n)
        batch *= n
    max_length, min_length = _lengths(model, cfg, user_set, prompt_len, past_len)
    if past_len:  # the cached tokens are attended to: they count as real columns of the mask
        attention_mask = torch.cat([attention_mask.new_ones(batch, past_len), attention_mask], dim=-1)
    mask = None if bool((attention_mask == 1).all()) else attention_mask  # no padding: the model needs no mask
    if streamer is not None:
        streamer.put(input_ids.cpu())

    stop = StopStrings(cfg.stop_strings, tokenizer) if cfg.stop_strings else None
    if seed is not None:
        if generator is not None:
            raise ValueError("Pass either seed or generator, not both.")
        generator = torch.Generator(device=device).manual_seed(seed)
    rules = LogitsRules(cfg.repetition_penalty, eos, min_length, cfg.do_sample, cfg.temperature, cfg.top_k,
                        cfg.top_p, cfg.min_p, cfg.no_repeat_ngram_size, cfg.forced_bos_token_id,
                        _ids_tensor(cfg.forced_eos_token_id, device), max_length,
                        bad_words(cfg.bad_words_ids, eos))
    if past is not None:
        if not cfg.use_cache:
            raise ValueError("past_key_values was given with use_cache=False: the cache is needed to continue.")
        cache = past
    else:
        # compiled steps: the cache length rounded up, so that nearby prompt lengths share one graph
        cache_len = -(-max_length // CACHE_MULTIPLE) * CACHE_MULTIPLE if compile else max_length
        cache = _new_cache(model, cfg, batch, cache_len, seq2seq, n) if cfg.use_cache else None
    positions = position_ids if position_ids is not None else \
        _positions(mask, batch, past_len + prompt_len, device)[:, past_len:]  # (B, T)
    record = None
    if cfg.return_dict_in_generate and (cfg.output_attentions or cfg.output_hidden_states):
        if compile:
            raise ValueError("compile=True returns no attentions or hidden states: leave output_attentions and "
                             "output_hidden_states unset, or decode without compile.")
        static = cfg.cache_implementation == "static" and cfg.use_cache and past is None
        record = StepOutputs(bool(cfg.output_attentions), bool(cfg.output_hidden_states),
                             max_length - 1 if static else None)
    step = None
    if compile and max_length > prompt_len:  # checks the model before the prompt runs
        if seq2seq:  # the decoder's step, with the encoder's output and mask as graph inputs
            step = CompiledSteps(model.model, cache, mask, prompt_len, _seq2seq_decode_step,
                                 (model.encoder_outputs.last_hidden_state, model.encoder_mask))
        else:
            step = CompiledSteps(model, cache, mask, past_len + prompt_len, _decode_step)
    if beams and max_length > prompt_len:
        out = beam_search(
            model, input_ids, mask, positions, cache, num_beams=cfg.num_beams, max_length=max_length, rules=rules,
            processors=processors, finished=lambda ids, scores: _finished(ids, scores, eos, stop, criteria),
            eos=eos, pad=pad, length_penalty=cfg.length_penalty, early_stopping=cfg.early_stopping,
            num_return_sequences=cfg.num_return_sequences, output_scores=cfg.output_scores,
            output_logits=cfg.output_logits, return_dict=cfg.return_dict_in_generate,
            forward=lambda ids, m, pos, c: _forward(model, ids, m, pos, c, record), seen_mask=mask,
            step_outputs=record, step=step)
        return dict_output(out, encoded, record) if seq2seq and cfg.return_dict_in_generate else out
    scores_out = [] if cfg.output_scores else None
    logits_out = [] if cfg.output_logits else None
    unfinished = torch.ones(batch, dtype=torch.bool, device=device)
    seen = None

    if max_length > prompt_len:
        logits, cache = prefill(model, input_ids, mask, positions, cache, record)
        if cfg.repetition_penalty != 1.0:
            seen = seen_tokens(input_ids, logits.shape[-1], mask[:, past_len:] if mask is not None else None)
        rows = torch.arange(batch, device=device)
        while True:
            scores = rules.process(logits, seen, input_ids.shape[1], processors, input_ids)
            if scores_out is not None:
                scores_out.append(scores)
            if logits_out is not None:
                logits_out.append(logits)
            next_tokens = sample(scores, cfg.do_sample, generator)  # (B,)
            if eos is not None:  # finished rows only grow padding
                next_tokens = torch.where(unfinished, next_tokens, torch.as_tensor(pad, device=device))
            input_ids = torch.cat([input_ids, next_tokens[:, None]], dim=-1)  # (B, L + 1)
            if seen is not None:
                seen[rows, next_tokens.clamp(max=seen.shape[1] - 1)] |= next_tokens < seen.shape[1]
            if streamer is not None:
                streamer.put(next_tokens.cpu())
            unfinished &= ~_finished(input_ids, scores, eos, stop, criteria)
            if input_ids.shape[1] >= max_length or not bool(unfinished.any()) or getattr(streamer, "cancelled", False):
                break
            if mask is not None:
                mask = torch.cat([mask, mask.new_ones(batch, 1)], dim=-1)  # (B, L)
            positions = torch.cat([positions, positions[:, -1:] + 1], dim=-1)
            if cache is None:  # no cache: the whole sequence again
                logits, _ = prefill(model, input_ids, mask, positions, None, record)
            elif stale_cache(model, cache, input_ids.shape[1]):  # e.g. Phi-3's LongRoPE switching to long factors
                logits, cache = prefill(model, input_ids, mask, positions, emptied_cache(cache), record)
                if step is not None:  # compiled steps mark the slot each one writes: this one was written here
                    step.keys_ok[:, cache.get_seq_length() - 1] = True
            elif step is not None:
                logits = step(next_tokens[:, None], positions[:, -1:])
            else:
                logits, cache = decode_one_token(model, next_tokens[:, None], mask, positions[:, -1:], cache, record)
    if streamer is not None:
        streamer.end()
    if cfg.return_dict_in_generate:
        if seq2seq:
            return dict_output(GenerateDecoderOnlyOutput(
                sequences=input_ids, scores=tuple(scores_out) if scores_out is not None else None,
                logits=tuple(logits_out) if logits_out is not None else None, past_key_values=cache),
                encoded, record)
        return GenerateDecoderOnlyOutput(sequences=input_ids,
                                         scores=tuple(scores_out) if scores_out is not None else None,
                                         logits=tuple(logits_out) if logits_out is not None else None,
                                         **(record.result(cross=False) if record is not None else {}),
                                         past_key_values=cache)
    return input_ids


# -- preparation -------------------------------------------------------------------------------------------------

def _prompt_ids(input_ids, bos, device) -> torch.Tensor:
    if input_ids is None:
        if bos is None:
            raise ValueError("generate() needs input_ids (or a bos_token_id to start from).")
        return torch.full((1, 1), int(bos), dtype=torch.long, device=device)
    input_ids = torch.as_tensor(input_ids, device=device)
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
    if input_ids.dim() != 2 or input_ids.is_floating_point():
        raise ValueError(f"input_ids must be a (batch, length) tensor of token ids, got shape "
                         f"{tuple(input_ids.shape)} and dtype {input_ids.dtype}.")
    return input_ids.long()


def _ids_tensor(ids, device) -> torch.Tensor | None:
    if ids is None:
        return None
    values = [int(i) for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids)] \
        if not isinstance(ids, int) and not (isinstance(ids, torch.Tensor) and ids.dim() == 0) else [int(ids)]
    if any(v < 0 for v in values):
        raise ValueError(f"eos_token_id must hold non-negative token ids, got {values}.")
    return torch.tensor(values, dtype=torch.long, device=device) if values else None


def _validate(cfg: GenerationConfig, user_set: set) -> None:
    if cfg.max_new_tokens is not None and cfg.max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {cfg.max_new_tokens}.")
    if cfg.min_new_tokens is not None and cfg.min_new_tokens < 0:
        raise ValueError(f"min_new_tokens must be >= 0, got {cfg.min_new_tokens}.")
    if cfg.max_new_tokens is not None and cfg.min_new_tokens is not None and cfg.min_new_tokens > cfg.max_new_tokens:
        raise ValueError(f"min_new_tokens ({cfg.min_new_tokens}) is larger than max_new_tokens "
                         f"({cfg.max_new_tokens}).")
    if isinstance(cfg.top_k, bool) or not isinstance(cfg.top_k, int) or cfg.top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0 (0 disables it), got {cfg.top_k!r}.")
    if not 0.0 < cfg.top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] (1 disables it), got {cfg.top_p}.")
    if cfg.min_p is not None and not 0.0 <= cfg.min_p <= 1.0:
        raise ValueError(f"min_p must be in [0, 1], got {cfg.min_p}.")
    if cfg.repetition_penalty <= 0:
        raise ValueError(f"repetition_penalty must be > 0 (1.0 = no penalty), got {cfg.repetition_penalty}.")
    if cfg.do_sample and not cfg.temperature > 0:
        raise ValueError(f"temperature must be > 0 when sampling, got {cfg.temperature}; for greedy decoding set "
                         "do_sample=False.")
    if cfg.num_return_sequences < 1:
        raise ValueError(f"num_return_sequences must be >= 1, got {cfg.num_return_sequences}.")
    if isinstance(cfg.num_beams, bool) or not isinstance(cfg.num_beams, int) or cfg.num_beams < 1:
        raise ValueError(f"num_beams must be an integer >= 1, got {cfg.num_beams!r}.")
    if cfg.num_beams > 1:
        if cfg.do_sample:
            raise NotImplementedError("Beam sampling (num_beams > 1 with do_sample=True) is not implemented by "
                                      "autoload: use num_beams=1 to sample, or do_sample=False for beam search.")
        if cfg.num_return_sequences > cfg.num_beams:
            raise ValueError(f"num_return_sequences ({cfg.num_return_sequences}) must be <= num_beams "
                             f"({cfg.num_beams}).")
    if cfg.early_stopping not in (True, False, "never"):
        raise ValueError(f"early_stopping must be True, False or 'never', got {cfg.early_stopping!r}.")
    if isinstance(cfg.length_penalty, bool) or not isinstance(cfg.length_penalty, (int, float)):
        raise ValueError(f"length_penalty must be a number, got {cfg.length_penalty!r}.")
    if isinstance(cfg.no_repeat_ngram_size, bool) or not isinstance(cfg.no_repeat_ngram_size, int) \
            or cfg.no_repeat_ngram_size < 0:
        raise ValueError(f"no_repeat_ngram_size must be an integer >= 0 (0 disables it), got "
                         f"{cfg.no_repeat_ngram_size!r}.")
    if cfg.num_return_sequences > 1 and not cfg.do_sample and cfg.num_beams == 1:
        raise ValueError("Greedy decoding (do_sample=False) returns the same sequence every time: "
                         f"num_return_sequences={cfg.num_return_sequences} needs do_sample=True.")
    if cfg.cache_implementation not in CACHE_IMPLEMENTATIONS:
        raise ValueError(f"cache_implementation must be one of {CACHE_IMPLEMENTATIONS}, got "
                         f"{cfg.cache_implementation!r}.")
    if not cfg.do_sample:
        ignored = [f"{k}={getattr(cfg, k)}" for k, neutral in (("temperature", 1.0), ("top_p", 1.0), ("top_k", 50),
                                                               ("min_p", None))
                   if k in user_set and getattr(cfg, k) != neutral]
        if ignored:
            warnings.warn(f"do_sample is not set to True, so {', '.join(ignored)} have no effect: set do_sample=True "
                          "to sample, or unset them.", UserWarning, stacklevel=4)


def _infer_mask(input_ids, pad, eos) -> torch.Tensor:
    """The reference's guess without a mask: pad positions are padding when pad occurs and is not an EOS id."""
    if pad is not None and bool((input_ids == pad).any()) and (eos is None or pad not in eos.tolist()):
        return input_ids.ne(pad).long()
    return torch.ones_like(input_ids)


def _lengths(model, cfg: GenerationConfig, user_set: set, prompt_len: int, past_len: int = 0) -> tuple[int, int]:
    """(max_length, min_length), both counting the prompt (and the `past_len` cached tokens before it, which are
    subtracted again from the result: the loop counts only the tokens it holds)."""
    if past_len:
        max_length, min_length = _lengths(model, cfg, user_set, past_len + prompt_len)
        return max_length - past_len, max(min_length - past_len, 0)
    max_pos = getattr(model.config, "max_position_embeddings", None)
    if max_pos is not None and prompt_len > max_pos:
        raise ValueError(f"The prompt has {prompt_len} tokens but the model handles at most {max_pos} positions "
                         "(config.max_position_embeddings): shorten or truncate it.")
    if cfg.max_new_tokens is not None:
        max_length = prompt_len + cfg.max_new_tokens
    elif cfg.max_length is not None:
        max_length = cfg.max_length
        if prompt_len >= max_length:
            raise ValueError(f"Input length of input_ids is {prompt_len}, but `max_length` is set to {max_length}. "
                             "Increase max_length or, better, set max_new_tokens.")
    else:  # nothing anywhere: 20 new tokens, within the model's positions, with the reference's warning
        max_length = prompt_len + DEFAULT_NEW_TOKENS
        if max_pos is not None:
            max_length = min(max_length, max_pos)
        warnings.warn(f"Using the model-agnostic default `max_length` (={max_length}) to control the generation "
                      "length. We recommend setting `max_new_tokens` to control the maximum length of the "
                      "generation.", UserWarning, stacklevel=4)
        if prompt_len >= max_length:
            raise ValueError(f"Input length of input_ids is {prompt_len}, but `max_length` is set to {max_length}. "
                             "Set max_new_tokens.")
    if max_pos is not None and max_length > max_pos:
        message = (f"prompt ({prompt_len}) + new tokens ({max_length - prompt_len}) = {max_length} exceeds the "
                   f"model's max_position_embeddings ({max_pos})")
        if _learned_positions(model):
            raise ValueError(message + ": this model has learned position embeddings and cannot go further.")
        logger.warning("%s: quality may degrade past the trained context.", message)
    if cfg.min_new_tokens is not None:
        min_length = prompt_len + cfg.min_new_tokens
    else:
        min_length = cfg.min_length or 0
    return max_length, min_length


def _learned_positions(model) -> bool:
    return any(name.endswith(("wpe", "position_embeddings")) and isinstance(module, torch.nn.Embedding)
               for name, module in model.named_modules())


def _positions(mask, batch: int, length: int, device) -> torch.Tensor:
    """(B, T) position ids: 0.. per row, counted from each row's first real token (left padding gets 0)."""
    if mask is None:
        return torch.arange(length, device=device)[None].expand(batch, length)
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)


def _new_cache(model, cfg: GenerationConfig, batch: int, max_length: int, seq2seq: bool = False,
               repeat: int = 1):
    from ..nn.cache import DynamicCache, EncoderDecoderCache, StaticCache
    if seq2seq:  # `repeat`: each encoder row was repeated that many times in a row
        own = DynamicCache()
        if cfg.cache_implementation != "dynamic":
            layers, heads, head_dim = _decoder_dims(model.config)
            own = StaticCache(layers, batch, heads, head_dim, max_length, model.dtype, model.device)
        return EncoderDecoderCache(own, DynamicCache(), source_repeat=max(repeat, 1))
    if cfg.cache_implementation == "dynamic":
        return DynamicCache()
    config = model.config
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return StaticCache(config.num_hidden_layers, batch, kv_heads, head_dim, max_length, model.dtype, model.device)


def _decoder_dims(config) -> tuple[int, int, int]:
    """(layers, heads, head_dim) of an encoder-decoder's decoder self-attention: T5's num_decoder_layers / num_heads
    / d_kv, else BART's and Marian's decoder_layers / decoder_attention_heads / d_model // heads."""
    if getattr(config, "d_kv", None) is not None:
        return config.num_decoder_layers, config.num_heads, config.d_kv
    heads = config.decoder_attention_heads
    return config.decoder_layers, heads, config.d_model // heads


def _finished(input_ids, scores, eos, stop, criteria) -> torch.Tensor:
    """(B,) rows that are done after the token just added: an EOS id, a stop string, a custom criterion."""
    done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    if eos is not None:
        done |= torch.isin(input_ids[:, -1], eos)
    if stop is not None:
        done |= stop(input_ids)
    for criterion in criteria:
        result = criterion(input_ids, scores)
        done |= torch.as_tensor(result, dtype=torch.bool, device=done.device).expand_as(done)
    return done


class StopStrings:
    """Stop a row when a stop string ends inside its last token's text (the reference's StopStringCriteria: the
    match must overlap the final token, so a string that appeared earlier does not stop the row again). The tail
    of each row is decoded with the tokenizer, with and without the last token."""

    def __init__(self, strings, tokenizer):
        if tokenizer is None:
            raise ValueError("stop_strings needs the tokenizer: generate(..., stop_strings=[...], tokenizer=tok).")
        self.strings = [strings] if isinstance(strings, str) else list(strings)
        if not self.strings or not all(isinstance(s, str) and s for s in self.strings):
            raise ValueError(f"stop_strings must be non-empty strings, got {strings!r}.")
        self.tokenizer = tokenizer
        self.window = max(len(s) for s in self.strings) + 4  # tokens of context: each token is >= 1 character

    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        hits = []
        for row in input_ids[:, -self.window:].tolist():
            text = self.tokenizer.decode(row)
            before = len(self.tokenizer.decode(row[:-1])) if len(row) > 1 else 0
            hits.append(any(text.find(s, max(0, before - len(s) + 1)) != -1 for s in self.strings))
        return torch.tensor(hits, dtype=torch.bool, device=input_ids.device)
