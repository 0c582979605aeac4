"""A SentencePiece `.model` file (a serialized `ModelProto`, sentencepiece_model.proto) read without sentencepiece
or protobuf: the pieces (piece, score, type), the trainer spec (model type, byte fallback, special ids) and the
normalizer spec (charsmap, whitespace rules) -- the fields that decide encoding. Shared by sentencepiece_bpe.py
(BPE models: ChatGLM2/3) and sentencepiece_unigram.py (Unigram models: XLM-R, CamemBERT, DeBERTa-v3, ALBERT).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from tokenizers import Regex, decoders, normalizers

from ..errors import RepoFileError

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
    unk_surface: str = " \u2047 "  # what decoding writes for the unknown piece
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
                   40: ("unk_id", int), 41: ("bos_id", int), 42: ("eos_id", int), 43: ("pad_id", int),
                   44: ("unk_surface", str)}
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


def read_model(path: str, data: bytes | None = None) -> SentencePieceModel:
    """Parse a SentencePiece `tokenizer.model` (field numbers from sentencepiece_model.proto); `data`: the file's
    bytes when the caller has them already (errors still name `path`)."""
    if data is None:
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
        raise RepoFileError(f"{path} is not a valid SentencePiece model: {err}") from None
    if not model.pieces:
        raise RepoFileError(f"{path} is not a SentencePiece model: it has no pieces.")
    return model


# -- SentencePiece's normalizer and decoder as `tokenizers` steps ---------------------------------------------


def spm_normalizer(model: SentencePieceModel):
    """SentencePiece's normalizer: charsmap; then (remove_extra_whitespaces) drop leading spaces and runs of
    spaces; the dummy prefix "▁" on non-empty text; spaces -> "▁"; (remove_extra_whitespaces) drop trailing
    "▁"."""
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
    return normalizers.Sequence(steps)


def spm_decoder(model: SentencePieceModel):
    """The reverse: "▁" -> " ", byte pieces -> bytes, join, drop the dummy prefix's space."""
    parts = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if model.add_dummy_prefix or model.remove_extra_whitespaces:
        parts.append(decoders.Strip(" ", 1, 0))  # the dummy prefix's space
    return decoders.Sequence(parts)
