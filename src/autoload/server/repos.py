"""What the local hub serves: repos, snapshots and file entries, the error answer, and the small pure helpers
over a served folder (hashes, .gitattributes LFS rules, listing). Standard library only."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from dataclasses import dataclass, field

# Legacy ids the hub redirects to their canonical repo (only when the target exists here).
LEGACY_ALIASES = {
    "bert-base-uncased": "google-bert/bert-base-uncased",
    "bert-base-cased": "google-bert/bert-base-cased",
    "bert-base-chinese": "google-bert/bert-base-chinese",
    "bert-large-uncased": "google-bert/bert-large-uncased",
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
    "distilgpt2": "distilbert/distilgpt2",
    "roberta-base": "FacebookAI/roberta-base",
    "roberta-large": "FacebookAI/roberta-large",
    "t5-small": "google-t5/t5-small",
    "t5-base": "google-t5/t5-base",
    "distilbert-base-uncased": "distilbert/distilbert-base-uncased",
}

# Files stored in LFS even without a .gitattributes rule (the hub's default attributes).
LFS_EXTENSIONS = frozenset(".safetensors .bin .pt .pth .ckpt .h5 .onnx .msgpack .gguf .model .tiktoken "
                           ".npz .zip .tar .gz .ot .parquet".split())
LFS_MIN_SIZE = 10 * 1024 * 1024
CHUNK = 1024 * 1024
CONTENT_TYPES = {".json": "application/json", ".txt": "text/plain; charset=utf-8",
                 ".md": "text/markdown; charset=utf-8", ".py": "text/x-python; charset=utf-8"}
COMMIT = re.compile(r"[0-9a-f]{40}")
SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Request:
    """One request as received: `path` is the raw path with query, header names are lower-cased."""
    method: str
    path: str
    headers: dict[str, str]


class HubError(Exception):
    """An error answer: status, X-Error-Code (None to send none), message and extra headers."""

    def __init__(self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


@dataclass(frozen=True)
class FileEntry:
    path: str       # path inside the repo, "/"-separated
    disk: str       # where the content is
    size: int
    mtime: float
    lfs: bool
    etag: str       # sha256 of the content for LFS files, git blob sha1 otherwise

    @property
    def pointer(self) -> bytes:
        """The git-lfs pointer file that git stores in place of an LFS file."""
        return b"version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (
            self.etag.encode(), self.size)

    @property
    def blob_id(self) -> str:
        """The git blob id, as the tree API's `oid`: that of the pointer for LFS files."""
        return git_sha1_of(self.pointer) if self.lfs else self.etag


@dataclass(frozen=True)
class Snapshot:
    commit: str
    files: dict[str, FileEntry]  # sorted by path


@dataclass
class Repo:
    kind: str                   # "model" or "dataset"
    id: str                     # canonical id, as served
    refs: dict[str, str]        # branch, tag or PR name -> folder holding that version
    tags: set[str] = field(default_factory=set)
    commits: dict[str, str] = field(default_factory=dict)  # mirror mode: commit -> snapshot folder
    private: bool = False
    gated: bool = False
    access: list[str] | None = None  # tokens allowed in (None: any valid token)
    history: str | None = None  # its folder in the history store (written repos; refs then name commits)


def git_sha1_of(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_patterns(folder: str) -> list[str]:
    """Patterns marked `filter=lfs` in the repo's .gitattributes."""
    try:
        with open(os.path.join(folder, ".gitattributes"), encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    words = [line.split() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [w[0].lstrip("/") for w in words if "filter=lfs" in w[1:]]


def matches(path: str, pattern: str) -> bool:
    # As in git: a pattern with no "/" matches the basename at any depth; "**/" matches zero or more folders.
    if "/" not in pattern:
        return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern)
    return fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path, pattern.replace("**/", ""))


def has_files(folder: str) -> bool:
    """A first-level folder that directly holds a regular file is a repo without a namespace."""
    try:
        return any(e.is_file() and not e.name.startswith(".") for e in os.scandir(folder))
    except OSError:
        return False


def listdir(folder: str) -> list[str]:
    """Visible entries of a folder, sorted (none if it is not one)."""
    try:
        return sorted(n for n in os.listdir(folder) if not n.startswith("."))
    except OSError:
        return []


def check_path(path: str) -> str:
    """A repo-relative path from a URL, refused (400) when absolute, with a backslash, '.' or '..'."""
    if path.startswith("/") or "\\" in path or any(p in ("..", ".") for p in path.split("/")):
        raise HubError(400, "BadRequest", f"Invalid path: {path!r}")
    return path


def under(path: str, folders: set[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip(os.sep) + os.sep) for f in folders)


def repo_not_found(repo_id: str, token: str | None) -> HubError:
    # As the hub: 401 when anonymous, 404 with a token, so private repos look like missing ones.
    return HubError(401 if token is None else 404, "RepoNotFound", f"Repository not found: {repo_id}")
