"""zero-shot-classification: rank labels chosen at call time with a model fine-tuned on NLI (premise/hypothesis ->
contradiction / neutral / entailment), as the reference does.

Each (text, label) becomes the pair (text, hypothesis_template.format(label)); the text is truncated, never the
hypothesis. The entailment logit scores the label: a softmax over the candidate labels (one label fits), or,
with `multi_label=True` (or a single label), a softmax of entailment against contradiction for each label on its
own (labels are independent). The entailment id is the first label of `config.label2id` whose name starts with
"entail" (any case); contradiction is id 0, or the last id when entailment is 0.
"""

from __future__ import annotations

import logging

from .base import Pipeline, _describe, first_output

logger = logging.getLogger("autoload")


class ZeroShotClassificationPipeline(Pipeline):
    """`pipe("I need my phone fixed asap!", candidate_labels=["urgent", "phone", "tablet"])` ->
    `{"sequence": ..., "labels": ["urgent", "phone", "tablet"], "scores": [0.6, 0.3, 0.1]}` (best first); a list
    of texts -> a list of such dicts. candidate_labels: a list or a comma-separated str (may be passed second,
    positionally). hypothesis_template (default "This example is {}."), multi_label (default False).
    """

    task = "zero-shot-classification"
    auto_class = "AutoModelForSequenceClassification"
    options = {"candidate_labels": None, "hypothesis_template": "This example is {}.", "multi_label": False}

    def __init__(self, model, tokenizer, **kwargs):
        super().__init__(model, tokenizer, **kwargs)
        if self.entailment_id == -1:
            logger.warning("zero-shot-classification: no label of config.label2id (%s) starts with 'entail', so "
                           "the entailment id is -1 (the last label). Give the NLI model a descriptive label2id "
                           "for correct scores.", dict(self.model.config.label2id))

    @classmethod
    def check_model(cls, model) -> None:
        if not type(model).__name__.endswith("ForSequenceClassification"):
            raise ValueError(f"{type(model).__name__} has no sequence-classification head, so it cannot do "
                             "zero-shot-classification: load a model fine-tuned on NLI with "
                             "AutoModelForSequenceClassification (or pass its name).")

    @property
    def entailment_id(self) -> int:
        """The reference's rule: the first label2id name starting with "entail", else -1."""
        for label, index in self.model.config.label2id.items():
            if label.lower().startswith("entail"):
                return index
        return -1

    def __call__(self, inputs, candidate_labels=None, **options):
        if candidate_labels is not None:
            options["candidate_labels"] = candidate_labels
        return super().__call__(inputs, **options)

    def _prepare(self, options: dict) -> dict:
        labels = options["candidate_labels"]
        if isinstance(labels, str):
            labels = [label.strip() for label in labels.split(",") if label.strip()]
        if not labels or not isinstance(labels, (list, tuple)):
            raise ValueError("zero-shot-classification needs candidate_labels: a list of labels or a "
                             f"comma-separated str, not {labels!r}.")
        template = options["hypothesis_template"]
        if template.format(labels[0]) == template:
            raise ValueError(f'hypothesis_template "{template}" has no place for the label: put {{}} where the '
                             'label goes (e.g. "This example is {}.").')
        return {**options, "candidate_labels": list(labels)}

    def _run(self, batch: list[str], options: dict) -> list:
        labels = options["candidate_labels"]
        hypotheses = [options["hypothesis_template"].format(label) for label in labels]
        pairs = [(text, hypothesis) for text in batch for hypothesis in hypotheses]  # (B * L) pairs
        try:
            encoding = self.encode(pairs, truncation="only_first")
        except ValueError as err:  # the hypothesis alone is too long to cut only the text: no truncation
            if "too short" not in str(err) and "refused" not in str(err):
                raise
            encoding = self.encode(pairs)
        logits = first_output(self.model(**self.model_inputs(encoding))).float()  # (B * L, nli labels)
        logits = logits.view(len(batch), len(labels), -1).cpu()  # (B, L, nli labels)
        entail = self.entailment_id
        if options["multi_label"] or len(labels) == 1:  # each label alone: entailment vs contradiction
            contradiction = -1 if entail == 0 else 0
            scores = logits[..., [contradiction, entail]].softmax(-1)[..., 1]  # (B, L)
        else:  # the labels compete: softmax of the entailment logits
            scores = logits[..., entail].softmax(-1)  # (B, L)
        results = []
        for text, row in zip(batch, scores.tolist()):
            order = sorted(range(len(labels)), key=row.__getitem__, reverse=True)
            results.append({"sequence": text, "labels": [labels[i] for i in order], "scores": [row[i] for i in order]})
        return results

    def _items(self, inputs) -> tuple[list, bool]:
        if isinstance(inputs, (list, tuple)) and not inputs:
            raise ValueError("zero-shot-classification needs at least one text; got an empty list.")
        try:
            return super()._items(inputs)
        except TypeError:
            raise TypeError(f"zero-shot-classification takes a str or a list of str, not {_describe(inputs)}.") \
                from None

