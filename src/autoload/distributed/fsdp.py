"""FSDP2 (`torch.distributed.fsdp.fully_shard`) for training autoload models over several ranks.

`from_pretrained_fsdp(cls, path)` under torchrun (or an initialised process group):
1. rank 0 loads the checkpoint the ordinary way (memory-mapped: the full state dict costs page cache, not copies)
   and sends its class and config to the other ranks;
2. every rank builds the same model on the meta device (no memory), ties its weights, and shards it with
   `fully_shard`: each block the family lists in `_no_split_modules` (decoder layers, BERT's layers) becomes one
   FSDP unit, the root holds the rest (embeddings, final norm, head);
3. `to_empty` gives each rank memory for its shards only (the real buffers — rotary tables — are kept), then
   `set_model_state_dict(full_state_dict=True, broadcast_from_rank0=True)` sends rank 0's tensors out, each rank
   keeping its shard.

The result trains like any FSDP2 model: forward on each rank's part of the batch, backward reduce-scatters the
gradients (averaged over ranks), `p.grad.full_tensor()` gathers one.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict

import torch
import torch.distributed as dist
from torch import nn

from .. import loading
from .tensor_parallel import TensorParallelError, ensure_process_group, rank_device


def fsdp_units(model: nn.Module) -> list[nn.Module]:
    """The modules that become their own FSDP unit: instances of the classes in `_no_split_modules`, innermost
    first (the order fully_shard wants: children before their parents). A block holding a tied weight (BERT's
    embeddings, tied to the MLM decoder) stays in the root's unit with the other holder."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    tied = {id(loading.get_tensor(model, key)) for pair in model.tied_weights().items() for key in pair}
    units = [m for m in model.modules() if type(m).__name__ in names and m is not model
             and not any(id(p) in tied for p in m.parameters())]
    return list(reversed(units))


@contextlib.contextmanager
def _memory_layout(model: nn.Module, full_state: dict):
    """Load in the in-memory layout: the tensors a module keeps transposed relative to its checkpoint (GPT-2's
    `transposed_in_checkpoint`) are transposed in rank 0's state dict, and those modules' state-dict hooks (which
    translate to and from the checkpoint layout) are set aside meanwhile."""
    stashed = []
    for name, module in model.named_modules():
        transposed = getattr(module, "transposed_in_checkpoint", ())
        if not transposed:
            continue
        for attr in transposed:
            key = f"{name}.{attr}" if name else attr
            if key in full_state:
                full_state[key] = full_state[key].t().contiguous()
        stashed.append((module, module._state_dict_hooks, module._load_state_dict_pre_hooks))
        module._state_dict_hooks, module._load_state_dict_pre_hooks = OrderedDict(), OrderedDict()
    try:
        yield
    finally:
        for module, saving, loading_hooks in stashed:
            module._state_dict_hooks, module._load_state_dict_pre_hooks = saving, loading_hooks


def from_pretrained_fsdp(cls, name_or_path, *, mesh=None, reshard_after_forward: bool | None = None,
                         mp_policy=None, **kwargs) -> nn.Module:
    """A model sharded with FSDP2 over `mesh` (default: all ranks), its weights read once by rank 0 and broadcast.
    `cls` is a model class or an Auto class; `kwargs` go to rank 0's `from_pretrained` (dtype, revision, ...).
    reshard_after_forward: None (default) leaves torch's choice: the blocks free their gathered parameters after
    forward, the root keeps its own (embeddings, head) for the backward that follows at once; True / False set it
    for every unit, the root included."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    if "tp_plan" in kwargs or "device_map" in kwargs:
        raise TensorParallelError("from_pretrained_fsdp shards the model itself: pass neither tp_plan nor device_map.")
    ensure_process_group()
    device = rank_device()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if mesh is None:
        mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    full_state, built = {}, [None, None]
    if dist.get_rank() == 0:
        loaded = cls.from_pretrained(name_or_path, **kwargs)
        full_state = loaded.state_dict()
        built = [type(loaded), loaded.config]
        del loaded
    dist.broadcast_object_list(built, src=0)  # (model class, config): the same skeleton everywhere
    model_class, config = built
    with loading.skeleton(loading.to_dtype(config.dtype or torch.float32)):
        model = model_class(config)
    for module in model.modules():  # FSDP shards contiguous parameters: GPT-2's transposed views get their own
        for name, param in module._parameters.items():  # (still meta) memory; its load hook transposes on load
            if param is not None and not param.is_contiguous():
                module._parameters[name] = nn.Parameter(torch.empty(param.shape, dtype=param.dtype, device="meta"),
                                                        requires_grad=param.requires_grad)
    model.tie_weights()  # post_init skips tying while building a skeleton
    kept = {name: buf.clone() for name, buf in model.named_buffers()}  # real buffers survive to_empty
    fsdp_kwargs = {"mesh": mesh}
    if mp_policy is not None:
        fsdp_kwargs["mp_policy"] = mp_policy
    for unit in fsdp_units(model):
        fully_shard(unit, reshard_after_forward=True if reshard_after_forward is None else reshard_after_forward,
                    **fsdp_kwargs)
    if reshard_after_forward is not None:
        fsdp_kwargs["reshard_after_forward"] = reshard_after_forward
    fully_shard(model, **fsdp_kwargs)
    model.to_empty(device=device)
    with torch.no_grad():
        for name, buf in kept.items():
            loading.get_tensor(model, name).copy_(buf)
    with _memory_layout(model, full_state):
        set_model_state_dict(model, full_state,
                             options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    model.name_or_path = config.name_or_path
    return model
