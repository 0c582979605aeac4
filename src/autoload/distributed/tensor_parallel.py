"""`from_pretrained(..., tp_plan="auto")`: tensor parallelism with `torch.distributed.tensor.parallel`.

Under torchrun (or any initialised process group) the model is built on the meta device as always, then:
1. a DeviceMesh over the ranks (gloo on the CPU, nccl on GPUs: one GPU per rank, `cuda:LOCAL_RANK`); with
   `tp_size` smaller than the world, a 2-D (dp, tp) mesh and its "tp" dimension;
2. the family's plan (`plans.py`, or a dict passed as `tp_plan`) is resolved to module names, checked (the size must
   divide the heads, the kv heads and every split dimension: `TensorParallelError` otherwise) and applied with
   `parallelize_module` while the parameters are still on meta: each planned parameter becomes a meta DTensor
   that knows its placement (Shard(0), Shard(1) or Replicate);
3. each rank reads from the checkpoint only its slice of every split tensor, and wraps it with
   `DTensor.from_local`; unsplit tensors are read whole. Safetensors files are read with positioned reads, not
   a memory map: a column slice (rowwise layers) is cut from blocks of rows through a small buffer, so no rank's
   resident set ever holds a full split tensor, not even as mapped file pages.

The forward pass needs no change: the styles' hooks hand plain local tensors to the model code (q_proj's output
holds the rank's heads, which `view(b, t, -1, hs)` picks up; the KV cache holds the local heads) and all-reduce
after o_proj / down_proj, so every rank ends with the same hidden states and the same (gathered) logits, and
`generate()` picks the same tokens on every rank.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re

import torch
import torch.distributed as dist
from torch import nn

from .. import loading
from .plans import PLANS

logger = logging.getLogger("autoload")


class TensorParallelError(ValueError):
    """A tensor-parallel load that cannot be done: no process group, a size that does not divide the world, the
    heads or a split dimension, a family without a plan, a plan naming an unknown style."""


# -- process group and mesh ---------------------------------------------------------------------------------

def ensure_process_group() -> None:
    """Initialise torch.distributed from torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR...) if nothing has
    yet: nccl when CUDA is available (each rank on cuda:LOCAL_RANK), gloo otherwise."""
    if dist.is_available() and dist.is_initialized():
        return
    if not dist.is_available() or "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise TensorParallelError(
            "tp_plan needs torch.distributed: launch with `torchrun --nproc-per-node N your_script.py` (it sets RANK, "
            "WORLD_SIZE, MASTER_ADDR) or call torch.distributed.init_process_group(...) before from_pretrained.")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend)


def rank_device() -> torch.device:
    """This rank's device: cuda:LOCAL_RANK under nccl, else the CPU."""
    if "nccl" in str(dist.get_backend()) and torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank() % torch.cuda.device_count()))
        return torch.device("cuda", local)
    return torch.device("cpu")


def tp_mesh(tp_size: int | None, device: torch.device):
    """A 1-D mesh of `tp_size` ranks (default: all): the world itself, or the "tp" dimension of a (dp, tp) mesh."""
    from torch.distributed.device_mesh import init_device_mesh
    world = dist.get_world_size()
    tp = world if tp_size is None else tp_size
    if not isinstance(tp, int) or isinstance(tp, bool) or tp < 1 or world % tp:
        raise TensorParallelError(f"tp_size={tp_size!r} must be a positive int dividing the world size {world}.")
    if tp == world:
        return init_device_mesh(device.type, (world,), mesh_dim_names=("tp",))
    return init_device_mesh(device.type, (world // tp, tp), mesh_dim_names=("dp", "tp"))["tp"]


# -- the plan ----------------------------------------------------------------------------------------------

def _styles():
    from torch.distributed.tensor import Replicate
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel
    return {
        "colwise": ColwiseParallel,
        "rowwise": RowwiseParallel,
        "colwise_gather_output": lambda: ColwiseParallel(output_layouts=Replicate()),
        "rowwise_split_input": lambda: RowwiseParallel(input_layouts=Replicate()),
        "vocab_embedding": lambda: RowwiseParallel(input_layouts=Replicate()),
    }


def _backbone_prefix(model: nn.Module) -> str:
    prefix = getattr(model, "base_model_prefix", "")
    return f"{prefix}." if prefix and isinstance(getattr(model, prefix, None), nn.Module) else ""


def _match(model: nn.Module, patterns: dict, prefix: str = "") -> dict[str, object]:
    """{module name: value} for each module whose name matches a pattern (`*` one path element)."""
    out = {}
    for name, _ in model.named_modules():
        for pattern, value in patterns.items():
            full = prefix + pattern
            if name.count(".") == full.count(".") and fnmatch.fnmatchcase(name, full):
                out[name] = value
    return out


def resolve_plan(model: nn.Module, tp_plan) -> tuple[dict[str, str], dict[str, tuple]]:
    """({module name: style}, {module name: head-count attributes}) for this model: the family's row in PLANS
    (tp_plan="auto"), or a dict {pattern relative to the model: style}."""
    config = model.config
    base = _backbone_prefix(model)
    heads: dict = {}
    if isinstance(tp_plan, dict):
        plan = _match(model, tp_plan)
        if not plan:
            raise TensorParallelError(f"tp_plan {tp_plan} matches no module of {type(model).__name__}.")
    elif tp_plan == "auto":
        row = PLANS.get(config.model_type)
        if row is None:
            raise TensorParallelError(f"{type(model).__name__} (model_type {config.model_type!r}) has no tensor-"
                                      f"parallel plan; families with one: {', '.join(sorted(PLANS))}. Pass tp_plan="
                                      "{module pattern: style} to give one.")
        base_plan, head_plan, head_attrs = row
        plan = {**_match(model, base_plan, base), **_match(model, head_plan)}
        heads = _match(model, head_attrs, base)
    else:
        raise TensorParallelError(f"tp_plan={tp_plan!r}: use 'auto' (the family's plan) or a dict {{pattern: style}}.")
    for target, source in model.tied_weights().items():  # a tied LM head splits with its embedding, or not at all
        head, emb = target.rpartition(".")[0], source.rpartition(".")[0]
        if head in plan and isinstance(model.get_submodule(emb), nn.Embedding):
            plan[emb] = "vocab_embedding"
        elif head in plan:
            del plan[head]
    unknown = sorted({s for s in plan.values() if s not in _styles()})
    if unknown:
        raise TensorParallelError(f"tp_plan styles {unknown} are unknown; known: {', '.join(_styles())}.")
    return plan, heads


def check_divisible(model: nn.Module, plan: dict[str, str], heads: dict, tp: int) -> None:
    """Refuse a size that does not divide the heads (when attention is split by heads) or a split dimension."""
    config = model.config
    by_heads = any(style == "colwise" and name.rpartition(".")[2] in ("q_proj", "k_proj", "v_proj", "query",
                                                                      "key", "value") for name, style in plan.items())
    if by_heads or heads:
        for field in ("num_attention_heads", "num_key_value_heads"):
            count = getattr(config, field, None)
            if isinstance(count, int) and count % tp:
                raise TensorParallelError(f"tensor-parallel size {tp} does not divide {field}={count} of "
                                          f"{config.model_type}: each rank must hold whole heads. Use a size that "
                                          "divides it (tp_size=...).")
    for name, style in plan.items():
        module = model.get_submodule(name)
        if isinstance(module, nn.Embedding):
            dim, what = module.num_embeddings, "vocabulary (vocab-parallel embedding)"
        elif isinstance(module, nn.Linear):
            rows = style.startswith("colwise")
            dim = module.out_features if rows else module.in_features
            what = "output features" if rows else "input features"
            if name.endswith("lm_head"):
                what = "vocabulary (vocab-parallel lm_head)"
        else:
            raise TensorParallelError(f"tp_plan puts '{name}' ({type(module).__name__}) under {style!r}; only "
                                      "nn.Linear and nn.Embedding modules can be split.")
        if dim % tp:
            raise TensorParallelError(f"tensor-parallel size {tp} does not divide the {what} of '{name}' ({dim}). "
                                      "Use a size that divides it, or pass a tp_plan dict without this module.")


# -- loading the local slices ------------------------------------------------------------------------------

_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}
_BLOCK = 2**20  # bytes read at a time when cutting columns out of a tensor's rows


class _SafetensorsFile:
    """A safetensors file read with positioned reads (`os.pread`), not a memory map: the pages of a tensor this
    rank only takes a column slice of are read through a small buffer and never become part of the rank's
    resident set (a memory map would count every touched page of the file in its RSS)."""

    def __init__(self, path: str):
        import json
        self.path = path
        self.fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(self.fd).st_size
            n = int.from_bytes(os.pread(self.fd, 8, 0), "little")
            if n <= 0 or n > min(size - 8, 100 * 2**20):
                raise ValueError(f"header length {n}")
            header = json.loads(os.pread(self.fd, n, 8))
            self.base = 8 + n
            self.entries = {k: v for k, v in header.items() if k != "__metadata__"}
            for key, entry in self.entries.items():
                start, end = entry["data_offsets"]
                if entry["dtype"] not in _DTYPES or not 0 <= start <= end or self.base + end > size:
                    raise ValueError(f"tensor '{key}': {entry}")
        except (ValueError, KeyError, TypeError) as err:
            os.close(self.fd)
            raise OSError(f"{path} is not a valid safetensors file ({err}). It is truncated or corrupt: delete it "
                          "and download it again.") from None

    def close(self) -> None:
        os.close(self.fd)

    def _bytes(self, offset: int, length: int) -> bytearray:
        out = bytearray(length)
        view, done = memoryview(out), 0
        while done < length:
            chunk = os.preadv(self.fd, [view[done:]], offset + done)
            if chunk <= 0:
                raise OSError(f"{self.path}: short read at byte {offset + done}; the file is truncated.")
            done += chunk
        return out

    def read(self, key: str, dim: int | None = None, start: int = 0, length: int | None = None) -> torch.Tensor:
        """The tensor, or its slice [start, start + length) along `dim` (0 or 1 of a 2-D tensor, 0 of 1-D)."""
        entry = self.entries[key]
        dtype, shape = _DTYPES[entry["dtype"]], list(entry["shape"])
        offset = self.base + entry["data_offsets"][0]
        item = dtype.itemsize
        inner = 1
        for n in shape[1:]:
            inner *= n
        if dim is None:
            dim, start, length = 0, 0, shape[0] if shape else 1
        if not shape:
            return torch.frombuffer(self._bytes(offset, item), dtype=dtype).reshape(())
        if dim == 0:  # whole rows: one contiguous range
            data = self._bytes(offset + start * inner * item, length * inner * item)
            return torch.frombuffer(data, dtype=dtype).reshape([length, *shape[1:]]) if length else \
                torch.empty([0, *shape[1:]], dtype=dtype)
        if dim != 1 or len(shape) != 2:
            raise TensorParallelError(f"{self.path}: '{key}' {shape} cannot be split along dim {dim} here.")
        rows, cols = shape
        out = torch.empty(rows, length, dtype=dtype)
        step = max(1, _BLOCK // max(1, cols * item))
        for first in range(0, rows, step):  # a block of rows at a time, keeping only this rank's columns
            n = min(step, rows - first)
            block = torch.frombuffer(self._bytes(offset + first * cols * item, n * cols * item), dtype=dtype)
            out[first:first + n] = block.view(n, cols)[:, start:start + length]
        return out


class _Checkpoint:
    """Read whole tensors or one slice of a tensor by key: safetensors files with positioned reads (only the
    slice's bytes end up in memory), weights-only `.bin` files memory-mapped (torch.load), or a state dict."""

    def __init__(self, files, state_dict, weights_only: bool):
        self.files, self.state_dict, self.weights_only = files, state_dict, weights_only

    def items(self):
        """(key, reader) pairs: reader(dim, start, length) a slice along `dim`, reader() the whole tensor."""
        if self.state_dict is not None:
            for key, tensor in self.state_dict.items():
                yield key, self._reader(tensor)
            return
        for path in self.files:
            if path.endswith(".safetensors"):
                f = _SafetensorsFile(path)
                try:
                    for key in f.entries:
                        yield key, (lambda dim=None, start=0, length=None, key=key, f=f: f.read(key, dim, start,
                                                                                                length))
                finally:
                    f.close()
            else:
                for key, tensor in loading._load_bin(path, self.weights_only).items():
                    yield key, self._reader(tensor)

    @staticmethod
    def _reader(tensor):
        def read(dim=None, start=0, length=None):
            return tensor if dim is None else tensor.narrow(dim, start, length).clone()
        return read


def _shard_dim(param) -> int | None:
    """The dimension a DTensor parameter is split along on its (1-D) mesh; None when replicated or plain."""
    placements = getattr(param, "placements", None)
    if not placements or not placements[0].is_shard():
        return None
    return placements[0].dim


def load_sharded(model: nn.Module, files, state_dict, dtype, device, device_map, weights_only: bool, *, tp_plan,
                 tp_size) -> dict:
    """The tensor-parallel branch of `loading.load_pretrained`: plan, split on meta, read each rank's slices.
    Returns the loading info of `_load_into` (missing / unexpected / mismatched keys)."""
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor.parallel import parallelize_module
    if device_map is not None:
        raise TensorParallelError("Pass either tp_plan=... or device_map=..., not both: under tensor parallelism "
                                  "each rank holds its slice on its own device.")
    ensure_process_group()
    target = rank_device()
    if device is not None and torch.device(device).type != target.type:
        raise TensorParallelError(f"device={device!r} under tp_plan: the process group's backend "
                                  f"({dist.get_backend()}) puts this rank on {target}.")
    if target.type == "cuda":
        torch.cuda.set_device(target)  # nccl's collectives run on the current device
    mesh = tp_mesh(tp_size, target)
    tp, rank = mesh.size(), mesh.get_local_rank()
    plan, heads = resolve_plan(model, tp_plan)
    check_divisible(model, plan, heads, tp)
    styles = _styles()
    parallelize_module(model, mesh, {name: styles[style]() for name, style in plan.items()})
    for name, attrs in heads.items():
        module = model.get_submodule(name)
        for attr in attrs:
            setattr(module, attr, getattr(module, attr) // tp)
    model.tie_weights()  # the split tied LM head shares the embedding's DTensor again
    model.tp_mesh, model.tp_size, model.tp_plan = mesh, tp, plan

    params = dict(model.named_parameters(remove_duplicate=False))
    buffers = dict(model.named_buffers())
    expected = set(params) | set(buffers)
    tied = model.tied_weights()
    renames = [(re.compile(p), r) for p, r in getattr(model, "_checkpoint_renames", ())]
    loaded, unexpected, mismatched = set(), [], []
    ignore = [re.compile(p) for p in model._keys_to_ignore_on_load_unexpected] + \
        [re.compile(r"rotary_emb\.inv_freq$"), re.compile(r"(^|\.)position_ids$")]

    def local_items():
        """(key, tensor) with split tensors already cut to this rank's slice (MoE experts pass whole, then get
        stacked by the model's from_checkpoint_layout)."""
        for key, read in _Checkpoint(files, state_dict, weights_only).items():
            name = loading._target_key(key, expected, model.base_model_prefix, renames)
            dim = _shard_dim(params.get(name)) if name else None
            if dim is None:
                yield key, read()
                continue
            module = model.get_submodule(name.rpartition(".")[0])
            transposed = name.rpartition(".")[2] in getattr(module, "transposed_in_checkpoint", ())
            size = params[name].shape[dim] // tp
            local = read(1 - dim if transposed else dim, rank * size, size)
            yield key, (local.t() if transposed else local)

    items = local_items()
    if hasattr(model, "from_checkpoint_layout"):
        items = model.from_checkpoint_layout(items)
    for key, tensor in items:
        name = loading._target_key(key, expected, model.base_model_prefix, renames)
        if name is None:
            if not any(p.search(key) for p in ignore):
                unexpected.append(key)
            continue
        slot = params.get(name, buffers.get(name))
        local_shape = slot.to_local().shape if isinstance(slot, DTensor) else slot.shape
        if tuple(tensor.shape) != tuple(local_shape):
            mismatched.append((name, tuple(tensor.shape), tuple(local_shape)))
            continue
        wanted = slot.dtype if slot.is_floating_point() else tensor.dtype
        tensor = tensor.to(device=target, dtype=wanted).contiguous()
        if isinstance(slot, DTensor):
            tensor = DTensor.from_local(tensor, mesh, slot.placements, run_check=False, shape=slot.shape,
                                        stride=slot.stride())
        loading.set_tensor(model, name, tensor)
        loaded.add(name)
    if mismatched:
        details = "; ".join(f"'{k}': checkpoint {c} vs this rank's {m}" for k, c, m in mismatched)
        raise ValueError(f"Shape mismatch loading {type(model).__name__} under tensor parallelism: {details}.")
    loading._tie_loaded(model, tied, loaded)
    still_meta = [n for n, p in model.named_parameters() if isinstance(p, DTensor) and p.device.type == "meta"]
    if still_meta:
        raise TensorParallelError(f"{type(model).__name__}: the checkpoint lacks split parameter(s) "
                                  f"{', '.join(still_meta)}; tensor parallelism cannot initialise them.")
    missing = loading._materialize_missing(model, loaded | set(tied), target)
    for module in model.modules():  # buffers (rotary tables, ...) to this rank's device
        for name, buf in module._buffers.items():
            if buf is not None and buf.device != target:
                module._buffers[name] = buf.to(target)
    for module in model.modules():
        for name, param in module._parameters.items():
            if param is not None and not isinstance(param, DTensor) and param.device != target:
                module._parameters[name] = nn.Parameter(param.data.to(target), requires_grad=param.requires_grad)
    model.tie_weights()
    loading._report(model, missing, unexpected, mismatched, files)
    return {"missing_keys": missing, "unexpected_keys": unexpected, "mismatched_keys": [], "error_msgs": []}


def full_state_dict(model: nn.Module) -> dict:
    """The state dict with every split tensor gathered whole: a collective, call it on every rank. Then rank 0
    saves a checkpoint one process reads: `model.save_pretrained(folder, state_dict=state)`."""
    from torch.distributed.tensor import DTensor
    return {key: value.full_tensor() if isinstance(value, DTensor) else value
            for key, value in model.state_dict().items()}
