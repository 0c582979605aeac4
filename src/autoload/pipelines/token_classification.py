"""token-classification (alias ner): a label per token, or entities made of merged tokens and words.

aggregation_strategy (the reference's semantics):
- "none": one entry per token: {"entity", "score", "index", "word", "start", "end"};
- "simple": adjacent tokens with the same tag are merged into one {"entity_group", ...} (B-X starts a new
  group, I-X or a bare X continues one); the score is the mean of the tokens' scores;
- "first" / "average" / "max": word pieces are first merged into words, which take the label of their first
  piece, of the pieces' averaged probabilities, or of their most confident piece; then words are grouped as in
  "simple". A piece belongs to the previous word when the tokenizer marks continuations (WordPiece "##"):
  its token text is longer than the characters it covers; otherwise (a fallback) when no space precedes it.
Labels in `ignore_labels` (default ["O"]) are dropped from the output. start/end are character offsets.

stride=n: a text longer than the tokenizer's model_max_length is cut into windows overlapping by n tokens; each
window's entities are found, and of overlapping entities the longest (then the surest) is kept.
is_split_into_words=True: an input is a list of words (a list of lists is a batch), joined with `delimiter`
(default " ") for the words and offsets of the output.
"""

from __future__ import annotations

import warnings

import torch

from .base import Pipeline, first_output

STRATEGIES = ("none", "simple", "first", "average", "max")


class TokenClassificationPipeline(Pipeline):
    """`pipe("My name is Sarah", aggregation_strategy="simple")` ->
    `[{"entity_group": "PER", "score": 0.99, "word": "sarah", "start": 11, "end": 16}]`; a list -> a list each."""

    task = "token-classification"
    auto_class = "AutoModelForTokenClassification"
    options = {"aggregation_strategy": "none", "ignore_labels": None, "stride": None, "is_split_into_words": False,
               "delimiter": None}

    @classmethod
    def check_model(cls, model) -> None:
        if not type(model).__name__.endswith("ForTokenClassification"):
            raise ValueError(f"{type(model).__name__} has no token-classification head, so it cannot do "
                             "token-classification: load a fine-tuned tagger with AutoModelForTokenClassification "
                             "(or pass its name).")

    def __call__(self, inputs, **options):
        split = options.get("is_split_into_words", self.defaults["is_split_into_words"])
        if split and isinstance(inputs, (list, tuple)) and inputs and all(isinstance(w, str) for w in inputs):
            return super().__call__([list(inputs)], **options)  # one pre-split sentence: [entities], as the reference
        return super().__call__(inputs, **options)

    def _items(self, inputs) -> tuple[list, bool]:
        if isinstance(inputs, (list, tuple)) and inputs and all(
                isinstance(item, (list, tuple)) and all(isinstance(w, str) for w in item) for item in inputs):
            return [list(item) for item in inputs], False  # pre-split sentences (is_split_into_words=True)
        return super()._items(inputs)

    def _prepare(self, options: dict) -> dict:
        strategy = str(getattr(options["aggregation_strategy"], "value", options["aggregation_strategy"])).lower()
        if strategy not in STRATEGIES:
            raise ValueError(f"aggregation_strategy={options['aggregation_strategy']!r}: use one of "
                             f"{', '.join(STRATEGIES)}.")
        ignore, stride = options["ignore_labels"], options["stride"]
        if stride is not None:
            if isinstance(stride, bool) or not isinstance(stride, int) or stride < 0:
                raise ValueError(f"stride must be a non-negative int, not {stride!r}.")
            if stride >= self.tokenizer.model_max_length:
                raise ValueError(f"stride={stride} must be less than tokenizer.model_max_length "
                                 f"({self.tokenizer.model_max_length}), less the special tokens.")
            if strategy == "none":
                raise ValueError("stride splits long texts into overlapping windows whose entities are then merged: "
                                 "it needs aggregation_strategy 'simple', 'first', 'average' or 'max', not 'none'.")
        delimiter = options["delimiter"]
        return {"strategy": strategy, "ignore": ["O"] if ignore is None else list(ignore), "stride": stride,
                "split": bool(options["is_split_into_words"]), "delimiter": " " if delimiter is None else delimiter}

    def _run(self, batch: list, options: dict) -> list:
        for item in batch:
            if options["split"] != (not isinstance(item, str)):
                raise TypeError("With is_split_into_words=True an input is a list of words (or a list of such "
                                "lists); without it, a str." if options["split"] else "An input of the "
                                "token-classification pipeline is a str; pass is_split_into_words=True for a list "
                                "of words.")
        max_length = getattr(self.tokenizer, "model_max_length", 0)
        kwargs = {"is_split_into_words": True} if options["split"] else {}
        if options["stride"] is not None:  # long texts: overlapping windows of model_max_length tokens
            kwargs.update(return_overflowing_tokens=True, stride=options["stride"])
        encoding = self.tokenizer(batch, padding=len(batch) > 1 or "stride" in kwargs, return_tensors="pt",
                                  truncation=bool(max_length and max_length > 0), return_special_tokens_mask=True,
                                  return_offsets_mapping=True, **kwargs)
        rows_of = encoding.pop("overflow_to_sample_mapping", None)
        rows_of = list(range(len(batch))) if rows_of is None else [int(i) for i in rows_of]
        encoding = encoding.to(self.device)
        logits = first_output(self.model(**self.model_inputs(encoding))).float()  # (rows, T, labels)
        scores = logits.softmax(dim=-1).cpu()  # (rows, T, labels)
        keep = (encoding["attention_mask"].bool() & ~encoding["special_tokens_mask"].bool()).cpu()  # (rows, T)
        ids, offsets = encoding["input_ids"].tolist(), encoding["offset_mapping"].tolist()
        results = []
        for i, item in enumerate(batch):
            sentence = item if isinstance(item, str) else options["delimiter"].join(item)
            word_starts = _word_starts(item, options["delimiter"]) if options["split"] else None
            entities = []
            rows = [r for r, sample in enumerate(rows_of) if sample == i]
            for r in rows:
                tokens = [t for t in range(scores.shape[1]) if keep[r, t]]
                spans = [offsets[r][t] for t in tokens]
                if word_starts is not None:  # offsets are within a word: shift them to the joined sentence
                    words = encoding.word_ids(r)
                    spans = [(a + word_starts[words[t]], b + word_starts[words[t]]) if words[t] is not None
                             else (a, b) for t, (a, b) in zip(tokens, spans)]
                pieces = self._pieces(sentence, [ids[r][t] for t in tokens], scores[r, tokens], spans, tokens,
                                      options["strategy"])
                entities += [e for e in self._aggregate(pieces, options["strategy"])
                             if e.get("entity", e.get("entity_group")) not in options["ignore"]]
            results.append(_merge_overlaps(entities) if len(rows) > 1 else entities)
        return results

    def _pieces(self, sentence: str, ids: list[int], scores: torch.Tensor, offsets: list, indices: list[int],
                strategy: str) -> list[dict]:
        """One record per real token: its text, label probabilities, character span, and whether it continues
        the previous word."""
        word_aware = bool(getattr(self.tokenizer.backend_tokenizer.model, "continuing_subword_prefix", None))
        if not word_aware and strategy in ("first", "average", "max"):
            warnings.warn("Tokenizer does not support real words, using fallback heuristic", UserWarning,
                          stacklevel=4)
        pieces = []
        for token_id, token_scores, (start, end), index in zip(ids, scores, offsets, indices):
            word = self.tokenizer.convert_ids_to_tokens(token_id)
            covered = sentence[start:end]
            if word_aware:  # "##ing" is longer than the "ing" it covers
                is_subword = len(word) != len(covered)
            else:
                is_subword = start > 0 and " " not in sentence[start - 1:start + 1]
            if token_id == self.tokenizer.unk_token_id:  # show the text, not "[UNK]"
                word, is_subword = covered, False
            pieces.append({"word": word, "scores": token_scores, "start": start, "end": end, "index": index,
                           "is_subword": is_subword})
        return pieces

    def _aggregate(self, pieces: list[dict], strategy: str) -> list[dict]:
        id2label = self.model.config.id2label
        if strategy in ("none", "simple"):
            entities = []
            for piece in pieces:
                best = int(piece["scores"].argmax())
                entities.append({"entity": id2label[best], "score": float(piece["scores"][best]),
                                 "index": piece["index"], "word": piece["word"], "start": piece["start"],
                                 "end": piece["end"]})
            return entities if strategy == "none" else self._group(entities)
        words, group = [], []
        for piece in pieces:
            if group and not piece["is_subword"]:
                words.append(self._merge_word(group, strategy))
                group = []
            group.append(piece)
        if group:
            words.append(self._merge_word(group, strategy))
        return self._group(words)

    def _merge_word(self, pieces: list[dict], strategy: str) -> dict:
        """The pieces of one word -> one labelled word."""
        if strategy == "first":
            scores = pieces[0]["scores"]
        elif strategy == "max":
            scores = max(pieces, key=lambda p: float(p["scores"].max()))["scores"]
        else:  # average: mean probability of each label over the pieces
            scores = torch.stack([p["scores"] for p in pieces]).nanmean(dim=0)  # (labels,)
        best = int(scores.argmax())
        return {"entity": self.model.config.id2label[best], "score": float(scores[best]),
                "word": self.tokenizer.convert_tokens_to_string([p["word"] for p in pieces]),
                "start": pieces[0]["start"], "end": pieces[-1]["end"]}

    def _group(self, entities: list[dict]) -> list[dict]:
        """Merge adjacent entities of the same tag; a B- tag always starts a new group."""
        groups, current = [], []
        for entity in entities:
            if current:
                bi, tag = _tag(entity["entity"])
                if tag != _tag(current[-1]["entity"])[1] or bi == "B":
                    groups.append(self._close(current))
                    current = []
            current.append(entity)
        if current:
            groups.append(self._close(current))
        return groups

    def _close(self, entities: list[dict]) -> dict:
        scores = torch.tensor([e["score"] for e in entities], dtype=torch.float64)
        return {"entity_group": entities[0]["entity"].split("-", 1)[-1], "score": float(scores.nanmean()),
                "word": self.tokenizer.convert_tokens_to_string([e["word"] for e in entities]),
                "start": entities[0]["start"], "end": entities[-1]["end"]}


def _tag(label: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); 'I-PER' -> ('I', 'PER'); a label without a prefix continues: ('I', label)."""
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


def _word_starts(words: list[str], delimiter: str) -> list[int]:
    """The character where each word starts in `delimiter.join(words)`."""
    starts, position = [], 0
    for word in words:
        starts.append(position)
        position += len(word) + len(delimiter)
    return starts


def _merge_overlaps(entities: list[dict]) -> list[dict]:
    """Entities of overlapping windows (stride): of those that overlap, keep the longest, then the surest."""
    if not entities:
        return entities
    entities = sorted(entities, key=lambda e: e["start"])
    kept, previous = [], entities[0]
    for entity in entities:
        if previous["start"] <= entity["start"] < previous["end"]:
            length, previous_length = entity["end"] - entity["start"], previous["end"] - previous["start"]
            if length > previous_length or length == previous_length and entity["score"] > previous["score"]:
                previous = entity
        else:
            kept.append(previous)
            previous = entity
    kept.append(previous)
    return kept
