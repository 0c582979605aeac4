"""Texts (or text pairs) through an encoder in length-sorted batches, as embedding a large corpus needs it.

Everything is tokenized first, in one call and without padding; the inputs are then ordered by their real token
count (longest first, so a batch that does not fit in memory fails at once), cut into batches of `batch_size`,
and each batch is padded only to its own longest input. When the model's backbone can run unpadded
(`forward(..., unpad=True)`: its layers see only the real tokens, attention still per text), it does, and no
work is spent on padding at all. Results come back in the input order.
"""

from __future__ import annotations

import importlib.util
import inspect

import torch


def tokenize_all(tokenizer, first: list[str], second: list[str] | None, max_length: int | None) -> dict[str, list]:
    """{input name: one list of ids per input}, truncated to max_length, unpadded."""
    options = {"truncation": True, "max_length": max_length} if max_length else {}
    encoding = tokenizer(first, second, padding=False, **options) if second is not None else \
        tokenizer(first, padding=False, **options)
    return {key: list(value) for key, value in encoding.items() if key in ("input_ids", "token_type_ids")}


def batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Input indices grouped into batches of similar token counts, longest first."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def pad_batch(features: dict[str, list], rows: list[int], pad_id: int, device) -> dict[str, torch.Tensor]:
    """The rows' ids right-padded to the longest of them: input_ids, attention_mask (and token_type_ids), (B, T)."""
    ids = features["input_ids"]
    B, T = len(rows), max(len(ids[i]) for i in rows)
    out = {"input_ids": torch.full((B, T), pad_id, dtype=torch.long),
           "attention_mask": torch.zeros(B, T, dtype=torch.long)}
    if "token_type_ids" in features:
        out["token_type_ids"] = torch.zeros(B, T, dtype=torch.long)
    for b, i in enumerate(rows):
        n = len(ids[i])
        out["input_ids"][b, :n] = torch.tensor(ids[i], dtype=torch.long)
        out["attention_mask"][b, :n] = 1
        if "token_type_ids" in features:
            out["token_type_ids"][b, :n] = torch.tensor(features["token_type_ids"][i], dtype=torch.long)
    return {key: value.to(device) for key, value in out.items()}


def forward_inputs(module, batch: dict[str, torch.Tensor], unpad: bool) -> dict:
    """The batch's tensors that `module.forward` takes, plus unpad=True when it can run unpadded."""
    accepted = _parameters(type(module))
    inputs = {key: value for key, value in batch.items() if key in accepted}
    if unpad and "unpad" in accepted and not bool(batch["attention_mask"].all()):
        inputs["unpad"] = True
    if "use_cache" in accepted:
        inputs["use_cache"] = False
    return inputs


_PARAMETERS: dict[type, frozenset[str]] = {}


def _parameters(module_class: type) -> frozenset[str]:
    if module_class not in _PARAMETERS:
        _PARAMETERS[module_class] = frozenset(inspect.signature(module_class.forward).parameters)
    return _PARAMETERS[module_class]


def progress_bar(total: int, show: bool | None, desc: str):
    if show is None:
        from ..hub import settings
        show = total > 256 and not settings.progress_disabled()
    if not show:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="input", dynamic_ncols=True)


def check_batch_size(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"batch_size must be a positive int, not {value!r}.")
    return value


def to_output(vectors: list[torch.Tensor], convert_to_numpy: bool, convert_to_tensor: bool, single: bool):
    """sentence-transformers' output rules: a stacked tensor, a numpy array (the default), or a list of tensors;
    one vector (not a batch of one) for a single input."""
    if convert_to_tensor:
        stacked = torch.stack(vectors) if vectors else torch.empty(0)
        return stacked[0] if single else stacked
    if convert_to_numpy:
        if importlib.util.find_spec("numpy") is None:  # torch converts through it
            raise ImportError("convert_to_numpy=True needs numpy: pip install numpy, or pass convert_to_tensor=True.")
        stacked = torch.stack(vectors).numpy() if vectors else torch.empty(0).numpy()
        return stacked[0] if single else stacked
    return vectors[0] if single else vectors
