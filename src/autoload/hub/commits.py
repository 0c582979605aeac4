"""What both upload protocols share (`upload.py`: Hugging Face; `ms_upload.py`: ModelScope): the operations
(`CommitOperationAdd`, hashed once; `CommitOperationDelete`), the results (`CommitInfo`, `RepoUrl`), the path
rule, and the request layer: `_send` (the token to the endpoint's origin only, retries, typed errors) and the
streamed, retried PUT of one LFS object to a storage URL (`_upload_one`, basic or multipart)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urljoin

import requests

from . import http, settings
from .cache import shown
from .errors import (AuthenticationError, CommitConflictError, EntryNotFoundError, HubHTTPError, OfflineModeError,
                     PayloadTooLargeError, QuotaExceededError, RepositoryNotFoundError, RevisionNotFoundError,
                     UnsafePathError, WriteAccessError)
from .paths import validate_repo_id

logger = logging.getLogger("autoload.hub")

CHUNK = 1 << 20
PARALLEL_PARTS = 4  # multipart parts in flight at once for one file
SAMPLE = 512
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


# -- LFS objects ------------------------------------------------------------------------------------------

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
        def put_part(number: int, part_url: str) -> dict:
            offset = (number - 1) * chunk
            body = _body(op, offset, min(chunk, op.size - offset), bar)
            # storage URLs are pre-signed: no token, whatever their host
            response = _send("PUT", part_url, repo, what=f"{what} (part {number})", body=body, token=False)
            etag = response.headers.get("ETag")
            if not etag:
                raise http.malformed(f"no ETag for part {number}", endpoint=repo.endpoint, repo_id=repo.repo_id)
            return {"partNumber": number, "etag": etag}
        # parts of a file on disk (or bytes) go side by side, each from its own handle; a caller's file object
        # has one position, so its parts go one after another
        workers = PARALLEL_PARTS if isinstance(op.path_or_fileobj, (str, bytes)) else 1
        with ThreadPoolExecutor(min(workers, len(parts))) as pool:
            etags = list(pool.map(lambda item: put_part(*item), parts))
        _send("POST", href, repo, what=f"{what} (completing)", json_body={"oid": op.sha256, "parts": etags},
              token=False, headers={"accept": "application/vnd.git-lfs+json",
                                    "content-type": "application/vnd.git-lfs+json"})
    else:
        _send("PUT", href, repo, what=what, body=_body(op, 0, op.size, bar), token=False)
    verify = actions.get("verify")
    if isinstance(verify, dict) and isinstance(verify.get("href"), str):
        _send("POST", verify["href"], repo, what=f"Verifying {op.path_in_repo!r}",
              json_body={"oid": op.sha256, "size": op.size})
