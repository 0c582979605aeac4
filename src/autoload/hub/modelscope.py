"""ModelScope backend: download files and snapshots from a ModelScope hub (docs/modelscope.md).

Protocol (/work/shared/docs/modelscope-protocol.md): one listing call
`GET /api/v1/models/{owner}/{name}/repo/files?Revision=&Recursive=True` gives every file's Size and
Sha256; each file comes from `GET /api/v1/models/{owner}/{name}/repo?Revision=&FilePath=`.
Writes the modelscope >= 1.38 cache layout, `$MODELSCOPE_CACHE/models/{owner}--{name}/snapshots/{rev}/{path}`
(real files, no metadata), and reads it and the classic <= 1.37 layout (`models/{owner}/{name'}` with `.msc`)
offline with zero requests. Every downloaded file is checked against the listing's sha256 before
it is renamed into place; a partial file `{path}.incomplete` is resumed with Range under a per-file lock.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import logging
import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote_plus

import requests
from filelock import FileLock

from . import http, settings
from .aliases import canonical_id
from .download import _select, safe_filename, validate_repo_id
from .progress import Progress
from .errors import (EntryNotFoundError, HubHTTPError, IntegrityError, InvalidRepoIdError,
                     OfflineModeError, RepositoryNotFoundError, RevisionNotFoundError)

DEFAULT_ENDPOINT = "https://modelscope.cn"
DEFAULT_REVISION = "master"
READ_SIZE = 256 * 1024
RESUME_TRIES = 5  # reconnects (with Range) after a dropped connection, per file
logger = logging.getLogger("autoload.hub")


# ---- settings ----

def ms_endpoint(value: str | None = None) -> str:
    """The argument, `MODELSCOPE_ENDPOINT`, `MODELSCOPE_DOMAIN` (a bare host gets https://), else modelscope.cn."""
    value = value or os.environ.get("MODELSCOPE_ENDPOINT") or os.environ.get("MODELSCOPE_DOMAIN")
    if not value:
        return DEFAULT_ENDPOINT
    return (value if "://" in value else f"https://{value}").rstrip("/")


def ms_cache(cache_dir: str | os.PathLike | None = None) -> str:
    """The argument, `MODELSCOPE_CACHE`, else ~/.cache/modelscope."""
    path = cache_dir if cache_dir is not None else os.environ.get("MODELSCOPE_CACHE") or "~/.cache/modelscope"
    return os.path.realpath(os.path.expanduser(os.path.expandvars(os.fspath(path))))


def ms_token(value: str | None = None) -> str | None:
    return value or os.environ.get("MODELSCOPE_API_TOKEN") or None


def ms_revision(revision: str | None) -> str:
    """ModelScope's default branch is `master`; `None` and Hugging Face's `main` map to it."""
    return DEFAULT_REVISION if revision in (None, "", "main") else revision


# ---- ids ----

def _resolve_id(repo_id: str, root: str, endpoint: str, token: str | None, offline: bool) -> str:
    """ModelScope ids are `owner/name` and its client rejects bare names (doc §4). autoload resolves a bare name:
    a single cached model of that name, else the first candidate the hub has (the Hugging Face canonical id,
    then AI-ModelScope/, then damo/); otherwise the error names the ids it tried."""
    validate_repo_id(repo_id)
    if "/" in repo_id:
        return repo_id
    guesses = list(dict.fromkeys(g for g in (canonical_id(repo_id), f"AI-ModelScope/{repo_id}", f"damo/{repo_id}")
                                 if "/" in g))
    cached = [f"{o}/{n.replace('___', '.')}" for o, n in _cached_ids(root) if n in (repo_id, _mask(repo_id))]
    if len(cached) == 1:
        logger.info("ModelScope: '%s' is the cached model %s", repo_id, cached[0])
        return cached[0]
    if not offline:
        for guess in guesses:
            try:
                if _repo_exists({"repo_id": guess, "endpoint": endpoint, "token": token}):
                    logger.info("ModelScope: short name '%s' resolved to %s", repo_id, guess)
                    return guess
            except requests.RequestException:
                break  # hub unreachable: say what to try instead
    raise InvalidRepoIdError(
        f"ModelScope has no short names and no model was found for '{repo_id}' on {endpoint}"
        f"{' (offline: not looked up)' if offline else ''}. Pass a full id 'owner/name'; ids that may hold it: "
        f"{', '.join(guesses)}" + (f"; cached here: {', '.join(cached)}" if cached else "") + ".", repo_id=repo_id)


def _cached_ids(root: str) -> list[tuple[str, str]]:
    found = []
    for base in (os.path.join(root, "models"), os.path.join(root, "hub", "models")):
        for owner in _listdir(base):
            if "--" in owner:
                found.append(tuple(owner.split("--", 1)))
            else:
                found += [(owner, name) for name in _listdir(os.path.join(base, owner))]
    return found


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _mask(name: str) -> str:
    return name.replace(".", "___")


# ---- cache: reading both layouts, writing the new one ----

def snapshot_dir(root: str, repo_id: str, revision: str) -> str:
    """Where modelscope >= 1.38 keeps `repo_id` at `revision`."""
    owner, name = repo_id.split("/")
    return os.path.join(root, "models", f"{owner}--{name}", "snapshots", revision)


def _classic_dirs(root: str, repo_id: str) -> list[str]:
    """Candidate classic (<= 1.37) repo folders: under MODELSCOPE_CACHE, the default `hub/`, or a cache_dir."""
    owner, name = repo_id.split("/")
    return [os.path.join(root, *parts, owner, _mask(name)) for parts in (("models",), ("hub", "models"), ())]


class _MscUnpickler(pickle.Unpickler):
    def find_class(self, module, name):  # a .msc holds only lists, dicts and strings
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in .msc")


def _classic_files(folder: str) -> list[str] | None:
    """The repo paths a classic `.msc` records as cached (None when there is no readable `.msc`)."""
    try:
        with open(os.path.join(folder, ".msc"), "rb") as f:
            entries = _MscUnpickler(io.BytesIO(f.read())).load()
        return [e["Path"] for e in entries if isinstance(e, dict) and isinstance(e.get("Path"), str)]
    except (OSError, pickle.UnpicklingError, EOFError, TypeError, ValueError):
        return None


def _cached_file(root: str, repo_id: str, revision: str, filename: str) -> str | None:
    path = os.path.join(snapshot_dir(root, repo_id, revision), filename)
    if os.path.isfile(path):
        return path
    for folder in _classic_dirs(root, repo_id):
        if filename in (_classic_files(folder) or []) and os.path.isfile(os.path.join(folder, filename)):
            return os.path.join(folder, filename)
    return None


def _cached_snapshot(root: str, repo_id: str, revision: str) -> str | None:
    folder = snapshot_dir(root, repo_id, revision)
    if _listdir(folder):
        return folder
    for folder in _classic_dirs(root, repo_id):
        if _classic_files(folder):  # classic cannot tell which revision it holds (it warns; so do the docs)
            return folder
    return None


# ---- HTTP ----

def _get(url: str, ctx: dict, *, stream: bool = False, headers: dict | None = None) -> requests.Response:
    token = ctx["token"]
    cookie = {"cookie": f"m_session_id={token}"} if token else None
    return http.request("GET", url, endpoint=ctx["endpoint"], token=token, stream=stream, headers=headers,
                        origin_headers=cookie)


def _raise(response: requests.Response, ctx: dict, filename: str | None = None) -> None:
    """A typed error for a failed ModelScope answer (HTTP status, or a 200 whose envelope says failure)."""
    repo_id, revision, endpoint = ctx["repo_id"], ctx["revision"], ctx["endpoint"]
    message = _envelope_message(response)
    context = dict(repo_id=repo_id, revision=revision, filename=filename, endpoint=endpoint,
                   status=response.status_code, request_id=http.request_id(response), server_message=message)
    tail = f" Server said: {message} (HTTP {response.status_code})" if message else f" (HTTP {response.status_code})"
    if response.status_code in (401, 403, 404):
        if not _repo_exists(ctx):
            hint = ("The token you sent does not give access to it." if ctx["token"] else
                    "If it is private, pass a token (token=... or MODELSCOPE_API_TOKEN).")
            raise RepositoryNotFoundError(f"Model '{repo_id}' was not found on ModelScope at {endpoint}. Check the "
                                          f"id (owner/name). {hint}{tail}", **context)
        if filename is None or response.status_code == 404:
            branches = _revisions(ctx)
            if revision not in branches:
                raise RevisionNotFoundError(f"Revision '{revision}' does not exist in model '{repo_id}' on {endpoint}"
                                            f" (available: {', '.join(branches) or 'unknown'}; ModelScope's default "
                                            f"branch is 'master', not 'main').{tail}", **context)
    raise HubHTTPError(f"Request for {filename or 'the file list'} of model '{repo_id}' at revision '{revision}' "
                       f"on {endpoint} failed.{tail}", **context)


def _envelope_message(response: requests.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("Message") if isinstance(body, dict) else None


def _repo_exists(ctx: dict) -> bool:
    response = _get(f"{ctx['endpoint']}/api/v1/models/{ctx['repo_id']}", ctx)
    return response.status_code == 200


def _revisions(ctx: dict) -> list[str]:
    response = _get(f"{ctx['endpoint']}/api/v1/models/{ctx['repo_id']}/revisions", ctx)
    if response.status_code != 200:
        return []
    revision_map = (response.json().get("Data") or {}).get("RevisionMap") or {}
    return [item["Revision"] for group in ("Branches", "Tags") for item in revision_map.get(group) or []]


def list_files(ctx: dict) -> dict[str, dict]:
    """Path -> listing entry (Size, Sha256, ...) of every file (not folder) at the revision."""
    url = (f"{ctx['endpoint']}/api/v1/models/{ctx['repo_id']}/repo/files"
           f"?Revision={quote_plus(ctx['revision'])}&Recursive=True")
    response = _get(url, ctx)
    body = response.json() if response.status_code == 200 else None
    if not isinstance(body, dict) or body.get("Code") != 200 or body.get("Success") is False:
        _raise(response, ctx)
    data = body.get("Data")
    files = data.get("Files") if isinstance(data, dict) else data
    return {safe_filename(f["Path"], ctx["repo_id"]): f for f in files or [] if f.get("Type") != "tree"}


def _is_fresh(path: str, entry: dict) -> bool:
    """A cached file counts when its size and sha256 match the listing (the hub client's rule)."""
    if not os.path.isfile(path) or os.path.getsize(path) != entry.get("Size"):
        return False
    return not entry.get("Sha256") or _sha256_of(path) == entry["Sha256"].lower()


def _sha256_of(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _fetch(ctx: dict, filename: str, entry: dict, target: str, bar: Progress) -> str:
    """Download one file to `target`: resume `{target}.incomplete`, verify size and sha256, rename."""
    lock_key = f"modelscope-hub-download-lock-v2\0file\0model\0{ctx['repo_id']}\0{filename}"
    lock = os.path.join(ctx["root"], ".lock", f"file_{hashlib.sha256(lock_key.encode()).hexdigest()}.lock")
    os.makedirs(os.path.dirname(lock), exist_ok=True)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with FileLock(lock, timeout=600):
        if _is_fresh(target, entry):  # another process finished it while we waited
            return target
        partial = target + ".incomplete"
        url = (f"{ctx['endpoint']}/api/v1/models/{ctx['repo_id']}/repo"
               f"?Revision={quote_plus(ctx['revision'])}&FilePath={quote_plus(filename)}")
        size = entry.get("Size")
        for attempt in range(RESUME_TRIES + 1):
            try:
                if _stream(url, ctx, filename, partial, size, bar):
                    break
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError, requests.Timeout):
                if attempt == RESUME_TRIES:
                    raise
        have, expected = os.path.getsize(partial), (entry.get("Sha256") or "").lower()
        actual = _sha256_of(partial)
        if (size is not None and have != size) or (expected and actual != expected):
            os.remove(partial)
            raise IntegrityError(f"'{filename}' of model '{ctx['repo_id']}' (revision '{ctx['revision']}', "
                                 f"{ctx['endpoint']}) does not match the file list: got {have} bytes with sha256 "
                                 f"{actual}, expected {size} bytes with sha256 {expected}. The bytes were deleted; "
                                 "try again.", repo_id=ctx["repo_id"], filename=filename,
                                 revision=ctx["revision"], endpoint=ctx["endpoint"])
        os.replace(partial, target)
    return target


def _stream(url: str, ctx: dict, filename: str, partial: str, size: int | None, bar: Progress) -> bool:
    """Append the rest of the file to `partial`; True once the body ended (complete or not)."""
    have = os.path.getsize(partial) if os.path.exists(partial) else 0
    if size is not None and have > size:
        os.remove(partial)
        have = 0
    if size is not None and have == size:
        return True
    headers = {"range": f"bytes={have}-", "accept-encoding": "identity"} if have else {"accept-encoding": "identity"}
    with _get(url, ctx, stream=True, headers=headers) as response:
        if response.status_code == 416:  # the partial file is no prefix of this file: start over
            os.remove(partial)
            return False
        if response.status_code >= 400:
            _raise(response, ctx, filename)
        resumed = (response.status_code == 206 and
                   response.headers.get("Content-Range", "").startswith(f"bytes {have}-"))
        start = have if resumed else 0
        with open(partial, "ab" if resumed else "wb") as f, bar.file(filename, size, start) as file_bar:
            for chunk in response.iter_content(READ_SIZE):  # a 200 is the whole file: rewritten from 0
                f.write(chunk)
                file_bar.update(len(chunk))
    return True


# ---- public entry points ----

def _context(repo_id, revision, cache_dir, endpoint, token, offline: bool = False) -> dict:
    root, endpoint, token = ms_cache(cache_dir), ms_endpoint(endpoint), ms_token(token)
    repo_id = _resolve_id(repo_id, root, endpoint, token, offline)
    return {"repo_id": repo_id, "revision": ms_revision(revision), "root": root, "endpoint": endpoint,
            "token": token}


def _list_or_cached(ctx: dict, cached) -> dict[str, dict] | str:
    """The listing; or, when the hub cannot be reached or fails (not a not-found), the cached path if any."""
    try:
        return list_files(ctx)
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise
    except (HubHTTPError, requests.RequestException) as err:
        path = cached()
        if path is None:
            raise
        logger.warning("Could not list '%s' on %s (%s); using the cached copy %s.", ctx["repo_id"],
                       ctx["endpoint"], err, path)
        return path


def _offline(local_files_only: bool) -> bool:
    return local_files_only or settings.offline()


def ms_hub_download(repo_id: str, filename: str, *, revision: str | None = None,
                    cache_dir: str | os.PathLike | None = None, endpoint: str | None = None,
                    token: str | None = None, local_files_only: bool = False, progress: bool | None = None) -> str:
    """Path of `filename` of ModelScope model `repo_id` at `revision` (default `master`), downloading it
    into the cache when it is missing or stale. Offline (local_files_only or AUTOLOAD_OFFLINE/HF_HUB_OFFLINE),
    the new and the classic cache layouts are read without any request."""
    ctx = _context(repo_id, revision, cache_dir, endpoint, token, _offline(local_files_only))
    repo_id = ctx["repo_id"]  # a bare name, resolved
    filename = safe_filename(filename, repo_id)
    if _offline(local_files_only):
        cached = _cached_file(ctx["root"], repo_id, ctx["revision"], filename)
        if cached:
            return cached
        raise OfflineModeError(f"'{filename}' of ModelScope model '{repo_id}' (revision '{ctx['revision']}') is not "
                               f"in the cache {ctx['root']}, and downloads are off (local_files_only or offline "
                               "mode).", repo_id=repo_id, filename=filename, revision=ctx["revision"],
                               endpoint=ctx["endpoint"])
    files = _list_or_cached(ctx, lambda: _cached_file(ctx["root"], repo_id, ctx["revision"], filename))
    if isinstance(files, str):
        return files
    entry = files.get(filename)
    if entry is None:
        close = difflib.get_close_matches(filename, list(files), n=3)
        raise EntryNotFoundError(f"File '{filename}' does not exist in model '{repo_id}' at revision "
                                 f"'{ctx['revision']}' on {ctx['endpoint']}."
                                 + (f" Did you mean: {', '.join(close)}?" if close else ""),
                                 repo_id=repo_id, filename=filename, revision=ctx["revision"],
                                 endpoint=ctx["endpoint"], status=404)
    target = os.path.join(snapshot_dir(ctx["root"], repo_id, ctx["revision"]), filename)
    if _is_fresh(target, entry):
        return target
    with Progress.maybe(progress) as bar:
        return _fetch(ctx, filename, entry, target, bar)


def ms_snapshot_download(repo_id: str, *, revision: str | None = None, allow_patterns=None, ignore_patterns=None,
                         cache_dir: str | os.PathLike | None = None, endpoint: str | None = None,
                         token: str | None = None, local_files_only: bool = False, max_workers: int = 8,
                         progress: bool | None = None) -> str:
    """Folder holding the files of ModelScope model `repo_id` at `revision` (default `master`) that match
    `allow_patterns` and not `ignore_patterns` (fnmatch), each verified against the listing's sha256."""
    ctx = _context(repo_id, revision, cache_dir, endpoint, token, _offline(local_files_only))
    repo_id = ctx["repo_id"]  # a bare name, resolved
    folder = snapshot_dir(ctx["root"], repo_id, ctx["revision"])
    if _offline(local_files_only):
        cached = _cached_snapshot(ctx["root"], repo_id, ctx["revision"])
        if cached:
            return cached
        raise OfflineModeError(f"ModelScope model '{repo_id}' (revision '{ctx['revision']}') is not in the cache "
                               f"{ctx['root']}, and downloads are off (local_files_only or offline mode).",
                               repo_id=repo_id, revision=ctx["revision"], endpoint=ctx["endpoint"])
    files = _list_or_cached(ctx, lambda: _cached_snapshot(ctx["root"], repo_id, ctx["revision"]))
    if isinstance(files, str):
        return files
    wanted = _select(files, allow_patterns, ignore_patterns)

    total = sum(files[path].get("Size") or 0 for path in wanted)
    with Progress.maybe(progress, total=total, desc=repo_id) as bar:
        def one(path: str) -> str:
            target = os.path.join(folder, path)
            if _is_fresh(target, files[path]):
                bar.update(files[path].get("Size") or 0)
                return target
            return _fetch(ctx, path, files[path], target, bar)

        os.makedirs(folder, exist_ok=True)
        with ThreadPoolExecutor(max(1, min(max_workers, len(wanted) or 1))) as pool:
            list(pool.map(one, wanted))
    return folder


__all__ = ["ms_hub_download", "ms_snapshot_download", "ms_endpoint", "ms_cache", "ms_token", "ms_revision",
           "snapshot_dir", "list_files"]


# ---- housekeeping behind `autoload cache ls/rm/verify --hub modelscope` ----

def scan_cache(cache_dir: str | os.PathLike | None = None) -> list[dict]:
    """Every cached model in both layouts: {repo_id, layout, path, revisions, files, size, last_used}."""
    root = ms_cache(cache_dir)
    models = os.path.join(root, "models")
    repos = []
    for entry in _listdir(models):
        path = os.path.join(models, entry)
        if "--" in entry:  # >= 1.38: models/{owner}--{name}/snapshots/{revision}/
            owner, name = entry.split("--", 1)
            revisions = _listdir(os.path.join(path, "snapshots"))
            repos.append(_describe(f"{owner}/{name}", "hub", path, revisions))
            continue
        for name in _listdir(path):  # <= 1.37: models/{owner}/{name with . -> ___}/ + .msc
            folder = os.path.join(path, name)
            if _classic_files(folder) is not None:
                repos.append(_describe(f"{entry}/{name.replace('___', '.')}", "classic", folder, ["(classic)"]))
    return sorted(repos, key=lambda r: r["repo_id"])


def _describe(repo_id: str, layout: str, path: str, revisions: list[str]) -> dict:
    files, size, last_used = 0, 0, 0.0
    for folder, _, names in os.walk(path):
        for name in names:
            if name.startswith(".") or name.endswith(".incomplete"):
                continue  # .msc/.mv metadata, partial downloads
            stat = os.stat(os.path.join(folder, name))
            files, size, last_used = files + 1, size + stat.st_size, max(last_used, stat.st_atime)
    return {"repo_id": repo_id, "layout": layout, "path": path, "revisions": revisions, "files": files,
            "size": size, "last_used": last_used}


def delete_cached(repo_id: str, revision: str | None = None, cache_dir: str | os.PathLike | None = None) -> list[str]:
    """Delete a model (both layouts) or one revision of the >= 1.38 layout; return what was removed."""
    import shutil
    removed = []
    for repo in scan_cache(cache_dir):
        if repo["repo_id"] != repo_id:
            continue
        if revision is None:
            shutil.rmtree(repo["path"])
            removed.append(repo["path"])
        elif repo["layout"] == "hub" and ms_revision(revision) in repo["revisions"]:
            folder = os.path.join(repo["path"], "snapshots", ms_revision(revision))
            shutil.rmtree(folder)
            removed.append(folder)
    return removed


def verify_cached(repo_id: str, revision: str | None = None, cache_dir: str | os.PathLike | None = None,
                  endpoint: str | None = None, token: str | None = None) -> list[tuple[str, str, str]]:
    """Re-hash the cached files of a revision against ModelScope's listing (the caches record no hashes,
    so this asks the hub once): [(path, "ok" | "corrupt" | "unlisted", detail)]."""
    ctx = _context(repo_id, revision, cache_dir, endpoint, token)
    repo_id = ctx["repo_id"]
    folder = _cached_snapshot(ctx["root"], repo_id, ctx["revision"])
    if folder is None:
        return []
    listing = list_files(ctx)
    checks = []
    for current, _, names in os.walk(folder):
        for name in sorted(names):
            if name.startswith(".") or name.endswith(".incomplete"):
                continue
            path = os.path.relpath(os.path.join(current, name), folder).replace(os.sep, "/")
            entry = listing.get(path)
            if entry is None:
                checks.append((path, "unlisted", "not in the hub's listing at this revision"))
            elif _is_fresh(os.path.join(current, name), entry):
                checks.append((path, "ok", ""))
            else:
                checks.append((path, "corrupt", f"size or sha256 differs from the listing ({entry.get('Sha256')})"))
    return checks
