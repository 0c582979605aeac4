"""From next-token logits to the next token, in the reference's order (transformers' `_get_logits_processor`):

1. repetition penalty over every token already in the row, prompt included (left padding excluded):
   a logit < 0 is multiplied by the penalty, a logit > 0 divided by it;
1b. no-repeat n-grams: a token that would complete an n-gram already in the row (prompt included) gets -inf;
1c. bad words: the last token of each `bad_words_ids` sequence gets -inf where the row ends with the sequence's
   other tokens (a one-token sequence: everywhere);
2. minimum length: EOS ids get -inf while the row is shorter than min_length / prompt + min_new_tokens;
2b. forced tokens: at length 1 (an encoder-decoder's first generated token) only `forced_bos_token_id` is possible,
   at max_length - 1 only the `forced_eos_token_id` ids (every other logit -inf, the forced ones 0);
3. the caller's own `logits_processor` callables, in order (the reference merges them here, before the warpers);
4. only when sampling (`logits_to_probs`): temperature (logits / T), top-k (keep logits >= the k-th largest),
   top-p (drop the low tail whose cumulative probability is <= 1 - p, keep at least one), min-p (drop
   probabilities below min_p * the largest one); masked logits are -inf;
5. greedy = argmax; sampling = torch.multinomial(softmax(logits)) with the given torch.Generator.

Scores are float32 of shape (B, V).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

NEG_INF = float("-inf")


@dataclass
class LogitsRules:
    """The processors in force for one generate() call (neutral values = processor off)."""

    repetition_penalty: float = 1.0
    eos: torch.Tensor | None = None  # (n_eos,) ids masked while the row is shorter than `min_length`
    min_length: int = 0
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float | None = None
    no_repeat_ngram_size: int = 0
    forced_bos: int | None = None  # the only possible token at length 1
    forced_eos: torch.Tensor | None = None  # (n,) the only possible tokens at length max_length - 1
    max_length: int = 0
    bad_words: tuple[tuple[int, ...], ...] = ()  # from `bad_words()`

    def process(self, scores: torch.Tensor, seen: torch.Tensor | None, length: int, custom=(),
                input_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Steps 1-3 (always) and 4 (when sampling) on (B, V) scores; `seen` (B, V) marks tokens in each row;
        `custom` are `(input_ids, scores) -> scores` callables."""
        if self.repetition_penalty != 1.0 and seen is not None:
            scores = repetition_penalty(scores, seen, self.repetition_penalty)
        if self.no_repeat_ngram_size and input_ids is not None:
            scores = ban_repeated_ngrams(input_ids, scores, self.no_repeat_ngram_size)
        if self.bad_words:
            scores = ban_words(input_ids, scores, self.bad_words)
        if self.eos is not None and length < self.min_length:
            is_eos = torch.isin(torch.arange(scores.shape[-1], device=scores.device), self.eos)  # (V,)
            scores = scores.masked_fill(is_eos, NEG_INF)  # EOS may not end the row yet
        if self.forced_bos is not None and length == 1:
            scores = force(scores, torch.tensor([self.forced_bos], device=scores.device))
        if self.forced_eos is not None and length == self.max_length - 1:
            scores = force(scores, self.forced_eos)
        for processor in custom:
            scores = processor(input_ids, scores)
        if self.do_sample:
            scores = warp(scores, self.temperature, self.top_k, self.top_p, self.min_p)
        return scores


def force(scores: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Only `ids` remain possible: (B, V) scores become -inf except 0 at those ids (the reference's forced tokens)."""
    forced = torch.full_like(scores, NEG_INF)
    forced[:, ids.to(scores.device)] = 0
    return forced


def bad_words(value, eos: torch.Tensor | None) -> tuple[tuple[int, ...], ...]:
    """`bad_words_ids` checked: a list of non-empty lists of token ids (>= 0); a sequence that is one EOS id alone
    is dropped (a row must be able to end), as the reference."""
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)) or not value or not all(
            isinstance(seq, (list, tuple)) and seq and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0
                                                           for i in seq) for seq in value):
        raise ValueError(f"bad_words_ids must be a non-empty list of non-empty lists of token ids (ints >= 0), got "
                         f"{value!r}.")
    ends = set(eos.tolist()) if eos is not None else set()
    return tuple(tuple(seq) for seq in value if not (len(seq) == 1 and seq[0] in ends))


def ban_words(input_ids: torch.Tensor | None, scores: torch.Tensor, sequences) -> torch.Tensor:
    """-inf at each sequence's last token in the rows that end with its other tokens. input_ids (B, L), scores
    (B, V); an id beyond the vocabulary is a ValueError."""
    vocab = scores.shape[-1]
    if max(max(seq) for seq in sequences) >= vocab:
        raise ValueError(f"bad_words_ids name ids beyond the vocabulary (size {vocab}): {list(sequences)!r}.")
    banned = torch.zeros_like(scores, dtype=torch.bool)  # (B, V)
    for *prefix, last in sequences:
        if not prefix:
            banned[:, last] = True
        elif input_ids is not None and input_ids.shape[-1] >= len(prefix):
            tail = input_ids[:, input_ids.shape[-1] - len(prefix):]  # (B, n-1)
            banned[:, last] |= (tail == torch.tensor(prefix, device=tail.device)).all(dim=-1)
    return scores.masked_fill(banned, NEG_INF)


def repetition_penalty(scores: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """Penalise the logits of seen tokens: x * penalty if x < 0 else x / penalty (makes them less likely)."""
    penalised = torch.where(scores < 0, scores * penalty, scores / penalty)  # (B, V)
    return torch.where(seen, penalised, scores)


def ban_repeated_ngrams(input_ids: torch.Tensor, scores: torch.Tensor, n: int) -> torch.Tensor:
    """-inf for every token that would repeat an n-gram of its row: each earlier window whose first n-1 tokens equal
    the row's last n-1 tokens bans its own last token. input_ids (B, L), scores (B, V)."""
    length = input_ids.shape[-1]
    if length < n:
        return scores
    prefix = input_ids[:, length + 1 - n:]  # (B, n-1) the tokens the next one would extend
    windows = input_ids.unfold(dimension=1, size=n, step=1)  # (B, L-n+1, n)
    matches = (windows[..., :-1] == prefix.unsqueeze(1)).all(dim=-1)  # (B, L-n+1)
    vocab = scores.shape[-1]
    banned = scores.new_zeros((scores.shape[0], vocab + 1), dtype=torch.bool)  # spare column for non-matches
    banned.scatter_(1, torch.where(matches, windows[..., -1].clamp(max=vocab), vocab), True)
    return scores.masked_fill(banned[:, :vocab], NEG_INF)


def seen_tokens(input_ids: torch.Tensor, vocab_size: int, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """(B, V) bool: which token ids occur in each row. Left padding (before the row's first attended position)
    does not count, as the reference's prompt_ignore_length; ids beyond the vocab are dropped."""
    ids = input_ids.clamp(max=vocab_size)  # (B, T); out-of-vocab ids land in the spare column
    if attention_mask is not None:
        first = (attention_mask != 0).int().argmax(dim=1)  # (B,) index of the first real token
        positions = torch.arange(ids.shape[1], device=ids.device)
        ids = ids.masked_fill(positions[None, :] < first[:, None], vocab_size)
    seen = torch.zeros(ids.shape[0], vocab_size + 1, dtype=torch.bool, device=ids.device)
    seen.scatter_(1, ids, True)
    return seen[:, :vocab_size]


def warp(scores: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
         min_p: float | None = None) -> torch.Tensor:
    """Temperature, top-k, top-p, min-p on (B, V) logits; removed entries become -inf."""
    if temperature != 1.0:
        scores = scores / temperature
    if top_k:
        k = min(max(top_k, 1), scores.shape[-1])
        kth = torch.topk(scores, k).values[..., -1:]  # (B, 1) the k-th largest logit
        scores = scores.masked_fill(scores < kth, NEG_INF)
    if top_p < 1.0:
        sorted_logits, order = torch.sort(scores, descending=False)  # (B, V) ascending
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative <= (1 - top_p)  # the low tail holding at most 1 - p of the mass
        drop[..., -1:] = False  # always keep the most likely token
        scores = scores.masked_fill(drop.scatter(1, order, drop), NEG_INF)
    if min_p is not None:
        probs = scores.softmax(dim=-1)
        drop = probs < min_p * probs.amax(dim=-1, keepdim=True)
        drop.scatter_(-1, probs.argmax(dim=-1, keepdim=True), False)
        scores = scores.masked_fill(drop, NEG_INF)
    return scores


def logits_to_probs(scores: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                    min_p: float | None = None) -> torch.Tensor:
    """(B, V) next-token probabilities after the sampling warpers."""
    return torch.softmax(warp(scores, temperature, top_k, top_p, min_p), dim=-1)


def sample(scores: torch.Tensor, do_sample: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B,) next tokens from processed (B, V) scores: argmax, or one multinomial draw from softmax(scores)."""
    if not do_sample:
        return torch.argmax(scores, dim=-1)
    probs = torch.softmax(scores, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)
