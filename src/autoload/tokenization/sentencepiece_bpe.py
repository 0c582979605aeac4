"""A SentencePiece BPE `tokenizer.model` read without sentencepiece or protobuf, rebuilt as a `tokenizers.Tokenizer`.

The file is a serialized `ModelProto` (sentencepiece_model.proto). We read the few fields that decide encoding:
`pieces` (piece, score, type), the trainer spec (model type, byte fallback, special ids) and the normalizer spec.

SentencePiece BPE repeatedly joins the adjacent pair whose concatenation is a piece with the highest score. The
same result comes out of a `tokenizers` BPE whose merges are, for every piece, each split of it into two pieces,
ordered by the merged piece's score (transformers' `generate_merges` does the same). Normalization is expressed
as normalizers (charsmap, whitespace clean-up, dummy prefix "▁", spaces -> "▁"), decoding as the reverse.

One known difference: a run of byte pieces that is not valid UTF-8 as a whole (e.g. a character cut in half at
the end of a generation) decodes to one U+FFFD per byte of the run here, while SentencePiece keeps the valid
characters of the run and replaces only the bad bytes. Decoding what was encoded from text is identical.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers
from tokenizers.models import BPE

# SentencePiece.Type
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
# TrainerSpec.ModelType
MODEL_TYPES = {1: "UNIGRAM", 2: "BPE", 3: "WORD", 4: "CHAR"}


@dataclass
class SentencePieceModel:
    """The fields of a ModelProto this module uses; defaults are the proto's."""
    pieces: list[tuple[str, float, int]] = field(default_factory=list)  # (piece, score, type) in id order
    model_type: int = 1
    byte_fallback: bool = False
    unk_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    pad_id: int = -1
    treat_whitespace_as_suffix: bool = False
    normalizer_name: str = ""
    precompiled_charsmap: bytes = b""
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True
    escape_whitespaces: bool = True


# -- protobuf wire format ---------------------------------------------------------------------------------------


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes):
    """(field number, value) for each field of a message: ints for varints, bytes for length-delimited and fixed."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _varint(data, pos)
        elif wire_type == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire_type in (1, 5):  # fixed64 / fixed32
            size = 8 if wire_type == 1 else 4
            value, pos = data[pos:pos + size], pos + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type} (field {number})")
        if pos > len(data):
            raise ValueError("truncated protobuf message")
        yield number, value


def _int32(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value  # negative int32s are sign-extended to 64 bits


# field number -> (attribute, type) in TrainerSpec and NormalizerSpec
_TRAINER_FIELDS = {3: ("model_type", int), 24: ("treat_whitespace_as_suffix", bool), 35: ("byte_fallback", bool),
                   40: ("unk_id", int), 41: ("bos_id", int), 42: ("eos_id", int), 43: ("pad_id", int)}
_NORMALIZER_FIELDS = {1: ("normalizer_name", str), 2: ("precompiled_charsmap", bytes), 3: ("add_dummy_prefix", bool),
                      4: ("remove_extra_whitespaces", bool), 5: ("escape_whitespaces", bool)}


def _set_fields(model: SentencePieceModel, data: bytes, table: dict) -> None:
    for number, value in _fields(data):
        if number in table:
            name, kind = table[number]
            if kind is int:
                value = _int32(value)
            elif kind is str:
                value = bytes(value).decode("utf-8")
            setattr(model, name, kind(value))


def read_model(path: str) -> SentencePieceModel:
    """Parse a SentencePiece `tokenizer.model` (field numbers from sentencepiece_model.proto)."""
    with open(path, "rb") as handle:
        data = handle.read()
    model = SentencePieceModel()
    try:
        for number, value in _fields(data):
            if number == 1:  # ModelProto.pieces: SentencePiece {1: piece, 2: score (float), 3: type}
                piece, score, kind = "", 0.0, NORMAL
                for sub, sub_value in _fields(value):
                    if sub == 1:
                        piece = sub_value.decode("utf-8")
                    elif sub == 2:
                        score = struct.unpack("<f", sub_value)[0]
                    elif sub == 3:
                        kind = sub_value
                model.pieces.append((piece, score, kind))
            elif number == 2:
                _set_fields(model, value, _TRAINER_FIELDS)
            elif number == 3:
                _set_fields(model, value, _NORMALIZER_FIELDS)
    except (ValueError, IndexError, UnicodeDecodeError, struct.error) as err:
        raise OSError(f"{path} is not a valid SentencePiece model: {err}") from None
    if not model.pieces:
        raise OSError(f"{path} is not a SentencePiece model: it has no pieces.")
    return model


# -- the tokenizers pipeline ------------------------------------------------------------------------------------


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

    # SentencePiece's normalizer: charsmap; then (remove_extra_whitespaces) drop leading spaces and runs of
    # spaces; the dummy prefix "▁" on non-empty text; spaces -> "▁"; (remove_extra_whitespaces) drop trailing "▁"
    steps = []
    if model.precompiled_charsmap:
        steps.append(normalizers.Precompiled(model.precompiled_charsmap))
    if model.remove_extra_whitespaces:
        steps += [normalizers.Replace(Regex(" {2,}"), " "), normalizers.Replace(Regex(r"\A "), "")]
    if model.add_dummy_prefix:
        steps.append(normalizers.Prepend("▁"))
    steps.append(normalizers.Replace(" ", "▁"))
    if model.remove_extra_whitespaces:
        steps.append(normalizers.Replace(Regex(r"▁+\z"), ""))
    tokenizer.normalizer = normalizers.Sequence(steps)

    parts = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if model.add_dummy_prefix or model.remove_extra_whitespaces:
        parts.append(decoders.Strip(" ", 1, 0))  # the dummy prefix's space
    tokenizer.decoder = decoders.Sequence(parts)

    # USER_DEFINED pieces are matched whole before BPE (SentencePiece freezes them)
    user_defined = [AddedToken(piece, normalized=True, special=False)
                    for piece, _, kind in model.pieces if kind == USER_DEFINED]
    if user_defined:
        tokenizer.add_tokens(user_defined)
    return tokenizer
