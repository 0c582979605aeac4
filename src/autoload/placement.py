"""`device_map="auto"`: fill the visible GPUs in order, then the CPU.

The model is cut into units (each block of a layer list, and every other top-level module), placed in
module order while each device has room (90% of its free memory), keeping modules that share a tensor
(tied embeddings) together. A forward pre-hook moves a unit's inputs to its device, so the forward pass
crosses devices without any change to the model code.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

logger = logging.getLogger("autoload")
HEADROOM = 0.9


def units(model: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """Placement units in forward order: elements of layer lists, and the modules around them."""
    out = []
    for name, child in model.named_children():
        path = f"{prefix}{name}"
        if isinstance(child, nn.ModuleList):
            out += [(f"{path}.{i}", block) for i, block in enumerate(child)]
        elif any(isinstance(m, nn.ModuleList) for m in child.modules()):
            out += units(child, prefix=f"{path}.")
        else:
            out.append((path, child))
    own = [p for p in model._parameters.values() if p is not None]
    if own and not prefix:
        out.insert(0, ("", model))
    return out


def _size(module: nn.Module, seen: set[int]) -> int:
    total = 0
    for tensor in [*module.parameters(), *module.buffers()]:
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total


def plan(model: nn.Module, budgets: list[tuple[torch.device, float]]) -> dict[str, torch.device]:
    """{unit name: device}. `budgets` lists (device, bytes) in fill order; the last one takes the rest."""
    placement: dict[str, torch.device] = {}
    owner: dict[int, torch.device] = {}  # tensor id -> device of the unit that placed it
    seen: set[int] = set()
    index, used = 0, 0.0
    for name, module in units(model):
        tensors = [*module.parameters(), *module.buffers()]
        shared = next((owner[id(t)] for t in tensors if id(t) in owner), None)
        size = _size(module, seen)
        if shared is not None:  # tied to a tensor placed earlier: go where it lives
            placement[name] = shared
            continue
        while index < len(budgets) - 1 and used + size > budgets[index][1]:
            index, used = index + 1, 0.0
        device = budgets[index][0]
        used += size
        placement[name] = device
        for t in tensors:
            owner[id(t)] = device
    return placement


def _move_inputs(device: torch.device):
    def to_device(value):
        if isinstance(value, torch.Tensor):
            return value.to(device)
        if isinstance(value, (list, tuple)):
            return type(value)(to_device(v) for v in value)
        if isinstance(value, dict):
            return {k: to_device(v) for k, v in value.items()}
        return value

    def hook(module, args, kwargs):
        return to_device(args), to_device(kwargs)
    return hook


def apply(model: nn.Module, placement: dict[str, torch.device]) -> None:
    for name, device in placement.items():
        module = model.get_submodule(name) if name else model
        if name:
            module.to(device)
            module.register_forward_pre_hook(_move_inputs(device), with_kwargs=True)
    model.hf_device_map = {name or "": str(device) for name, device in placement.items()}


def dispatch_auto(model: nn.Module) -> None:
    """Place a CPU-loaded model over the visible GPUs, then the CPU."""
    if not torch.cuda.is_available():
        logger.info("device_map='auto': no GPU visible; the model stays on the CPU.")
        model.hf_device_map = {"": "cpu"}
        return
    budgets = [(torch.device(f"cuda:{i}"), torch.cuda.mem_get_info(i)[0] * HEADROOM)
               for i in range(torch.cuda.device_count())]
    budgets.append((torch.device("cpu"), float("inf")))
    placement = plan(model, budgets)
    apply(model, placement)
    used = sorted({str(d) for d in placement.values()})
    logger.info("device_map='auto' placed %s over %s", type(model).__name__, ", ".join(used))
