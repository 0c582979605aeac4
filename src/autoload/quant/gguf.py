"""GGUF files (llama.cpp): the header reader, the config from the metadata, and the tensor names.

A GGUF file is: magic "GGUF", version (2 or 3), tensor count, metadata count; the metadata (key, typed value);
one info record per tensor (name, dims innermost first, ggml type, offset); padding to `general.alignment`;
the tensor data. The header is parsed here with `struct` (the `gguf` package's GGUFReader builds a numpy view
for each of the ~300k vocabulary strings of a Qwen file, ~8 s); the data section is memory-mapped and each
tensor is a uint8 view of it, so nothing is read until a tensor is used. The `gguf` package (the optional extra
`autoload[gguf]`) supplies the format's enums and is the oracle the tests compare against.
"""

from __future__ import annotations

import functools
import mmap
import os
import re
import struct
from collections.abc import Sequence
from typing import NamedTuple

from ..errors import RepoFileError

_INSTALL = "pip install 'autoload[gguf]'"
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_NUMPY = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "?", 10: "<u8", 11: "<i8",
          12: "<f8"}


class GGUFError(RepoFileError):
    """A GGUF file autoload cannot use: truncated, not GGUF, an architecture or tensor type it does not support.
    The message names the file and the key."""


class GGUFDependencyError(ImportError):
    """The optional `gguf` package is not installed."""


def require_gguf():
    """The `gguf` package, or a GGUFDependencyError naming the extra to install."""
    try:
        import gguf
    except ImportError:
        raise GGUFDependencyError(f"Loading GGUF files needs the optional `gguf` package: {_INSTALL}") from None
    return gguf


class StringArray(Sequence):
    """A metadata array of strings (a vocabulary, merges), decoded from the memory map on first use."""

    def __init__(self, buffer, start: int, count: int, where: str):
        self._buffer, self._start, self._count, self._items, self._where = buffer, start, count, None, where

    def _decoded(self) -> list[str]:
        if self._items is None:
            items, pos, buffer = [], self._start, self._buffer
            try:
                for _ in range(self._count):
                    size = int.from_bytes(buffer[pos:pos + 8], "little")
                    items.append(buffer[pos + 8:pos + 8 + size].decode("utf-8"))
                    pos += 8 + size
            except UnicodeDecodeError as err:
                raise GGUFError(f"{self._where} holds a string that is not UTF-8 ({err}).") from None
            self._items = items
        return self._items

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index):
        return self._decoded()[index]

    def __iter__(self):
        return iter(self._decoded())

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"StringArray({self._count} strings)"


class TensorInfo(NamedTuple):
    name: str
    shape: tuple[int, ...]  # torch order (outermost first), e.g. (out_features, in_features)
    type_id: int  # ggml type
    offset: int  # from the start of the data section


class GGUFFile:
    """The metadata and tensor infos of a GGUF file; `raw(name)` is a tensor's bytes, memory-mapped."""

    def __init__(self, path: str | os.PathLike):
        require_gguf()
        self.path = os.fspath(path)
        with open(self.path, "rb") as f:
            try:
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)  # copy-on-write: never written
            except ValueError:  # an empty file
                raise GGUFError(f"{self.path} is empty: not a GGUF file.") from None
        self._pos, self._current = 0, "magic"
        try:
            self._read_header()
        except (struct.error, UnicodeDecodeError, IndexError) as err:
            raise GGUFError(f"{self.path}: the GGUF header is truncated or corrupt (at byte {self._pos}, reading "
                            f"'{self._current}': {err}). Re-download the file.") from None

    def _take(self, fmt: str):
        value = struct.unpack_from(fmt, self._map, self._pos)
        self._pos += struct.calcsize(fmt)
        return value[0]

    def _string(self) -> str:
        size = self._take("<Q")
        if self._pos + size > len(self._map):
            raise struct.error(f"a string of {size} bytes runs past the end of the file")
        value = self._map[self._pos:self._pos + size].decode("utf-8")
        self._pos += size
        return value

    def _strings(self, count: int) -> StringArray:
        """An array of strings, skipped over now and decoded on first use (the config needs no vocabulary)."""
        start, pos, size = self._pos, self._pos, len(self._map)
        for _ in range(count):
            pos += 8 + int.from_bytes(self._map[pos:pos + 8], "little")
            if pos > size:
                raise struct.error(f"an array of {count} strings runs past the end of the file")
        self._pos = pos
        return StringArray(self._map, start, count, f"{self.path}: metadata '{self._current}'")

    def _value(self, kind: int):
        if kind == 8:
            return self._string()
        if kind == 9:
            item, count = self._take("<I"), self._take("<Q")
            if item == 8:
                return self._strings(count)
            if item in _NUMPY:
                import numpy as np
                width = np.dtype(_NUMPY[item]).itemsize
                if self._pos + count * width > len(self._map):
                    raise struct.error(f"an array of {count} values runs past the end of the file")
                values = np.frombuffer(self._map, dtype=_NUMPY[item], count=count, offset=self._pos).copy()
                self._pos += count * width
                return values
            return [self._value(item) for _ in range(count)]
        if kind not in _SCALARS:
            raise struct.error(f"unknown metadata value type {kind}")
        return self._take(_SCALARS[kind])

    def _read_header(self) -> None:
        if self._map[:4] != b"GGUF":
            raise GGUFError(f"{self.path} is not a GGUF file (its magic is {bytes(self._map[:4])!r}, not b'GGUF').")
        self._pos, self._current = 4, "version"
        self.version = self._take("<I")
        if self.version not in (2, 3):
            raise GGUFError(f"{self.path}: GGUF version {self.version} is not supported (2 and 3 are).")
        n_tensors, n_kv = self._take("<Q"), self._take("<Q")
        self.metadata: dict = {}
        for _ in range(n_kv):
            self._current = "a metadata key"
            key = self._string()
            self._current = key
            self.metadata[key] = self._value(self._take("<I"))
        self.tensors: dict[str, TensorInfo] = {}
        for _ in range(n_tensors):
            self._current = "a tensor info"
            name = self._string()
            self._current = name
            dims = [self._take("<Q") for _ in range(self._take("<I"))]
            type_id, offset = self._take("<I"), self._take("<Q")
            self.tensors[name] = TensorInfo(name, tuple(reversed(dims)), type_id, offset)
        align = int(self.metadata.get("general.alignment", 32))
        self.data_start = (self._pos + align - 1) // align * align

    # -- tensors ---------------------------------------------------------------------------------------------
    def raw(self, name: str):
        """The stored bytes of a tensor as uint8 [rows, bytes per row] (a view of the memory map)."""
        import torch

        from .gguf_blocks import TYPES
        info = self.tensors[name]
        if info.type_id not in TYPES:
            raise GGUFError(f"{self.path}: tensor '{name}' has ggml type {self._type_name(info.type_id)}, which "
                            f"autoload does not decode (supported: {', '.join(n for n, _, _ in TYPES.values())}).")
        _, per_block, block_bytes = TYPES[info.type_id]
        row_bytes = info.shape[-1] // per_block * block_bytes
        rows = 1
        for dim in info.shape[:-1]:
            rows *= dim
        start = self.data_start + info.offset
        if info.shape[-1] % per_block or start + rows * row_bytes > len(self._map):
            raise GGUFError(f"{self.path}: tensor '{name}' ({rows} x {row_bytes} bytes at {start}) runs past the end "
                            f"of the file ({len(self._map)} bytes): the file is truncated. Re-download it.")
        data = torch.frombuffer(self._map, dtype=torch.uint8, count=rows * row_bytes, offset=start)
        return data.view(rows, row_bytes)

    @staticmethod
    def _type_name(type_id: int) -> str:
        gguf = require_gguf()
        try:
            return gguf.GGMLQuantizationType(type_id).name
        except ValueError:
            return f"#{type_id}"

    def field(self, key: str, default=None):
        return self.metadata.get(key, default)


def open_gguf(source, gguf_file: str) -> GGUFFile:
    """The GGUF file `gguf_file` of a folder or repo (downloaded through the hub cache like any other file).
    The parsed header is kept for the same unchanged file (AutoConfig, AutoTokenizer and the model read it in
    turn; a Qwen vocabulary is 150k strings)."""
    path = os.path.realpath(source.require(gguf_file, "(named by gguf_file=)"))
    stat = os.stat(path)
    return _parsed(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _parsed(path: str, size: int, mtime_ns: int) -> GGUFFile:
    return GGUFFile(path)


# -- config from the metadata ----------------------------------------------------------------------------------
_COMMON = {"context_length": "max_position_embeddings", "block_count": "num_hidden_layers",
           "feed_forward_length": "intermediate_size", "embedding_length": "hidden_size",
           "rope.freq_base": "rope_theta", "attention.head_count": "num_attention_heads",
           "attention.head_count_kv": "num_key_value_heads", "attention.layer_norm_rms_epsilon": "rms_norm_eps",
           "vocab_size": "vocab_size"}
_GEMMA = {**_COMMON, "attention.key_length": "head_dim", "attention.sliding_window": "sliding_window",
          "attn_logit_softcapping": "attn_logit_softcapping", "final_logit_softcapping": "final_logit_softcapping"}
# GGUF architecture -> (model_type, {metadata key after "<arch>.": config key})
ARCHITECTURES = {
    "llama": ("llama", {**_COMMON, "rope.dimension_count": "head_dim"}),
    "qwen2": ("qwen2", _COMMON),
    "qwen3": ("qwen3", {**_COMMON, "attention.key_length": "head_dim"}),
    "gemma2": ("gemma2", _GEMMA),
    "gemma3": ("gemma3_text", _GEMMA),
    "phi3": ("phi3", _COMMON),
}
_TOKEN_IDS = {"bos_token_id": "bos_token_id", "eos_token_id": "eos_token_id", "padding_token_id": "pad_token_id",
              "unknown_token_id": "unk_token_id"}


def architecture(gf: GGUFFile) -> str:
    arch = gf.field("general.architecture")
    if arch not in ARCHITECTURES:
        raise GGUFError(f"{gf.path}: general.architecture is {arch!r}; autoload loads GGUF files of "
                        f"{', '.join(sorted(ARCHITECTURES))}.")
    return arch


def config_dict(gf: GGUFFile) -> dict:
    """The config.json-style dict the metadata describes (as transformers' GGUF path reads it)."""
    arch = architecture(gf)
    model_type, keys = ARCHITECTURES[arch]
    if arch == "llama" and "mistral" in str(gf.field("general.name", "")).lower():
        model_type = "mistral"  # llama.cpp writes Mistral models as "llama"
    data = {"model_type": model_type}
    for key, target in keys.items():
        value = gf.field(f"{arch}.{key}")
        if value is not None:
            data[target] = value.item() if hasattr(value, "item") else value
    for key, target in _TOKEN_IDS.items():
        value = gf.field(f"tokenizer.ggml.{key}")
        if value is not None:
            data[target] = int(value)
    if "vocab_size" not in data and gf.field("tokenizer.ggml.tokens") is not None:
        data["vocab_size"] = len(gf.field("tokenizer.ggml.tokens"))
    data["tie_word_embeddings"] = "output.weight" not in gf.tensors
    if "head_dim" not in data and "hidden_size" in data and data.get("num_attention_heads"):
        data["head_dim"] = data["hidden_size"] // data["num_attention_heads"]
    return data


def config_from_gguf(gf: GGUFFile, config_class, **overrides):
    """(config, unused overrides): `config_class` (the registry's class for `config_dict(gf)["model_type"]`)
    built from the file's metadata, keyword overrides applied."""
    data = config_dict(gf)
    data["_name_or_path"] = gf.path
    return config_class.from_dict(data, return_unused_kwargs=True, **overrides)


# -- tensor names --------------------------------------------------------------------------------------------
_GLOBAL = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
           "output.weight": "lm_head.weight"}
_LAYER = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
          "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
          "attn_output": "self_attn.o_proj", "attn_qkv": "self_attn.qkv_proj",
          "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
          "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
# gemma2/3: four norms per layer; phi3 stores gate and up fused in ffn_up
_LAYER_BY_ARCH = {
    "gemma2": {"ffn_norm": "pre_feedforward_layernorm", "post_attention_norm": "post_attention_layernorm",
               "post_ffw_norm": "post_feedforward_layernorm"},
    "phi3": {"ffn_up": "mlp.gate_up_proj"},
}
_LAYER_BY_ARCH["gemma3"] = _LAYER_BY_ARCH["gemma2"]
_BLOCK = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)")
IGNORED = ("rope_freqs.weight",)  # llama3 rope factors: the config's rope_scaling computes them


def checkpoint_name(arch: str, name: str) -> str | None:
    """The transformers state-dict key of a GGUF tensor name, or None for one autoload does not load."""
    if name in _GLOBAL:
        return _GLOBAL[name]
    match = _BLOCK.fullmatch(name)
    if match is None:
        return None
    layer, part, kind = match.groups()
    target = _LAYER_BY_ARCH.get(arch, {}).get(part) or _LAYER.get(part)
    return f"model.layers.{layer}.{target}.{kind}" if target else None


def permuted_heads(arch: str, name: str, config: dict) -> int | None:
    """llama.cpp's converter reorders the rows of q and k in llama-arch files (the rotary halves interleaved, per
    head); the head count to undo it with (`reverse_permute`), or None for a tensor it left alone."""
    if arch != "llama" or not re.search(r"\.attn_[qk]\.", name):
        return None
    return config["num_attention_heads"] if ".attn_q." in name else config["num_key_value_heads"]


def reverse_permute(tensor, heads: int):
    """Undo llama.cpp's q/k row permutation: rows (head, pair, 2) -> (head, 2, pair), any trailing dims."""
    rows = tensor.shape[0]
    return tensor.reshape(heads, rows // heads // 2, 2, *tensor.shape[1:]).transpose(1, 2).reshape(tensor.shape)
