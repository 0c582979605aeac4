"""`PretrainedConfig`: a model's config.json as an object.

Per-architecture configs (`autoload.models.configs`) declare `model_type`, `defaults` (config.json key names,
the reference's default values) and optionally `attribute_map` (standard names such as `hidden_size` for
GPT-2's `n_embd`) and `_post_init` (derived fields). Unknown keys are kept as attributes and saved back.
No torch import here: `config.dtype` imports torch only when read.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from typing import Any, ClassVar

from .errors import ConfigError, ConfigTypeError
from .hub.push import push_to_hub as _push_to_hub
from .jsonfiles import read_json

logger = logging.getLogger("autoload")

BASE_DEFAULTS: dict[str, Any] = {
    "architectures": None, "output_hidden_states": False, "output_attentions": False, "return_dict": True,
    "chunk_size_feed_forward": 0, "is_encoder_decoder": False, "problem_type": None,
}
# keys that old files carry and that mean nothing any more
DROPPED_KEYS = ("_commit_hash", "_attn_implementation_internal", "_experts_implementation_internal",
                "transformers_version", "autoload_version")
CONFIG_NAME = "config.json"

# Size keys under their standard names (each class's attribute_map gives its own spelling, e.g. GPT-2's n_embd) and
# the values accepted: an int (not a bool) from the low to the high bound. No real model comes near the bounds;
# past them a config would make the loader allocate terabytes or build a million-layer module tree.
_DIMENSION = (1, 2**31)
SIZE_BOUNDS: dict[str, tuple[int, int]] = {
    "vocab_size": _DIMENSION, "hidden_size": _DIMENSION, "intermediate_size": _DIMENSION, "n_inner": _DIMENSION,
    "num_attention_heads": _DIMENSION, "num_key_value_heads": _DIMENSION, "head_dim": _DIMENSION,
    "multi_query_group_num": _DIMENSION, "max_position_embeddings": _DIMENSION, "type_vocab_size": (0, 2**31),
    "num_hidden_layers": (1, 10_000), "num_labels": (1, 2**20),
}


class PretrainedConfig:
    """Base config. Attribute access for every key; `to_dict`/`save_pretrained` write them all back."""

    model_type: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    attribute_map: ClassVar[dict[str, str]] = {}
    _attn_implementation: str | None = None  # "sdpa" (default when None) or "eager"; not saved
    # What `parameter_estimate` needs to know about the architecture; the families override these.
    mlp_matrices: ClassVar[int] = 3  # a gated MLP: gate, up and down projections (BERT and GPT-2 have 2)
    learned_positions: ClassVar[bool] = False  # an embedding row per position (BERT, GPT-2), not rotary
    position_buffer_bytes: ClassVar[int] = 0  # bytes of buffers built per position at init (BERT: two int64)

    def __init__(self, **kwargs):
        kwargs = dict(kwargs)
        for key in DROPPED_KEYS:
            kwargs.pop(key, None)
        self._check_sizes(kwargs, kwargs.get("_name_or_path") or kwargs.get("name_or_path"))
        torch_dtype = kwargs.pop("torch_dtype", None)
        dtype = kwargs.pop("dtype", None) or torch_dtype  # dtype wins over the legacy torch_dtype
        num_labels = kwargs.pop("num_labels", None)
        id2label = kwargs.pop("id2label", None)
        label2id = kwargs.pop("label2id", None)
        for alias, real in self.attribute_map.items():
            if alias in kwargs:
                kwargs[real] = kwargs.pop(alias)
        self._check_types(kwargs)
        values = copy.deepcopy({**BASE_DEFAULTS, **self.defaults})
        values.update(kwargs)
        values["_name_or_path"] = values.pop("name_or_path", values.get("_name_or_path", ""))
        self.__dict__.update(values)
        self._dtype = _dtype_name(dtype)
        if id2label is not None:
            self.id2label = {int(k): v for k, v in id2label.items()}
            # the reference leaves label2id unset when a file gives only id2label
            self.label2id = {k: int(v) for k, v in label2id.items()} if label2id else None
        else:
            self.num_labels = 2
        if num_labels is not None and num_labels != len(self.id2label):
            if id2label is not None:
                logger.warning("num_labels=%d does not match the id2label map of %d labels; using num_labels.",
                               num_labels, len(self.id2label))
            self.num_labels = num_labels
        self._post_init()

    def _post_init(self) -> None:
        """Derived fields (head_dim, layer_types, ...); per-architecture configs override it."""

    @classmethod
    def _check_sizes(cls, values: dict, name_or_path=None) -> None:
        """Size keys (`SIZE_BOUNDS`, under their standard or architecture-specific names) must be ints within bounds,
        before anything is derived from them: a hostile config.json must not reach a tensor allocation."""
        for name, (low, high) in SIZE_BOUNDS.items():
            for key in {name, cls.attribute_map.get(name, name)}:
                value = values.get(key)
                integer = isinstance(value, int) and not isinstance(value, bool)
                if value is None or (integer and low <= value <= high):
                    continue
                where = f"config of '{name_or_path}'" if name_or_path else cls.__name__
                fix = "The config is corrupt or hostile: fix config.json or use a repo whose config is valid."
                if not integer:  # a bool, float, string, ...
                    raise ConfigTypeError(f"{where}: {key}={value!r} is not an integer; a size must be a whole number "
                                          f"from {low} to {high:,}. {fix}")
                raise ConfigError(f"{where}: {key}={value:,} is out of bounds; autoload accepts {low} to {high:,} "
                                  f"(no real model comes near). {fix}")

    @classmethod
    def _check_types(cls, values: dict) -> None:
        """A declared field given a value of the wrong kind is an error, as in the reference's strict configs."""
        for key, value in values.items():
            default = cls.defaults.get(key)
            if value is None or default is None:
                continue
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif isinstance(default, float):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            elif isinstance(default, str):
                ok = isinstance(value, str)
            else:
                ok = True
            if not ok:
                raise ConfigTypeError(f"{cls.__name__}: field '{key}' expects {type(default).__name__}, got "
                                      f"{type(value).__name__} ({value!r}). Fix config.json or the keyword argument.")

    # -- size estimate ------------------------------------------------------------------------------
    def parameter_estimate(self) -> list[tuple[str, int]]:
        """About how many parameters a model of this config has, by part: [(description naming the config keys,
        count)]. Arithmetic on the standard size keys only (nothing is built), within a factor of about 1.5 for
        the built-in families; `from_pretrained` uses it to refuse absurd configs before building anything."""
        def size(name: str, default: int) -> int:
            value = getattr(self, name, None)
            return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default

        def key(name: str) -> str:  # the config.json spelling
            return type(self).attribute_map.get(name, name)

        vocab, hidden, layers = size("vocab_size", 0), size("hidden_size", 0), size("num_hidden_layers", 0)
        heads = size("num_attention_heads", 1)
        kv_heads, head_dim = size("num_key_value_heads", heads), size("head_dim", max(hidden // heads, 1))
        inner = size("intermediate_size", size("n_inner", 4 * hidden))
        embeddings = f"{key('vocab_size')}={vocab:,} x {key('hidden_size')}={hidden:,}"
        parts = [(f"word embeddings ({embeddings})", vocab * hidden)]
        if self.learned_positions:
            positions = size("max_position_embeddings", 0)
            parts.append((f"position embeddings ({key('max_position_embeddings')}={positions:,} x "
                          f"{key('hidden_size')}={hidden:,})", positions * hidden))
        attention = hidden * head_dim * (2 * heads + 2 * kv_heads)  # q and o: heads; k and v: kv_heads
        mlp = self.mlp_matrices * hidden * inner
        parts.append((f"{key('num_hidden_layers')}={layers:,} layers of attention ({key('hidden_size')}={hidden:,}, "
                      f"{heads:,} heads of {head_dim:,}, {kv_heads:,} key/value heads) and MLP "
                      f"({key('intermediate_size')}={inner:,})", layers * (attention + mlp)))
        if not getattr(self, "tie_word_embeddings", False):
            parts.append((f"output projection ({embeddings})", vocab * hidden))
        return parts

    # -- attribute access ---------------------------------------------------------------------------
    def __getattr__(self, name: str):
        # only called when normal lookup fails: standard names mapped onto architecture-specific keys
        real = type(self).attribute_map.get(name)
        if real is not None:
            return getattr(self, real)
        raise AttributeError(f"'{type(self).__name__}' has no attribute '{name}'")

    def __setattr__(self, name: str, value) -> None:
        name = type(self).attribute_map.get(name, name)
        if name == "output_attentions" and value and self._attn_implementation is None:
            self._attn_implementation = "eager"  # as the reference: only eager attention returns the weights
        super().__setattr__(name, value)

    @property
    def name_or_path(self) -> str:
        return self._name_or_path

    @name_or_path.setter
    def name_or_path(self, value: str) -> None:
        self._name_or_path = str(value)

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, n: int) -> None:
        if getattr(self, "id2label", None) is None or len(self.id2label) != n:
            self.id2label = {i: f"LABEL_{i}" for i in range(n)}
            self.label2id = {v: k for k, v in self.id2label.items()}

    @property
    def dtype(self):
        """The checkpoint's dtype as a torch.dtype (None if unset); imports torch on first read."""
        if self._dtype is None:
            return None
        import torch
        return getattr(torch, self._dtype)

    @dtype.setter
    def dtype(self, value) -> None:
        self._dtype = _dtype_name(value)

    torch_dtype = dtype

    @property
    def use_return_dict(self) -> bool:
        """Whether models return output objects (the reference's name; `return_dict` and not torchscript)."""
        return bool(self.return_dict) and not getattr(self, "torchscript", False)

    # -- what transformers and peft read on a config -------------------------------------------------
    def get_text_config(self, decoder: bool | None = None, encoder: bool | None = None) -> PretrainedConfig:
        """The config of the text part: the config itself, as the reference answers for text-only models
        (transformers' `DynamicCache(config=...)` and generation utilities call this)."""
        return self

    @property
    def per_layer_config(self) -> tuple[PretrainedConfig, ...]:
        """One config per layer, as the reference's view of a homogeneous model: this config, num_hidden_layers
        times (transformers' caches read each layer's `sliding_window` from it)."""
        return (self,) * self.num_hidden_layers

    # -- (de)serialisation --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = {k: copy.deepcopy(v) for k, v in self.__dict__.items() if not k.startswith("_")}
        out["model_type"] = self.model_type or out.get("model_type", "")
        out["dtype"] = self._dtype
        out["_name_or_path"] = self._name_or_path
        return out

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    push_to_hub = _push_to_hub  # save_pretrained into a temp folder, then one upload commit (hub/push.py)

    def save_pretrained(self, folder: str | os.PathLike) -> str:
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, CONFIG_NAME)
        data = self.to_dict()
        data.pop("_name_or_path", None)
        with open(path, "w", encoding="utf-8") as f:
            f.write(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        return path

    @classmethod
    def from_dict(cls, config_dict: dict, *, return_unused_kwargs: bool = False, **kwargs):
        """Build from a dict; keyword overrides that name config fields are applied, the rest are unused
        (returned with `return_unused_kwargs=True`, as the reference does; they are not an error here)."""
        data = dict(config_dict)
        for key in ("num_labels", "dtype", "torch_dtype", "name_or_path", "output_hidden_states"):
            if key in kwargs and kwargs[key] != "auto":
                data[key] = kwargs.pop(key)
            elif key in kwargs:
                kwargs.pop(key)
        config = cls(**data)
        unused = {}
        for key, value in kwargs.items():
            if key in config.__dict__ or key in cls.attribute_map:
                cls._check_sizes({key: value}, config.name_or_path)
                cls._check_types({cls.attribute_map.get(key, key): value})
                setattr(config, key, value)
            else:
                unused[key] = value
        return (config, unused) if return_unused_kwargs else config

    @classmethod
    def from_json_file(cls, path: str | os.PathLike):
        return cls(**read_config_dict(path))

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, revision: str | None = None, token=None,
                        cache_dir=None, local_files_only: bool = False, endpoint: str | None = None,
                        hub: str | None = None, return_unused_kwargs: bool = False, **kwargs):
        """Read config.json from a folder, a file, or a hub repo id, then apply keyword overrides."""
        if os.path.isfile(name_or_path):
            data = read_config_dict(name_or_path)
        else:
            from .hub.source import FileSource
            source = FileSource(name_or_path, revision=revision, token=token, cache_dir=cache_dir,
                                local_files_only=local_files_only, endpoint=endpoint, hub=hub)
            data = read_config_dict(source.require(CONFIG_NAME, "(every model needs one)"))
        if cls.model_type and data.get("model_type") not in (None, cls.model_type):
            logger.warning("Loading a '%s' config into %s (model_type '%s'): this may not work.",
                           data.get("model_type"), cls.__name__, cls.model_type)
        data.setdefault("_name_or_path", os.fspath(name_or_path))
        return cls.from_dict(data, return_unused_kwargs=return_unused_kwargs, **kwargs)

    # -- comparison and display ---------------------------------------------------------------------
    def __eq__(self, other) -> bool:
        return isinstance(other, PretrainedConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"


def _dtype_name(value) -> str | None:
    if value is None or value == "auto":
        return None
    name = str(value)
    return name[len("torch."):] if name.startswith("torch.") else name


def read_config_dict(path: str | os.PathLike) -> dict:
    """Parse a config.json (a JSON object) with an error that names the file and the problem: a `RepoFileError`
    (a ValueError) for invalid, too deeply nested or too large files (see `autoload.jsonfiles`)."""
    return read_json(path, expect=dict)
