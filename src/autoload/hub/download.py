"""Resolution and download: `hub_download` (one file) and `snapshot_download` (a repo at a revision).

Layers: http (requests, auth, retries, typed errors) -> cache (filesystem) -> this module.

What this adds over huggingface_hub:
- short ids resolve offline through the legacy-id table, and one model is stored once
  (`bert-base-chinese` and `google-bert/bert-base-chinese` share `models--google-bert--bert-base-chinese`);
- a partial download survives the process: `blobs/<etag>.incomplete` is resumed with `Range`
  by the next run, under the per-blob lock;
- every file is checked: size always, sha256 for LFS files, the git blob sha1 for the others;
- a snapshot is listed once with the tree API and its files fetched directly (no HEAD per file).
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import queue
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import quote, unquote, urljoin, urlsplit

import requests
import urllib3
from filelock import FileLock

from . import aliases, http, settings
from .cache import REPO_TYPES, RepoCache, is_commit
from .errors import (EntryNotFoundError, GatedRepoError, HubError, HubHTTPError, IncompleteSnapshotError,
                     IntegrityError, InvalidRepoIdError, LocalEntryNotFoundError, OfflineModeError,
                     RepositoryNotFoundError, RevisionNotFoundError, UnsafePathError)
from .progress import Progress

logger = logging.getLogger("autoload.hub")

CHUNK = 1024 * 1024
READ_SIZE = 256 * 1024  # per read from the socket: small buffers are reused by the allocator
_REPO_PART = re.compile(r"[A-Za-z0-9_.\-]{1,96}")
_LFS_ETAG = re.compile(r"[0-9a-f]{64}")
_GIT_ETAG = re.compile(r"[0-9a-f]{40}")


# -- validation ---------------------------------------------------------------------------------

def validate_repo_id(repo_id: str) -> None:
    parts = repo_id.split("/") if isinstance(repo_id, str) else []
    ok = (1 <= len(parts) <= 2 and all(_REPO_PART.fullmatch(p) and p[0] not in "-." and p[-1] not in "-."
                                       for p in parts)
          and "--" not in repo_id and ".." not in repo_id and not repo_id.endswith(".git"))
    if not ok:
        raise InvalidRepoIdError(f"Invalid repo id {repo_id!r}: expected 'name' or 'namespace/name' made of letters, "
                                 "digits, '-', '_' and '.', e.g. 'google-bert/bert-base-chinese'.", repo_id=str(repo_id))


def safe_filename(filename: str, repo_id: str | None = None) -> str:
    """Refuse a repo path that would escape the snapshot folder; return it with '/' separators."""
    path = filename.replace("\\", "/") if isinstance(filename, str) else ""
    parts = path.split("/")
    if (not path or path.startswith("/") or re.match(r"^[A-Za-z]:", path) or path.startswith("//")
            or any(p in ("", ".", "..") for p in parts) or "\0" in path):
        raise UnsafePathError(f"Refusing file path {filename!r} from repo '{repo_id}': it is empty, absolute, "
                              "has a drive letter or '..', or would otherwise escape the snapshot folder.",
                              repo_id=repo_id, filename=str(filename))
    return path


def _check_repo_type(repo_type: str) -> None:
    if repo_type not in REPO_TYPES:
        raise ValueError(f"Invalid repo_type {repo_type!r}: use one of {', '.join(REPO_TYPES)}.")


# -- the repo, as the caller named it and as it is stored -----------------------------------------

@dataclass
class _Target:
    repo_id: str           # as typed
    canonical: str         # where it is stored and what is requested
    repo_type: str
    cache_dir: str
    endpoint: str
    token: str | None

    @classmethod
    def make(cls, repo_id, repo_type, cache_dir, endpoint, token) -> "_Target":
        _check_repo_type(repo_type)
        validate_repo_id(repo_id)
        canonical = aliases.canonical_id(repo_id) if repo_type == "model" else repo_id
        return cls(repo_id, canonical, repo_type, settings.hub_cache(cache_dir), settings.endpoint(endpoint),
                   settings.token(token))

    @property
    def repo(self) -> RepoCache:
        return RepoCache(self.cache_dir, self.canonical, self.repo_type)

    def candidates(self) -> list[RepoCache]:
        """Cache folders that may hold this repo: the canonical one, then the one named as typed
        (huggingface_hub stores `bert-base-chinese` under models--bert-base-chinese)."""
        names = dict.fromkeys([self.canonical, self.repo_id])
        return [RepoCache(self.cache_dir, name, self.repo_type) for name in names]

    def url(self, revision: str, filename: str) -> str:
        prefix = "" if self.repo_type == "model" else f"{REPO_TYPES[self.repo_type]}/"
        return f"{self.endpoint}/{prefix}{self.canonical}/resolve/{quote(revision, safe='')}/{quote(filename)}"

    def api_url(self, *parts: str) -> str:
        return "/".join([f"{self.endpoint}/api/{REPO_TYPES[self.repo_type]}/{self.canonical}", *parts])

    def context(self, revision: str, filename: str | None = None) -> dict:
        return dict(repo_id=self.repo_id, revision=revision, filename=filename, endpoint=self.endpoint)

    def follow_rename(self, new_id: str) -> None:
        """The hub redirected (renamed or legacy id): store under the new id from now on."""
        if new_id and new_id != self.canonical:
            logger.info("'%s' is served as '%s'; caching it under that name", self.canonical, new_id)
            self.canonical = new_id

    def link_alias(self, revision: str, commit: str, filename: str, etag: str) -> None:
        """Make the id as typed resolvable by huggingface_hub/transformers offline too: its own folder holds
        refs and snapshot links into the canonical folder's blobs; no bytes are stored twice."""
        if self.repo_id == self.canonical or not os.path.exists(self.repo.blob_path(etag)):
            return
        alias = RepoCache(self.cache_dir, self.repo_id, self.repo_type)
        alias.write_ref(revision, commit)
        alias.link(commit, filename, etag, blob_owner=self.repo)


def _find_cached(target: _Target, revision: str, filename: str) -> str | None:
    for repo in target.candidates():
        commit = repo.read_ref(revision)
        if commit and (path := repo.cached_file(commit, filename)):
            return path
    return None




def _offline_reason(local_files_only: bool) -> str:
    return ("local_files_only=True" if local_files_only else
            "offline mode is on (HF_HUB_OFFLINE/AUTOLOAD_OFFLINE)")


# -- one file -------------------------------------------------------------------------------------

@dataclass
class FileMeta:
    commit: str
    etag: str
    size: int | None
    url: str           # where to GET the content (a CDN URL for LFS files on the real hub)


def _head(target: _Target, revision: str, filename: str, *, retries: int | None) -> FileMeta:
    url = target.url(revision, filename)
    response = http.request("HEAD", url, endpoint=target.endpoint, token=target.token,
                            timeout=settings.metadata_timeout(), retries=retries)
    try:
        http.raise_for_status(response, repo_id=target.repo_id, revision=revision, filename=filename,
                              endpoint=target.endpoint, repo_type=target.repo_type, token=target.token)
    except EntryNotFoundError:
        commit = response.headers.get("X-Repo-Commit", "")
        if is_commit(commit):  # remember the absence, as huggingface_hub does, for offline look-ups
            target.repo.mark_missing(commit, filename)
        raise
    # the last /resolve/ URL of the redirect chain names the repo as the hub serves it (the real hub adds
    # a hop to /api/resolve-cache/... after a rename redirect)
    served = [repo for url in response.visited if (repo := _repo_from_resolve_url(url, target.repo_type))]
    if served:
        target.follow_rename(served[-1])
    headers = response.headers
    commit = headers.get("X-Repo-Commit")
    etag = headers.get("X-Linked-Etag") or headers.get("ETag")
    context = target.context(revision, filename)
    if not commit or not etag:
        missing = "X-Repo-Commit" if not commit else "ETag"
        raise HubHTTPError(f"{target.endpoint} answered for '{filename}' of '{target.repo_id}' without the "
                           f"'{missing}' header: it does not speak the Hugging Face hub protocol (check the endpoint "
                           "URL, or a proxy in between).", status=response.status_code, **context)
    size = headers.get("X-Linked-Size") or (None if response.is_redirect else headers.get("Content-Length"))
    location = urljoin_location(response)
    return FileMeta(commit=commit, etag=_normalize_etag(etag), size=int(size) if size else None, url=location)


def urljoin_location(response: requests.Response) -> str:
    """Where to GET the content: the Location of a cross-host redirect (a CDN), else the URL asked."""
    location = response.headers.get("Location") if response.is_redirect else None
    return urljoin(response.url, location) if location else response.url


def _repo_from_resolve_url(url: str, repo_type: str) -> str | None:
    path = urlsplit(url).path
    if "/resolve/" not in path:
        return None
    repo = unquote(path.split("/resolve/", 1)[0].lstrip("/"))
    prefix = "" if repo_type == "model" else f"{REPO_TYPES[repo_type]}/"
    return repo[len(prefix):] if repo.startswith(prefix) else None


def _normalize_etag(etag: str) -> str:
    etag = etag.strip()
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"')


def hub_download(repo_id: str, filename: str, *, revision: str = "main", repo_type: str = "model",
                 cache_dir: str | os.PathLike | None = None, endpoint: str | None = None,
                 token: str | bool | None = None, local_files_only: bool = False, force_download: bool = False,
                 progress: bool | None = None, hub: str | None = None) -> str:
    """Download one file of a hub repo into the shared cache and return its local path.

    `repo_id` may be a legacy short id (`bert-base-chinese`); it is stored under its canonical id.
    `revision` is a branch, tag, `refs/pr/N` or a full commit hash (a cached commit costs no request).
    Offline (`local_files_only=True` or HF_HUB_OFFLINE=1) only the cache is read.
    `hub="modelscope"` (or AUTOLOAD_HUB=modelscope) downloads from ModelScope instead (docs/modelscope.md).
    """
    if settings.which_hub(hub, repo_type, force_download=force_download) == "modelscope":
        from .modelscope import ms_hub_download
        return ms_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir, endpoint=endpoint,
                               token=token if isinstance(token, str) else None, local_files_only=local_files_only,
                               progress=progress)
    revision = revision or "main"
    target = _Target.make(repo_id, repo_type, cache_dir, endpoint, token)
    filename = safe_filename(filename, repo_id)
    offline = local_files_only or settings.offline()
    context = target.context(revision, filename)
    if force_download and offline:
        raise ValueError(f"Cannot force a download of '{filename}' from '{repo_id}' while "
                         f"{_offline_reason(local_files_only)}.")
    if not force_download and (offline or is_commit(revision)):
        if cached := _find_cached(target, revision, filename):
            return cached
    if offline:
        raise OfflineModeError(
            f"'{filename}' of '{repo_id}' at revision '{revision}' is not in the cache {target.cache_dir}, and "
            f"{_offline_reason(local_files_only)}, so it cannot be downloaded. Go online (unset HF_HUB_OFFLINE, "
            "pass local_files_only=False) or download it first with `autoload download`.", **context)
    cached = None if force_download else _find_cached(target, revision, filename)
    try:
        # With a cached copy, ask once and fall back fast; without one, retry before giving up.
        meta = _head(target, revision, filename, retries=0 if cached else None)
    except (EntryNotFoundError, RevisionNotFoundError):
        raise
    except (HubError, requests.RequestException) as err:
        if cached:
            logger.warning("Could not reach %s (%s); using the cached '%s' of '%s'.", target.endpoint,
                           _short(err), filename, repo_id)
            return cached
        if isinstance(err, (RepositoryNotFoundError, GatedRepoError, HubHTTPError)):
            raise
        raise LocalEntryNotFoundError(
            f"Could not reach {target.endpoint} to download '{filename}' of '{repo_id}' (revision '{revision}'): "
            f"{_short(err)}. It is not in the cache either. Check your connection or HF_ENDPOINT, "
            "or use HF_HUB_OFFLINE=1 with a filled cache.", **context) from err
    repo = target.repo
    repo.ensure_layout()
    repo.write_ref(revision, meta.commit)
    with Progress.maybe(progress) as bar:
        path = _fetch(target, meta.commit, filename, meta, force=force_download, bar=bar)
    target.link_alias(revision, meta.commit, filename, meta.etag)
    return path


def _short(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[:300]


def _fetch(target: _Target, commit: str, filename: str, meta: FileMeta, *, force: bool, bar: "Progress") -> str:
    """Bring one file of a known commit into the cache (blob + snapshot link); return its path."""
    repo = target.repo
    if not force and (path := repo.cached_file(commit, filename)):
        return path
    blob = repo.blob_path(meta.etag)
    if not force and os.path.exists(blob):
        return repo.link(commit, filename, meta.etag)
    os.makedirs(os.path.dirname(repo.lock_path(meta.etag)), exist_ok=True)
    with FileLock(repo.lock_path(meta.etag), mode=0o664):
        if not force and os.path.exists(blob):
            return repo.link(commit, filename, meta.etag)
        if not force and (path := repo.cached_file(commit, filename)):
            return path  # written by another process in no-symlink mode
        partial = _download_blob(target, meta, filename, commit, bar)
        return repo.adopt_blob(commit, filename, meta.etag, partial)


def _hasher(etag: str, size: int | None):
    """The check the etag allows: sha256 for LFS (64 hex), git blob sha1 for regular files (40 hex)."""
    if _LFS_ETAG.fullmatch(etag):
        return hashlib.sha256()
    if _GIT_ETAG.fullmatch(etag) and size is not None:
        h = hashlib.sha1()
        h.update(b"blob %d\0" % size)
        return h
    return None


def _download_blob(target: _Target, meta: FileMeta, filename: str, commit: str, bar: "Progress") -> str:
    """Stream into blobs/<etag>.incomplete, resuming whatever an earlier process left there.

    Dropped connections resume with Range in-process; a failed size or hash check deletes the bytes and
    retries once from scratch, then raises IntegrityError. Returns the path of the verified partial file.
    """
    partial = target.repo.blob_path(meta.etag) + ".incomplete"
    context = target.context(commit, filename)
    for attempt in range(2):
        digest = _stream_to(partial, target, meta, filename, commit, bar)
        problem = _verify(partial, meta, digest)
        if problem is None:
            os.chmod(partial, 0o666 & ~_umask())
            return partial
        os.unlink(partial)
        logger.warning("Integrity check failed for '%s' of '%s' (%s); the bytes were deleted%s.", filename,
                       target.repo_id, problem, ", downloading again" if attempt == 0 else "")
    raise IntegrityError(f"Downloaded '{filename}' of '{target.repo_id}' (commit {commit}) from {target.endpoint} "
                         f"twice and both copies failed the integrity check: {problem}. The bad bytes were deleted "
                         "from the cache. Retry later; if it persists the server or a proxy is corrupting the file.",
                         **context)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _verify(path: str, meta: FileMeta, digest: str | None) -> str | None:
    size = os.path.getsize(path)
    if meta.size is not None and size != meta.size:
        return f"expected {meta.size} bytes, got {size}"
    if digest is not None and digest != meta.etag:
        kind = "sha256" if _LFS_ETAG.fullmatch(meta.etag) else "git blob sha1"
        return f"{kind} is {digest}, expected {meta.etag}"
    return None


class _Digest:
    """Hashes a download while it is written, in a worker thread (hashlib releases the GIL on large
    buffers), so the check overlaps with the network and costs no second read of the file.
    A resumed download first hashes the `prefix` bytes already on disk."""

    def __init__(self, meta: FileMeta, partial: str, prefix: int):
        self.hasher = _hasher(meta.etag, meta.size)
        self.queue: queue.Queue = queue.Queue(maxsize=64)
        self.thread = None
        if self.hasher is not None:
            self.thread = threading.Thread(target=self._run, args=(partial, prefix), daemon=True)
            self.thread.start()

    def _run(self, partial: str, prefix: int) -> None:
        with open(partial, "rb") as f:
            while prefix > 0 and (chunk := f.read(min(8 * CHUNK, prefix))):
                self.hasher.update(chunk)
                prefix -= len(chunk)
        while (chunk := self.queue.get()) is not None:
            self.hasher.update(chunk)

    def feed(self, chunk: bytes) -> None:
        if self.thread is not None:
            self.queue.put(chunk)

    def close(self) -> str | None:
        """Finish and return the hex digest (None when the etag names no hash we can check)."""
        if self.thread is None:
            return None
        self.queue.put(None)
        self.thread.join()
        self.thread = None
        return self.hasher.hexdigest()


def _stream_to(partial: str, target: _Target, meta: FileMeta, filename: str, commit: str,
               bar: "Progress") -> str | None:
    """Download into `partial` from where it ends; return the content's digest (see `_Digest`)."""
    context = target.context(commit, filename)
    open(partial, "ab").close()  # exists from here on, also for an empty file
    offset = os.path.getsize(partial)
    if meta.size is not None and offset > meta.size:
        offset = 0
    if offset:
        logger.info("Resuming '%s' of '%s' at byte %d", filename, target.repo_id, offset)
    failures = 0
    digest = _Digest(meta, partial, offset)
    try:
        with bar.file(filename, meta.size, offset) as file_bar:
            while meta.size is None or offset < meta.size:
                response = None
                # identity encoding: the byte counts, Range offsets and hashes refer to the file itself
                headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={offset}-"} if offset else {})}
                try:
                    response = http.request("GET", meta.url, endpoint=target.endpoint, token=target.token,
                                            headers=headers, stream=True)
                    with response:
                        if response.status_code == 416 and offset:
                            raise requests.ConnectionError(f"the server refused range {offset}- (the partial "
                                                           "file does not fit the file any more); starting over")
                        http.raise_for_status(response, repo_id=target.repo_id, revision=commit, filename=filename,
                                              endpoint=target.endpoint, repo_type=target.repo_type,
                                              token=target.token)
                        if offset and response.status_code != 206:  # the server ignored Range: whole body
                            offset, digest = 0, _restart(digest, meta, partial, file_bar)
                        with open(partial, "r+b") as f:
                            f.seek(offset)
                            if offset < os.fstat(f.fileno()).st_size:
                                f.truncate()  # only after a restart: truncating costs a writeback on ext4
                            # read1 hands over whatever has arrived, so a dropped connection loses nothing
                            while chunk := response.raw.read1(READ_SIZE, decode_content=False):
                                f.write(chunk)
                                digest.feed(chunk)
                                offset += len(chunk)
                                file_bar.update(len(chunk))
                                failures = 0
                    return digest.close()  # complete by its own length; _verify compares sizes and hashes
                except (requests.ConnectionError, requests.Timeout, urllib3.exceptions.HTTPError) as err:
                    failures += 1
                    if response is not None and response.status_code == 416:
                        offset, digest = 0, _restart(digest, meta, partial, file_bar)
                    if failures > settings.max_retries():
                        raise HubHTTPError(
                            f"Download of '{filename}' of '{target.repo_id}' from {target.endpoint} keeps failing "
                            f"({_short(err)}); {offset} bytes are kept in the cache and the next run resumes from "
                            "there.", **context) from err
                    wait = min(8.0, settings.retry_backoff() * 2 ** (failures - 1))
                    logger.info("Connection lost on '%s' at byte %d (%s); resuming in %.1fs", filename, offset,
                                _short(err), wait)
                    time.sleep(wait)
        return digest.close()
    finally:
        digest.close()


def _restart(digest: _Digest, meta: FileMeta, partial: str, file_bar) -> _Digest:
    digest.close()
    file_bar.reset(0)
    return _Digest(meta, partial, 0)


# -- a whole snapshot -----------------------------------------------------------------------------

def _matches(path: str, patterns) -> bool:
    if isinstance(patterns, str):
        patterns = [patterns]
    for pattern in patterns:
        pattern = pattern.replace("\\", "/")
        if pattern.endswith("/"):
            pattern += "*"
        if fnmatch.fnmatchcase(path, pattern):
            return True
    return False


def _select(paths, allow_patterns, ignore_patterns) -> list[str]:
    return [p for p in paths
            if (allow_patterns is None or _matches(p, allow_patterns))
            and not (ignore_patterns is not None and _matches(p, ignore_patterns))]


def _cached_snapshot(target: _Target, revision: str, allow_patterns,
                     ignore_patterns) -> tuple[str | None, list[str], bool]:
    """A cached snapshot of the revision: (path, missing files, whether the commit's file list is recorded),
    or (None, [], False). Without a recorded list (a folder filled file by file) completeness is unknown."""
    for repo in target.candidates():
        commit = repo.read_ref(revision)
        if not commit or not os.path.isdir(repo.snapshot_dir(commit)):
            continue
        tree = repo.read_tree(commit)
        wanted = _select(tree, allow_patterns, ignore_patterns) if tree is not None else []
        missing = [p for p in wanted if not repo.cached_file(commit, p)]
        return repo.snapshot_dir(commit), missing, tree is not None
    return None, [], False


def snapshot_download(repo_id: str, *, revision: str = "main", repo_type: str = "model",
                      allow_patterns=None, ignore_patterns=None, cache_dir: str | os.PathLike | None = None,
                      endpoint: str | None = None, token: str | bool | None = None, local_files_only: bool = False,
                      max_workers: int = 8, progress: bool | None = None, hub: str | None = None) -> str:
    """Download the files of a repo at a revision (filtered by fnmatch patterns) and return the snapshot folder.
    `hub="modelscope"` (or AUTOLOAD_HUB=modelscope) downloads from ModelScope instead (docs/modelscope.md)."""
    if settings.which_hub(hub, repo_type) == "modelscope":
        from .modelscope import ms_snapshot_download
        return ms_snapshot_download(repo_id, revision=revision, allow_patterns=allow_patterns,
                                    ignore_patterns=ignore_patterns, cache_dir=cache_dir, endpoint=endpoint,
                                    token=token if isinstance(token, str) else None,
                                    local_files_only=local_files_only, max_workers=max_workers, progress=progress)
    revision = revision or "main"
    target = _Target.make(repo_id, repo_type, cache_dir, endpoint, token)
    offline = local_files_only or settings.offline()
    context = target.context(revision)
    snapshot, missing, listed = _cached_snapshot(target, revision, allow_patterns, ignore_patterns)
    # offline, a snapshot serves as it is (as huggingface_hub does); online, a commit skips the network only
    # when its recorded file list shows every wanted file on disk
    if snapshot and not missing and (offline or (is_commit(revision) and listed)):
        return snapshot
    if offline:
        _raise_offline_snapshot(target, revision, snapshot, missing, _offline_reason(local_files_only))
    try:
        info = _api_json(target, revision, "revision", quote(revision, safe=""))
    except RevisionNotFoundError:
        raise
    except (HubError, requests.RequestException) as err:
        if snapshot and not missing:  # e.g. an expired token or a hub outage: the cached copy still serves
            logger.warning("Could not reach %s (%s); using the cached snapshot of '%s'.", target.endpoint,
                           _short(err), repo_id)
            return snapshot
        if isinstance(err, HubError):
            raise
        raise LocalEntryNotFoundError(f"Could not reach {target.endpoint} to list '{repo_id}' at revision "
                                      f"'{revision}' ({_short(err)}), and no complete snapshot is cached. Check "
                                      "your connection or HF_ENDPOINT.", **context) from err
    target.follow_rename(info.get("id") or target.canonical)
    commit = info.get("sha")
    if not commit or not is_commit(commit):
        raise HubHTTPError(f"{target.endpoint} gave no commit sha for '{repo_id}' at '{revision}'; it does not speak "
                           "the Hugging Face hub protocol.", **context)
    repo = target.repo
    repo.ensure_layout()
    tree = repo.read_tree(commit)
    if tree is None:
        tree = _list_files(target, commit, info)
        repo.write_tree(commit, tree)
    paths = _select(tree, allow_patterns, ignore_patterns)
    for path in paths:
        safe_filename(path, repo_id)
    if not paths:
        logger.warning("No files of '%s' at '%s' matched allow_patterns=%r ignore_patterns=%r.", repo_id, revision,
                       allow_patterns, ignore_patterns)
    repo.write_ref(revision, commit)
    os.makedirs(repo.snapshot_dir(commit), exist_ok=True)
    todo = [p for p in paths if not repo.cached_file(commit, p)]
    total = sum(tree[p].get("size") or 0 for p in todo)
    with Progress.maybe(progress, total=total, desc=f"{target.canonical}") as bar:
        def fetch(path: str) -> None:
            entry = tree[path]
            etag = entry.get("lfs_sha256") or entry["blob_id"]
            meta = FileMeta(commit=commit, etag=etag, size=entry.get("size"), url=target.url(commit, path))
            _fetch(target, commit, path, meta, force=False, bar=bar)
            target.link_alias(revision, commit, path, etag)

        with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
            for future in [pool.submit(fetch, p) for p in todo]:
                future.result()
    for path in paths:  # files already cached under the canonical name still get alias links
        entry = tree[path]
        target.link_alias(revision, commit, path, entry.get("lfs_sha256") or entry["blob_id"])
    return repo.snapshot_dir(commit)


def _raise_offline_snapshot(target, revision, snapshot, missing, reason) -> None:
    context = target.context(revision)
    if snapshot and missing:
        raise IncompleteSnapshotError(
            f"The cached snapshot of '{target.repo_id}' at '{revision}' ({snapshot}) lacks {len(missing)} file(s) "
            f"({', '.join(missing[:5])}{'...' if len(missing) > 5 else ''}), and {reason}. Go online to complete it.",
            snapshot_path=snapshot, missing=missing, **context)
    raise OfflineModeError(f"'{target.repo_id}' at revision '{revision}' is not in the cache {target.cache_dir}, and "
                           f"{reason}. Go online (unset HF_HUB_OFFLINE, local_files_only=False) or download it "
                           "first with `autoload download`.", **context)


def _api_json(target: _Target, revision: str, *parts: str, params: dict | None = None):
    url = target.api_url(*parts)
    response = http.request("GET", url, endpoint=target.endpoint, token=target.token,
                            timeout=settings.metadata_timeout())
    http.raise_for_status(response, repo_id=target.repo_id, revision=revision, endpoint=target.endpoint,
                          repo_type=target.repo_type, token=target.token)
    try:
        return response.json()
    except ValueError as err:
        raise HubHTTPError(f"{url} did not return JSON; check the endpoint.", **target.context(revision)) from err


def _list_files(target: _Target, commit: str, info: dict) -> dict[str, dict]:
    """{path: {"size", "blob_id", "lfs_sha256"?, "lfs_size"?}} from the tree API (all pages), in the
    trees/<commit>.json format huggingface_hub writes."""
    files: dict[str, dict] = {}
    url = target.api_url("tree", commit) + "?recursive=true&expand=false"
    while url:
        response = http.request("GET", url, endpoint=target.endpoint, token=target.token,
                                timeout=settings.metadata_timeout())
        http.raise_for_status(response, repo_id=target.repo_id, revision=commit, endpoint=target.endpoint,
                              repo_type=target.repo_type, token=target.token)
        for entry in response.json():
            if entry.get("type") != "file":
                continue
            record = {"size": entry["size"], "blob_id": entry["oid"]}
            if entry.get("lfs"):
                record.update(lfs_sha256=entry["lfs"]["oid"], lfs_size=entry["lfs"]["size"])
            files[safe_filename(entry["path"], target.repo_id)] = record
        url = response.links.get("next", {}).get("url")
    return files
