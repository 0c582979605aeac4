"""text-classification (alias sentiment-analysis): a label and a score per text (or text pair), from a
sequence-classification head and the config's id2label.

Scores: softmax over the labels for single-label models, an independent sigmoid per label for
`problem_type == "multi_label_classification"` (or a single label), raw logits for regression — the reference's
rule, overridable with `function_to_apply`.
"""

from __future__ import annotations

import warnings

from .base import Pipeline, _describe, first_output

FUNCTIONS = ("softmax", "sigmoid", "none")
_LEGACY = "legacy"  # top_k never given: one {"label", "score"} per input, as the reference's default
_ALL = "all"  # return_all_scores=True: every label, in the model's order


def default_function(config) -> str:
    """The reference's choice of score function for a config."""
    problem = getattr(config, "problem_type", None)
    if problem == "regression":
        return "none"
    if problem == "multi_label_classification" or config.num_labels == 1:
        return "sigmoid"
    if problem == "single_label_classification" or config.num_labels > 1:
        return "softmax"
    return str(getattr(config, "function_to_apply", "none")).lower()


class TextClassificationPipeline(Pipeline):
    """`pipe("text")` -> `[{"label": "POSITIVE", "score": 0.98}]`; a list -> one dict per text.

    `top_k=3` returns the 3 best labels per input, sorted (a list per input); `top_k=None` returns every label.
    A pair of texts is a dict `{"text": ..., "text_pair": ...}`. `function_to_apply`: "softmax", "sigmoid" or
    "none" (default: by the config's problem_type, see the module docstring). `truncation=True` cuts inputs
    longer than the model accepts. `return_all_scores=True` (deprecated in the reference, use `top_k=None`):
    every label in the model's label order, unsorted, as transformers 4.x gave it; an explicit top_k wins.
    """

    task = "text-classification"
    auto_class = "AutoModelForSequenceClassification"
    options = {"top_k": _LEGACY, "function_to_apply": None, "truncation": None, "return_all_scores": None}

    @classmethod
    def check_model(cls, model) -> None:
        if not type(model).__name__.endswith("ForSequenceClassification"):
            raise ValueError(f"{type(model).__name__} has no sequence-classification head, so it cannot do "
                             "text-classification: load a fine-tuned classifier with "
                             "AutoModelForSequenceClassification (or pass its name).")

    def _items(self, inputs) -> tuple[list, bool]:
        if isinstance(inputs, (str, dict)):
            return [_check_item(inputs)], True
        if isinstance(inputs, (list, tuple)):
            return [_check_item(item) for item in inputs], False
        raise TypeError(f"text-classification takes a str, a {{'text', 'text_pair'}} dict or a list of them, not "
                        f"{_describe(inputs)}.")

    def _prepare(self, options: dict) -> dict:
        function = options["function_to_apply"]
        function = default_function(self.model.config) if function is None else str(function).lower()
        if function not in FUNCTIONS:
            raise ValueError(f"function_to_apply={options['function_to_apply']!r}: use one of {', '.join(FUNCTIONS)}.")
        top_k = options["top_k"]
        if top_k is not None and top_k != _LEGACY and (isinstance(top_k, bool) or not isinstance(top_k, int)
                                                        or top_k < 1):
            raise ValueError(f"top_k must be a positive int or None (every label), not {top_k!r}.")
        all_scores = options["return_all_scores"]
        if all_scores is not None and top_k == _LEGACY:
            warnings.warn("return_all_scores is deprecated (as in transformers): use top_k=None for every label, "
                          "sorted, or top_k=1 for the best one.", FutureWarning, stacklevel=4)
            top_k = _ALL if all_scores else _LEGACY
        return {**options, "function_to_apply": function, "top_k": top_k}

    def _run(self, batch: list, options: dict) -> list:
        texts = [item if isinstance(item, str) else (item["text"], item["text_pair"]) if "text_pair" in item
                 else item["text"] for item in batch]
        kwargs = {} if options["truncation"] is None else {"truncation": options["truncation"]}
        encoding = self.encode(texts, **kwargs)
        logits = first_output(self.model(**self.model_inputs(encoding))).float()  # (B, labels)
        function = options["function_to_apply"]
        scores = logits.softmax(-1) if function == "softmax" else logits.sigmoid() if function == "sigmoid" \
            else logits  # (B, labels)
        id2label, top_k = self.model.config.id2label, options["top_k"]
        results = []
        for row in scores.cpu().tolist():
            if top_k == _ALL:  # return_all_scores=True: every label in id order
                results.append([{"label": id2label[i], "score": score} for i, score in enumerate(row)])
                continue
            if top_k == _LEGACY:
                best = max(range(len(row)), key=row.__getitem__)
                results.append({"label": id2label[best], "score": row[best]})
                continue
            ranked = sorted(({"label": id2label[i], "score": s} for i, s in enumerate(row)),
                            key=lambda entry: entry["score"], reverse=True)
            results.append(ranked if top_k is None else ranked[:top_k])
        return results

    def __call__(self, inputs, **options):
        result = super().__call__(inputs, **options)
        # the reference wraps a single text's result in a list unless the call passed top_k (a pair's: never)
        wrap = isinstance(result, dict) or "top_k" not in options and options.get(
            "return_all_scores", self.defaults["return_all_scores"]) is not None
        return [result] if isinstance(inputs, str) and wrap else result


def _check_item(item):
    if isinstance(item, str):
        return item
    if isinstance(item, dict) and "text" in item and set(item) <= {"text", "text_pair"}:
        return item
    raise TypeError(f"A text-classification input is a str or a {{'text': ..., 'text_pair': ...}} dict, not "
                    f"{_describe(item) if not isinstance(item, dict) else 'a dict with keys ' + str(sorted(item))}.")
