"""Sentence embeddings and rerankers in the shape sentence-transformers users know: `SentenceTransformer`
(encode, encode_query / encode_document, similarity) and `CrossEncoder` (predict, rank), on autoload's models.

Names are exported lazily: importing this package imports no torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"SentenceTransformer": "autoload.sentence.encoder", "CrossEncoder": "autoload.sentence.cross_encoder"}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'autoload.sentence' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
