"""Publishing over the Hugging Face protocol: `create_repo`, `create_branch`, `create_commit`, `upload_file`,
`upload_folder` (docs/publishing.md; wire formats in shared/docs/hub-upload.md).

One commit is: preupload (the hub says, per file, regular or LFS, and gives the oid it holds, so unchanged files
are left out) -> the LFS batch API, offering `basic` and `multipart` only (never Xet: the hub's LFS bridge accepts
plain LFS), PUT to the storage URLs it answers, streamed from disk with the sha256 computed once beforehand ->
the NDJSON commit. The token goes only to the endpoint's origin (storage URLs elsewhere never see it);
preupload, batch and PUTs are retried, the commit is sent once. Errors are typed: AuthenticationError (401),
WriteAccessError (403), CommitConflictError (409/412), PayloadTooLargeError (413), QuotaExceededError.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import quote, urljoin

import requests

from . import http, settings
from .cache import UnsafeValueError, check_revision, shown
from .errors import (AuthenticationError, CommitConflictError, EntryNotFoundError, HubHTTPError, InvalidRevisionError,
                     OfflineModeError, PayloadTooLargeError, QuotaExceededError, RepositoryNotFoundError,
                     RevisionNotFoundError, UnsafePathError, WriteAccessError)
from .paths import select_files, validate_repo_id

logger = logging.getLogger("autoload.hub")

CHUNK = 1 << 20
BATCH = 256                 # files per preupload / LFS batch request, as huggingface_hub
SAMPLE = 512
PARALLEL_UPLOADS = 4
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TYPES = {"model": ("models", ""), "dataset": ("datasets", "datasets/")}


# -- results --------------------------------------------------------------------------------------

class RepoUrl(str):
    """The repo's URL (a str), with `repo_id`, `repo_type` and `endpoint`."""

    def __new__(cls, url: str, *, repo_id: str, repo_type: str, endpoint: str):
        self = super().__new__(cls, url)
        self.url, self.repo_id, self.repo_type, self.endpoint = url, repo_id, repo_type, endpoint
        return self


class CommitInfo(str):
    """The commit's URL (a str), with `oid` (40-hex commit id), `commit_url`, `commit_message`, `repo_url`,
    and `pr_url`, `pr_revision` (`refs/pr/N`), `pr_num` when the commit opened a pull request."""

    def __new__(cls, commit_url: str, *, oid: str, commit_message: str, commit_description: str, repo_url: RepoUrl,
                pr_url: str | None = None):
        self = super().__new__(cls, commit_url)
        self.commit_url, self.oid, self.commit_message = commit_url, oid, commit_message
        self.commit_description, self.repo_url, self.pr_url = commit_description, repo_url, pr_url
        self.pr_num = int(pr_url.rstrip("/").rsplit("/", 1)[1]) if pr_url else None
        self.pr_revision = f"refs/pr/{self.pr_num}" if pr_url else None
        return self


# -- operations -----------------------------------------------------------------------------------

@dataclass
class CommitOperationAdd:
    """Add or replace `path_in_repo` with a local file's content (a path), or bytes, or a binary file object."""
    path_in_repo: str
    path_or_fileobj: str | os.PathLike | bytes | io.BufferedIOBase
    size: int = field(init=False, default=0)
    sha256: str = field(init=False, default="")
    sample: bytes = field(init=False, default=b"")
    upload_mode: str = field(init=False, default="regular")

    def __post_init__(self):
        self.path_in_repo = check_repo_path(self.path_in_repo)
        source = self.path_or_fileobj
        if isinstance(source, (str, os.PathLike)):
            self.path_or_fileobj = os.fspath(source)
            if not os.path.isfile(self.path_or_fileobj):
                raise FileNotFoundError(f"No file {self.path_or_fileobj!r} to upload as {self.path_in_repo!r}")
        elif isinstance(source, (bytes, bytearray)):
            self.path_or_fileobj = bytes(source)
        elif not (hasattr(source, "read") and hasattr(source, "seek")):
            raise TypeError(f"path_or_fileobj for {self.path_in_repo!r} must be a path, bytes or a binary file object")
        digest = hashlib.sha256()
        with self.open() as f:  # one pass: size, sample and sha256
            while chunk := f.read(CHUNK):
                if not self.size:
                    self.sample = chunk[:SAMPLE]
                digest.update(chunk)
                self.size += len(chunk)
        self.sha256 = digest.hexdigest()

    def open(self):
        source = self.path_or_fileobj
        if isinstance(source, str):
            return open(source, "rb")
        if isinstance(source, bytes):
            return io.BytesIO(source)
        source.seek(0)
        return _Unclosed(source)

    def git_blob_sha1(self) -> str:
        digest = hashlib.sha1(b"blob %d\0" % self.size)
        with self.open() as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    def content(self) -> bytes:
        with self.open() as f:
            return f.read()


@dataclass
class CommitOperationDelete:
    """Delete `path_in_repo` (a file, or a folder when it ends with '/' or `is_folder`)."""
    path_in_repo: str
    is_folder: bool = False

    def __post_init__(self):
        if self.path_in_repo.endswith("/"):
            self.is_folder = True
        self.path_in_repo = check_repo_path(self.path_in_repo.rstrip("/"))


class _Unclosed:
    """A caller's file object, read from its start, that closing here leaves open."""

    def __init__(self, f):
        self.f = f

    def read(self, n: int = -1) -> bytes:
        return self.f.read(n)

    def seek(self, offset: int) -> None:
        self.f.seek(offset)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def check_repo_path(path) -> str:
    """A path in a repo as the hub accepts it: relative, '/'-separated, no '.', '..', '.git' or empty parts,
    no backslashes or control characters; else UnsafePathError (before any request)."""
    parts = path.split("/") if isinstance(path, str) else [""]
    if (not isinstance(path, str) or not path or len(path) > 1000 or path.startswith("/") or "\\" in path
            or _CONTROL.search(path) or re.match(r"[A-Za-z]:", path)
            or any(p in ("", ".", "..", ".git") or len(p.encode()) > 255 for p in parts)):
        raise UnsafePathError(f"Cannot upload to path {shown(path)}: a repo path is relative and '/'-separated, "
                              "without '.', '..', '.git' or empty parts, backslashes or control characters.",
                              filename=str(path))
    return path


# -- requests -------------------------------------------------------------------------------------

@dataclass
class _Repo:
    repo_id: str
    repo_type: str
    endpoint: str
    token: str | None
    cookie: bool = False  # ModelScope: the token also as the m_session_id cookie (on the endpoint's origin only)

    @classmethod
    def make(cls, repo_id, repo_type, endpoint, token) -> "_Repo":
        validate_repo_id(repo_id)
        if repo_type not in _TYPES:
            raise ValueError(f"Invalid repo_type {repo_type!r}: uploads support 'model' and 'dataset'.")
        return cls(repo_id, repo_type, settings.endpoint(endpoint), settings.token(token))

    def api(self, *parts: str) -> str:
        return "/".join([self.endpoint, "api", _TYPES[self.repo_type][0], self.repo_id, *parts])

    @property
    def url(self) -> RepoUrl:
        return RepoUrl(f"{self.endpoint}/{_TYPES[self.repo_type][1]}{self.repo_id}", repo_id=self.repo_id,
                       repo_type=self.repo_type, endpoint=self.endpoint)


def _send(method: str, url: str, repo: _Repo, *, what: str, body=None, json_body=None, headers=None,
          retry: bool = True, token: bool = True) -> requests.Response:
    """One request with a body. The token only to the endpoint's origin; redirects followed by hand (a 307/308
    keeps the method and body, the token is dropped off-origin); 429/5xx and connection errors retried with
    backoff when `retry` (the body must then be bytes or a callable that reopens it)."""
    if settings.offline():
        raise OfflineModeError(f"{what} for '{repo.repo_id}' needs {repo.endpoint}, and offline mode is on "
                               "(HF_HUB_OFFLINE / AUTOLOAD_OFFLINE): unset it to upload.", repo_id=repo.repo_id,
                               endpoint=repo.endpoint)
    headers = {"user-agent": http.user_agent(), **(headers or {})}
    if json_body is not None:
        body, headers["content-type"] = json.dumps(json_body).encode(), headers.get("content-type", "application/json")
    retries = settings.max_retries() if retry else 0
    hub_origin = http.origin(repo.endpoint)
    for attempt in range(retries + 1):
        data = body() if callable(body) else body
        target = url
        try:
            for _ in range(http.MAX_REDIRECTS):
                hop = dict(headers)
                if token and repo.token and http.origin(target) == hub_origin:
                    hop["authorization"] = f"Bearer {repo.token}"
                    if repo.cookie:
                        hop["cookie"] = f"m_session_id={repo.token}"
                response = http.session().request(method, target, data=data, headers=hop, allow_redirects=False,
                                                  timeout=(10, max(60.0, settings.download_timeout())))
                if response.status_code in (307, 308) and response.headers.get("Location"):
                    target = urljoin(target, response.headers["Location"])
                    data = body() if callable(body) else body
                    continue
                break
        except (requests.ConnectionError, requests.Timeout) as err:
            if attempt >= retries:
                raise HubHTTPError(f"{what} for '{repo.repo_id}' could not reach {repo.endpoint}: {err}. Check the "
                                   "endpoint and the network, then run the upload again (stored files are skipped).",
                                   repo_id=repo.repo_id, endpoint=repo.endpoint) from err
            time.sleep(http._retry_wait(None, attempt))
            continue
        if response.status_code in http.RETRY_STATUSES and attempt < retries:
            wait = http._retry_wait(response, attempt)
            if wait <= settings.max_retry_wait():
                logger.info("%s %s answered %s; retrying in %.1fs", method, url, response.status_code, wait)
                time.sleep(wait)
                continue
        _raise_for_write(response, repo, what)
        return response
    raise AssertionError("unreachable")


def _raise_for_write(response: requests.Response, repo: _Repo, what: str) -> None:
    status = response.status_code
    if status < 400:
        return
    code = response.headers.get("X-Error-Code", "")
    server = response.headers.get("X-Error-Message") or http._body_message(response) or ""
    context = dict(repo_id=repo.repo_id, endpoint=repo.endpoint, status=status, server_message=server,
                   request_id=http.request_id(response))
    where = f"{repo.repo_type} repo '{repo.repo_id}' on {repo.endpoint}"
    tail = f" Server said: {shown(server, 300)} (HTTP {status}, {response.request.method} {shown(response.url, 200)})"
    if status == 401:
        raise AuthenticationError(f"{what} for {where} needs a valid write token: pass token=..., set HF_TOKEN, or "
                                  f"log in; the token sent was {'refused' if repo.token else 'missing'}.{tail}",
                                  **context)
    if status == 403:
        raise WriteAccessError(f"{what}: this token cannot write to {where}. Use a token with write access to the "
                               f"namespace (a 'write' token, or ask the hub's admin).{tail}", **context)
    if status in (409, 412):
        raise CommitConflictError(f"{what} for {where} conflicts with the hub's state: the branch moved since the "
                                  f"parent commit, or the name already exists. Refresh and try again.{tail}", **context)
    if status == 413:
        raise PayloadTooLargeError(f"{what} for {where} is over the hub's size limit: split the upload into smaller "
                                   f"commits, or upload large files through LFS.{tail}", **context)
    if status in (402, 429, 507) or "quota" in server.lower():
        raise QuotaExceededError(f"{what} for {where} was refused for a quota (storage or rate limit). Wait, free "
                                 f"space, or ask the hub's admin for more.{tail}", **context)
    if code == "RevisionNotFound":
        raise RevisionNotFoundError(f"{what}: the revision does not exist in {where} (a branch is created from main "
                                    f"only when committing to it).{tail}", **context)
    if code == "EntryNotFound":
        raise EntryNotFoundError(f"{what}: a path does not exist in {where} (a folder needs a trailing '/' or "
                                 f"is_folder=True).{tail}", **context)
    if code == "RepoNotFound" or status == 404:
        raise RepositoryNotFoundError(f"{what}: {where} was not found. Create it first (create_repo) and check "
                                      f"the id.{tail}", **context)
    raise HubHTTPError(f"{what} for {where} failed.{tail}", **context)


def _json(response: requests.Response, repo: _Repo, what: str):
    return http.read_json(response, endpoint=repo.endpoint, what=what, repo_id=repo.repo_id)


# -- public API -----------------------------------------------------------------------------------

def _modelscope(hub: str | None, repo_type: str) -> bool:
    return settings.which_hub(hub, repo_type) == "modelscope"


def create_repo(repo_id: str, *, repo_type: str = "model", private: bool | None = None, exist_ok: bool = False,
                token: str | bool | None = None, endpoint: str | None = None, hub: str | None = None) -> RepoUrl:
    """Create `repo_id` (`namespace/name`; a bare `name` goes to the token owner's namespace). With
    `exist_ok=True` an existing repo is fine. Returns its RepoUrl (`.repo_id` is the full id).
    `hub="modelscope"` (or AUTOLOAD_HUB): a ModelScope model, on MODELSCOPE_ENDPOINT."""
    if _modelscope(hub, repo_type):
        from . import ms_upload
        return ms_upload.create_repo(repo_id, private=private, exist_ok=exist_ok, token=token, endpoint=endpoint)
    name = repo_id.split("/")[-1] if isinstance(repo_id, str) else repo_id
    repo = _Repo.make(repo_id, repo_type, endpoint, token)
    body = {"name": name, "organization": repo_id.split("/")[0] if "/" in repo_id else None}
    if repo_type != "model":
        body["type"] = repo_type
    if private is not None:
        body["private"] = bool(private)
    try:
        response = _send("POST", f"{repo.endpoint}/api/repos/create", repo, what="Creating the repo",
                         json_body=body, retry=False)
    except CommitConflictError:
        if not exist_ok:
            raise
        return repo.url
    except (WriteAccessError, AuthenticationError):
        if exist_ok and _exists(repo):  # a reader of an existing repo may go on (e.g. to open a PR)
            return repo.url
        raise
    url = _json(response, repo, "create repo").get("url", "")
    full_id = url[len(repo.endpoint):].lstrip("/") if url.startswith(repo.endpoint) else repo.repo_id
    if repo_type == "dataset" and full_id.startswith("datasets/"):
        full_id = full_id[len("datasets/"):]
    repo.repo_id = full_id if full_id.count("/") == 1 else repo.repo_id
    return repo.url


def _exists(repo: _Repo) -> bool:
    try:
        return http.request("GET", repo.api(), endpoint=repo.endpoint, token=repo.token, retries=1).status_code == 200
    except requests.RequestException:
        return False


def create_branch(repo_id: str, branch: str, *, revision: str | None = None, repo_type: str = "model",
                  exist_ok: bool = False, token: str | bool | None = None, endpoint: str | None = None) -> None:
    """Create `branch` at `revision` (default: the head of main)."""
    repo = _Repo.make(repo_id, repo_type, endpoint, token)
    branch = _revision(branch, repo_id)
    body = {"startingPoint": _revision(revision, repo_id)} if revision else {}
    try:
        _send("POST", repo.api("branch", quote(branch, safe="")), repo, what=f"Creating branch '{branch}'",
              json_body=body, retry=False)
    except CommitConflictError:
        if not exist_ok:
            raise


def upload_file(path_or_fileobj, path_in_repo: str, repo_id: str, *, repo_type: str = "model",
                revision: str | None = None, commit_message: str | None = None, commit_description: str | None = None,
                create_pr: bool = False, parent_commit: str | None = None, token: str | bool | None = None,
                endpoint: str | None = None, progress: bool | None = None, hub: str | None = None) -> CommitInfo:
    """Upload one file (a path, bytes or a binary file object) as `path_in_repo`, in one commit."""
    operation = CommitOperationAdd(path_in_repo, path_or_fileobj)
    return create_commit(repo_id, [operation], commit_message=commit_message or f"Upload {path_in_repo}",
                         commit_description=commit_description, revision=revision, repo_type=repo_type,
                         create_pr=create_pr, parent_commit=parent_commit, token=token, endpoint=endpoint,
                         progress=progress, hub=hub)


def upload_folder(repo_id: str, folder_path: str | os.PathLike, *, path_in_repo: str = "", repo_type: str = "model",
                  revision: str | None = None, commit_message: str | None = None,
                  commit_description: str | None = None, create_pr: bool = False, parent_commit: str | None = None,
                  allow_patterns=None, ignore_patterns=None, delete_patterns=None, token: str | bool | None = None,
                  endpoint: str | None = None, progress: bool | None = None, hub: str | None = None) -> CommitInfo:
    """Upload a folder's files (filtered by `allow_patterns`/`ignore_patterns`, fnmatch globs on paths
    relative to the folder) under `path_in_repo`, in one commit. Remote files under `path_in_repo` matching
    `delete_patterns` and not re-uploaded are deleted in the same commit. `.git` folders are never uploaded."""
    folder = os.fspath(folder_path)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"No folder {folder!r} to upload")
    prefix = path_in_repo.strip("/")
    local = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d not in (".git", ".cache"))
        for name in sorted(filenames):
            local.append(os.path.relpath(os.path.join(dirpath, name), folder).replace(os.sep, "/"))
    chosen = select_files(local, allow_patterns, ignore_patterns)
    with ThreadPoolExecutor(PARALLEL_UPLOADS) as pool:  # hashing releases the GIL: shards hash side by side
        adds = list(pool.map(lambda p: CommitOperationAdd(f"{prefix}/{p}" if prefix else p, os.path.join(folder, p)),
                             chosen))
    operations: list = list(adds)
    if delete_patterns is not None:
        kept = {op.path_in_repo for op in adds}
        if _modelscope(hub, repo_type):
            from . import ms_upload
            remote = list(ms_upload.remote_files(repo_id, revision, endpoint, token))
        else:
            remote = _list_remote(_Repo.make(repo_id, repo_type, endpoint, token),
                                  _revision(revision, repo_id) if revision else "main")
        under = [p[len(prefix) + 1:] if prefix else p for p in remote if not prefix or p.startswith(prefix + "/")]
        for rel in select_files(under, delete_patterns, None):
            path = f"{prefix}/{rel}" if prefix else rel
            if path not in kept and path != ".gitattributes":
                operations.append(CommitOperationDelete(path))
    return create_commit(repo_id, operations, commit_message=commit_message or "Upload folder using autoload",
                         commit_description=commit_description, revision=revision, repo_type=repo_type,
                         create_pr=create_pr, parent_commit=parent_commit, token=token, endpoint=endpoint,
                         progress=progress, hub=hub)


def _list_remote(repo: _Repo, revision: str) -> list[str]:
    url = repo.api("tree", quote(revision, safe="")) + "?recursive=true&expand=false"
    paths = []
    while url:
        response = _send("GET", url, repo, what="Listing the repo's files")
        items = _json(response, repo, "the file list")
        paths += [i["path"] for i in items if isinstance(i, dict) and i.get("type") == "file"]
        url = response.links.get("next", {}).get("url")
    return paths


def _revision(revision, repo_id: str) -> str:
    try:
        return check_revision(revision)
    except UnsafeValueError as err:
        raise InvalidRevisionError(f"Invalid revision for '{repo_id}': {err}.", repo_id=repo_id,
                                   revision=str(revision)) from None


def create_commit(repo_id: str, operations: list, *, commit_message: str, commit_description: str | None = None,
                  revision: str | None = None, repo_type: str = "model", create_pr: bool = False,
                  parent_commit: str | None = None, token: str | bool | None = None, endpoint: str | None = None,
                  progress: bool | None = None, hub: str | None = None) -> CommitInfo:
    """One commit of `operations` (CommitOperationAdd / CommitOperationDelete) on `revision` (default main; a
    branch that does not exist yet is created from main), or a pull request against it with `create_pr=True`.
    `hub="modelscope"`: ModelScope's commit API (no pull requests, no parent check; `main` is `master`)."""
    if not commit_message or not commit_message.strip():
        raise ValueError("commit_message must not be empty")
    if _modelscope(hub, repo_type):
        if create_pr or parent_commit:
            raise ValueError("hub='modelscope' uploads support neither create_pr nor parent_commit")
        from . import ms_upload
        return ms_upload.create_commit(repo_id, operations, commit_message=commit_message,
                                       commit_description=commit_description, revision=revision, token=token,
                                       endpoint=endpoint, progress=progress)
    repo = _Repo.make(repo_id, repo_type, endpoint, token)
    revision = _revision(revision or "main", repo_id)
    if parent_commit is not None and not re.fullmatch(r"[0-9a-f]{7,40}", str(parent_commit)):
        raise ValueError(f"parent_commit {parent_commit!r} is not a commit id")
    paths = [op.path_in_repo for op in operations]
    if len(set(paths)) != len(paths):
        raise ValueError("Each path may appear once in a commit")
    if revision != "main" and not revision.startswith("refs/") and not re.fullmatch(r"[0-9a-f]{40}", revision):
        create_branch(repo.repo_id, revision, repo_type=repo_type, exist_ok=True, token=token, endpoint=endpoint)
    rev_quoted = quote(revision, safe="")
    query = "?create_pr=1" if create_pr else ""
    adds = [op for op in operations if isinstance(op, CommitOperationAdd)]
    deletes = [op for op in operations if isinstance(op, CommitOperationDelete)]
    kept = _preupload(repo, adds, rev_quoted, query)
    if not kept and not deletes:
        info = _json(_send("GET", repo.api("revision", rev_quoted), repo, what="Reading the revision"), repo,
                     "the revision")
        logger.info("No files have changed since the last commit of %s; no commit made.", repo.repo_id)
        sha = info.get("sha") if isinstance(info, dict) else None
        return CommitInfo(f"{repo.url}/commit/{sha}", oid=sha, commit_message=commit_message,
                          commit_description=commit_description or "", repo_url=repo.url)
    lfs = [op for op in kept if op.upload_mode == "lfs"]
    if lfs:
        _upload_lfs(repo, lfs, None if create_pr else revision, progress)
    header = {"summary": commit_message.strip(), "description": commit_description or ""}
    if parent_commit:
        header["parentCommit"] = parent_commit
    lines = [{"key": "header", "value": header}]
    for op in kept:
        if op.upload_mode == "lfs":
            lines.append({"key": "lfsFile", "value": {"path": op.path_in_repo, "algo": "sha256", "oid": op.sha256,
                                                      "size": op.size}})
        else:
            lines.append({"key": "file", "value": {"path": op.path_in_repo, "encoding": "base64",
                                                   "content": base64.b64encode(op.content()).decode()}})
    for op in deletes:
        key = "deletedFolder" if op.is_folder else "deletedFile"
        lines.append({"key": key, "value": {"path": op.path_in_repo + ("/" if op.is_folder else "")}})
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    response = _send("POST", repo.api("commit", rev_quoted) + query, repo, what="The commit", body=body, retry=False,
                     headers={"content-type": "application/x-ndjson"})
    answer = _json(response, repo, "the commit")
    oid = answer.get("commitOid") if isinstance(answer, dict) else None
    if not isinstance(oid, str) or not re.fullmatch(r"[0-9a-f]{40}", oid):
        raise http.malformed(f"a commit answer without a commitOid ({shown(str(answer), 200)})", endpoint=repo.endpoint,
                             url=response.url, repo_id=repo.repo_id)
    return CommitInfo(answer.get("commitUrl") or f"{repo.url}/commit/{oid}", oid=oid, commit_message=commit_message,
                      commit_description=commit_description or "", repo_url=repo.url,
                      pr_url=answer.get("pullRequestUrl") if create_pr else None)


def _preupload(repo: _Repo, adds: list[CommitOperationAdd], rev_quoted: str, query: str) -> list:
    """Ask the hub how to send each file; return those it does not already hold, their upload_mode set."""
    kept = []
    for start in range(0, len(adds), BATCH):
        chunk = adds[start:start + BATCH]
        files = [{"path": op.path_in_repo, "size": op.size, "sample": base64.b64encode(op.sample).decode()}
                 for op in chunk]
        response = _send("POST", repo.api("preupload", rev_quoted) + query, repo, what="Preupload",
                         json_body={"files": files})
        answer = _json(response, repo, "preupload")
        modes = {f.get("path"): f for f in (answer.get("files") if isinstance(answer, dict) else None) or []
                 if isinstance(f, dict)}
        for op in chunk:
            info = modes.get(op.path_in_repo)
            if info is None or info.get("uploadMode") not in ("lfs", "regular"):
                raise http.malformed(f"a preupload answer without {op.path_in_repo!r}", endpoint=repo.endpoint,
                                     url=response.url, repo_id=repo.repo_id)
            if info.get("shouldIgnore"):
                continue
            op.upload_mode = "regular" if op.size == 0 else info["uploadMode"]
            remote = info.get("oid")
            if remote is not None:
                local = op.sha256 if op.upload_mode == "lfs" else op.git_blob_sha1()
                if remote == local:
                    continue
            kept.append(op)
    return kept


# -- LFS ------------------------------------------------------------------------------------------

class _Reader:
    """A file-like body for requests: its length (so Content-Length is sent, not chunked), read in 1 MiB
    blocks from `offset`, moving a progress bar."""

    def __init__(self, f, length: int, bar):
        self.f, self.left, self.bar = f, length, bar

    def __len__(self) -> int:
        return self.left

    def read(self, n: int = -1) -> bytes:
        chunk = self.f.read(min(CHUNK, self.left)) if self.left else b""
        self.left -= len(chunk)
        if not chunk or not self.left:
            self.f.close()
        if self.bar is not None:
            self.bar.update(len(chunk))
        return chunk


def _upload_lfs(repo: _Repo, ops: list[CommitOperationAdd], ref: str | None, progress: bool | None) -> None:
    """Send the LFS files the hub does not hold yet (batch API, then basic or multipart PUTs, then verify)."""
    url = f"{repo.endpoint}/{_TYPES[repo.repo_type][1]}{repo.repo_id}.git/info/lfs/objects/batch"
    by_oid = {op.sha256: op for op in ops}
    todo = []
    for start in range(0, len(ops), BATCH):
        body = {"operation": "upload", "transfers": ["basic", "multipart"], "hash_algo": "sha256",
                "objects": [{"oid": op.sha256, "size": op.size} for op in ops[start:start + BATCH]]}
        if ref is not None:
            body["ref"] = {"name": ref}
        response = _send("POST", url, repo, what="The LFS batch request", json_body=body,
                         headers={"accept": "application/vnd.git-lfs+json",
                                  "content-type": "application/vnd.git-lfs+json"})
        answer = _json(response, repo, "the LFS batch answer")
        objects = answer.get("objects") if isinstance(answer, dict) else None
        if not isinstance(objects, list):
            raise http.malformed("an LFS batch answer without objects", endpoint=repo.endpoint, url=url,
                                 repo_id=repo.repo_id)
        for obj in objects:
            op = by_oid.get(obj.get("oid")) if isinstance(obj, dict) else None
            if op is None:
                continue
            if obj.get("error"):
                raise HubHTTPError(f"The hub refused LFS object {op.path_in_repo!r} of '{repo.repo_id}': "
                                   f"{shown(str(obj['error']), 300)}", repo_id=repo.repo_id, endpoint=repo.endpoint)
            actions = obj.get("actions") or {}
            if actions.get("upload"):
                todo.append((op, actions))
    if not todo:
        return
    bar = _progress_bar(repo, sum(op.size for op, _ in todo), progress)
    try:
        with ThreadPoolExecutor(min(PARALLEL_UPLOADS, len(todo))) as pool:
            for future in [pool.submit(_upload_one, repo, op, actions, bar) for op, actions in todo]:
                future.result()
    finally:
        if bar is not None:
            bar.close()


def _progress_bar(repo: _Repo, total: int, progress: bool | None):
    """A tqdm bar over the bytes to upload (None when bars are off: progress=False, AUTOLOAD/HF_HUB_DISABLE_...)."""
    if not ((not settings.progress_disabled()) if progress is None else progress):
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=f"Uploading {shown(repo.repo_id)[1:-1]}", unit="B", unit_scale=True,
                unit_divisor=1024, dynamic_ncols=True)


def _body(op: CommitOperationAdd, offset: int, length: int, bar):
    """A callable giving a fresh reader of op's bytes [offset, offset + length) for each try; a retry takes
    back from the bar what the failed try had counted."""
    readers: list[_Reader] = []

    def make() -> _Reader:
        if readers and bar is not None:
            bar.update(-(length - readers[-1].left))
        if readers:
            readers[-1].f.close()
        f = op.open()
        f.seek(offset)
        readers.append(_Reader(f, length, bar))
        return readers[-1]
    return make


def _upload_one(repo: _Repo, op: CommitOperationAdd, actions: dict, bar) -> None:
    upload = actions["upload"]
    href = upload.get("href")
    header = upload.get("header") or {}
    what = f"Uploading {op.path_in_repo!r}"
    if not isinstance(href, str) or not href.startswith(("http://", "https://")):
        raise http.malformed("an LFS upload action without an http(s) href", endpoint=repo.endpoint,
                             repo_id=repo.repo_id)
    parts = sorted((int(k), v) for k, v in header.items() if k.isdigit()) if isinstance(header, dict) else []
    if parts:
        chunk = int(header.get("chunk_size", 0))
        if chunk <= 0 or len(parts) != -(-op.size // chunk):
            raise http.malformed("a multipart answer whose parts do not cover the file", endpoint=repo.endpoint,
                                 repo_id=repo.repo_id)
        etags = []
        for number, part_url in parts:
            offset = (number - 1) * chunk
            body = _body(op, offset, min(chunk, op.size - offset), bar)
            # storage URLs are pre-signed: no token, whatever their host
            response = _send("PUT", part_url, repo, what=f"{what} (part {number})", body=body, token=False)
            etag = response.headers.get("ETag")
            if not etag:
                raise http.malformed(f"no ETag for part {number}", endpoint=repo.endpoint, repo_id=repo.repo_id)
            etags.append({"partNumber": number, "etag": etag})
        _send("POST", href, repo, what=f"{what} (completing)", json_body={"oid": op.sha256, "parts": etags},
              token=False, headers={"accept": "application/vnd.git-lfs+json",
                                    "content-type": "application/vnd.git-lfs+json"})
    else:
        _send("PUT", href, repo, what=what, body=_body(op, 0, op.size, bar), token=False)
    verify = actions.get("verify")
    if isinstance(verify, dict) and isinstance(verify.get("href"), str):
        _send("POST", verify["href"], repo, what=f"Verifying {op.path_in_repo!r}",
              json_body={"oid": op.sha256, "size": op.size})
