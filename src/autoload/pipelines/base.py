"""What every task pipeline shares: options with defaults and a typo check, a single input or a list, batching
with padding per batch, a progress bar on long lists, inference mode, and moving inputs to the model's device.

A task subclass sets `task`, `auto_class` (the Auto class `pipeline()` loads with), `options` (call options and
their defaults) and implements `_run(batch, options) -> one result per item`; `_prepare` turns options into what
`_run` needs once per call, `_finish` shapes the list of results like the reference does.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from typing import Any

import torch

LONG_INPUT = 32  # lists longer than this get a progress bar (progress=None)
_UNSET = object()


class Pipeline:
    """A model and its tokenizer behind one call: `pipe(text_or_list, **options)`.

    Options given to `pipeline(...)` become this pipeline's defaults; options given to a call override them for
    that call. `batch_size` items run through the model at once (each batch padded to its longest item);
    `progress` shows a bar (None: only for lists of more than 32 items).
    """

    task: str = ""
    auto_class: str = "AutoModel"
    options: dict[str, Any] = {}
    default_batch_size: int = 8

    def __init__(self, model, tokenizer, *, batch_size: int | None = None, progress: bool | None = None,
                 **options):
        self.check_model(model)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = _check_batch_size(batch_size) if batch_size is not None else self.default_batch_size
        self.progress = progress
        self.defaults = {**self.options, **self.check_options(options)}

    @classmethod
    def check_model(cls, model) -> None:
        """Raise when `model` cannot do this task (a subclass checks its head)."""

    @property
    def device(self) -> torch.device:
        device = getattr(self.model, "device", None)
        return device if isinstance(device, torch.device) else next(self.model.parameters()).device

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(task='{self.task}', model={type(self.model).__name__}"
                f"('{getattr(self.model, 'name_or_path', '')}'), device={self.device}, batch_size={self.batch_size})")

    # -- options --------------------------------------------------------------------------------------------

    @classmethod
    def check_options(cls, options: dict) -> dict:
        """The options themselves, or a TypeError naming the unknown ones and their closest valid names."""
        unknown = [key for key in options if key not in cls.options]
        if unknown:
            known = sorted([*cls.options, "batch_size", "progress"])
            hints = [f"'{key}'" + (f" (did you mean '{m[0]}'?)" if (m := difflib.get_close_matches(key, known, 1))
                                   else "") for key in unknown]
            raise TypeError(f"The {cls.task} pipeline got unknown option(s) {', '.join(hints)}. "
                            f"Its options: {', '.join(known)}.")
        return dict(options)

    def _prepare(self, options: dict) -> dict:
        """Options -> what `_run` needs (e.g. target token ids), once per call."""
        return options

    # -- the call -------------------------------------------------------------------------------------------

    def __call__(self, inputs, *, batch_size: int | None = None, progress: bool | None = _UNSET, **options):
        """Run the task on one input or a list of inputs; see the task's docstring for inputs and outputs."""
        items, single = self._items(inputs)
        options = self._prepare({**self.defaults, **self.check_options(options)})
        return self._finish(self._predict(items, batch_size, progress, options), single, options)

    def run(self, inputs: list, *, batch_size: int | None = None, progress: bool | None = _UNSET,
            **options) -> list:
        """One result per input of the list, in order, without the reference's shaping of single inputs (a
        one-item list is still a list here)."""
        if not isinstance(inputs, (list, tuple)):
            raise TypeError(f"run() takes a list of inputs, not {_describe(inputs)}; call the pipeline for one input.")
        items = []
        for one in inputs:
            item, single = self._items(one)
            if not single:
                raise TypeError(f"run() takes a flat list of inputs; one of them is {_describe(one)}.")
            items += item
        options = self._prepare({**self.defaults, **self.check_options(options)})
        return self._predict(items, batch_size, progress, options)

    def _predict(self, items: list, batch_size: int | None, progress, options: dict) -> list:
        if not items:
            raise ValueError(f"The {self.task} pipeline needs at least one input; got an empty list.")
        size = _check_batch_size(batch_size) if batch_size is not None else self.batch_size
        if size > 1 and len(items) > 1 and getattr(self.tokenizer, "pad_token_id", None) is None:
            size = 1  # no pad token: the inputs cannot share a batch, so they run one by one
        # similar lengths side by side waste less padding; results go back to the input order
        order = sorted(range(len(items)), key=lambda i: _length(items[i])) if size > 1 else list(range(len(items)))
        results: list = [None] * len(items)
        bar = _progress_bar(len(items), self.progress if progress is _UNSET else progress, self.task)
        try:
            with torch.inference_mode():
                for start in range(0, len(order), size):
                    chunk = order[start:start + size]
                    for index, result in zip(chunk, self._run([items[i] for i in chunk], options)):
                        results[index] = result
                    if bar is not None:
                        bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
        return results

    def _items(self, inputs) -> tuple[list, bool]:
        """(list of inputs, whether a single input was given). The default: a str or a list/tuple of str."""
        if isinstance(inputs, str):
            return [inputs], True
        if isinstance(inputs, (list, tuple)) and all(isinstance(item, str) for item in inputs):
            return list(inputs), False
        raise TypeError(f"The {self.task} pipeline takes a str or a list of str, not {_describe(inputs)}.")

    def _run(self, batch: list, options: dict) -> list:
        raise NotImplementedError

    def _finish(self, results: list, single: bool, options: dict):
        return results[0] if single else results

    # -- helpers for the tasks ------------------------------------------------------------------------------

    def encode(self, texts, **kwargs):
        """Tokenize a batch into tensors on the model's device (padded when there are several)."""
        padding = len(texts) > 1 if not isinstance(texts, str) else False
        encoding = self.tokenizer(texts, padding=padding, return_tensors="pt", **kwargs)
        return encoding.to(self.device)

    def model_inputs(self, encoding, module=None) -> dict:
        """The encoding's tensors that `module`'s forward takes (input_ids, attention_mask, token_type_ids...),
        with the KV cache off for decoders."""
        module = self.model if module is None else module
        accepted = _forward_parameters(module)
        inputs = {key: value for key, value in encoding.items() if key in accepted and torch.is_tensor(value)}
        if "use_cache" in accepted:
            inputs["use_cache"] = False
        return inputs


def first_output(output):
    """`output[0]` (last_hidden_state or logits) without rebuilding the output's tuple."""
    for name in ("logits", "last_hidden_state"):
        value = getattr(output, name, None)
        if value is not None:
            return value
    return output[0]


def backbone(model):
    """The bare encoder/decoder inside a head model (`model.bert`, `model.model`), or the model itself."""
    prefix = getattr(model, "base_model_prefix", "")
    inner = getattr(model, prefix, None) if prefix else None
    return inner if isinstance(inner, torch.nn.Module) else model


def _forward_parameters(module) -> frozenset[str]:
    return _parameters_of(type(module))


@functools.cache
def _parameters_of(module_class: type) -> frozenset[str]:
    return frozenset(inspect.signature(module_class.forward).parameters)


def _check_batch_size(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"batch_size must be a positive int, not {value!r}.")
    return value


def _length(item) -> int:
    """A cheap proxy for an input's token count, to group similar lengths into one batch."""
    return len(item) if isinstance(item, str) else len(repr(item))


def _progress_bar(total: int, progress: bool | None, task: str):
    if progress is None:
        from ..hub import settings
        progress = total > LONG_INPUT and not settings.progress_disabled()
    if not progress:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=task, unit="input", dynamic_ncols=True)


def _describe(value) -> str:
    if isinstance(value, (list, tuple)):
        kinds = sorted({type(item).__name__ for item in value})
        return f"a {type(value).__name__} of {', '.join(kinds)}"
    return f"a {type(value).__name__}"
