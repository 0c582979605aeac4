"""Reading a repo's JSON (and small text) files: bounded size, bounded nesting, errors that name the file.

Every config.json, tokenizer_config.json, generation_config.json, special_tokens_map.json, added_tokens.json,
tokenizer.json, weight index and sentence-transformers file autoload reads goes through `read_json`, because a repo
is untrusted: a 100,000-deep `[[[...]]]` must be a clear `RepoFileError`, not a RecursionError, and a 50 GB
"config" must not be read into memory.

Limits (bytes on disk): tokenizer.json 512 MiB (the largest real ones are tens of MB), every other JSON file 64 MiB,
chat template files 16 MiB; nesting deeper than 100 levels is refused (real files nest fewer than 10).
`AUTOLOAD_MAX_JSON_MIB=<n>` replaces the size limits of JSON files for a repo that genuinely needs more.
"""

from __future__ import annotations

import json
import os

from .errors import RepoFileError

MiB = 2**20
MAX_JSON_BYTES = 64 * MiB
MAX_TOKENIZER_JSON_BYTES = 512 * MiB
MAX_TEMPLATE_BYTES = 16 * MiB
MAX_DEPTH = 100
_LARGE_FILES = {"tokenizer.json": MAX_TOKENIZER_JSON_BYTES}
_CONTAINERS = (dict, list)
_KINDS = {dict: "object", list: "array", str: "string"}


def json_limit(filename: str) -> int:
    """The size limit in bytes for a repo JSON file named `filename` (its base name picks the default)."""
    override = os.environ.get("AUTOLOAD_MAX_JSON_MIB")
    if override:
        try:
            return int(float(override) * MiB)
        except ValueError:
            raise ValueError(f"AUTOLOAD_MAX_JSON_MIB={override!r} is not a number of MiB.") from None
    return _LARGE_FILES.get(os.path.basename(filename), MAX_JSON_BYTES)


def read_json(path: str | os.PathLike, *, expect: type | None = dict, max_bytes: int | None = None):
    """Parse the JSON file at `path`; with `expect`, the top-level value must be of that type (dict by default).

    Raises `RepoFileError` (an OSError and a ValueError) naming the file for: a file over the size limit, bytes
    that are not UTF-8, invalid JSON, nesting deeper than `MAX_DEPTH`, a top-level value of the wrong type.
    A missing file raises FileNotFoundError as `open` does."""
    path = os.fspath(path)
    limit = max_bytes if max_bytes is not None else json_limit(path)
    raw = _read_bytes(path, limit, "AUTOLOAD_MAX_JSON_MIB=<MiB> raises the limit")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise RepoFileError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}). Fix or re-download the "
                            "file (`autoload download ... --force`).") from None
    except json.JSONDecodeError as err:
        raise RepoFileError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}). "
                            "Fix or re-download the file (`autoload download ... --force`).") from None
    except RecursionError:
        raise RepoFileError(_too_deep(path)) from None
    except ValueError as err:  # e.g. an integer literal longer than Python's 4300-digit limit
        raise RepoFileError(f"{path} cannot be read as JSON ({err}). Fix or re-download the file.") from None
    if not _nesting_within(data, MAX_DEPTH):
        raise RepoFileError(_too_deep(path))
    if expect is not None and not isinstance(data, expect):
        raise RepoFileError(f"{path} must hold a JSON {_KINDS.get(expect, expect.__name__)}, not "
                            f"{_KINDS.get(type(data), type(data).__name__)}. The file is not what its name says: "
                            "fix or re-download it.")
    return data


def read_text(path: str | os.PathLike, *, max_bytes: int = MAX_TEMPLATE_BYTES) -> str:
    """A repo text file (a chat template), refused over `max_bytes` or when it is not UTF-8."""
    path = os.fspath(path)
    raw = _read_bytes(path, max_bytes, "a real chat template is a few KB")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RepoFileError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}). Fix or re-download "
                            "the file.") from None


def check_file_size(path: str | os.PathLike, max_bytes: int | None = None) -> None:
    """Refuse a file over its limit before another library (tokenizers' Rust reader) loads it whole."""
    path = os.fspath(path)
    limit = max_bytes if max_bytes is not None else json_limit(path)
    size = os.path.getsize(path)
    if size > limit:
        raise RepoFileError(_too_large(path, size, limit, "AUTOLOAD_MAX_JSON_MIB=<MiB> raises the limit"))


def _read_bytes(path: str, limit: int, how_to_raise: str) -> bytes:
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > limit:
            raise RepoFileError(_too_large(path, size, limit, how_to_raise))
        raw = handle.read(limit + 1)  # a file that grows while read (or a pipe) is cut at the limit too
    if len(raw) > limit:
        raise RepoFileError(_too_large(path, len(raw), limit, how_to_raise))
    return raw


def _too_large(path: str, size: int, limit: int, how_to_raise: str) -> str:
    return (f"{path} is {size:,} bytes, over autoload's limit of {limit:,} bytes for this file, so it was not read. "
            f"A file this size is not a real one of its kind; if this one is genuine, {how_to_raise}.")


def _too_deep(path: str) -> str:
    return (f"{path} nests JSON arrays/objects more than {MAX_DEPTH} levels deep (real files nest fewer than 10), "
            "so it was refused. The file is corrupt or hostile: fix or re-download it.")


def _nesting_within(data, limit: int) -> bool:
    """Whether no container in `data` sits deeper than `limit` levels: one level at a time, no recursion (about
    30 ms for a 150k-token tokenizer.json, whose parse takes 110 ms)."""
    level = [data] if type(data) in _CONTAINERS else []
    for _ in range(limit):
        if not level:
            return True
        below = []
        for value in level:
            for child in value.values() if type(value) is dict else value:
                if type(child) in _CONTAINERS:
                    below.append(child)
        level = below
    return not level
