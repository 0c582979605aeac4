"""`BatchEncoding`: what a tokenizer call returns — a dict of model inputs plus the `tokenizers.Encoding`s
behind them, which map tokens back to words and characters.

torch and numpy are imported only when tensors are asked for (`return_tensors="pt"` / `"np"`, `.to()`).
"""

from __future__ import annotations

from typing import Any, NamedTuple


class CharSpan(NamedTuple):
    """Characters [start, end) of the original string."""
    start: int
    end: int


class TokenSpan(NamedTuple):
    """Tokens [start, end) of an encoded sequence."""
    start: int
    end: int


def _is_empty(value) -> bool:
    # [] or [[], []]: torch/numpy cannot infer an integer dtype from these, so the conversion names one
    return isinstance(value, (list, tuple)) and all(_is_empty(v) for v in value)


def as_tensor(value, tensor_type: str):
    """A (nested) list of ints as a torch tensor ("pt") or a numpy array ("np")."""
    if tensor_type == "pt":
        import torch
        if isinstance(value, torch.Tensor):
            return value
        return torch.tensor(value, dtype=torch.int64 if _is_empty(value) else None)
    if tensor_type == "np":
        import numpy as np
        if isinstance(value, np.ndarray):
            return value
        return np.asarray(value, dtype=np.int64 if _is_empty(value) else None)
    raise ValueError(f"return_tensors={tensor_type!r} is not supported: use 'pt' (torch), 'np' (numpy) or None.")


def to_python(value):
    """Tensors and arrays (and lists of them) back to plain Python lists/ints."""
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple)):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [to_python(v) for v in value]
    return value


class BatchEncoding(dict):
    """Model inputs by name (`input_ids`, `attention_mask`, ...), readable as keys or attributes.

    `encoding[0]` (an int) is the `tokenizers.Encoding` of the first sequence; `word_ids(i)`, `tokens(i)`,
    `char_to_token(...)` and friends map between tokens, words and characters.
    """

    def __init__(self, data: dict[str, Any] | None = None, encodings=None, tensor_type: str | None = None,
                 n_sequences: int | None = None):
        super().__init__(data or {})
        self._encodings = encodings
        if n_sequences is None and encodings:
            n_sequences = encodings[0].n_sequences
        self._n_sequences = n_sequences
        self.convert_to_tensors(tensor_type)

    # -- dict access ----------------------------------------------------------------------------------------

    def __getitem__(self, item):
        if isinstance(item, str):
            return dict.__getitem__(self, item)
        if self._encodings is not None:
            return self._encodings[item]
        if isinstance(item, slice):
            return {key: value[item] for key, value in self.items()}
        raise KeyError("Use a string key ('input_ids', ...), an int (a backend Encoding) or a slice.")

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("_encodings", "_n_sequences"):
            raise AttributeError(name)
        try:
            return dict.__getitem__(self, name)
        except KeyError:
            raise AttributeError(f"BatchEncoding has no key or attribute {name!r}; keys: {list(self)}") from None

    def __getstate__(self):
        return {"data": dict(self), "encodings": self._encodings, "n_sequences": self._n_sequences}

    def __setstate__(self, state):
        self.update(state["data"])
        self._encodings = state["encodings"]
        self._n_sequences = state.get("n_sequences")

    def __reduce__(self):
        return (BatchEncoding, (), self.__getstate__())

    @property
    def data(self) -> BatchEncoding:
        """The inputs themselves (transformers' BatchEncoding is a UserDict with a `.data` dict; this one is a dict)."""
        return self

    @property
    def encodings(self):
        """The `tokenizers.Encoding` of each sequence (overflows included), or None."""
        return self._encodings

    @property
    def n_sequences(self) -> int | None:
        """1 for single sequences, 2 for pairs, None when unknown."""
        return self._n_sequences

    @property
    def is_fast(self) -> bool:
        return self._encodings is not None

    # -- tensors --------------------------------------------------------------------------------------------

    def convert_to_tensors(self, tensor_type: str | None = None) -> BatchEncoding:
        """Turn every value into a tensor of `tensor_type` ('pt' or 'np'); None leaves lists alone."""
        if tensor_type is None:
            return self
        for key, value in self.items():
            try:
                self[key] = as_tensor(value, tensor_type)
            except ValueError as err:
                if "return_tensors" in str(err):
                    raise
                raise ValueError(
                    f"Unable to build a tensor from '{key}': its sequences have different lengths. Pass padding=True "
                    "(and truncation=True for inputs longer than the model accepts) to get rectangular tensors."
                ) from err
        return self

    def to(self, device, *, non_blocking: bool = False) -> BatchEncoding:
        """Move every tensor to `device` (torch only); other values are left alone. Returns self."""
        for key, value in self.items():
            if hasattr(value, "to") and callable(value.to):
                self[key] = value.to(device=device, non_blocking=non_blocking)
        return self

    # -- alignment ------------------------------------------------------------------------------------------

    def _encoding(self, batch_index: int):
        if not self._encodings:
            raise ValueError("This BatchEncoding carries no backend encodings (it was built by `pad` or by hand).")
        return self._encodings[batch_index]

    @staticmethod
    def _indices(first: int, second: int | None) -> tuple[int, int]:
        # (i) means (batch 0, i); (b, i) means (batch b, i) — the transformers calling convention
        return (0, first) if second is None else (first, second)

    def tokens(self, batch_index: int = 0) -> list[str]:
        return self._encoding(batch_index).tokens

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        return self._encoding(batch_index).word_ids

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        return self._encoding(batch_index).sequence_ids

    def token_to_sequence(self, batch_or_token_index: int, token_index: int | None = None) -> int:
        batch, token = self._indices(batch_or_token_index, token_index)
        encoding = self._encoding(batch)
        return encoding.token_to_sequence(token % len(encoding) if token < 0 else token)

    def token_to_word(self, batch_or_token_index: int, token_index: int | None = None) -> int:
        batch, token = self._indices(batch_or_token_index, token_index)
        encoding = self._encoding(batch)
        return encoding.token_to_word(token % len(encoding) if token < 0 else token)

    def word_to_tokens(self, batch_or_word_index: int, word_index: int | None = None,
                       sequence_index: int = 0) -> TokenSpan | None:
        batch, word = self._indices(batch_or_word_index, word_index)
        span = self._encoding(batch).word_to_tokens(word, sequence_index)
        return TokenSpan(*span) if span is not None else None

    def token_to_chars(self, batch_or_token_index: int, token_index: int | None = None) -> CharSpan | None:
        batch, token = self._indices(batch_or_token_index, token_index)
        span = self._encoding(batch).token_to_chars(token)
        return CharSpan(*span) if span is not None else None

    def char_to_token(self, batch_or_char_index: int, char_index: int | None = None,
                      sequence_index: int = 0) -> int | None:
        batch, char = self._indices(batch_or_char_index, char_index)
        return self._encoding(batch).char_to_token(char, sequence_index)

    def word_to_chars(self, batch_or_word_index: int, word_index: int | None = None,
                      sequence_index: int = 0) -> CharSpan:
        batch, word = self._indices(batch_or_word_index, word_index)
        return CharSpan(*self._encoding(batch).word_to_chars(word, sequence_index))

    def char_to_word(self, batch_or_char_index: int, char_index: int | None = None,
                     sequence_index: int = 0) -> int | None:
        batch, char = self._indices(batch_or_char_index, char_index)
        return self._encoding(batch).char_to_word(char, sequence_index)

    def __repr__(self) -> str:
        return f"BatchEncoding({dict.__repr__(self)})"
