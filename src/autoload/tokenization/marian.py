"""Marian's tokenizer (Helsinki-NLP opus-mt), encoding and decoding as transformers 5.x `MarianTokenizer` (a Python
tokenizer over `sentencepiece`) does, without sentencepiece; docs/tokenizers.md has the details and the differences.

`source.spm` / `target.spm` cut a text into pieces; `vocab.json` (shared, or the source's with `target_vocab.json`
for `separate_vocabs`) maps them to ids, a piece it lacks being `<unk>`. Per chunk between special tokens: a leading
`>>xx<<` code is one token, the rest goes through the .spm's normalizer and model (Unigram or BPE); `</s>` is appended.
Here that is a `tokenizers.Tokenizer` whose custom pre-tokenizer yields the pieces and whose model is a `WordLevel`
over the vocab, so padding, truncation and batching are the shared Rust ones. `text_target=` uses the target side
(special tokens keep their source ids). Decoding is Python: ids -> tokens (the target vocab when separate), runs of
pieces joined as `SentencePieceProcessor.decode_pieces` does, special tokens verbatim plus a space, stripped.
"""

from __future__ import annotations

import json
import os
from itertools import accumulate
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, pre_tokenizers, processors
from tokenizers.models import Unigram, WordLevel

from ..errors import RepoFileError
from . import loading, saving
from .base import TokenizersBackend
from .encoding import BatchEncoding, to_python
from .sentencepiece import BYTE, CONTROL, MODEL_TYPES, NORMAL, UNKNOWN, USER_DEFINED, read_model, spm_normalizer
from .sentencepiece_bpe import build_tokenizer

SOURCE_SPM, TARGET_SPM = "source.spm", "target.spm"
VOCAB_FILE, TARGET_VOCAB_FILE = "vocab.json", "target_vocab.json"
_FILE_KEYS = ("source_spm", "target_spm", "vocab", "target_vocab_file")


class SentencePieceSide:
    """One .spm file: its pieces for encoding (normalizer + Unigram/BPE model) and for decoding (piece types)."""

    def __init__(self, path: str, data: bytes | None = None):
        self.path = os.fspath(path)
        self.data = Path(self.path).read_bytes() if data is None else data  # save_pretrained writes it back as-is
        model = read_model(self.path, self.data)
        kind = MODEL_TYPES.get(model.model_type, str(model.model_type))
        if kind == "UNIGRAM":
            # only NORMAL / USER_DEFINED pieces can match text; the unknown piece heads the list (id 0 here)
            unk = model.pieces[model.unk_id][0] if 0 <= model.unk_id < len(model.pieces) else "<unk>"
            vocab = [(unk, 0.0)] + [(piece, score) for piece, score, kind in model.pieces
                                    if kind in (NORMAL, USER_DEFINED)]
            try:
                self.model = Unigram(vocab, unk_id=0, byte_fallback=False)
            except Exception as err:  # tokenizers raises a bare Exception
                raise RepoFileError(f"{self.path}: invalid Unigram pieces ({err}).") from None
            self.normalizer = spm_normalizer(model)
            self.values_are_text = True
        elif kind == "BPE":
            try:
                backend = build_tokenizer(model, self.path)
            except ValueError as err:
                raise RepoFileError(str(err)) from None
            self.model, self.normalizer = backend.model, backend.normalizer
            self.values_are_text = False  # an unknown character comes back as "<unk>"
        else:
            raise RepoFileError(f"{self.path} is a SentencePiece {kind} model; Marian needs a Unigram or BPE model.")
        self.pieces = [piece for piece, _, _ in model.pieces]
        self.kinds = {piece: kind for piece, _, kind in reversed(model.pieces)}  # the first id of a piece wins
        self.unk_piece = model.pieces[model.unk_id][0] if 0 <= model.unk_id < len(model.pieces) else None
        self.unk_surface = model.unk_surface
        self.strip_first_space = model.add_dummy_prefix or model.remove_extra_whitespaces

    # -- encoding: a `tokenizers` custom pre-tokenizer ---------------------------------------------------------

    def pre_tokenize(self, pretok) -> None:
        pretok.split(self._split)

    def _split(self, index: int, chunk) -> list:
        """One chunk (a NormalizedString of raw text) -> [language code] + its SentencePiece pieces."""
        text, parts = str(chunk), []
        if text.startswith(">>") and (end := text.find("<<")) != -1:
            parts.append(chunk[0:end + 2])
            if end + 2 == len(text):
                return parts
            chunk = chunk[end + 2:len(text)]
        self.normalizer.normalize(chunk)
        text = str(chunk)
        tokens = self.model.tokenize(text)
        # slices count characters; the model's offsets count UTF-8 bytes (the same for ASCII)
        if text.isascii():
            ends = [token.offsets[1] for token in tokens]
        elif self.values_are_text:  # Unigram gives each piece's text, unknown runs included
            ends = list(accumulate(len(token.value) for token in tokens))
        else:
            char_end = dict(zip(accumulate(len(char.encode("utf-8")) for char in text), range(1, len(text) + 1)))
            ends = [char_end[token.offsets[1]] for token in tokens]
        return parts + [chunk[start:end] for start, end in zip([0] + ends, ends)]

    # -- decoding: SentencePieceProcessor.decode_pieces ------------------------------------------------------

    def decode_pieces(self, pieces: list[str]) -> str:
        """Control pieces vanish, the unknown piece is `unk_surface`, a piece the model lacks stays verbatim, byte
        pieces are joined into UTF-8, and "▁" is a space (the first one dropped)."""
        text, pending = "", bytearray()
        for piece in pieces:
            kind = self.kinds.get(piece, UNKNOWN)
            if kind == BYTE:
                pending.append(int(piece[3:-1], 16))
                continue
            if pending:
                text += pending.decode("utf-8", "replace")
                pending.clear()
            if kind == CONTROL:
                continue
            if kind == UNKNOWN:
                text += self.unk_surface if piece == self.unk_piece else piece
                continue
            if not text and self.strip_first_space:
                piece = piece.removeprefix("▁")
            text += piece.replace("▁", " ")
        return text + pending.decode("utf-8", "replace")

    def __getstate__(self):
        return {"path": self.path, "data": self.data}

    def __setstate__(self, state):
        self.__init__(state["path"], state["data"])  # Rust objects are rebuilt, not pickled


def read_vocab(path: str) -> dict[str, int]:
    """A Marian vocab.json: {piece: id}, every id an int (RepoFileError naming the file otherwise)."""
    vocab = loading.read_json(os.fspath(path), Path(path).name)
    bad = next(((key, value) for key, value in vocab.items()
                if not isinstance(value, int) or isinstance(value, bool) or value < 0), None)
    if bad is not None:
        raise RepoFileError(f"{path} should map each piece to a non-negative integer id; {bad[0]!r} -> {bad[1]!r}.")
    return vocab


def _backend(side: SentencePieceSide, vocab: dict[str, int], unk_token: str) -> Tokenizer:
    backend = Tokenizer(WordLevel(vocab, unk_token=unk_token))
    backend.pre_tokenizer = pre_tokenizers.PreTokenizer.custom(side)
    return backend


class MarianTokenizer(TokenizersBackend):
    """Helsinki-NLP opus-mt tokenizer: `pieces </s>`, with `text_target=` encoded by the target side."""

    model_input_names = ["input_ids", "attention_mask"]
    decoder: dict[int, str] = {}  # id -> token of the target side's vocab (the reference's dict, not a decoder step)

    def __init__(self, source_spm, target_spm, vocab, target_vocab_file=None, *, source_lang: str | None = None,
                 target_lang: str | None = None, unk_token="<unk>", eos_token="</s>", pad_token="<pad>",
                 model_max_length: int = 512, sp_model_kwargs: dict | None = None, separate_vocabs: bool = False,
                 **kwargs):
        if sp_model_kwargs:
            raise ValueError(f"sp_model_kwargs={sp_model_kwargs!r}: SentencePiece sampling is not supported.")
        self.separate_vocabs = bool(separate_vocabs)
        self.source_lang, self.target_lang = source_lang, target_lang
        self.spm_source, self.spm_target = SentencePieceSide(source_spm), SentencePieceSide(target_spm)
        self.spm_files = [self.spm_source.path, self.spm_target.path]
        self.encoder = read_vocab(vocab)
        if str(unk_token) not in self.encoder:
            raise RepoFileError(f"{vocab} has no {str(unk_token)!r}: the unknown token must be in the vocab.")
        if self.separate_vocabs:
            if target_vocab_file is None:
                raise RepoFileError(f"separate_vocabs=True needs a {TARGET_VOCAB_FILE}, and there is none.")
            self.target_encoder = read_vocab(target_vocab_file)
            if str(unk_token) not in self.target_encoder:
                raise RepoFileError(f"{target_vocab_file} has no {str(unk_token)!r}: the unknown token must be in "
                                    "the vocab.")
            self.supported_language_codes: list[str] = []
        else:
            self.target_encoder = self.encoder
            self.supported_language_codes = [token for token in self.encoder
                                             if token.startswith(">>") and token.endswith("<<")]
        self.decoder = {index: token for token, index in self.target_encoder.items()}
        self._decode_use_source_tokenizer = False
        self._unk = str(unk_token)
        self._source_backend = _backend(self.spm_source, self.encoder, self._unk)
        self._target_backend, self._target_added = None, None
        super().__init__(self._source_backend, unk_token=unk_token, eos_token=eos_token, pad_token=pad_token,
                         model_max_length=model_max_length, source_lang=source_lang, target_lang=target_lang,
                         separate_vocabs=self.separate_vocabs, sp_model_kwargs={}, **kwargs)
        self._set_template()

    def _set_template(self) -> None:
        eos = self.eos_token
        self._tokenizer.post_processor = processors.TemplateProcessing(
            single=["$A", eos], pair=["$A", "$B:1", f"{eos}:1"], special_tokens=[(eos, self.eos_token_id)])

    @classmethod
    def _from_files(cls, files, kwargs, source):
        missing = [name for name in (SOURCE_SPM, TARGET_SPM, VOCAB_FILE) if name not in files]
        if missing:
            found = ", ".join(sorted(files)) or "no tokenizer files at all"
            raise OSError(f"Can't build a {cls.__name__} from {source.describe()}: it needs {SOURCE_SPM}, "
                          f"{TARGET_SPM} and {VOCAB_FILE}, and lacks {', '.join(missing)} (it has {found}).")
        kwargs.update(source_spm=files[SOURCE_SPM], target_spm=files[TARGET_SPM], vocab=files[VOCAB_FILE],
                      target_vocab_file=files.get(TARGET_VOCAB_FILE))
        return cls(**kwargs)

    # -- source / target sides ---------------------------------------------------------------------------------

    def _target(self) -> Tokenizer:
        """The target side's backend, with the source side's added tokens at the same ids (rebuilt when they
        change): special tokens are looked up in the source vocab on both sides, as in the reference."""
        added = self._source_backend.get_added_tokens_decoder()
        if self._target_backend is None or added != self._target_added:
            vocab = {**self.target_encoder, **{token.content: index for index, token in added.items()}}
            backend = _backend(self.spm_target, vocab, self._unk)
            backend.add_tokens([token for _, token in sorted(added.items())])
            backend.post_processor = self._source_backend.post_processor
            self._target_backend, self._target_added = backend, added
        return self._target_backend

    def _switch_to_target_mode(self) -> None:
        self._tokenizer = self._target()

    def _switch_to_input_mode(self) -> None:
        self._tokenizer = self._source_backend

    def __call__(self, text=None, text_pair=None, *, text_target=None, text_pair_target=None, **kwargs):
        """As TokenizersBackend.__call__; `text_target` is encoded with target.spm (and the target vocab), and
        comes back as `labels` next to the source's inputs."""
        if text is None and text_target is None:
            raise ValueError("Give the text to tokenize (text=...) or a target (text_target=...).")
        encoded = super().__call__(text, text_pair, **kwargs) if text is not None else None
        if text_target is None:
            return encoded
        self._switch_to_target_mode()
        try:
            target = super().__call__(text_target, text_pair_target, **kwargs)
        finally:
            self._switch_to_input_mode()
        if encoded is None:
            return target
        encoded["labels"] = target["input_ids"]
        return encoded

    def _encode(self, text, text_pair, **options) -> BatchEncoding:
        """The shared encoder, then what the reference (a Python tokenizer) gives differently: the special-tokens
        mask (every special id but `<unk>`, also inside the text), pair token types (0 up to and including the first
        token of the second text) and, for a batch, `length` before padding."""
        with_mask = options["return_special_tokens_mask"] and options["add_special_tokens"]
        with_types, with_length = options["return_token_type_ids"], options["return_length"]
        if not (with_mask or with_types or with_length):
            return super()._encode(text, text_pair, **options)
        tensor_type = options["return_tensors"]
        encoded = super()._encode(text, text_pair, **{**options, "return_tensors": None})
        data, rows = dict(encoded), encoded.encodings
        flat = not data["input_ids"] or not isinstance(data["input_ids"][0], list)
        per_token = [key for key in data if key not in ("length", "overflow_to_sample_mapping")]
        if flat:
            data.update({key: [data[key]] for key in per_token})
        if with_mask:
            special = set(self.all_special_ids) - {self.unk_token_id}
            data["special_tokens_mask"] = [[int(i in special) for i in ids] for ids in data["input_ids"]]
        if with_types:
            for types, row in zip(data["token_type_ids"], rows):
                if row.n_sequences == 2 and not options["add_special_tokens"]:
                    types[:] = [0] * len(types)
                elif row.n_sequences == 2 and 1 in types:
                    types[types.index(1)] = 0
        if with_length and not flat:
            data["length"] = [len(row.ids) - sum(1 for mask in row.attention_mask if not mask) for row in rows]
        if flat and tensor_type is None:
            data.update({key: data[key][0] for key in per_token})
            if with_length:
                data["length"] = data["length"][0]
        return BatchEncoding(data, rows, tensor_type=tensor_type)

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False, **kwargs) -> list[str]:
        """The pieces, as the reference gives them: a piece the vocab lacks stays itself (its id is `<unk>`'s)."""
        tokens = self._pieces(text, kwargs.get("split_special_tokens"))
        if pair is not None:
            tokens += self._pieces(pair, kwargs.get("split_special_tokens"))
        return tokens + [self.eos_token] if add_special_tokens else tokens

    def _pieces(self, text: str, split_special_tokens: bool | None) -> list[str]:
        """Split on the added tokens (where the backend matched them), each chunk between through the pre-tokenizer."""
        splitter = self._tokenizer.pre_tokenizer
        if self.split_special_tokens if split_special_tokens is None else split_special_tokens:
            return [piece for piece, _ in splitter.pre_tokenize_str(text)]
        added = self._tokenizer.get_added_tokens_decoder()
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        pieces, start = [], 0
        for index, (begin, end) in zip(encoding.ids, encoding.offsets):
            token = added.get(index)
            if token is not None and text[begin:end].strip() == token.content.strip():
                pieces += [piece for piece, _ in splitter.pre_tokenize_str(text[start:begin])] + [token.content]
                start = end
        return pieces + [piece for piece, _ in splitter.pre_tokenize_str(text[start:])]

    # -- vocabulary --------------------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def get_src_vocab(self) -> dict[str, int]:
        return self._source_backend.get_vocab(with_added_tokens=True)

    def get_tgt_vocab(self) -> dict[str, int]:
        added = {token.content: index for index, token in self._source_backend.get_added_tokens_decoder().items()}
        return {**self.target_encoder, **added}

    def get_vocab(self) -> dict[str, int]:
        return self.get_src_vocab()

    def add_tokens(self, new_tokens, special_tokens: bool = False) -> int:
        """As the base class; special ones also join `extra_special_tokens` (decoding keeps them apart), as in the
        reference."""
        added = super().add_tokens(new_tokens, special_tokens)
        for token in new_tokens if isinstance(new_tokens, (list, tuple)) else [new_tokens]:
            special = special_tokens or (isinstance(token, AddedToken) and token.special)
            if special and str(token) not in self.all_special_tokens:
                self._extra_special_tokens.append(token)
        return added

    def _id_to_token(self, index: int, added: dict) -> str:
        """Added tokens, then the (target when separate) vocab, then the piece of that id in the .spm."""
        if index in added:
            return added[index].content
        if index in self.decoder:
            return self.decoder[index]
        side = self.spm_source if self._decode_use_source_tokenizer else self.spm_target
        if not 0 <= index < len(side.pieces):
            raise IndexError(f"token id {index} is outside the vocab and {side.path} ({len(side.pieces)} pieces).")
        return side.pieces[index]

    def convert_ids_to_tokens(self, ids, skip_special_tokens: bool = False):
        added = self._source_backend.get_added_tokens_decoder()
        if isinstance(ids, int):
            return self._id_to_token(ids, added)
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._id_to_token(int(i), added) for i in ids if int(i) not in skip]

    def get_special_tokens_mask(self, token_ids_0: list[int], token_ids_1: list[int] | None = None,
                                already_has_special_tokens: bool = False) -> list[int]:
        """1 for `</s>`, `<pad>` and other special tokens (not `<unk>`); without `already_has_special_tokens`,
        the mask of `token_ids_0 + token_ids_1 + [</s>]`."""
        special = set(self.all_special_ids) - {self.unk_token_id}
        ids = list(token_ids_0) + list(token_ids_1 or [])
        mask = [1 if int(i) in special else 0 for i in ids]
        return mask if already_has_special_tokens else mask + [1]

    # -- decoding ----------------------------------------------------------------------------------------------

    def decode(self, token_ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool | None = None,
               use_source_tokenizer: bool | None = None):
        """Ids to text (a batch gives a list). Pieces are joined by the source .spm for a shared vocab, the target
        .spm for separate vocabs, unless `use_source_tokenizer` says which."""
        if use_source_tokenizer is None:
            use_source_tokenizer = not self.separate_vocabs
        self._decode_use_source_tokenizer = use_source_tokenizer
        return super().decode(token_ids, skip_special_tokens, clean_up_tokenization_spaces)

    def batch_decode(self, sequences, skip_special_tokens: bool = False,
                     clean_up_tokenization_spaces: bool | None = None, use_source_tokenizer: bool | None = None):
        sequences = to_python(sequences)
        if len(sequences) == 0:
            return []
        return [self.decode(ids, skip_special_tokens, clean_up_tokenization_spaces, use_source_tokenizer)
                for ids in sequences]

    def _decode(self, token_ids, skip_special_tokens: bool, clean_up_tokenization_spaces: bool | None) -> str:
        tokens = self.convert_ids_to_tokens([token_ids] if isinstance(token_ids, int) else token_ids,
                                            skip_special_tokens)
        text = self.convert_tokens_to_string(tokens)
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        return self.clean_up_tokenization(text) if clean_up_tokenization_spaces else text

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Runs of pieces through the .spm's decoder; each special token verbatim, then a space; stripped."""
        side = self.spm_source if self._decode_use_source_tokenizer else self.spm_target
        special = set(self.all_special_tokens)
        text, run = "", []
        for token in tokens:
            if token in special:
                text += side.decode_pieces(run) + token + " "
                run = []
            else:
                run.append(token)
        text += side.decode_pieces(run)
        return text.replace("▁", " ").strip()

    # -- saving and copying ------------------------------------------------------------------------------------

    def save_pretrained(self, save_directory: str | os.PathLike) -> tuple[str, ...]:
        """Write source.spm, target.spm, vocab.json (+ target_vocab.json) and tokenizer_config.json, the files
        transformers' MarianTokenizer reads (no tokenizer.json: the reference has no fast Marian tokenizer)."""
        folder = Path(save_directory)
        if folder.is_file():
            raise NotADirectoryError(f"save_pretrained needs a folder, and {folder} is a file.")
        folder.mkdir(parents=True, exist_ok=True)
        config = saving.tokenizer_config(self)
        for key in _FILE_KEYS:
            config.pop(key, None)
        config["added_tokens_decoder"] = {str(index): token.__getstate__()
                                          for index, token in sorted(self.added_tokens_decoder.items())}
        files = {loading.CONFIG_FILE: config, VOCAB_FILE: self.encoder}
        if self.separate_vocabs:
            files[TARGET_VOCAB_FILE] = self.target_encoder
        written = []
        for name, content in files.items():
            with open(folder / name, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(loading.encode_added_tokens(content), indent=2, ensure_ascii=False) + "\n")
            written.append(str(folder / name))
        for name, side in ((SOURCE_SPM, self.spm_source), (TARGET_SPM, self.spm_target)):
            (folder / name).write_bytes(side.data)
            written.append(str(folder / name))
        return tuple(written)

    def __getstate__(self):
        state = {key: value for key, value in self.__dict__.items()
                 if key not in ("_tokenizer", "_source_backend", "_target_backend", "_target_added")}
        state["_added"] = [(index, token.__getstate__())
                           for index, token in sorted(self._source_backend.get_added_tokens_decoder().items())]
        state["_backend_settings"] = (self._tokenizer.encode_special_tokens,)
        return state

    def __setstate__(self, state):
        added = state.pop("_added")
        (encode_special_tokens,) = state.pop("_backend_settings")
        self.__dict__.update(state)
        self._source_backend = _backend(self.spm_source, self.encoder, self._unk)
        self._source_backend.add_tokens([AddedToken(**token) for _, token in added])
        self._target_backend = self._target_added = None
        self._tokenizer = self._source_backend
        self._tokenizer.encode_special_tokens = encode_special_tokens
        self._set_template()

