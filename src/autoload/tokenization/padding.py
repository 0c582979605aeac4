"""Padding and truncation arguments, and `pad()` for inputs encoded earlier (a collate function's job).

The functions take the tokenizer as `self` and are bound as its methods (`tok.pad(...)`); padding during encoding
happens in Rust (see `TokenizersBackend._configure_backend`), this is the Python path for already-encoded ids.
"""

from __future__ import annotations

import logging

from .encoding import BatchEncoding, to_python

logger = logging.getLogger(__name__)

VERY_LARGE_INTEGER = int(1e30)  # model_max_length when nothing is saved: "no limit"
LARGE_INTEGER = int(1e20)       # above this, max_length-based padding/truncation is switched off

PADDING_STRATEGIES = ("longest", "max_length", "do_not_pad")
TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second", "do_not_truncate")


def resolve_strategies(self, padding, truncation, max_length, pad_to_multiple_of,
                       verbose: bool = True) -> tuple[str, str, int | None]:
    """Normalise padding/truncation arguments to strategy names and the effective max_length."""
    if max_length is not None and padding is False and truncation is None:
        truncation = "longest_first"  # max_length alone means "truncate to it"
    padding = getattr(padding, "value", padding)
    truncation = getattr(truncation, "value", truncation)
    if padding is True:
        if verbose and max_length is not None and truncation in (None, False, "do_not_truncate"):
            logger.warning("max_length is ignored when padding=True and there is no truncation: "
                           "use padding='max_length' to pad to max_length.")
        padding = "longest"
    elif padding is False or padding is None:
        padding = "do_not_pad"
    elif padding not in PADDING_STRATEGIES:
        raise ValueError(f"padding={padding!r} is not one of True, False, {', '.join(map(repr, PADDING_STRATEGIES))}.")
    if truncation is True:
        truncation = "longest_first"
    elif truncation is False or truncation is None:
        truncation = "do_not_truncate"
    elif truncation not in TRUNCATION_STRATEGIES:
        raise ValueError(f"truncation={truncation!r} is not one of True, False, "
                         f"{', '.join(map(repr, TRUNCATION_STRATEGIES))}.")
    if max_length is None:
        # model_max_length stands in, unless it is the "no limit" default: then that step is skipped
        if padding == "max_length":
            if self.model_max_length > LARGE_INTEGER:
                padding = "do_not_pad"
            else:
                max_length = self.model_max_length
        if truncation != "do_not_truncate":
            if self.model_max_length > LARGE_INTEGER:
                truncation = "do_not_truncate"
            else:
                max_length = self.model_max_length
    if padding != "do_not_pad":
        pad_id = self.pad_token_id
        if self.pad_token is None or pad_id is None or pad_id < 0:
            raise ValueError(
                f"Asking to pad but {type(self).__name__} has no padding token. Set one, e.g. "
                "`tok.pad_token = tok.eos_token`, or add one with `tok.add_special_tokens({'pad_token': '[PAD]'})` "
                "(then resize the model's embeddings to len(tok)).")
    if (truncation != "do_not_truncate" and padding != "do_not_pad" and pad_to_multiple_of is not None
            and max_length is not None and max_length % pad_to_multiple_of != 0):
        raise ValueError(f"Truncation and padding are both on, but the truncation length ({max_length}) is not a "
                         f"multiple of pad_to_multiple_of ({pad_to_multiple_of}).")
    return padding, truncation, max_length


def pad(self, encoded_inputs, padding: bool | str = True, max_length: int | None = None,
        pad_to_multiple_of: int | None = None, padding_side: str | None = None,
        return_attention_mask: bool | None = None, return_tensors: str | None = None,
        verbose: bool = True) -> BatchEncoding:
    """Pad already-encoded inputs: one dict, a dict of lists, or a list of dicts (a collate function).

    Tensors/arrays in, tensors/arrays of the same kind out (unless `return_tensors` says otherwise).
    """
    if isinstance(encoded_inputs, (list, tuple)) and encoded_inputs and isinstance(encoded_inputs[0], dict):
        encoded_inputs = {key: [example[key] for example in encoded_inputs] for key in encoded_inputs[0]}
    else:
        encoded_inputs = dict(encoded_inputs)
    main = self.model_input_names[0]
    if main not in encoded_inputs:
        raise ValueError(f"pad() needs '{main}' among the inputs; got {list(encoded_inputs)}.")
    required = encoded_inputs[main]
    if required is None or (hasattr(required, "__len__") and len(required) == 0):
        if return_attention_mask:
            encoded_inputs["attention_mask"] = []
        return BatchEncoding(encoded_inputs)
    first = required[0]
    if isinstance(first, (list, tuple)):
        first = next((item[0] for item in required if len(item)), first)
    if not isinstance(first, (int, list, tuple)):
        kind = type(first).__module__.split(".")[0]
        if kind == "torch":
            return_tensors = return_tensors or "pt"
        elif kind == "numpy":
            return_tensors = return_tensors or "np"
        else:
            raise ValueError(f"pad() got values of type {type(first).__name__}: use ints, lists, numpy or torch.")
        encoded_inputs = {key: to_python(value) for key, value in encoded_inputs.items()}
    padding, _, max_length = resolve_strategies(self, padding, None, max_length, None, verbose)
    required = encoded_inputs[main]
    if required and not isinstance(required[0], (list, tuple)):
        return BatchEncoding(_pad_one(self, encoded_inputs, max_length, padding, pad_to_multiple_of, padding_side,
                                           return_attention_mask), tensor_type=return_tensors)
    batch_size = len(required)
    if any(len(value) != batch_size for value in encoded_inputs.values()):
        raise ValueError("pad(): the inputs have different batch sizes.")
    if padding == "longest":
        max_length = max(len(ids) for ids in required)
        padding = "max_length"
    out: dict[str, list] = {}
    for i in range(batch_size):
        row = _pad_one(self, {key: value[i] for key, value in encoded_inputs.items()}, max_length, padding,
                            pad_to_multiple_of, padding_side, return_attention_mask)
        for key, value in row.items():
            out.setdefault(key, []).append(value)
    return BatchEncoding(out, tensor_type=return_tensors)


def _pad_one(self, inputs: dict, max_length, padding: str, pad_to_multiple_of, padding_side,
             return_attention_mask) -> dict:
    if return_attention_mask is None:
        return_attention_mask = "attention_mask" in self.model_input_names
    main = self.model_input_names[0]
    ids = inputs[main]
    if padding == "longest":
        max_length = len(ids)
    if max_length is not None and pad_to_multiple_of is not None and max_length % pad_to_multiple_of:
        max_length = (max_length // pad_to_multiple_of + 1) * pad_to_multiple_of
    if return_attention_mask and "attention_mask" not in inputs:
        inputs["attention_mask"] = [1] * len(ids)
    if padding == "do_not_pad" or len(ids) == max_length:
        return inputs
    missing = max_length - len(ids)
    side = padding_side or self.padding_side

    def extend(values, fill):
        return values + [fill] * missing if side == "right" else [fill] * missing + values

    if side not in ("right", "left"):
        raise ValueError(f"padding_side should be 'right' or 'left', not {side!r}.")
    if return_attention_mask:
        inputs["attention_mask"] = extend(inputs["attention_mask"], 0)
    if "token_type_ids" in inputs:
        inputs["token_type_ids"] = extend(inputs["token_type_ids"], self.pad_token_type_id)
    if "special_tokens_mask" in inputs:
        inputs["special_tokens_mask"] = extend(inputs["special_tokens_mask"], 1)
    inputs[main] = extend(ids, self.pad_token_id)
    return inputs
