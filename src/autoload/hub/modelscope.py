"""ModelScope backend: download files and snapshots from a ModelScope hub (docs/modelscope.md).

Protocol (/work/shared/docs/modelscope-protocol.md): one listing call
`GET /api/v1/models/{owner}/{name}/repo/files?Revision=&Recursive=True` gives every file's Size and
Sha256; each file comes from `GET /api/v1/models/{owner}/{name}/repo?Revision=&FilePath=`.
Writes the modelscope >= 1.38 cache layout, `$MODELSCOPE_CACHE/models/{owner}--{name}/snapshots/{rev}/{path}`
(real files, no metadata), and reads it and the classic <= 1.37 layout (`models/{owner}/{name'}` with `.msc`)
offline with zero requests. Every downloaded file is checked against the listing's sha256 before
it is renamed into place; a partial file `{path}.incomplete` is resumed with Range under a per-file lock.

Everything the server sends is checked before it is used: JSON answers are read bounded
(`http.read_json`) and must have the envelope's shape; listing paths, sizes and hashes are validated;
every path written or read is checked to stay inside the cache (`cache.inside`); server strings in
messages go through `cache.shown`.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import logging
import os
import pickle
import re
import shlex
import sys
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote_plus

import requests
from filelock import FileLock

from . import http, settings, transfer
from .aliases import canonical_id
from .cache import UnsafeValueError, check_revision, inside, shown
from .paths import safe_filename, select_files, validate_repo_id
from .progress import Progress
from .errors import (EntryNotFoundError, HubHTTPError, IncompleteSnapshotError, InvalidRepoIdError,
                     InvalidRevisionError, MalformedResponseError, OfflineModeError, RepositoryNotFoundError,
                     RevisionNotFoundError, UnsafePathError)

DEFAULT_ENDPOINT = "https://modelscope.cn"
DEFAULT_REVISION = "master"
PARTIAL = ".incomplete"
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
logger = logging.getLogger("autoload.hub")


# ---- settings ----

def ms_endpoint(value: str | None = None) -> str:
    """The argument, `MODELSCOPE_ENDPOINT`, `MODELSCOPE_DOMAIN` (a bare host gets https://), else modelscope.cn."""
    value = value or os.environ.get("MODELSCOPE_ENDPOINT") or os.environ.get("MODELSCOPE_DOMAIN")
    if not value:
        return DEFAULT_ENDPOINT
    return (value if "://" in value else f"https://{value}").rstrip("/")


def ms_cache(cache_dir: str | os.PathLike | None = None) -> str:
    """The argument (only `~` expanded: it is a path), else `MODELSCOPE_CACHE` (`~` and `$VARS` expanded),
    else ~/.cache/modelscope."""
    if cache_dir is not None:
        return os.path.realpath(os.path.expanduser(os.fspath(cache_dir)))
    path = os.environ.get("MODELSCOPE_CACHE") or "~/.cache/modelscope"
    return os.path.realpath(os.path.expanduser(os.path.expandvars(path)))


def ms_token(value: str | None = None) -> str | None:
    return value or os.environ.get("MODELSCOPE_API_TOKEN") or None


def ms_revision(revision: str | None) -> str:
    """ModelScope's default branch is `master`; `None` and Hugging Face's `main` map to it."""
    return DEFAULT_REVISION if revision in (None, "", "main") else revision


def _checked_revision(revision, repo_id) -> str:
    """The caller's revision (mapped to `master` when None/main), valid by git ref rules: it becomes a folder."""
    revision = ms_revision(revision)
    try:
        return check_revision(revision)
    except UnsafeValueError as err:
        raise InvalidRevisionError(f"Invalid revision for ModelScope model {shown(repo_id)}: {err}. Pass a branch or "
                                   "tag name such as 'master' or 'v1.0'.", repo_id=str(repo_id),
                                   revision=shown(revision)) from None


def _esc(value) -> str:
    """A server value for a message, control and bidi characters escaped (`shown` without the quotes)."""
    return shown(value)[1:-1]


def _printable(text: str) -> bool:
    """Whether `shown` would print `text` unchanged: no control or bidirectional-text characters."""
    return shown(text, sys.maxsize)[1:-1] == text


# ---- ids ----

def _resolve_id(repo_id: str, root: str, endpoint: str, token: str | None, offline: bool) -> str:
    """ModelScope ids are `owner/name` and its client rejects bare names (doc §4). autoload resolves a bare name:
    a single cached model of that name, else the first candidate the hub has (the Hugging Face canonical id,
    then AI-ModelScope/, then damo/); otherwise the error names the ids it tried. A hub that fails while
    asking (5xx, garbage, unreachable) is reported as such, never as "no such model"."""
    validate_repo_id(repo_id)
    if "/" in repo_id:
        return repo_id
    guesses = list(dict.fromkeys(g for g in (canonical_id(repo_id), f"AI-ModelScope/{repo_id}", f"damo/{repo_id}")
                                 if "/" in g))
    cached = [f"{o}/{n.replace('___', '.')}" for o, n in _cached_ids(root) if n in (repo_id, _mask(repo_id))]
    cached = [c for c in cached if _valid_id(c)]  # folder names on disk become ids: the same rules apply
    if len(cached) == 1:
        logger.info("ModelScope: '%s' is the cached model %s", repo_id, cached[0])
        return cached[0]
    if not offline:
        for guess in guesses:
            try:
                exists = _repo_exists({"repo_id": guess, "endpoint": endpoint, "token": token, "revision": None})
            except (HubHTTPError, requests.RequestException) as err:
                raise _failed_too(
                    err, f"Could not look up the short name '{repo_id}' on {endpoint}: asking whether '{guess}' "
                    f"exists failed ({err}). Pass a full id 'owner/name' (candidates: {', '.join(guesses)}), or try "
                    "again later.", repo_id=repo_id, endpoint=endpoint, status=getattr(err, "status", None)) from err
            if exists:
                logger.info("ModelScope: short name '%s' resolved to %s", repo_id, guess)
                return guess
    raise InvalidRepoIdError(
        f"ModelScope has no short names and no model was found for '{repo_id}' on {endpoint}"
        f"{' (offline: not looked up)' if offline else ''}. Pass a full id 'owner/name'; ids that may hold it: "
        f"{', '.join(guesses)}" + (f"; cached here: {', '.join(cached)}" if cached else "") + ".", repo_id=repo_id)


def _failed_too(err: Exception, message: str, **context) -> HubHTTPError:
    """The error for a request whose follow-up (explaining it, or resolving a name) failed with `err`: a
    MalformedResponseError stays one (with its URL and value), anything else is a HubHTTPError."""
    if isinstance(err, MalformedResponseError):
        return MalformedResponseError(message, url=err.url, value=err.value, **context)
    return HubHTTPError(message, **context)


def _valid_id(repo_id: str) -> bool:
    try:
        validate_repo_id(repo_id)
    except InvalidRepoIdError:
        return False
    return "/" in repo_id


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


def _inside(ctx: dict, path: str, filename: str | None = None) -> str:
    """`path` if it stays inside the cache root once `..` and symlinks are resolved; else UnsafePathError
    (raised before anything is created or opened there). ModelScope's layout holds no links at all, so unlike
    the Hugging Face snapshots the last part may not lead out of the cache either."""
    try:
        inside(ctx["root"], os.path.realpath(path))
        return inside(ctx["root"], path)
    except UnsafeValueError as err:
        raise UnsafePathError(f"Refusing {shown(path)} for ModelScope model '{ctx['repo_id']}': {err}. A folder in "
                              "the cache is probably a symlink to somewhere else; point MODELSCOPE_CACHE (or "
                              "cache_dir=) at the real location instead.", repo_id=ctx["repo_id"],
                              filename=filename, revision=ctx["revision"], endpoint=ctx["endpoint"]) from None


def _lock_path(ctx: dict, filename: str) -> str:
    """The per-file lock `_fetch` takes (modelscope-hub's key), so that it can be checked before `_fetch` runs."""
    key = f"modelscope-hub-download-lock-v2\0file\0model\0{ctx['repo_id']}\0{filename}"
    return os.path.join(ctx["root"], ".lock", f"file_{hashlib.sha256(key.encode()).hexdigest()}.lock")


def _target(ctx: dict, filename: str) -> str:
    """Where `filename` goes, after checking it, its `.incomplete` and its lock file against the cache root."""
    target = os.path.join(snapshot_dir(ctx["root"], ctx["repo_id"], ctx["revision"]), filename)
    for path in (target, target + PARTIAL, _lock_path(ctx, filename)):
        _inside(ctx, path, filename)
    return target


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


def _cached_file(ctx: dict, filename: str) -> str | None:
    path = _inside(ctx, os.path.join(snapshot_dir(ctx["root"], ctx["repo_id"], ctx["revision"]), filename), filename)
    if os.path.isfile(path):
        return path
    for folder in _classic_dirs(ctx["root"], ctx["repo_id"]):
        if filename in (_classic_files(folder) or []):
            path = _inside(ctx, os.path.join(folder, filename), filename)
            if os.path.isfile(path):
                return path
    return None


def _cached_snapshot(ctx: dict, allow_patterns=None, ignore_patterns=None) -> tuple[str | None, list[str]]:
    """(folder that serves the revision offline, wanted files that are only partly downloaded there).

    The new layout's folder serves when it holds at least one complete file; a wanted file of which only
    `{path}.incomplete` exists is missing. Else a classic folder whose `.msc` records files that exist
    (classic cannot tell which revision it holds; it warns, so do the docs)."""
    folder = _inside(ctx, snapshot_dir(ctx["root"], ctx["repo_id"], ctx["revision"]))
    complete, partial = set(), set()
    for current, _, names in os.walk(folder):
        for name in names:
            path = os.path.relpath(os.path.join(current, name), folder).replace(os.sep, "/")
            if name.endswith(PARTIAL):
                partial.add(path[:-len(PARTIAL)])
            else:
                complete.add(path)
    missing = sorted(select_files(partial - complete, allow_patterns, ignore_patterns))
    if complete:
        return folder, missing
    for classic in _classic_dirs(ctx["root"], ctx["repo_id"]):
        recorded = _classic_files(classic) or []
        if not missing and any(os.path.isfile(os.path.join(classic, p)) for p in recorded):
            return _inside(ctx, classic), []
    return None, missing


def _download_command(ctx: dict) -> str:
    """The command that fills the cache for this call."""
    words = ["autoload", "download", ctx["repo_id"], "--hub", "modelscope"]
    if ctx["revision"] != DEFAULT_REVISION:
        words += ["--revision", ctx["revision"]]
    if ctx["root"] != ms_cache():
        words += ["--cache-dir", ctx["root"]]
    return "`" + " ".join(shlex.quote(w) for w in words) + "`"


def _not_cached(ctx: dict, folder: str | None, missing: list[str], filename: str | None = None):
    """The offline error: IncompleteSnapshotError when files are only partly downloaded, else OfflineModeError;
    both list what is missing and the command that fixes it."""
    what = (f"{shown(filename)} of " if filename else "") + f"ModelScope model '{ctx['repo_id']}'"
    context = dict(repo_id=ctx["repo_id"], filename=filename, revision=ctx["revision"], endpoint=ctx["endpoint"])
    fix = (f"downloads are off (local_files_only or AUTOLOAD_OFFLINE/HF_HUB_OFFLINE). Run {_download_command(ctx)} "
           "online to fix it.")
    if missing:
        listed = ", ".join(shown(m) for m in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise IncompleteSnapshotError(f"{what} (revision '{ctx['revision']}') is only partly downloaded in "
                                      f"{folder}: {len(missing)} file(s) have only a '{PARTIAL}' part ({listed}), "
                                      f"and {fix}", snapshot_path=folder, missing=missing, **context)
    raise OfflineModeError(f"{what} (revision '{ctx['revision']}') is not in the cache {ctx['root']}"
                           f"{'' if filename else ' (no complete file of it is)'}, "
                           f"and {fix}", **context)


# ---- HTTP ----

def _get(url: str, ctx: dict, *, stream: bool = False, headers: dict | None = None) -> requests.Response:
    token = ctx["token"]
    cookie = {"cookie": f"m_session_id={token}"} if token else None
    return http.request("GET", url, endpoint=ctx["endpoint"], token=token, stream=stream, headers=headers,
                        origin_headers=cookie)


def _malformed(ctx: dict, url: str, what: str, problem: str, value=None, filename: str | None = None):
    return MalformedResponseError(
        f"{ctx['endpoint']} answered {what} of ModelScope model '{ctx['repo_id']}' ({url}) with {problem}; refusing "
        "it. The endpoint does not speak the ModelScope protocol (check MODELSCOPE_ENDPOINT / endpoint=, or a "
        "proxy in between).", url=url, value=value, repo_id=ctx["repo_id"], revision=ctx.get("revision"),
        filename=filename, endpoint=ctx["endpoint"])


def _envelope(response: requests.Response, ctx: dict, url: str, what: str) -> dict:
    """A JSON answer read bounded, of the envelope's shape: {"Code": int, "Success": bool, "Message": str, "Data"}."""
    body = http.read_json(response, endpoint=ctx["endpoint"], what=f"{what} of ModelScope model '{ctx['repo_id']}'",
                          repo_id=ctx["repo_id"], revision=ctx.get("revision"))
    if not isinstance(body, dict):
        raise _malformed(ctx, url, what, f"a JSON {type(body).__name__} instead of the envelope object", body)
    checks = (("Code", type(body.get("Code")) is int, "an integer"),
              ("Success", body.get("Success") is None or isinstance(body["Success"], bool), "true or false"),
              ("Message", body.get("Message") is None or isinstance(body["Message"], str), "a string"))
    for key, ok, expected in checks:
        if not ok:
            raise _malformed(ctx, url, what, f"an envelope whose {key} ({shown(body.get(key), 80)}) is not "
                             f"{expected}", body.get(key))
    return body


def _succeeded(body: dict) -> bool:
    return body["Code"] == 200 and body.get("Success") is not False


def _raise(response: requests.Response, ctx: dict, filename: str | None = None, message: str | None = None) -> None:
    """A typed error for a failed ModelScope answer (HTTP status, or a 200 whose envelope says failure).
    The follow-up calls that explain a 401/403/404 are bounded too; when they fail, the error says so
    instead of guessing."""
    repo_id, revision, endpoint = ctx["repo_id"], ctx["revision"], ctx["endpoint"]
    message = message if message is not None else _envelope_message(response, ctx)
    context = dict(repo_id=repo_id, revision=revision, filename=filename, endpoint=endpoint,
                   status=response.status_code, request_id=http.request_id(response), server_message=message)
    tail = f" Server said: {shown(message)} (HTTP {response.status_code})" if message else \
        f" (HTTP {response.status_code})"
    what = shown(filename) if filename else "the file list"
    if response.status_code in (401, 403, 404):
        try:
            exists = _repo_exists(ctx)
            branches = None if not exists or (filename is not None and response.status_code != 404) \
                else _revisions(ctx)
        except (HubHTTPError, requests.RequestException) as err:
            raise _failed_too(err, f"Request for {what} of model '{repo_id}' at revision '{revision}' on {endpoint} "
                                   f"failed, and asking the hub why failed too ({err}).{tail}", **context) from err
        if not exists:
            hint = ("The token you sent does not give access to it." if ctx["token"] else
                    "If it is private, pass a token (token=... or MODELSCOPE_API_TOKEN).")
            raise RepositoryNotFoundError(f"Model '{repo_id}' was not found on ModelScope at {endpoint}. Check the "
                                          f"id (owner/name). {hint}{tail}", **context)
        if branches is not None and revision not in branches:
            raise RevisionNotFoundError(f"Revision '{revision}' does not exist in model '{repo_id}' on {endpoint}"
                                        f" (available: {', '.join(_esc(b) for b in branches) or 'none'}; "
                                        f"ModelScope's default branch is 'master', not 'main').{tail}", **context)
    raise HubHTTPError(f"Request for {what} of model '{repo_id}' at revision '{revision}' on {endpoint} failed."
                       f"{tail}", **context)


def _envelope_message(response: requests.Response, ctx: dict) -> str | None:
    """The `Message` of an error answer, read bounded; None when the body is not a readable envelope."""
    try:
        body = http.read_json(response, endpoint=ctx["endpoint"], what="an error answer", repo_id=ctx["repo_id"])
    except MalformedResponseError:
        return None
    message = body.get("Message") if isinstance(body, dict) else None
    return message if isinstance(message, str) and message else None


def _repo_exists(ctx: dict) -> bool:
    """Whether the model exists (and is visible with this token): 200 with a successful envelope. 401/403/404
    and a failed envelope say no; any other answer (5xx, 429, garbage) is an error, never a "no"."""
    url = f"{ctx['endpoint']}/api/v1/models/{ctx['repo_id']}"
    with _get(url, ctx, stream=True) as response:
        if response.status_code in (401, 403, 404):
            return False
        if response.status_code != 200:
            raise HubHTTPError(f"Asking {ctx['endpoint']} whether model '{ctx['repo_id']}' exists ({url}) failed "
                               f"(HTTP {response.status_code}). Try again later.", status=response.status_code,
                               request_id=http.request_id(response), repo_id=ctx["repo_id"],
                               endpoint=ctx["endpoint"])
        return _succeeded(_envelope(response, ctx, url, "the model info"))


def _revisions(ctx: dict) -> list[str] | None:
    """Branch and tag names from `/revisions`; None when the hub does not say (a refusal or a failed envelope)."""
    url = f"{ctx['endpoint']}/api/v1/models/{ctx['repo_id']}/revisions"
    what = "the revision list"
    with _get(url, ctx, stream=True) as response:
        if response.status_code in (401, 403, 404):
            return None
        if response.status_code != 200:
            raise HubHTTPError(f"Asking {ctx['endpoint']} for the revisions of model '{ctx['repo_id']}' ({url}) "
                               f"failed (HTTP {response.status_code}).", status=response.status_code,
                               request_id=http.request_id(response), repo_id=ctx["repo_id"],
                               endpoint=ctx["endpoint"])
        body = _envelope(response, ctx, url, what)
    if not _succeeded(body):
        return None
    data = body.get("Data")
    revision_map = data.get("RevisionMap") if isinstance(data, dict) else None
    if not isinstance(revision_map, dict):
        raise _malformed(ctx, url, what, "no RevisionMap object in Data", data)
    names = []
    for group in ("Branches", "Tags"):
        items = revision_map.get(group)
        if items is None:
            continue
        if not isinstance(items, list) or not all(isinstance(i, dict) and isinstance(i.get("Revision"), str)
                                                  for i in items):
            raise _malformed(ctx, url, what, f"RevisionMap.{group} that is not a list of {{\"Revision\": name}}",
                             items)
        names += [item["Revision"] for item in items]
    return names


def list_files(ctx: dict) -> dict[str, dict]:
    """Path -> listing entry (Size, Sha256 lowercase or None, ...) of every file (not folder) at the revision.
    The listing is hostile input: its shape, every path, size and hash are checked (MalformedResponseError,
    UnsafePathError)."""
    url = (f"{ctx['endpoint']}/api/v1/models/{ctx['repo_id']}/repo/files"
           f"?Revision={quote_plus(ctx['revision'])}&Recursive=True")
    what = f"the file list at revision '{ctx['revision']}'"
    with _get(url, ctx, stream=True) as response:
        if response.status_code != 200:
            _raise(response, ctx)
        body = _envelope(response, ctx, url, what)
        if not _succeeded(body):
            _raise(response, ctx, message=body.get("Message") or "")
    data = body.get("Data")
    files = data.get("Files") if isinstance(data, dict) else data
    if not isinstance(data, (dict, list)) or not isinstance(files, (list, type(None))):
        raise _malformed(ctx, url, what, "a Data that is neither a list of files nor an object with a Files list",
                         data)
    listing: dict[str, dict] = {}
    for number, entry in enumerate(files or []):
        path = _listed_path(ctx, url, what, number, entry)
        if path is None:  # a folder
            continue
        size, sha = entry.get("Size"), entry.get("Sha256")
        if type(size) is not int or size < 0:
            raise _malformed(ctx, url, what, f"a Size of {shown(size, 80)} for {shown(path)} (expected a "
                             "non-negative integer)", size, filename=path)
        if sha not in (None, "") and not (isinstance(sha, str) and _SHA256.fullmatch(sha)):
            raise _malformed(ctx, url, what, f"a Sha256 of {shown(sha, 80)} for {shown(path)} (expected 64 hex "
                             "digits)", sha, filename=path)
        if path in listing:
            raise _malformed(ctx, url, what, f"{shown(path)} twice", path, filename=path)
        listing[path] = {**entry, "Path": path, "Sha256": sha.lower() if sha else None}
    folders = {path.rsplit("/", 1)[0] for path in listing if "/" in path}
    folders |= {f.rsplit("/", i)[0] for f in folders for i in range(1, f.count("/") + 1)}
    clashes = sorted(folders & listing.keys())
    if clashes:
        raise _malformed(ctx, url, what, f"{shown(clashes[0])} both as a file and as a folder of other files",
                         clashes[0], filename=clashes[0])
    return listing


def _listed_path(ctx: dict, url: str, what: str, number: int, entry) -> str | None:
    """The checked repo path of listing entry `number`, or None for a folder (`Type: tree`)."""
    if not isinstance(entry, dict):
        raise _malformed(ctx, url, what, f"file entry {number} that is a {type(entry).__name__}, not an object",
                         entry)
    path, kind = entry.get("Path"), entry.get("Type")
    if not isinstance(path, str) or not (kind is None or isinstance(kind, str)):
        raise _malformed(ctx, url, what, f"file entry {number} whose Path ({shown(path, 80)}) or Type "
                         f"({shown(kind, 80)}) is not a string", entry)
    if kind == "tree":
        return None
    context = dict(repo_id=ctx["repo_id"], filename=shown(path), revision=ctx["revision"], endpoint=ctx["endpoint"])
    if not _printable(path) or path.endswith(PARTIAL):
        raise UnsafePathError(f"{ctx['endpoint']} listed the file path {shown(path)} in model '{ctx['repo_id']}': "
                              "it holds control or bidirectional-text characters, or ends in '.incomplete' (the "
                              "name of a partial download); refusing it.", **context)
    try:
        return safe_filename(path, ctx["repo_id"])
    except UnsafePathError as err:
        raise UnsafePathError(f"{ctx['endpoint']} listed an unsafe file path: {err}", **context) from None


def _is_fresh(path: str, entry: dict) -> bool:
    """A cached file counts when its size and sha256 match the listing (the hub client's rule)."""
    if not os.path.isfile(path) or os.path.getsize(path) != entry.get("Size"):
        return False
    return not entry.get("Sha256") or _sha256_of(path) == entry["Sha256"].lower()


def _sha256_of(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _fetch(ctx: dict, filename: str, entry: dict, target: str, bar: Progress) -> str:
    """Download one file to `target` through the shared bounded transfer (resume `{target}.incomplete`,
    size and sha256 checked, bad bytes deleted), then rename it into place."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    lock = _lock_path(ctx, filename)
    os.makedirs(os.path.dirname(lock), exist_ok=True)
    with FileLock(lock, timeout=600):
        if _is_fresh(target, entry):  # another process finished it while we waited
            return target
        url = (f"{ctx['endpoint']}/api/v1/models/{ctx['repo_id']}/repo"
               f"?Revision={quote_plus(ctx['revision'])}&FilePath={quote_plus(filename)}")
        sha = (entry.get("Sha256") or "").lower() or None
        token = ctx["token"]
        source = transfer.Source(
            url, ctx["endpoint"], entry.get("Size"), "sha256" if sha else None, sha, token=token,
            origin_headers={"cookie": f"m_session_id={token}"} if token else None,
            context=dict(repo_id=ctx["repo_id"], revision=ctx["revision"], filename=filename,
                         endpoint=ctx["endpoint"]),
            raise_for_status=lambda response: response.status_code < 400 or _raise(response, ctx, filename))
        transfer.download(source, target + PARTIAL, bar)
        os.replace(target + PARTIAL, target)
    return target


# ---- public entry points ----

def _context(repo_id, revision, cache_dir, endpoint, token, offline: bool = False) -> dict:
    revision = _checked_revision(revision, repo_id)  # before any request: it becomes a folder name
    root, endpoint, token = ms_cache(cache_dir), ms_endpoint(endpoint), ms_token(token)
    repo_id = _resolve_id(repo_id, root, endpoint, token, offline)
    return {"repo_id": repo_id, "revision": revision, "root": root, "endpoint": endpoint, "token": token}


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
        cached = _cached_file(ctx, filename)
        if cached:
            return cached
        folder = snapshot_dir(ctx["root"], repo_id, ctx["revision"])
        partial = os.path.isfile(_inside(ctx, os.path.join(folder, filename) + PARTIAL, filename))
        _not_cached(ctx, folder, [filename] if partial else [], filename)
    files = _list_or_cached(ctx, lambda: _cached_file(ctx, filename))
    if isinstance(files, str):
        return files
    entry = files.get(filename)
    if entry is None:
        close = difflib.get_close_matches(filename, list(files), n=3)
        raise EntryNotFoundError(f"File {shown(filename)} does not exist in model '{repo_id}' at revision "
                                 f"'{ctx['revision']}' on {ctx['endpoint']}."
                                 + (f" Did you mean: {', '.join(_esc(c) for c in close)}?" if close else ""),
                                 repo_id=repo_id, filename=filename, revision=ctx["revision"],
                                 endpoint=ctx["endpoint"], status=404)
    target = _target(ctx, filename)
    if _is_fresh(target, entry):
        return target
    with Progress.maybe(progress) as bar:
        return _fetch(ctx, filename, entry, target, bar)


def ms_snapshot_download(repo_id: str, *, revision: str | None = None, allow_patterns=None, ignore_patterns=None,
                         cache_dir: str | os.PathLike | None = None, endpoint: str | None = None,
                         token: str | None = None, local_files_only: bool = False, max_workers: int = 8,
                         progress: bool | None = None) -> str:
    """Folder holding the files of ModelScope model `repo_id` at `revision` (default `master`) that match
    `allow_patterns` and not `ignore_patterns` (fnmatch), each verified against the listing's sha256.
    Offline, a cached folder serves when it holds complete files and no wanted file is only partly downloaded;
    otherwise IncompleteSnapshotError / OfflineModeError say what is missing, like `ms_hub_download`."""
    ctx = _context(repo_id, revision, cache_dir, endpoint, token, _offline(local_files_only))
    repo_id = ctx["repo_id"]  # a bare name, resolved
    folder = _inside(ctx, snapshot_dir(ctx["root"], repo_id, ctx["revision"]))
    if _offline(local_files_only):
        cached, missing = _cached_snapshot(ctx, allow_patterns, ignore_patterns)
        if cached and not missing:
            return cached
        _not_cached(ctx, folder, missing)

    def usable() -> str | None:
        cached, missing = _cached_snapshot(ctx, allow_patterns, ignore_patterns)
        return cached if not missing else None

    files = _list_or_cached(ctx, usable)
    if isinstance(files, str):
        return files
    wanted = select_files(files, allow_patterns, ignore_patterns)
    targets = {path: _target(ctx, path) for path in wanted}  # every path checked before anything is created

    total = sum(files[path]["Size"] for path in wanted)
    with Progress.maybe(progress, total=total, desc=repo_id) as bar:
        def one(path: str) -> str:
            if _is_fresh(targets[path], files[path]):
                bar.update(files[path]["Size"])
                return targets[path]
            return _fetch(ctx, path, files[path], targets[path], bar)

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
            if name.startswith(".") or name.endswith(PARTIAL):
                continue  # .msc/.mv metadata, partial downloads
            stat = os.stat(os.path.join(folder, name))
            files, size, last_used = files + 1, size + stat.st_size, max(last_used, stat.st_atime)
    return {"repo_id": repo_id, "layout": layout, "path": path, "revisions": revisions, "files": files,
            "size": size, "last_used": last_used}


def delete_cached(repo_id: str, revision: str | None = None, cache_dir: str | os.PathLike | None = None) -> list[str]:
    """Delete a model (both layouts) or one revision of the >= 1.38 layout; return what was removed."""
    import shutil
    revision = None if revision is None else _checked_revision(revision, repo_id)
    removed = []
    for repo in scan_cache(cache_dir):
        if repo["repo_id"] != repo_id:
            continue
        if revision is None:
            shutil.rmtree(repo["path"])
            removed.append(repo["path"])
        elif repo["layout"] == "hub" and revision in repo["revisions"]:
            folder = os.path.join(repo["path"], "snapshots", revision)
            shutil.rmtree(folder)
            removed.append(folder)
    return removed


def verify_cached(repo_id: str, revision: str | None = None, cache_dir: str | os.PathLike | None = None,
                  endpoint: str | None = None, token: str | None = None) -> list[tuple[str, str, str]]:
    """Re-hash the cached files of a revision against ModelScope's listing (the caches record no hashes,
    so this asks the hub once): [(path, "ok" | "corrupt" | "unlisted", detail)]."""
    ctx = _context(repo_id, revision, cache_dir, endpoint, token)
    folder, _ = _cached_snapshot(ctx)
    if folder is None:
        return []
    listing = list_files(ctx)
    checks = []
    for current, _, names in os.walk(folder):
        for name in sorted(names):
            if name.startswith(".") or name.endswith(PARTIAL):
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
