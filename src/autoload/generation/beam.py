"""Beam search, step for step the reference's vectorised `_beam_search` (transformers 5), so the ids, the
`sequences_scores` and the `beam_indices` come out equal.

Each prompt row holds `num_beams` running hypotheses. Per step, for every batch row:
1. the (B*nb, V) logits of the last position become log-probabilities, the logits rules run on them
   (repetition penalty, no-repeat n-grams, min length, the caller's processors), and each beam's running score is
   added: a (B, nb*V) table of candidate scores;
2. the best K = max(2, 1 + n_eos) * nb candidates are taken (`topk`), so that nb of them can keep running even
   if the best ones all end here;
3. candidates that end (EOS, stop string, max length, custom criterion) leave the running set (-1e9); the best nb
   others run on, and the KV cache rows are reordered to follow them (`cache.reorder(beam_idx)`);
4. among the top nb candidates, those that ended compete with the finished hypotheses so far on
   score / generated_length ** length_penalty; the best nb finished are kept;
5. the loop stops at max length, when every batch row has nb finished hypotheses and early_stopping=True, or when
   no running beam can beat the worst finished one any more (early_stopping=False: judged at the current length;
   "never": at max length when length_penalty > 0).

Shapes: B batch rows, nb beams, K candidates kept per row, V vocabulary, L max length, T prompt length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..nn.outputs import ModelOutput
from .sampling import seen_tokens

NEG = -1.0e9  # the reference's "impossible" score (finite, so sums stay ordered)


@dataclass
class GenerateBeamDecoderOnlyOutput(ModelOutput):
    """`generate(num_beams>1, return_dict_in_generate=True)`: the (B*n, L) sequences (n = num_return_sequences),
    their (B*n,) length-penalised scores (with output_scores=True, as the reference), the processed (B*nb, V)
    log-probabilities of each step (output_scores) and the raw logits (output_logits), the (B*n, new) index of the
    flattened beam each token came from (-1 after the hypothesis ended), the (B*nb, ...) attentions / hidden states of
    each step's forward (output_attentions / output_hidden_states; rows are the running beams before that step's
    reordering, as the reference), and the KV cache."""

    sequences: torch.Tensor | None = None
    sequences_scores: torch.Tensor | None = None
    scores: tuple[torch.Tensor, ...] | None = None
    logits: tuple[torch.Tensor, ...] | None = None
    beam_indices: torch.Tensor | None = None
    attentions: tuple[tuple[torch.Tensor, ...], ...] | None = None
    hidden_states: tuple[tuple[torch.Tensor, ...], ...] | None = None
    past_key_values: Any = None


def _gather(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """tensor (B, N, ...) -> (B, K, ...) along the beam axis with index (B, K)."""
    while index.dim() < tensor.dim():
        index = index.unsqueeze(-1)
    return torch.take_along_dim(tensor, index, dim=1)


def stale_cache(model, cache, length: int) -> bool:
    """Whether the model says its cached keys no longer fit a sequence grown to `length` (its optional
    `cache_is_stale(cached, total)`; the reference drops the cache in prepare_inputs_for_generation then)."""
    check = getattr(model, "cache_is_stale", None)
    return check is not None and check(cache.get_seq_length(), length)


def emptied_cache(cache):
    """The same cache with nothing in it (a static cache keeps its buffers: compiled steps go on with them)."""
    if hasattr(cache, "crop"):
        cache.crop(0)
    else:
        cache.length = 0
    return cache


def beam_search(model, input_ids, mask, positions, cache, *, num_beams, max_length, rules, processors, finished,
                eos, pad, length_penalty, early_stopping, num_return_sequences, output_scores, output_logits,
                return_dict, forward, seen_mask=None, step_outputs=None, step=None):
    """Beam search from (B*nb, T) prompt rows already repeated nb times (each prompt's beams adjacent).

    `forward(ids, mask, positions, cache) -> ((B*nb, V) fp32 logits, cache)`; `finished(ids, scores) -> (N,) bool`
    the EOS / stop-string / custom criteria; `rules` the LogitsRules (no sampling warpers). Returns the (B*n, L')
    ids or a GenerateBeamDecoderOnlyOutput; `step_outputs` (decode.StepOutputs, filled by `forward`) gives its
    attentions / hidden states. `step` (compile=True: a compiled.CompiledSteps over the static cache) runs the
    one-token steps after the prompt; its key mask follows the beams like the cache."""
    flat, prompt_len = input_ids.shape
    batch, device = flat // num_beams, input_ids.device
    keep = max(2, 1 + (eos.numel() if eos is not None else 0)) * num_beams  # K candidates per batch row
    top_nb = torch.arange(keep, device=device) < num_beams  # (K,) the candidates that may finish
    fill = ((pad if pad else int(eos[0])) if eos is not None else -1)
    running = torch.full((batch, num_beams, max_length), fill, dtype=torch.long, device=device)  # (B, nb, L)
    running[:, :, :prompt_len] = input_ids.view(batch, num_beams, prompt_len)
    sequences = running.clone()
    running_scores = torch.zeros(batch, num_beams, device=device)
    running_scores[:, 1:] = NEG  # only the first beam's candidates count at the first step (the beams are equal)
    beam_scores = torch.full((batch, num_beams), NEG, device=device)
    done = torch.zeros(batch, num_beams, dtype=torch.bool, device=device)  # finished hypotheses held
    improvable = torch.ones(batch, 1, dtype=torch.bool, device=device)
    running_idx = torch.full((batch, num_beams, max_length - prompt_len), -1, dtype=torch.int32, device=device)
    beam_indices = running_idx.clone()
    all_scores, raw_logits = [] if output_scores else None, [] if output_logits else None
    offset = torch.arange(batch, device=device)[:, None] * num_beams  # (B, 1) flattened index of each row's beam 0

    cur = prompt_len
    logits, cache = forward(input_ids, mask, positions, cache)
    while True:
        ids = running[:, :, :cur].reshape(flat, cur)  # (B*nb, cur)
        seen = seen_tokens(ids, logits.shape[-1], seen_mask) if rules.repetition_penalty != 1.0 else None
        log_probs = rules.process(torch.log_softmax(logits, dim=-1), seen, cur, processors, ids)  # (B*nb, V)
        if raw_logits is not None:
            raw_logits.append(logits.clone())
        if all_scores is not None:
            all_scores.append(log_probs.clone())
        vocab = log_probs.shape[-1]
        totals = (log_probs.view(batch, num_beams, vocab) + running_scores[:, :, None]).view(batch, -1)
        top_scores, top_index = torch.topk(totals, keep)  # (B, K)
        from_beam = top_index // vocab  # (B, K) which running beam each candidate extends
        cand_seqs = _gather(running, from_beam)  # (B, K, L)
        cand_seqs[:, :, cur] = top_index % vocab
        cand_idx = _gather(running_idx, from_beam)
        cand_idx[:, :, cur - prompt_len] = (from_beam + offset).to(cand_idx.dtype)

        flat_cands = cand_seqs[:, :, :cur + 1].reshape(batch * keep, cur + 1)
        ends = finished(flat_cands, all_scores) | (cur + 1 >= max_length)
        ends = ends.view(batch, keep)  # (B, K)

        # the best nb candidates that go on
        run_scores = top_scores + ends.float() * NEG
        go_on = torch.topk(run_scores, num_beams)[1]  # (B, nb)
        running, running_scores, running_idx = (_gather(cand_seqs, go_on), _gather(run_scores, go_on),
                                                _gather(cand_idx, go_on))

        # the finished hypotheses: old ones and those that just ended among the top nb, length-penalised
        just_done = ends & top_nb[None, :]
        final = top_scores / ((cur + 1 - prompt_len) ** length_penalty)
        final = final + (done.all(dim=-1, keepdim=True) & (early_stopping is True)).float() * NEG
        final = final + (~improvable).float() * NEG + (~just_done).float() * NEG
        best = torch.topk(torch.cat([beam_scores, final], dim=1), num_beams)[1]  # (B, nb)
        sequences = _gather(torch.cat([sequences, cand_seqs], dim=1), best)
        beam_scores = _gather(torch.cat([beam_scores, final], dim=1), best)
        beam_indices = _gather(torch.cat([beam_indices, cand_idx], dim=1), best)
        done = _gather(torch.cat([done, just_done], dim=1), best)

        cur += 1
        # could a running beam still beat the worst finished hypothesis?
        length = (max_length if early_stopping == "never" and length_penalty > 0.0 else cur) - prompt_len
        best_running = running_scores[:, :1] / (length ** length_penalty)
        worst_done = torch.where(done, beam_scores.min(dim=1, keepdim=True)[0], NEG)
        improvable = improvable & (best_running > worst_done).any(dim=-1, keepdim=True)
        if cache is not None:  # the cache rows follow the beams that go on
            beam_idx = running_idx[..., cur - 1 - prompt_len].reshape(flat).long()
            cache.reorder(beam_idx)
            if step is not None:
                step.reorder(beam_idx)
        if not (bool(improvable.any()) and not (bool(done.all()) and early_stopping is True)
                and not bool(ends.all())):
            break
        if mask is not None:
            mask = torch.cat([mask, mask.new_ones(flat, 1)], dim=-1)
        positions = torch.cat([positions, positions[:, -1:] + 1], dim=-1)
        if cache is None:
            logits, _ = forward(running[:, :, :cur].reshape(flat, cur), mask, positions, None)
        elif stale_cache(model, cache, cur):  # e.g. Phi-3's LongRoPE switch: the whole sequences again
            logits, cache = forward(running[:, :, :cur].reshape(flat, cur), mask, positions, emptied_cache(cache))
            if step is not None:  # compiled steps mark the slot each one writes: this one was written here
                step.keys_ok[:, cache.get_seq_length() - 1] = True
        elif step is not None:
            logits = step(running[:, :, cur - 1].reshape(flat, 1), positions[:, -1:])
        else:
            logits, cache = forward(running[:, :, cur - 1].reshape(flat, 1), mask, positions[:, -1:], cache)

    n = num_return_sequences
    sequences = sequences[:, :n].reshape(batch * n, max_length)
    beam_scores = beam_scores[:, :n].reshape(batch * n)
    beam_indices = beam_indices[:, :n].reshape(batch * n, -1)
    generated = int((beam_indices + 1).bool().sum(dim=1).max())  # the longest kept hypothesis
    sequences, beam_indices = sequences[:, :prompt_len + generated], beam_indices[:, :generated]
    if not return_dict:
        return sequences
    return GenerateBeamDecoderOnlyOutput(
        sequences=sequences, sequences_scores=beam_scores if output_scores else None,
        scores=tuple(all_scores) if all_scores is not None else None,
        logits=tuple(raw_logits) if raw_logits is not None else None,
        beam_indices=beam_indices.long(), **(step_outputs.result(cross=False) if step_outputs is not None else {}),
        past_key_values=cache)


def compute_transition_scores(sequences: torch.Tensor, scores, beam_indices: torch.Tensor | None = None,
                              normalize_logits: bool = False) -> torch.Tensor:
    """The score of each generated token, as the reference's `compute_transition_scores`: `scores` is the tuple of
    (B*nb, V) step scores of generate(output_scores=True) (or `logits` with normalize_logits=True, which applies
    log_softmax first); `beam_indices` (from beam search) say which row each token's score comes from. Returns a
    (B*n, steps) tensor, 0 where a hypothesis had already ended."""
    vocab = scores[0].shape[-1]
    if beam_indices is None:  # greedy / sampling: row i always continues row i
        beam_indices = torch.arange(scores[0].shape[0], device=sequences.device)[:, None].expand(-1, len(scores))
    stacked = torch.stack(scores).reshape(len(scores), -1).transpose(0, 1)  # (rows*V, steps)
    if normalize_logits:
        stacked = torch.log_softmax(stacked.reshape(-1, vocab, stacked.shape[-1]), dim=1)
        stacked = stacked.reshape(-1, stacked.shape[-1])
    ended = beam_indices < 0
    steps = int((~ended).long().sum(-1).max())  # the longest hypothesis
    beam_indices, ended = beam_indices.clone()[:, :steps], ended[:, :steps]
    beam_indices[ended] = 0
    indices = sequences[:, sequences.shape[-1] - steps:] + beam_indices * vocab  # (B*n, steps) into (rows*V,)
    transition = stacked.gather(0, indices.to(stacked.device))
    transition[ended] = 0
    return transition
