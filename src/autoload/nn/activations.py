"""Activation functions by the names configs use (`hidden_act`, `activation_function`), as in the reference.

Each entry is a plain function of one tensor, written with the same operations as the reference so that
results agree to the last bit where the reference writes the formula out (gelu_new, gelu_fast, quick_gelu).
"""

from __future__ import annotations

import difflib
import functools
import math
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F


def gelu_python(x: torch.Tensor) -> torch.Tensor:
    """Exact GELU written out: x·Φ(x) = x/2·(1 + erf(x/√2))."""
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """GELU's tanh approximation (GPT-2, "gelu_new"): x/2·(1 + tanh(√(2/π)·(x + 0.044715·x³)))."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def gelu_fast(x: torch.Tensor) -> torch.Tensor:
    """The same approximation with √(2/π) rounded to 0.7978845608 and x³ as x·x·x."""
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """x·σ(1.702x) (CLIP)."""
    return x * torch.sigmoid(1.702 * x)


def gelu_10(x: torch.Tensor) -> torch.Tensor:
    """Exact GELU clipped to [-10, 10] (for quantisation-friendly ranges)."""
    return torch.clip(F.gelu(x), -10, 10)


def relu2(x: torch.Tensor) -> torch.Tensor:
    """relu(x)²."""
    return torch.square(F.relu(x))


def linear(x: torch.Tensor) -> torch.Tensor:
    return x


ACT2FN: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,  # exact (erf) form, torch's kernel
    "gelu_python": gelu_python,
    "gelu_new": gelu_new,
    "gelu_accurate": gelu_new,  # the reference's AccurateGELU is the same formula
    "gelu_python_tanh": gelu_new,
    "gelu_pytorch_tanh": functools.partial(F.gelu, approximate="tanh"),  # torch's tanh kernel
    "gelu_fast": gelu_fast,
    "gelu_10": gelu_10,
    "quick_gelu": quick_gelu,
    "relu": F.relu,
    "relu2": relu2,
    "relu6": F.relu6,
    "leaky_relu": F.leaky_relu,
    "silu": F.silu,
    "swish": F.silu,
    "mish": F.mish,
    "hardswish": F.hardswish,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "linear": linear,
}


def get_activation(name: str | Callable) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function for a config's activation name (a callable is returned as is)."""
    if callable(name):
        return name
    try:
        return ACT2FN[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), ACT2FN, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise KeyError(f"Unknown activation '{name}'.{hint} Known: {', '.join(sorted(ACT2FN))}.") from None


class Activation(nn.Module):
    """An activation as a module, so that it shows in `named_modules()` where the reference has one
    (`mlp.act_fn`, `intermediate.intermediate_act_fn`, `mlp.act`) and forward hooks can attach to it."""

    def __init__(self, name: str | Callable):
        super().__init__()
        self.name = name if isinstance(name, str) else getattr(name, "__name__", type(name).__name__)
        self.fn = get_activation(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name
