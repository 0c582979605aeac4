"""The loading pipeline behind `PreTrainedModel.from_pretrained` and `save_pretrained` (modeling.py).

Loading, in order:
1. config (config.json + keyword overrides), checkpoint files (safetensors first, sharded via the index;
   `.bin` with `torch.load(weights_only=True, mmap=True)`), dtype ("auto" = config, index metadata, then the
   first floating tensor of the checkpoint);
2. the module tree is built with parameters on the meta device (no memory, no random init); buffers are real.
   Only the building thread is affected: other threads building modules at the same time get real, initialised
   parameters (see `skeleton`);
3. each checkpoint tensor is renamed (LayerNorm gamma/beta, the class's own `_checkpoint_renames` — (regex,
   replacement) pairs, e.g. gemma3's multimodal layouts —, base-model prefix added or stripped), checked
   for shape, cast only if needed and assigned; on the CPU an unchanged tensor stays backed by the file's
   memory map, so nothing is read twice (a module's `transposed_in_checkpoint` tensors get a transposed view:
   GPT-2's nn.Linear projections over Conv1D-layout checkpoints);
   A model's `from_checkpoint_layout(items)`, where it has one, first rewrites the (key, tensor) stream (the MoE
   families stack one-tensor-per-expert checkpoints; their `to_checkpoint_layout(state)` undoes it on save);
4. tied weights are tied, parameters the checkpoint lacks are initialised as the reference does, one report
   lists missing / unexpected / mismatched keys; the model comes back in eval mode.

This module never imports modeling.py: it works on the model class and instance it is given.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import json
import logging
import os
import re
import threading

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .configuration import PretrainedConfig, read_config_dict
from .errors import ModelTooLargeError, RepoFileError
from .hub.paths import safe_filename
from .hub.source import FileSource
from .jsonfiles import read_json
from .placement import dispatch_auto

logger = logging.getLogger("autoload")

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
BIN_WEIGHTS = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"
_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
_RENAMES = [(re.compile(r"LayerNorm\.gamma$"), "LayerNorm.weight"), (re.compile(r"LayerNorm\.beta$"), "LayerNorm.bias")]
# keywords transformers users pass that change nothing here: accepted, explained once in the log
_NO_EFFECT = {
    "low_cpu_mem_usage": "loading is always low-memory here (meta device + memory-mapped weights)",
    "_fast_init": "loading never random-initialises weights the checkpoint provides",
    "offload_state_dict": "weights are memory-mapped, never held twice",
    "mirror": "use endpoint=... or HF_ENDPOINT for a mirror",
    "resume_download": "downloads always resume",
    "force_download": "use `autoload download --force` to refresh a cached file",
    "proxies": "requests honours HTTP(S)_PROXY from the environment",
    "from_tf": "TensorFlow checkpoints are not supported; this flag is ignored",
    "from_flax": "Flax checkpoints are not supported; this flag is ignored",
    "use_flash_attention_2": "attention runs through torch's scaled_dot_product_attention",
    "max_memory": "device_map='auto' uses the free memory of each device",
    "offload_folder": "disk offloading is not supported",
}
_ATTN_IMPLEMENTATIONS = ("sdpa", "eager")


def load_pretrained(cls, name_or_path, model_args: tuple, *, config: PretrainedConfig | None, revision, dtype,
                    torch_dtype, device, device_map, local_files_only: bool, token, cache_dir, endpoint,
                    trust_remote_code, code_revision, ignore_mismatched_sizes: bool, output_loading_info: bool,
                    use_safetensors: bool | None, weights_only: bool, state_dict, attn_implementation, variant,
                    hub, check_size: bool, kwargs: dict, tp_plan=None, tp_size: int | None = None,
                    gguf_file: str | None = None, quantize=None, quantize_group_size: int | None = None,
                    load_weights=None):
    """`cls.from_pretrained(...)` (see its docstring): the model, or (model, loading info). `load_weights`, when
    given, replaces `_load_into` (same arguments but the device choice; tensor parallel: each rank its slices)."""
    if torch_dtype is not None:
        dtype = torch_dtype if dtype in (None, "auto") else dtype
    token = kwargs.pop("use_auth_token", token)
    for key in [k for k in kwargs if k in _NO_EFFECT]:
        logger.info("from_pretrained(%s=...): no effect here: %s.", key, _NO_EFFECT[key])
        kwargs.pop(key)
    if attn_implementation not in (None, *_ATTN_IMPLEMENTATIONS):
        logger.info("attn_implementation=%r: autoload uses torch's scaled_dot_product_attention (sdpa), which "
                    "picks flash/memory-efficient kernels itself.", attn_implementation)
        attn_implementation = "sdpa"
    name_or_path = with_subfolder(name_or_path, kwargs.pop("subfolder", None))
    source = FileSource(name_or_path, revision=revision, token=token, cache_dir=cache_dir,
                        local_files_only=local_files_only, endpoint=endpoint, hub=hub)
    prepare_gguf = None  # GGUF: config (when not given) and weights from the file (quant/gguf_load.py)
    if gguf_file is not None:
        from .quant.gguf_load import read_gguf
        config, state_dict, prepare_gguf, kwargs = read_gguf(cls, source, gguf_file, config, dtype, kwargs)
    if config is None:
        data = read_config_dict(source.require("config.json", "(every model needs one)"))
        data.setdefault("_name_or_path", source.name)
        config, kwargs = cls.config_class.from_dict(data, return_unused_kwargs=True, **kwargs)
    else:
        for key in [k for k in kwargs if k in config.__dict__ or k in type(config).attribute_map]:
            setattr(config, key, kwargs.pop(key))
    init_params = inspect.signature(cls.__init__).parameters  # keywords of the class itself (add_pooling_layer)
    model_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in init_params and k not in ("self", "config")}
    if kwargs:
        _reject_unknown(cls, kwargs, config)
    if attn_implementation not in (None, "eager") and config.output_attentions:
        raise ValueError(f"output_attentions=True needs attn_implementation='eager' (got {attn_implementation!r}): "
                         "only eager attention computes the weights (the reference refuses the same).")
    if attn_implementation:
        config._attn_implementation = attn_implementation
    target_device = _resolve_device(device, device_map)
    check_size = check_size and os.environ.get("AUTOLOAD_SKIP_SIZE_CHECK", "") in ("", "0")
    if check_size:  # before any weight is downloaded or any module built
        _check_fits_memory(config, source, dtype, target_device, device_map)
    if state_dict is not None:
        files, metadata = [], {}
    else:
        files, metadata = _checkpoint_files(source, use_safetensors, variant)
        if check_size:
            _check_matches_checkpoint(config, source, files)
    dtype = _resolve_dtype(dtype, config, files, metadata, state_dict)
    config.dtype = dtype
    with skeleton(dtype):
        model = cls(config, *model_args, **model_kwargs)
    if prepare_gguf is not None:  # quantized layers in place of the nn.Linear layers the file holds in blocks
        prepare_gguf(model)
    quantized_keys: set[str] = set()
    quantizing = quantize is not None or quantize_group_size is not None  # float weights quantized after loading
    if quantizing or getattr(config, "quantization_config", None):
        from .quant import gptq  # GPTQ/AWQ layers built from their packed tensors; quantize= checked
        quantized_keys = gptq.before_load(model, config, files, quantize, state_dict, tp_plan)
    if load_weights is not None:  # tensor parallel: each rank reads its slices (distributed/tensor_parallel.py)
        info = load_weights(model, files, state_dict, dtype, device, device_map, weights_only)
    else:
        info = _load_into(model, files, state_dict, dtype, torch.device("cpu") if quantizing else target_device,
                          ignore_mismatched_sizes, weights_only, skip=quantized_keys)
    if quantizing or getattr(config, "quantization_config", None) or prepare_gguf is not None:
        from .quant import gptq  # quantize= on the CPU (the float weights never reach the device), then move, pack
        gptq.after_load(model, quantize, quantize_group_size, target_device)
    if device_map == "auto":
        dispatch_auto(model)
    model.eval()
    model.name_or_path = source.name
    model.load_extras(source)  # files that come with the weights (GenerationMixin: generation_config.json)
    return (model, info) if output_loading_info else model


def with_subfolder(name_or_path, subfolder: str | None):
    """The folder `from_pretrained(..., subfolder=...)` reads: the model's files under a folder of the repo, as the
    reference reads them (never silently the top level). Local folders only."""
    if not subfolder:
        return name_or_path
    if not os.path.isdir(name_or_path):
        raise ValueError(f"subfolder={subfolder!r} is supported for local folders only: pass the repo's snapshot "
                         "folder (autoload.snapshot_download) joined with the subfolder.")
    return os.path.join(name_or_path, subfolder)


def save_model(model: nn.Module, folder: str | os.PathLike, *, max_shard_size: int | str, safe_serialization: bool,
               state_dict: dict | None, save_function=torch.save) -> None:
    """`model.save_pretrained(...)`: config.json plus model.safetensors (or shards and an index), tied copies
    written once."""
    if any(getattr(m, "is_quantized", False) for m in model.modules()):  # autoload's format (quant/linear.py)
        from .quant.quantize import QuantizedSaveError, quantization_config
        if not safe_serialization:
            raise QuantizedSaveError(f"{type(model).__name__} has quantized layers: save it with "
                                     "safe_serialization=True (autoload reads quantized checkpoints from safetensors).")
        model.config.quantization_config = quantization_config(model)
    os.makedirs(folder, exist_ok=True)
    model.config.architectures = [type(model).__name__]
    model.config.dtype = model.dtype
    model.config.save_pretrained(folder)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
    state = state_dict if state_dict is not None else model.state_dict()
    if hasattr(model, "to_checkpoint_layout"):  # back to the checkpoint's layout (MoE: one tensor per expert)
        state = model.to_checkpoint_layout(state)
    tied = set(model.tied_weights())
    state = {k: v.detach().to("cpu").contiguous() for k, v in state.items() if k not in tied}
    state = _dedupe_shared(state)
    limit = _parse_size(max_shard_size)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key in sorted(state):
        nbytes = state[key].numel() * state[key].element_size()
        if shards[-1] and size + nbytes > limit:
            shards.append({})
            size = 0
        shards[-1][key] = state[key]
        size += nbytes
    base, index_name = (SAFE_WEIGHTS, SAFE_INDEX) if safe_serialization else (BIN_WEIGHTS, BIN_INDEX)
    stem, ext = base.rsplit(".", 1)
    names = [base] if len(shards) == 1 else [f"{stem}-{i + 1:05d}-of-{len(shards):05d}.{ext}"
                                             for i in range(len(shards))]
    for name, shard in zip(names, shards):
        path = os.path.join(folder, name)
        if safe_serialization:
            from safetensors.torch import save_file
            save_file(shard, path, metadata={"format": "pt"})
        else:
            save_function(shard, path)
    if len(shards) > 1:
        index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in state.values())},
                 "weight_map": {k: n for n, shard in zip(names, shards) for k in shard}}
        with open(os.path.join(folder, index_name), "w") as f:
            json.dump(index, f, indent=2, sort_keys=True)


# -- building on the meta device, in this thread only ----------------------------------------------------

_local = threading.local()  # .dtypes: the dtype of each skeleton being built in this thread (innermost last)
_hook_lock = threading.Lock()
_hook_handle = None


def building() -> bool:
    """Whether this thread is inside `skeleton()` (then `post_init` skips weight initialisation)."""
    return bool(getattr(_local, "dtypes", None))


def _param_on_meta(module: nn.Module, name: str, param):
    """torch's parameter-registration hook: while this thread builds a skeleton, a new parameter moves to the
    meta device (in the load dtype when it was made in torch's default dtype); in any other thread, nothing."""
    dtypes = getattr(_local, "dtypes", None)
    if not dtypes or param is None or param.device.type == "meta":
        return None
    dtype = dtypes[-1] if param.dtype == torch.get_default_dtype() else param.dtype
    return nn.Parameter(torch.empty_like(param, device="meta", dtype=dtype), requires_grad=param.requires_grad)


class _SkipInit(TorchFunctionMode):
    """Turns `torch.nn.init.*` calls into no-ops. A torch function mode is thread-local: only the thread that
    builds the skeleton sees it. (On meta tensors the init is pointless, and the first `reset_parameters`
    would import torch._dynamo, about a second.)"""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else kwargs.get("tensor")
        return func(*args, **kwargs)


@contextlib.contextmanager
def skeleton(dtype: torch.dtype):
    """Build modules with parameters on the meta device in `dtype` (buffers stay real) and no weight init.

    Thread-safe: torch's global parameter-registration hook is installed once and acts only in a thread inside
    this block, and `_SkipInit` is a thread-local torch function mode; nothing of torch is patched, and torch's
    default dtype is left alone."""
    global _hook_handle
    with _hook_lock:
        if _hook_handle is None:
            _hook_handle = nn.modules.module.register_module_parameter_registration_hook(_param_on_meta)
    if not hasattr(_local, "dtypes"):
        _local.dtypes = []
    _local.dtypes.append(dtype)
    try:
        with _SkipInit():
            yield
    finally:
        _local.dtypes.pop()


def _reject_unknown(cls, kwargs: dict, config: PretrainedConfig) -> None:
    valid = set(inspect.signature(cls.from_pretrained).parameters) | set(_NO_EFFECT)
    valid |= {k for k in config.__dict__ if not k.startswith("_")}
    lines = []
    for key in kwargs:
        close = difflib.get_close_matches(key, valid, n=1)
        lines.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    raise TypeError(f"{cls.__name__}.from_pretrained got unknown keyword argument(s) {', '.join(lines)}: they are "
                    "neither loading options nor fields of its config.")


# Size checks (arithmetic on the config; see PretrainedConfig.parameter_estimate). Tolerant on purpose: the estimate
# is within ~1.5x, dtypes run from 4-bit (0.5 bytes a parameter) to float32 (4), a checkpoint may hold a head more or
# less than the class needs; only a gross mismatch is refused.
MEMORY_MARGIN = 4  # refuse an estimate over 4x the target's memory (memory-mapped weights may exceed RAM a little)
PARAMS_PER_DISK_BYTE = 8  # refuse a config implying > 8 parameters per checkpoint byte (4-bit is 2)
DISK_BYTES_PER_PARAM = 16  # refuse a checkpoint > 16 bytes per estimated parameter (float32 is 4)
SIZE_SLACK = 16 * 2**20  # tiny models: differences under 16 Mi (parameters or bytes) never count
_SKIP_HINT = "If the config and checkpoint are genuine, pass check_size=False (or set AUTOLOAD_SKIP_SIZE_CHECK=1)."


def _describe_estimate(parts: list[tuple[str, int]]) -> str:
    label, count = max(parts, key=lambda part: part[1])
    return f"about {sum(n for _, n in parts):,} parameters (the largest part: {label} = {count:,})"


def _human(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if nbytes < 1000:
            break
        nbytes /= 1000
    return f"{nbytes:.1f} {unit}"


def _check_fits_memory(config: PretrainedConfig, source: FileSource, dtype, device: torch.device, device_map) -> None:
    """Refuse a config whose parameters (plus per-position buffers) exceed the target's memory by MEMORY_MARGIN."""
    parts = config.parameter_estimate()
    requested = dtype if dtype not in (None, "auto") else config._dtype
    itemsize = to_dtype(requested).itemsize if requested else 2  # unknown yet: assume 16-bit, the common case
    positions = getattr(config, "max_position_embeddings", 0) if config.learned_positions else 0
    needed = sum(n for _, n in parts) * itemsize + config.position_buffer_bytes * (positions or 0)
    memory, where = _memory_of(device, device_map)
    if memory and needed > MEMORY_MARGIN * memory:
        raise ModelTooLargeError(
            f"{source.describe()}: its config.json implies {_describe_estimate(parts)}, {_human(needed)} at "
            f"{itemsize} bytes each: more than {MEMORY_MARGIN}x the {_human(memory)} of {where}. The config is "
            f"hostile or corrupt, or the model needs a bigger machine. {_SKIP_HINT}")


def _memory_of(device: torch.device, device_map) -> tuple[int, str]:
    """(bytes, description) of the memory a model is loaded into: the GPU's, RAM, or all of them for "auto"."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): no memory check
        ram = 0
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory, f"GPU {device}"
    if device_map == "auto" and torch.cuda.is_available():
        gpus = sum(torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count()))
        return gpus + ram, "the GPUs and RAM"
    return ram, "this machine's RAM"


def _check_matches_checkpoint(config: PretrainedConfig, source: FileSource, files: list[str]) -> None:
    """Refuse a config whose estimate disagrees grossly with the checkpoint's size on disk, either way (a 10 MB
    checkpoint with a config of 400 GB cannot be the model the config describes)."""
    if not files:
        return
    parts = config.parameter_estimate()
    params = sum(n for _, n in parts)
    on_disk = sum(os.path.getsize(path) for path in files)
    names = ", ".join(os.path.basename(path) for path in files[:3]) + (", ..." if len(files) > 3 else "")
    if params > PARAMS_PER_DISK_BYTE * on_disk + SIZE_SLACK:
        raise ModelTooLargeError(
            f"{source.describe()}: its config.json implies {_describe_estimate(parts)}, but the checkpoint "
            f"({names}) holds only {_human(on_disk)}: more than {PARAMS_PER_DISK_BYTE} parameters per byte on disk. "
            f"The config does not describe these weights (hostile or corrupt). {_SKIP_HINT}")
    if on_disk > DISK_BYTES_PER_PARAM * params + SIZE_SLACK:
        raise ModelTooLargeError(
            f"{source.describe()}: the checkpoint ({names}) is {_human(on_disk)}, more than {DISK_BYTES_PER_PARAM} "
            f"bytes per parameter of its config.json, which implies {_describe_estimate(parts)}. The config does "
            f"not describe these weights. {_SKIP_HINT}")


def to_dtype(value) -> torch.dtype:
    """A floating-point torch.dtype from a dtype or its name ("bfloat16", "torch.float16")."""
    if isinstance(value, torch.dtype):
        return value
    name = str(value).removeprefix("torch.")
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype={value!r} is not a floating-point torch dtype (use 'auto', 'float32', 'bfloat16', "
                         "'float16', or a torch.dtype).")
    return dtype


def _resolve_device(device, device_map) -> torch.device:
    if device is not None and device_map is not None:
        raise ValueError("Pass either device=... or device_map=..., not both.")
    choice = device if device is not None else device_map
    if isinstance(choice, dict):
        if set(choice) != {""}:
            raise ValueError("A per-module device_map dict is not supported; use a device or device_map='auto'.")
        choice = choice[""]
    if choice is None or choice == "auto":
        return torch.device("cpu")  # "auto" loads on the CPU, then places modules (see placement.py)
    if isinstance(choice, int):
        choice = f"cuda:{choice}"
    device = torch.device(choice)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {choice!r} was asked for, but CUDA is not available here.")
    return device


def _checkpoint_files(source: FileSource, use_safetensors: bool | None, variant: str | None):
    """The weight files in the reference's order; returns (paths, index metadata)."""
    def named(base: str) -> str:
        if not variant:
            return base
        stem, ext = base.rsplit(".", 1)
        if stem.endswith(".index"):
            return f"{stem[:-6]}.{variant}.index.{ext}"
        return f"{stem}.{variant}.{ext}"

    kinds = []
    if use_safetensors is not False:
        kinds.append((named(SAFE_WEIGHTS), named(SAFE_INDEX)))
    if use_safetensors is not True:
        kinds.append((named(BIN_WEIGHTS), named(BIN_INDEX)))
    for single, index in kinds:
        found = source.fetch([single, index])
        if single in found:
            return [found[single]], {}
        if index in found:
            data = read_json(found[index])
            weight_map = data.get("weight_map")
            if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
                raise RepoFileError(f"{found[index]} has no 'weight_map' of tensor names to shard file names. The "
                                    "index is corrupt: fix or re-download it.")
            shards = sorted(set(weight_map.values()))
            for shard in shards:
                safe_filename(shard, source.name)
            got = source.fetch(shards)
            missing = [s for s in shards if s not in got]
            if missing:
                raise OSError(f"{source.describe()}: {index} names shard(s) {', '.join(missing)} that are missing.")
            metadata = data.get("metadata")
            return [got[s] for s in shards], metadata if isinstance(metadata, dict) else {}
    wanted = " or ".join(name for pair in kinds for name in pair)
    raise OSError(f"{source.describe()} has no model weights ({wanted}). Check the repo's files; TensorFlow/Flax-only "
                  "checkpoints are not supported.")


def _resolve_dtype(dtype, config: PretrainedConfig, files: list[str], metadata: dict, state_dict) -> torch.dtype:
    if dtype not in (None, "auto"):
        return to_dtype(dtype)
    if config._dtype:
        return to_dtype(config._dtype)
    if metadata.get("dtype"):
        return to_dtype(metadata["dtype"])
    tensors = state_dict.values() if state_dict is not None else []
    for tensor in tensors:
        if tensor.is_floating_point():
            return tensor.dtype
    if files:
        for dt in _checkpoint_dtypes(files[0]):
            if dt is not None:
                return dt
    return torch.float32


def _checkpoint_dtypes(path: str):
    if path.endswith(".safetensors"):
        with _open_safetensors(path) as f:
            for key in f.keys():
                yield _SAFETENSORS_DTYPES.get(f.get_slice(key).get_dtype())
    else:
        for tensor in _load_bin(path, True).values():
            yield tensor.dtype if tensor.is_floating_point() else None


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """Set torch's default dtype (process-wide) for the block: only for `PreTrainedModel._from_config`."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


@contextlib.contextmanager
def _open_safetensors(path: str):
    from safetensors import SafetensorError, safe_open
    try:
        handle = safe_open(path, framework="pt", device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise OSError(f"{path} is not a valid safetensors file ({err}). It is truncated or corrupt: delete it "
                      "(`autoload cache rm ...`) and download it again.") from None
    with handle as f:
        yield f


def _load_bin(path: str, weights_only: bool) -> dict[str, torch.Tensor]:
    import pickle
    import zipfile
    mmap = zipfile.is_zipfile(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=mmap)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise OSError(f"{path} could not be loaded as a weights-only PyTorch checkpoint: {str(err).splitlines()[0]} "
                      "Nothing in it was executed. If you trust the file, convert it to safetensors; "
                      "weights_only=False would run its pickled code.") from None


def _read_checkpoint(files: list[str], weights_only: bool):
    """Yield (key, tensor) over all files, memory-mapped where the format allows."""
    for path in files:
        if path.endswith(".safetensors"):
            with _open_safetensors(path) as f:
                for key in f.keys():
                    try:
                        yield key, f.get_tensor(key)
                    except Exception as err:  # a header that lies about offsets, a short file
                        raise OSError(f"{path}: tensor '{key}' cannot be read ({err}). The file is corrupt: "
                                      "delete it and download it again.") from None
        else:
            yield from _load_bin(path, weights_only).items()


def get_tensor(model: nn.Module, key: str):
    """The parameter or buffer at a dotted state-dict key."""
    module_path, _, name = key.rpartition(".")
    module = model.get_submodule(module_path) if module_path else model
    return getattr(module, name)


def set_tensor(model: nn.Module, key: str, value) -> None:
    """Put `value` at a dotted state-dict key (a parameter stays a parameter), without copying."""
    module_path, _, name = key.rpartition(".")
    module = model.get_submodule(module_path) if module_path else model
    if name in module._parameters:
        if not isinstance(value, nn.Parameter):
            value = nn.Parameter(value, requires_grad=module._parameters[name].requires_grad)
        module._parameters[name] = value
    else:
        module._buffers[name] = value


def _in_memory_layout(model: nn.Module, key: str, tensor: torch.Tensor) -> torch.Tensor:
    """A module that keeps a tensor transposed relative to its checkpoint (GPT-2's projections: nn.Linear (out, in)
    in memory, [in, out] on disk) names it in `transposed_in_checkpoint`; it gets the transposed view, no copy.
    (Its state_dict hooks give the checkpoint layout back, which is what `expected` shapes are checked against.)"""
    module_path, _, name = key.rpartition(".")
    module = model.get_submodule(module_path) if module_path else model
    return tensor.t() if name in getattr(module, "transposed_in_checkpoint", ()) else tensor


def _target_key(key: str, expected: set[str], prefix: str, renames=()) -> str | None:
    for pattern, replacement in (*_RENAMES, *renames):
        key = pattern.sub(replacement, key)
    if key in expected:
        return key
    if prefix and key.startswith(prefix + ".") and key[len(prefix) + 1:] in expected:
        return key[len(prefix) + 1:]  # a head checkpoint into the bare model
    if prefix and f"{prefix}.{key}" in expected:
        return f"{prefix}.{key}"  # a bare-model checkpoint into a head model
    return None


def _load_into(model: nn.Module, files, state_dict, dtype, device, ignore_mismatched_sizes, weights_only,
               skip=frozenset()):
    expected = dict(model.state_dict(keep_vars=True))
    tied = model.tied_weights()
    loaded: set[str] = set()
    unexpected, mismatched = [], []
    ignore_unexpected = [re.compile(p) for p in model._keys_to_ignore_on_load_unexpected] + \
        [re.compile(r"rotary_emb\.inv_freq$"), re.compile(r"(^|\.)position_ids$")]
    items = state_dict.items() if state_dict is not None else _read_checkpoint(files, weights_only)
    if hasattr(model, "from_checkpoint_layout"):  # a family whose memory layout differs (MoE: stacked experts)
        items = model.from_checkpoint_layout(items)
    expected_keys = set(expected)
    renames = [(re.compile(p), r) for p, r in getattr(model, "_checkpoint_renames", ())]
    for key, tensor in items:
        if key in skip:  # read already (the packed tensors of GPTQ/AWQ layers)
            continue
        target = _target_key(key, expected_keys, model.base_model_prefix, renames)
        if target is None:
            for pattern, replacement in _RENAMES:  # report under the modern name, as the reference does
                key = pattern.sub(replacement, key)
            if not any(p.search(key) for p in ignore_unexpected):
                unexpected.append(key)
            continue
        slot = expected[target]
        if tuple(tensor.shape) != tuple(slot.shape):
            mismatched.append((target, tuple(tensor.shape), tuple(slot.shape)))
            continue
        wanted_dtype = slot.dtype if slot.is_floating_point() else tensor.dtype
        set_tensor(model, target, _in_memory_layout(model, target, tensor.to(device=device, dtype=wanted_dtype)))
        loaded.add(target)
    if mismatched and not ignore_mismatched_sizes:
        details = "; ".join(f"'{k}': checkpoint {c} vs model {m}" for k, c, m in mismatched)
        raise ValueError(f"Shape mismatch loading {type(model).__name__}: {details}. Fix the config, or pass "
                         "ignore_mismatched_sizes=True to re-initialise those weights.")
    _tie_loaded(model, tied, loaded)
    missing = _materialize_missing(model, loaded | set(tied) | {k for k, _, _ in mismatched}, device)
    for target, source in tied.items():
        if source not in loaded and target not in loaded:  # neither in the checkpoint: tie the fresh init
            logger.warning("%s: neither '%s' nor its tied '%s' is in the checkpoint; both were initialised.",
                           type(model).__name__, source, target)
            set_tensor(model, target, get_tensor(model, source))
    missing = [k for k in missing if not any(re.search(p, k) for p in model._keys_to_ignore_on_load_missing)]
    model.to(device)
    _report(model, missing, unexpected, mismatched, files)
    return {"missing_keys": missing, "unexpected_keys": unexpected,
            "mismatched_keys": [(k, c, m) for k, c, m in mismatched], "error_msgs": []}


def _tie_loaded(model: nn.Module, tied: dict[str, str], loaded: set[str]) -> None:
    """Tie as the reference does: source -> target; if only the target was in the checkpoint, the other way;
    two different loaded values stay untied."""
    for target, source in tied.items():
        if source in loaded and target in loaded:
            if not torch.equal(get_tensor(model, source), get_tensor(model, target)):
                logger.warning("%s: '%s' and '%s' differ in the checkpoint; they are left untied.",
                               type(model).__name__, target, source)
                continue
        elif target in loaded and source not in loaded:
            set_tensor(model, source, get_tensor(model, target))
            loaded.add(source)
            continue
        if source in loaded:
            set_tensor(model, target, get_tensor(model, source))


def _materialize_missing(model: nn.Module, loaded: set[str], device) -> list[str]:
    """Give real memory to parameters the checkpoint did not provide and initialise them the reference's way
    (module by module, keeping the loaded tensors of a partly loaded module)."""
    missing = []
    for module_name, module in model.named_modules():
        absent = [n for n, p in module.named_parameters(recurse=False) if p.device.type == "meta"]
        if not absent:
            continue
        kept = {n: p for n, p in module.named_parameters(recurse=False) if p.device.type != "meta"}
        for name in kept:  # the init writes in place: into scratch tensors, never into loaded (maybe tied) ones
            module._parameters[name] = nn.Parameter(torch.empty_like(kept[name]), requires_grad=False)
        for name in absent:
            param = module._parameters[name]
            module._parameters[name] = nn.Parameter(torch.empty_like(param, device=device),
                                                    requires_grad=param.requires_grad)
            full = f"{module_name}.{name}" if module_name else name
            if full not in loaded:
                missing.append(full)
        with torch.no_grad():
            model._init_weights(module)
        for name, param in kept.items():
            module._parameters[name] = param
    return missing


def _report(model, missing, unexpected, mismatched, files) -> None:
    if not (missing or unexpected or mismatched):
        return
    where = ", ".join(os.path.basename(f) for f in files) or "the given state_dict"
    lines = [f"{type(model).__name__} load report ({where}):"]
    if missing:
        lines.append(f"  MISSING (newly initialised): {', '.join(missing)}")
    if unexpected:
        lines.append(f"  UNEXPECTED (ignored): {', '.join(unexpected)}")
    if mismatched:
        lines.append("  MISMATCHED (re-initialised): " + ", ".join(f"{k} {c}->{m}" for k, c, m in mismatched))
    logger.warning("\n".join(lines))


def _dedupe_shared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Write tensors that share storage once (safetensors refuses aliases)."""
    seen: dict[tuple, str] = {}
    out = {}
    for key in sorted(state):
        tensor = state[key]
        ident = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if tensor.numel() and ident in seen:
            continue
        seen[ident] = key
        out[key] = tensor
    return out


def _parse_size(size: int | str) -> int:
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B)\s*", size.upper().replace("IB", "iB"))
    if not match:
        raise ValueError(f"max_shard_size={size!r}: use an int of bytes or a string like '5GB' or '500MiB'.")
    number, unit = float(match.group(1)), match.group(2)
    scale = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
             "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}[unit]
    return int(number * scale)
