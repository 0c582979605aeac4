"""`CrossEncoder`: rerankers (bge-reranker, ms-marco cross-encoders) as sentence-transformers users call them.

    from autoload import CrossEncoder
    reranker = CrossEncoder("BAAI/bge-reranker-base")
    reranker.predict([("what is a panda?", "The giant panda is a bear."), ...])     # (N,) scores
    reranker.rank("what is a panda?", documents, top_k=3, return_documents=True)

A query and a document are one input pair ([CLS] q [SEP] d [SEP], or <s> q </s></s> d </s>) through a
...ForSequenceClassification model; the score is its logit, through a sigmoid when there is one label (the
default activation of sentence-transformers, which a repo may override in config.json's
`sentence_transformers.activation_fn`, restricted here to torch.nn activations).
"""

from __future__ import annotations

import logging
import os

import torch
from torch import nn

from .modules import torch_activation
from .runner import batches, check_batch_size, forward_inputs, pad_batch, progress_bar, to_output, tokenize_all

logger = logging.getLogger("autoload")


class CrossEncoder(nn.Module):
    """A sequence-classification model scoring (query, document) pairs. `max_length` caps the pair's tokens
    (default: the tokenizer's limit); `activation_fn` overrides the score activation (a callable)."""

    def __init__(self, model_name_or_path: str | os.PathLike, *, device=None, max_length: int | None = None,
                 num_labels: int | None = None, activation_fn=None, cache_folder=None, revision: str | None = None,
                 token=None, local_files_only: bool = False, trust_remote_code: bool = False,
                 model_kwargs: dict | None = None, endpoint: str | None = None, hub: str | None = None):
        super().__init__()
        from ..registry.auto import AutoModelForSequenceClassification, AutoTokenizer
        options = {k: v for k, v in (("revision", revision), ("token", token), ("cache_dir", cache_folder),
                                     ("local_files_only", local_files_only), ("endpoint", endpoint),
                                     ("hub", hub)) if v}
        extra = {"num_labels": num_labels} if num_labels is not None else {}
        model = AutoModelForSequenceClassification.from_pretrained(
            model_name_or_path, trust_remote_code=trust_remote_code, **options, **extra, **(model_kwargs or {}))
        tokenizer = AutoTokenizer.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code, **options)
        self._attach(model, tokenizer, max_length, activation_fn)
        if device is not None:
            self.to(device)

    @classmethod
    def from_loaded(cls, model, tokenizer, *, max_length: int | None = None, activation_fn=None) -> "CrossEncoder":
        """A CrossEncoder over a sequence-classification model and tokenizer that are already loaded."""
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self._attach(model, tokenizer, max_length, activation_fn)
        return self

    def _attach(self, model, tokenizer, max_length, activation_fn) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = model.config
        limit = getattr(tokenizer, "model_max_length", None)
        self.max_length = max_length or (limit if limit and limit < 1_000_000 else None)
        self.activation_fn = activation_fn if activation_fn is not None else self._default_activation()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def num_labels(self) -> int:
        return self.config.num_labels

    def _default_activation(self):
        settings = getattr(self.config, "sentence_transformers", None) or {}
        path = settings.get("activation_fn") if isinstance(settings, dict) else None
        path = path or getattr(self.config, "sbert_ce_default_activation_function", None)
        if path:
            if not str(path).startswith("torch."):
                logger.warning("CrossEncoder: activation %r is not a torch activation; using the default.", path)
            else:
                return torch_activation(str(path).rsplit(".", 1)[-1], "config.json sentence_transformers")
        return nn.Sigmoid() if self.num_labels == 1 else nn.Identity()

    def predict(self, sentences, batch_size: int = 32, show_progress_bar: bool | None = None, activation_fn=None,
                apply_softmax: bool = False, convert_to_numpy: bool = True, convert_to_tensor: bool = False, *,
                unpad: bool = True):
        """Scores of (query, document) pairs: (N,) with one label, (N, num_labels) otherwise; one pair gives one
        score. apply_softmax: softmax over the labels (more than one)."""
        single = isinstance(sentences, (tuple, list)) and len(sentences) == 2 and all(
            isinstance(s, str) for s in sentences)
        pairs = [tuple(sentences)] if single else [tuple(pair) for pair in sentences]
        if not all(len(pair) == 2 and all(isinstance(s, str) for s in pair) for pair in pairs):
            raise TypeError("predict takes a (query, document) pair of str or a list of such pairs.")
        batch_size = check_batch_size(batch_size)
        activation = activation_fn if activation_fn is not None else self.activation_fn
        features = tokenize_all(self.tokenizer, [p[0] for p in pairs], [p[1] for p in pairs], self.max_length)
        lengths = [len(ids) for ids in features["input_ids"]]
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        scores: list = [None] * len(pairs)
        bar = progress_bar(len(pairs), show_progress_bar, "predict")
        try:
            with torch.inference_mode():
                for rows in batches(lengths, batch_size):
                    batch = pad_batch(features, rows, pad_id, self.device)
                    logits = self.model(**forward_inputs(self.model, batch, unpad)).logits.float()  # (B, L)
                    logits = activation(logits)
                    if apply_softmax and logits.shape[-1] > 1:
                        logits = torch.softmax(logits, dim=-1)
                    if logits.shape[-1] == 1:
                        logits = logits[:, 0]  # (B,)
                    for i, score in zip(rows, logits):
                        scores[i] = score.cpu() if not convert_to_tensor else score
                    if bar is not None:
                        bar.update(len(rows))
        finally:
            if bar is not None:
                bar.close()
        return to_output(scores, convert_to_numpy, convert_to_tensor, single)

    def rank(self, query: str, documents: list[str], top_k: int | None = None, return_documents: bool = False,
             batch_size: int = 32, show_progress_bar: bool | None = None, activation_fn=None) -> list[dict]:
        """The documents sorted by their score for `query`: [{"corpus_id", "score"(, "text")}], best first,
        the first `top_k` only when given."""
        if not isinstance(query, str) or isinstance(documents, str) or not all(isinstance(d, str) for d in documents):
            raise TypeError("rank takes a query str and a list of document str.")
        if not documents:
            return []
        scores = self.predict([(query, doc) for doc in documents], batch_size=batch_size,
                              show_progress_bar=show_progress_bar, activation_fn=activation_fn,
                              convert_to_tensor=True)
        if scores.dim() != 1:
            raise ValueError(f"rank needs one score per document; this model has {self.num_labels} labels.")
        order = torch.argsort(scores, descending=True, stable=True).tolist()[:top_k]
        return [{"corpus_id": i, "score": float(scores[i]), **({"text": documents[i]} if return_documents else {})}
                for i in order]
