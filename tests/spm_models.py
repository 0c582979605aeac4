"""Shared material for the SentencePiece tokenizer tests (ChatGLM, Baichuan, InternLM2): models trained here on a
small corpus (sentencepiece itself is the reference), and random texts to compare on."""

from __future__ import annotations

import io
import random

import sentencepiece as spm


def random_texts(count: int, corpus: list[str], pieces: list[str], spaces: list[str], seed: int = 0) -> list[str]:
    """Mixes of corpus slices, pieces (words, digits, emoji, accents, special-token lookalikes), whitespace runs
    and numbers."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randrange(0, 9)):
            kind = rng.random()
            if kind < 0.25:
                line = rng.choice(corpus)
                start = rng.randrange(len(line))
                parts.append(line[start:start + rng.randrange(1, 30)])
            elif kind < 0.55:
                parts.append(rng.choice(pieces))
            elif kind < 0.8:
                parts.append(rng.choice(spaces))
            else:
                parts.append(str(rng.randrange(10 ** rng.randrange(1, 7))))
        texts.append("".join(parts))
    return texts


def train_sentencepiece(path, corpus: list[str], vocab_size: int, **options) -> str:
    """A SentencePiece model trained on `corpus` (x20) with byte fallback and full character coverage, written to
    `path`; `options` are the trainer's (model_type, normalisation, dummy prefix, user-defined symbols)."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus * 20), model_writer=model, vocab_size=vocab_size,
                                   character_coverage=1.0, byte_fallback=True, minloglevel=2, **options)
    path.write_bytes(model.getvalue())
    return str(path)
