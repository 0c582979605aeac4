"""SentencePiece Unigram tokenizers (XLM-R, CamemBERT, DeBERTa-v3, ALBERT): what they share.

Each class reads its vocabulary from `tokenizer.json` when the repo has one, else from its SentencePiece file
(`sentencepiece.bpe.model`, `spm.model`, `spiece.model`, read by sentencepiece.py without sentencepiece or
protobuf), as transformers 5.x does:

* tokenizer.json: the Unigram vocab `[[piece, score], ...]` (ids are positions), the precompiled charsmap of its
  `Precompiled` normalizer, the post-processor, padding and truncation; the rest of the pipeline is the class's own;
* .model: the pieces' (piece, score) in id order, the trainer's unk id, the charsmap, and the CONTROL pieces (`<s>`,
  `</s>`) as extra special tokens when the config names none; fairseq-style classes then move the ids (`spm_vocab`).

The Unigram model itself is `tokenizers.models.Unigram` (Viterbi over the pieces' log-probabilities), with byte
fallback off in all four classes, as in transformers: a character with no piece becomes the unknown token even
when the .model was trained with byte_fallback (its `<0x..>` pieces stay in the vocab, unused).
"""

from __future__ import annotations

import base64
import json

from tokenizers import AddedToken, Tokenizer, normalizers
from tokenizers.models import Unigram

from ..errors import RepoFileError
from .base import TokenizersBackend
from .loading import TOKENIZER_FILE
from .sentencepiece import CONTROL, MODEL_TYPES, read_model


def unigram_backend(vocab: list[tuple[str, float]], unk_id: int) -> Tokenizer:
    """A `tokenizers.Tokenizer` over a Unigram model: (piece, score) in id order, no byte fallback."""
    try:
        return Tokenizer(Unigram(vocab, unk_id=unk_id, byte_fallback=False))
    except Exception as err:  # an entry that is not (str, float), an unk id past the end (tokenizers' Exception)
        raise RepoFileError(f"invalid Unigram vocabulary: {err}") from None


def precompiled(charsmap: bytes):
    """`normalizers.Precompiled` over a SentencePiece charsmap (a malformed one is a RepoFileError)."""
    try:
        return normalizers.Precompiled(charsmap)
    except Exception as err:  # tokenizers raises a bare Exception
        raise RepoFileError(f"invalid SentencePiece precompiled charsmap: {err}") from None


def unigram_parts_from_tokenizer_json(files) -> dict:
    """Constructor keywords from a Unigram tokenizer.json: vocab as (piece, score) pairs, the precompiled charsmap,
    post-processor, padding and truncation."""
    path = files[TOKENIZER_FILE]
    data = files.json(TOKENIZER_FILE)
    model_json = data.get("model") or {}
    vocab = model_json.get("vocab")
    if model_json.get("type") not in (None, "Unigram") or not isinstance(vocab, list) or not vocab:
        raise RepoFileError(f"{path} holds no Unigram vocabulary ({model_json.get('type')} model): this tokenizer "
                            "class needs one.")
    # post-processor, padding, truncation as Rust objects from a copy whose model has one piece (cheap to parse)
    minimal = dict(data, model={"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0.0]]}, added_tokens=[])
    try:
        minimal = Tokenizer.from_str(json.dumps(minimal))
    except BaseException as err:  # a bare Exception, or a Rust panic (a BaseException: a charsmap that is not one)
        if not isinstance(err, Exception) and type(err).__name__ != "PanicException":
            raise
        raise RepoFileError(f"{path} cannot be loaded as a tokenizer.json ({err}). Fix or re-download the file.") \
            from None
    parts = {"post_processor": minimal.post_processor, "tokenizer_padding": minimal.padding,
             "tokenizer_truncation": minimal.truncation}
    normalizer = data.get("normalizer") or {}
    steps = (normalizer.get("normalizers") or []) if normalizer.get("type") == "Sequence" else [normalizer]
    try:
        parts["vocab"] = list(map(tuple, vocab))  # [piece, score] lists; Unigram checks the types
        for step in steps:
            if isinstance(step, dict) and step.get("type") == "Precompiled" and step.get("precompiled_charsmap"):
                parts["_spm_precompiled_charsmap"] = base64.b64decode(step["precompiled_charsmap"], validate=True)
                break
    except (TypeError, ValueError) as err:  # a vocab entry that is no list, a charsmap that is not base64
        raise RepoFileError(f"{path}: invalid Unigram vocabulary or charsmap ({err}).") from None
    return parts


class SentencePieceUnigramTokenizer(TokenizersBackend):
    """Loading shared by the Unigram classes; each subclass builds its own pipeline in `__init__`."""

    spm_file: str = "spm.model"  # the SentencePiece file read when the repo has no tokenizer.json

    @classmethod
    def _from_files(cls, files, kwargs, source):
        if TOKENIZER_FILE in files:
            kwargs.update(unigram_parts_from_tokenizer_json(files))
        elif cls.spm_file in files:
            model = read_model(files[cls.spm_file])
            if model.model_type != 1:
                kind = MODEL_TYPES.get(model.model_type, str(model.model_type))
                raise RepoFileError(f"{files[cls.spm_file]} is a SentencePiece {kind} model; {cls.__name__} needs a "
                                    "Unigram model.")
            kwargs["unk_id"] = model.unk_id
            kwargs["_spm_precompiled_charsmap"] = model.precompiled_charsmap or None
            # CONTROL pieces are the extra special tokens, unless the config names its own (as transformers)
            if kwargs.get("extra_special_tokens") is None:
                kwargs["extra_special_tokens"] = [AddedToken(piece, normalized=False, special=True)
                                                  for piece, _, kind in model.pieces if kind == CONTROL]
            kwargs["vocab"] = cls.spm_vocab([(piece, score) for piece, score, _ in model.pieces], kwargs)
        else:
            raise cls._missing_files_error(source, [TOKENIZER_FILE, cls.spm_file], files)
        return cls(**kwargs)

    @classmethod
    def spm_vocab(cls, pieces: list[tuple[str, float]], kwargs: dict) -> list[tuple[str, float]]:
        """The vocab (in id order) built from the .model's pieces: as they are, unless the class moves ids."""
        return pieces
