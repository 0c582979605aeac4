"""The Hugging Face client: `hf_hub_download` (one file) and `hf_snapshot_download` (a repo at a revision).

Layers: http (requests, auth, retries, typed errors) -> cache (filesystem) -> this module.
Callers use the front, `autoload.hub.download`, which picks this client or the ModelScope one.

What this adds over huggingface_hub:
- short ids resolve offline through the legacy-id table, and one model is stored once
  (`bert-base-chinese` and `google-bert/bert-base-chinese` share `models--google-bert--bert-base-chinese`);
- a partial download survives the process: `blobs/<etag>.incomplete` is resumed with `Range`
  by the next run, under the per-blob lock;
- every file is checked: size always, sha256 for LFS files, the git blob sha1 for the others;
- a snapshot is listed once with the tree API and its files fetched directly (no HEAD per file).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import quote, unquote, urljoin, urlsplit

import requests
from filelock import FileLock, Timeout

from . import aliases, http, settings, transfer
from .cache import (REPO_TYPES, RepoCache, UnsafeValueError, check_commit, check_etag, check_revision, is_commit,
                    shown)
from .errors import (CacheLockTimeoutError, EntryNotFoundError, GatedRepoError, HubError, HubHTTPError, IncompleteSnapshotError,
                     InvalidRepoIdError, InvalidRevisionError, LocalEntryNotFoundError, OfflineModeError,
                     RepositoryNotFoundError, RevisionNotFoundError, UnsafePathError)
from .paths import safe_filename, select_files, validate_repo_id
from .progress import Progress

logger = logging.getLogger("autoload.hub")

_LFS_ETAG = re.compile(r"[0-9a-f]{64}")
_SIZE = re.compile(r"\d{1,15}")  # up to ~1 PB: larger announced sizes are not files, they are attacks
MAX_TREE_PAGES = 10_000


# -- validation ---------------------------------------------------------------------------------

def validate_revision(revision, repo_id: str) -> str:
    """The caller's revision must be a valid git ref name or commit: it becomes a path under refs/."""
    try:
        return check_revision(revision)
    except UnsafeValueError as err:
        raise InvalidRevisionError(f"Invalid revision for '{repo_id}': {err}. Use a branch, a tag, refs/pr/N or a "
                                   "full 40-character commit.", repo_id=repo_id, revision=str(revision)) from None


def _server_value(check, value, what: str, target: "_Target", url: str, **context):
    """A value from the server that becomes a path or a size, checked; else MalformedResponseError."""
    try:
        return check(value, what)
    except UnsafeValueError as err:
        raise http.malformed(str(err), endpoint=target.endpoint, url=url, value=value, repo_id=target.repo_id,
                             **context) from None


def _check_size(value, what: str = "size") -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**15:
        return value
    if isinstance(value, str) and _SIZE.fullmatch(value.strip()):
        return int(value)
    raise UnsafeValueError(f"{what} {shown(value)} is not a byte count", value=value)


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

    def follow_redirects(self, response: requests.Response) -> None:
        """The hub redirected a legacy, renamed or mis-cased id on its own origin: store under the id of the last
        URL of the chain from now on, and link the id as typed to it. Redirects to another origin (a CDN) and
        the `id` a server writes in a JSON body never rename: a request for X never touches another repo."""
        hub = http.origin(self.endpoint)
        served = [repo for url in response.visited
                  if http.origin(url) == hub and (repo := _repo_from_url(url, self.repo_type))]
        if served:
            self.follow_rename(served[-1])

    def follow_rename(self, new_id: str) -> None:
        try:
            validate_repo_id(new_id)
        except InvalidRepoIdError:
            raise http.malformed(f"a redirect for '{self.canonical}' to the invalid repo id {shown(new_id)}",
                                 endpoint=self.endpoint, repo_id=self.repo_id) from None
        if new_id != self.canonical:
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
    target.follow_redirects(response)
    headers = response.headers
    commit = headers.get("X-Repo-Commit")
    etag = headers.get("X-Linked-Etag") or headers.get("ETag")
    context = target.context(revision, filename)
    if not commit or not etag:
        missing = "X-Repo-Commit" if not commit else "ETag"
        raise HubHTTPError(f"{target.endpoint} answered for {shown(filename)} of '{target.repo_id}' without the "
                           f"'{missing}' header: it does not speak the Hugging Face hub protocol (check the endpoint "
                           "URL, or a proxy in between).", status=response.status_code, **context)
    size = headers.get("X-Linked-Size") or (None if response.is_redirect else headers.get("Content-Length"))
    check = dict(target=target, url=url, revision=revision, filename=filename)
    return FileMeta(commit=_server_value(check_commit, commit, "X-Repo-Commit", **check),
                    etag=_server_value(check_etag, _normalize_etag(etag),
                                       "X-Linked-Etag" if headers.get("X-Linked-Etag") else "ETag", **check),
                    size=_server_value(_check_size, size, "X-Linked-Size", **check) if size else None,
                    url=urljoin_location(response))


def urljoin_location(response: requests.Response) -> str:
    """Where to GET the content: the Location of a cross-host redirect (a CDN), else the URL asked."""
    location = response.headers.get("Location") if response.is_redirect else None
    return urljoin(response.url, location) if location else response.url


def _repo_from_url(url: str, repo_type: str) -> str | None:
    """The repo id in a /resolve/ or /api/{type}s/ URL of this hub, else None."""
    path = unquote(urlsplit(url).path).lstrip("/")
    api = f"api/{REPO_TYPES[repo_type]}/"
    if path.startswith(api):  # /api/models/{id}/revision/... or /api/models/{id}/tree/...
        parts = path[len(api):].split("/")
        for n in (2, 1):
            if len(parts) > n and parts[n] in ("revision", "tree", "refs"):
                return "/".join(parts[:n])
        return "/".join(parts[:2]) if len(parts) <= 2 else None
    if "/resolve/" not in path:
        return None
    repo = path.split("/resolve/", 1)[0]
    prefix = "" if repo_type == "model" else f"{REPO_TYPES[repo_type]}/"
    return repo[len(prefix):] if repo.startswith(prefix) else None


def _normalize_etag(etag: str) -> str:
    etag = etag.strip()
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"')


def hf_hub_download(repo_id: str, filename: str, *, revision: str = "main", repo_type: str = "model",
                    cache_dir: str | os.PathLike | None = None, endpoint: str | None = None,
                    token: str | bool | None = None, local_files_only: bool = False, force_download: bool = False,
                    progress: bool | None = None) -> str:
    """Download one file of a Hugging Face repo into the shared cache and return its local path.

    `repo_id` may be a legacy short id (`bert-base-chinese`); it is stored under its canonical id.
    `revision` is a branch, tag, `refs/pr/N` or a full commit hash (a cached commit costs no request).
    Offline (`local_files_only=True` or HF_HUB_OFFLINE=1) only the cache is read.
    """
    revision = validate_revision(revision or "main", repo_id)
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
            f"{shown(filename)} of '{repo_id}' at revision '{revision}' is not in the cache {target.cache_dir} (or "
            f"only partly: an unfinished download or a deleted blob), and {_offline_reason(local_files_only)}, so it "
            f"cannot be downloaded. Download it online first: {_fix_command(target, revision, filename)}", **context)
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
        with contextlib.suppress(FileNotFoundError):  # a concurrent `cache rm` may collect it meanwhile
            if os.path.isfile(path := repo.link(commit, filename, meta.etag)):
                return path
    os.makedirs(os.path.dirname(repo.lock_path(meta.etag)), exist_ok=True)
    lock = FileLock(repo.lock_path(meta.etag), mode=0o664, timeout=settings.lock_timeout())
    try:
        lock.acquire()
    except Timeout:
        raise CacheLockTimeoutError(
            f"Another process has been downloading {shown(filename)} of '{target.repo_id}' for more than "
            f"{settings.lock_timeout():.0f} s (lock {lock.lock_file}). If no other download is running, delete the "
            "lock file; else wait, or raise AUTOLOAD_LOCK_TIMEOUT.", **target.context(commit, filename)) from None
    try:
        if not force and os.path.exists(blob):
            return repo.link(commit, filename, meta.etag)
        if not force and (path := repo.cached_file(commit, filename)):
            return path  # written by another process in no-symlink mode
        partial = repo.blob_path(meta.etag) + ".incomplete"
        transfer.download(_source(target, meta, filename, commit), partial, bar)
        return repo.adopt_blob(commit, filename, meta.etag, partial)
    finally:
        lock.release()


def _source(target: _Target, meta: FileMeta, filename: str, commit: str) -> transfer.Source:
    """What transfer.download needs: the URL, the announced size and the check the etag allows
    (sha256 for LFS, git blob sha1 for regular files)."""
    def raise_for_status(response):
        http.raise_for_status(response, repo_id=target.repo_id, revision=commit, filename=filename,
                              endpoint=target.endpoint, repo_type=target.repo_type, token=target.token)
    algorithm = "sha256" if _LFS_ETAG.fullmatch(meta.etag) else "git-sha1"
    return transfer.Source(meta.url, target.endpoint, meta.size, algorithm, meta.etag, token=target.token,
                           context=target.context(commit, filename), raise_for_status=raise_for_status)


# -- a whole snapshot -----------------------------------------------------------------------------

def _cached_snapshot(target: _Target, revision: str, allow_patterns,
                     ignore_patterns) -> tuple[str | None, list[str], bool]:
    """A cached snapshot of the revision: (path, missing files, whether the commit's file list is recorded),
    or (None, [], False). Without a recorded list (a folder filled file by file) completeness is unknown."""
    for repo in target.candidates():
        commit = repo.read_ref(revision)
        if not commit or not os.path.isdir(repo.snapshot_dir(commit)):
            continue
        broken, readable = repo.unusable_files(commit)
        if not readable and not broken:
            continue  # an empty folder (only .incomplete blobs behind it) is no snapshot
        tree = _valid_tree(repo.read_tree(commit))
        wanted = select_files(tree, allow_patterns, ignore_patterns) if tree is not None else []
        missing = [p for p in wanted if not repo.cached_file(commit, p)]
        # without a recorded list, a dangling link (a deleted or unfinished blob) still shows a gap
        missing += [p for p in select_files(broken, allow_patterns, ignore_patterns) if p not in missing]
        return repo.snapshot_dir(commit), missing, tree is not None
    return None, [], False


def hf_snapshot_download(repo_id: str, *, revision: str = "main", repo_type: str = "model",
                         allow_patterns=None, ignore_patterns=None, cache_dir: str | os.PathLike | None = None,
                         endpoint: str | None = None, token: str | bool | None = None, local_files_only: bool = False,
                         max_workers: int = 8, progress: bool | None = None) -> str:
    """Download the files of a Hugging Face repo at a revision (filtered by fnmatch patterns) and return the
    snapshot folder."""
    revision = validate_revision(revision or "main", repo_id)
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
        commit = _resolve_commit(target, revision)
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
    repo = target.repo
    repo.ensure_layout()
    tree = _valid_tree(repo.read_tree(commit))
    if tree is None:
        tree = _list_files(target, commit)
        repo.write_tree(commit, tree)
    paths = select_files(tree, allow_patterns, ignore_patterns)
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
            f"({', '.join(shown(m) for m in missing[:5])}{'...' if len(missing) > 5 else ''}), and {reason}. "
            f"Complete it online: {_fix_command(target, revision)}", snapshot_path=snapshot, missing=missing,
            **context)
    raise OfflineModeError(f"'{target.repo_id}' at revision '{revision}' is not in the cache {target.cache_dir}, and "
                           f"{reason}. Download it online first: {_fix_command(target, revision)}", **context)


def _fix_command(target: _Target, revision: str, filename: str | None = None) -> str:
    """The command line that fills the gap the offline error reports."""
    parts = ["autoload", "download", target.repo_id, *([filename] if filename else [])]
    if revision != "main":
        parts += ["--revision", revision]
    if target.repo_type != "model":
        parts += ["--repo-type", target.repo_type]
    return "`" + " ".join(shlex.quote(p) for p in parts) + "`"


def _resolve_commit(target: _Target, revision: str) -> str:
    """The commit a revision names, from `/api/{type}s/{repo}/revision/{rev}` (following same-origin renames)."""
    url = target.api_url("revision", quote(revision, safe=""))
    response = http.request("GET", url, endpoint=target.endpoint, token=target.token, stream=True,
                            timeout=settings.metadata_timeout())
    with response:
        http.raise_for_status(response, repo_id=target.repo_id, revision=revision, endpoint=target.endpoint,
                              repo_type=target.repo_type, token=target.token)
        info = http.read_json(response, what="the repo info", **target.context(revision))
    target.follow_redirects(response)
    if not isinstance(info, dict) or "sha" not in info:
        raise http.malformed(f"a repo info without a commit 'sha' for '{target.repo_id}' at {shown(revision)}",
                             url=url, **target.context(revision))
    return _server_value(check_commit, info["sha"], "commit 'sha'", target, url, revision=revision)


def _list_files(target: _Target, commit: str) -> dict[str, dict]:
    """{path: {"size", "blob_id", "lfs_sha256"?, "lfs_size"?}} from the tree API (all pages), in the
    trees/<commit>.json format huggingface_hub writes. Every entry is checked; pages are bounded in number,
    never repeat, and stay on the hub's origin."""
    files: dict[str, dict] = {}
    url = target.api_url("tree", commit) + "?recursive=true&expand=false"
    seen: set[str] = set()
    context = target.context(commit)
    while url:
        if url in seen or len(seen) >= MAX_TREE_PAGES or http.origin(url) != http.origin(target.endpoint):
            why = ("repeats a page" if url in seen else f"goes past {MAX_TREE_PAGES} pages" if seen and
                   len(seen) >= MAX_TREE_PAGES else "leaves the hub's origin")
            raise http.malformed(f"a file list whose next-page link {why} ({shown(url)})", url=url, **context)
        seen.add(url)
        response = http.request("GET", url, endpoint=target.endpoint, token=target.token, stream=True,
                                timeout=settings.metadata_timeout())
        with response:
            http.raise_for_status(response, repo_id=target.repo_id, revision=commit, endpoint=target.endpoint,
                                  repo_type=target.repo_type, token=target.token)
            page = http.read_json(response, what="a page of the file list", **context)
        if not isinstance(page, list):
            raise http.malformed("a file list page that is not a JSON list", url=url, **context)
        for entry in page:
            path, record = _tree_entry(entry, target, url, commit)
            if record is not None:
                files[path] = record
        url = response.links.get("next", {}).get("url")
        url = urljoin(response.url, url) if url else None
    return files


def _tree_entry(entry, target: _Target, url: str, commit: str) -> tuple[str, dict | None]:
    """(path, record) of one tree API entry, every field checked; record None for a folder."""
    context = dict(target=target, url=url, revision=commit)
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or entry.get("type") not in (
            "file", "directory"):
        raise http.malformed(f"a file list entry of the wrong shape: {shown(entry)}", url=url,
                             **target.context(commit))
    path = entry["path"]
    if entry["type"] != "file":
        return path, None
    try:
        path = safe_filename(path, target.repo_id)
    except UnsafePathError as err:
        raise UnsafePathError(f"{target.endpoint} listed an unsafe file path ({url}): {err}",
                              **target.context(commit)) from None
    record = {"size": _server_value(_check_size, entry.get("size"), f"size of {shown(path)}", **context),
              "blob_id": _server_value(check_commit, entry.get("oid"), f"oid of {shown(path)}", **context)}
    lfs = entry.get("lfs")
    if lfs is not None:
        if not isinstance(lfs, dict):
            raise http.malformed(f"an 'lfs' field of the wrong shape for {shown(path)}", url=url,
                                 **target.context(commit))
        record["lfs_sha256"] = _server_value(_check_sha256, lfs.get("oid"), f"lfs.oid of {shown(path)}", **context)
        record["lfs_size"] = record["size"] = _server_value(_check_size, lfs.get("size"),
                                                            f"lfs.size of {shown(path)}", **context)
    return path, record


def _check_sha256(value, what: str) -> str:
    value = check_etag(value, what)
    if len(value) != 64:
        raise UnsafeValueError(f"{what} {shown(value)} is not a sha256", value=value)
    return value


def _valid_tree(tree: dict | None) -> dict | None:
    """A recorded file list (ours or huggingface_hub's), or None when any record is not of the safe shape."""
    if tree is None:
        return None
    try:
        for path, record in tree.items():
            safe_filename(path)
            check_etag(record.get("lfs_sha256") or record["blob_id"])
            _check_size(record["size"])
    except (UnsafeValueError, UnsafePathError, KeyError, TypeError, AttributeError):
        logger.warning("Ignoring a malformed recorded file list in the cache; listing the repo again.")
        return None
    return tree
