"""text-ranking: a cross-encoder reranker (bge-reranker, ms-marco MiniLM, ...) scoring documents for a query.

    rank = autoload.pipeline("text-ranking", "BAAI/bge-reranker-base")
    rank("what is a panda?", ["The giant panda is a bear.", "Paris is in France."], top_k=1)
    # [{"corpus_id": 0, "score": 0.97, "text": "The giant panda is a bear."}]

The scores are `autoload.CrossEncoder`'s (a sigmoid over the single logit unless the repo says otherwise); pairs
run through the same length-sorted, unpadded batches.
"""

from __future__ import annotations

from ..sentence.cross_encoder import CrossEncoder
from .base import Pipeline


class TextRankingPipeline(Pipeline):
    """`pipe(query, documents)` -> the documents sorted best first as [{"corpus_id", "score", "text"}];
    `pipe([(query, doc), ...])` -> one score per pair. Options: top_k (None: all), return_documents
    (default True)."""

    task = "text-ranking"
    auto_class = "AutoModelForSequenceClassification"
    options = {"top_k": None, "return_documents": True}
    default_batch_size = 32

    def __init__(self, model, tokenizer, **kwargs):
        super().__init__(model, tokenizer, **kwargs)
        self.ranker = CrossEncoder.from_loaded(model, tokenizer)

    def __call__(self, query, documents=None, *, batch_size: int | None = None, progress=None, **options):
        options = {**self.defaults, **self.check_options(options)}
        size = batch_size or self.batch_size
        show = self.progress if progress is None else progress
        if documents is None:  # a list of (query, document) pairs, or one pair
            return self.ranker.predict(query, batch_size=size, show_progress_bar=show, convert_to_tensor=True)
        return self.ranker.rank(query, documents, top_k=options["top_k"], batch_size=size, show_progress_bar=show,
                                return_documents=options["return_documents"])
