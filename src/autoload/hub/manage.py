"""Cache housekeeping behind `autoload cache ls/rm/verify`: list repos, delete a repo or one revision
(and the blobs nothing else uses), and re-hash blobs against their etags. Pure filesystem."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from dataclasses import dataclass, field

from filelock import FileLock, Timeout

from . import aliases
from .cache import REPO_TYPES, RepoCache, is_etag

_TYPE_OF_PREFIX = {prefix: kind for kind, prefix in REPO_TYPES.items()}


@dataclass
class CachedRepo:
    repo_id: str
    repo_type: str
    path: str
    size: int = 0                          # bytes of this folder's own blobs (or copied snapshot files)
    files: int = 0
    refs: dict[str, str] = field(default_factory=dict)   # revision -> commit
    commits: list[str] = field(default_factory=list)
    last_used: float = 0.0                 # newest access time of its files
    last_modified: float = 0.0
    alias_of: str | None = None            # set for an id folder whose snapshots link into another repo


def _parse_folder(name: str) -> tuple[str, str] | None:
    prefix, sep, rest = name.partition("--")
    if not sep or prefix not in _TYPE_OF_PREFIX or not rest:
        return None
    return _TYPE_OF_PREFIX[prefix], rest.replace("--", "/")


def _read_refs(repo_path: str) -> dict[str, str]:
    refs = {}
    base = os.path.join(repo_path, "refs")
    for folder, _, names in os.walk(base):
        for name in names:
            path = os.path.join(folder, name)
            try:
                refs[os.path.relpath(path, base).replace(os.sep, "/")] = open(path).read().strip()
            except OSError:
                continue
    return refs


def scan_cache(cache_dir: str) -> list[CachedRepo]:
    """Every repo folder of the cache with its size, revisions and times, sorted by id."""
    repos = []
    if not os.path.isdir(cache_dir):
        return repos
    for name in sorted(os.listdir(cache_dir)):
        parsed = _parse_folder(name)
        path = os.path.join(cache_dir, name)
        if parsed is None or not os.path.isdir(path):
            continue
        repo = CachedRepo(repo_id=parsed[1], repo_type=parsed[0], path=path, refs=_read_refs(path))
        snapshots = os.path.join(path, "snapshots")
        repo.commits = sorted(os.listdir(snapshots)) if os.path.isdir(snapshots) else []
        seen: set[str] = set()
        for folder, _, names in os.walk(snapshots):
            for file_name in names:
                file_path = os.path.join(folder, file_name)
                real = os.path.realpath(file_path)
                if not os.path.exists(real):
                    continue
                if os.path.islink(file_path) and not real.startswith(path + os.sep):
                    repo.alias_of = _parse_folder(os.path.relpath(real, cache_dir).split(os.sep)[0] or "")
                    repo.alias_of = repo.alias_of[1] if repo.alias_of else None
                repo.files += 1
                stat = os.stat(real)
                repo.last_used = max(repo.last_used, stat.st_atime)
                repo.last_modified = max(repo.last_modified, stat.st_mtime)
                if real not in seen and real.startswith(path + os.sep):
                    seen.add(real)
                    repo.size += stat.st_size
        repos.append(repo)
    return repos


def _matching(cache_dir: str, repo_id: str, repo_type: str) -> list[CachedRepo]:
    """The folders that hold `repo_id`: its canonical folder, the folder named as typed, and id folders
    that link into either (so removing a model removes its short-id links too)."""
    wanted = {repo_id, aliases.canonical_id(repo_id) if repo_type == "model" else repo_id}
    repos = [r for r in scan_cache(cache_dir) if r.repo_type == repo_type]
    return [r for r in repos if r.repo_id in wanted or r.alias_of in wanted]


def delete_repo(cache_dir: str, repo_id: str, repo_type: str = "model", revision: str | None = None) -> list[str]:
    """Delete a repo (every revision) or one revision of it; return what was removed."""
    removed = []
    for repo in _matching(cache_dir, repo_id, repo_type):
        if revision is None:
            shutil.rmtree(repo.path)
            shutil.rmtree(os.path.join(cache_dir, ".locks", os.path.basename(repo.path)), ignore_errors=True)
            removed.append(repo.path)
            continue
        commit = RepoCache(cache_dir, repo.repo_id, repo_type).read_ref(revision)
        if not commit or commit not in repo.commits:
            continue
        shutil.rmtree(os.path.join(repo.path, "snapshots", commit))
        removed.append(os.path.join(repo.path, "snapshots", commit))
        for name, target in repo.refs.items():
            if target == commit:
                os.unlink(os.path.join(repo.path, "refs", *name.split("/")))
        for extra in (os.path.join(repo.path, "trees", f"{commit}.json"), os.path.join(repo.path, ".no_exist", commit)):
            if os.path.isdir(extra):
                shutil.rmtree(extra)
            elif os.path.exists(extra):
                os.unlink(extra)
    _collect_garbage(cache_dir)
    return removed


def _collect_garbage(cache_dir: str) -> None:
    """Delete blobs that no snapshot of any repo points to any more (alias folders link across repos).

    Safe beside running downloads: a blob is deleted only under its own download lock (taken without
    waiting: a held lock means it is in use), and not if it changed or was linked since this pass began
    (a download that links an existing blob touches it first; see RepoCache.link)."""
    began = time.time() - 0.05  # slack for file-system clocks that tick coarser than time.time()
    used = set()
    for name in os.listdir(cache_dir) if os.path.isdir(cache_dir) else []:
        snapshots = os.path.join(cache_dir, name, "snapshots")
        for folder, _, names in os.walk(snapshots):
            used.update(os.path.realpath(os.path.join(folder, n)) for n in names)
    for name in os.listdir(cache_dir) if os.path.isdir(cache_dir) else []:
        parsed = _parse_folder(name)
        blobs = os.path.join(cache_dir, name, "blobs")
        if parsed is None or not os.path.isdir(blobs):
            continue
        repo = RepoCache(cache_dir, parsed[1], parsed[0])
        for blob in os.listdir(blobs):
            path = os.path.join(blobs, blob)
            if os.path.realpath(path) in used or not is_etag(blob):
                continue  # in use, or not a finished blob (.incomplete, a probe)
            lock = FileLock(repo.lock_path(blob), timeout=0, mode=0o664)
            try:
                with lock:
                    if os.lstat(path).st_mtime < began:
                        os.unlink(path)
            except (Timeout, FileNotFoundError):
                continue  # a download holds it, or it is gone already


@dataclass
class BlobCheck:
    path: str           # the snapshot path, relative to the repo folder
    etag: str
    status: str         # "ok", "corrupt", "unchecked" (etag is not a hash), "missing"
    detail: str = ""


def verify_repo(cache_dir: str, repo_id: str, repo_type: str = "model") -> list[BlobCheck]:
    """Re-hash every cached file of the repo against its etag: sha256 (64 hex) or git blob sha1 (40 hex)."""
    checks = []
    for repo in _matching(cache_dir, repo_id, repo_type):
        if repo.alias_of:
            continue
        snapshots = os.path.join(repo.path, "snapshots")
        for folder, _, names in os.walk(snapshots):
            for file_name in sorted(names):
                file_path = os.path.join(folder, file_name)
                relative = os.path.relpath(file_path, repo.path)
                etag = os.path.basename(os.readlink(file_path)) if os.path.islink(file_path) else ""
                checks.append(_check(file_path, relative, etag))
    return checks


def _check(file_path: str, relative: str, etag: str) -> BlobCheck:
    if not os.path.exists(file_path):
        return BlobCheck(relative, etag, "missing", "the link points to a blob that is gone")
    if re.fullmatch(r"[0-9a-f]{64}", etag):
        hasher = hashlib.sha256()
    elif re.fullmatch(r"[0-9a-f]{40}", etag):
        hasher = hashlib.sha1(b"blob %d\0" % os.path.getsize(file_path))
    else:
        return BlobCheck(relative, etag, "unchecked", "no hash recorded (copied file or opaque etag)")
    with open(file_path, "rb") as f:
        while chunk := f.read(8 << 20):
            hasher.update(chunk)
    digest = hasher.hexdigest()
    if digest == etag:
        return BlobCheck(relative, etag, "ok")
    return BlobCheck(relative, etag, "corrupt", f"content hashes to {digest}")
