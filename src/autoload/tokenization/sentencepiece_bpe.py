"""A SentencePiece BPE `tokenizer.model` (read by sentencepiece.py, without sentencepiece or protobuf) rebuilt as a
`tokenizers.Tokenizer`.

SentencePiece BPE repeatedly joins the adjacent pair whose concatenation is a piece with the highest score. The
same result comes out of a `tokenizers` BPE whose merges are, for every piece, each split of it into two pieces,
ordered by the merged piece's score (transformers' `generate_merges` does the same). Normalization is expressed
as normalizers (charsmap, whitespace clean-up, dummy prefix "▁", spaces -> "▁"), decoding as the reverse.

One known difference: a run of byte pieces that is not valid UTF-8 as a whole (e.g. a character cut in half at
the end of a generation) decodes to one U+FFFD per byte of the run here, while SentencePiece keeps the valid
characters of the run and replaces only the bad bytes. Decoding what was encoded from text is identical.
"""

from __future__ import annotations

from tokenizers import AddedToken, Tokenizer
from tokenizers.models import BPE

from .sentencepiece import MODEL_TYPES, NORMAL, USER_DEFINED, SentencePieceModel, spm_decoder, spm_normalizer


def build_tokenizer(model: SentencePieceModel, path: str = "tokenizer.model",
                    extra_special_tokens=()) -> Tokenizer:
    """A `tokenizers.Tokenizer` that encodes and decodes like SentencePiece with this (BPE) model.

    `extra_special_tokens` (str or AddedToken) get the ids after the pieces, in order (ChatGLM's `[gMASK]`, `sop`,
    ...). A special whose text is also a piece ("sop" may be one) keeps both ids: the piece for text, the special
    for the added-token match, like SentencePiece plus ChatGLM's own table.
    """
    kind = MODEL_TYPES.get(model.model_type, str(model.model_type))
    if kind != "BPE":
        raise ValueError(f"{path} is a SentencePiece {kind} model; only BPE models are supported.")
    if model.treat_whitespace_as_suffix or not model.escape_whitespaces:
        raise ValueError(f"{path}: treat_whitespace_as_suffix / escape_whitespaces=false are not supported.")
    specials = [AddedToken(token, normalized=False, special=True) if isinstance(token, str) else token
                for token in extra_special_tokens]
    # Added tokens take the id their text has in the model: register the specials over a model holding only
    # them at ids n, n+1, ..., then put the real model in. Their ids stay, even for text that is also a piece.
    first = len(model.pieces)
    tokenizer = Tokenizer(BPE({token.content: first + i for i, token in enumerate(specials)}, []))
    if specials:
        tokenizer.add_special_tokens(specials)
    vocab = {piece: index for index, (piece, _, _) in enumerate(model.pieces)}

    # merges: every split of a NORMAL piece into two mergeable pieces, the best-scoring merged piece first
    mergeable = {piece for piece, _, kind in model.pieces if kind in (NORMAL, USER_DEFINED)}
    merges = []
    for index, (piece, score, kind) in enumerate(model.pieces):
        if kind != NORMAL:
            continue
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in mergeable and right in mergeable:
                merges.append((-score, index, vocab[left], vocab[right], left, right))
    merges.sort(key=lambda merge: merge[:4])
    unk = model.pieces[model.unk_id][0] if 0 <= model.unk_id < len(model.pieces) else None
    tokenizer.model = BPE(vocab, [(left, right) for *_, left, right in merges], unk_token=unk, fuse_unk=True,
                          byte_fallback=model.byte_fallback)

    tokenizer.normalizer = spm_normalizer(model)
    tokenizer.decoder = spm_decoder(model)

    # USER_DEFINED pieces are matched whole before BPE (SentencePiece freezes them)
    user_defined = [AddedToken(piece, normalized=True, special=False)
                    for piece, _, kind in model.pieces if kind == USER_DEFINED]
    if user_defined:
        tokenizer.add_tokens(user_defined)
    return tokenizer
