"""A local Hugging Face hub serving folders of files over the hub's download protocol
(docs/hf-hub-protocol.md, sections 1, 2, 5, 10). Standard library only; it shares nothing with the
client, so tests can use it as an independent oracle.

Routes (also under /datasets/... and /api/datasets/...): HEAD/GET /{repo}/resolve/{rev}/{path},
GET /api/models/{repo}[/revision/{rev}], /api/models/{repo}/tree/{rev}[/{path}], /api/models/{repo}/refs.

Layouts of `root`: folders `ORG/NAME/`, legacy `NAME/` (holds files directly) and `datasets/ORG/NAME/`,
with commits and etags hashed from the content and an optional `hub.json` (aliases, refs and tags,
private and gated repos); or a huggingface_hub cache (`models--org--name/`), served read-only with its
own commits and etags ("mirror mode").
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import logging
import os
import re
import socket
import stat
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qsl, quote, unquote, urlencode

log = logging.getLogger(__name__)

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
_COMMIT = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FLIP = bytes(255 - i for i in range(256))  # translate table that inverts every byte
_UNSAFE_IN_HEADER = re.compile(r"[\x00-\x1f\x7f]|[^\x00-\xff]")  # control characters and non-latin-1
MAX_RANGE = 200            # longer Range values are ignored (the whole file is sent)
MAX_IGNORED_BODY = 65536   # a GET or HEAD may carry a body this large, read and thrown away


@dataclass
class Fault:
    """What `HubServer.fault` returns to break one request (None answers normally)."""
    status: int | None = None           # answer this status with `headers` and `body` instead
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    truncate_after: int | None = None   # close the connection after this many body bytes
    corrupt: bool = False               # invert every body byte (same length)
    delay: float = 0                    # seconds to sleep before answering
    rate: int | None = None             # throttle the body to this many bytes per second


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
        return _git_sha1_of(self.pointer) if self.lfs else self.etag


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


def _git_sha1_of(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _hash_file(path: str, size: int, lfs: bool) -> str:
    """sha256 (LFS) or git blob sha1 of a file, streamed in 1 MiB chunks."""
    digest = hashlib.sha256() if lfs else hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _lfs_patterns(folder: str) -> list[str]:
    """Patterns marked `filter=lfs` in the repo's .gitattributes."""
    try:
        with open(os.path.join(folder, ".gitattributes"), encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    words = [line.split() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [w[0].lstrip("/") for w in words if "filter=lfs" in w[1:]]


def _matches(path: str, pattern: str) -> bool:
    # As in git: a pattern with no "/" matches the basename at any depth; "**/" matches zero or more folders.
    if "/" not in pattern:
        return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern)
    return fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path, pattern.replace("**/", ""))


def _has_files(folder: str) -> bool:
    """A first-level folder that directly holds a regular file is a repo without a namespace."""
    try:
        return any(e.is_file() and not e.name.startswith(".") for e in os.scandir(folder))
    except OSError:
        return False


def _listdir(folder: str) -> list[str]:
    """Visible entries of a folder, sorted (none if it is not one)."""
    try:
        return sorted(n for n in os.listdir(folder) if not n.startswith("."))
    except OSError:
        return []


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _header_value(value: str) -> str:
    """`value` fit for a header line: control characters and non-latin-1 percent-encoded, so nothing decoded
    from a request can end the line or add one."""
    return _UNSAFE_IN_HEADER.sub(lambda m: quote(m[0], safe=""), value)


def _check_path(path: str) -> str:
    if path.startswith("/") or "\\" in path or any(p in ("..", ".") for p in path.split("/")):
        raise HubError(400, "BadRequest", f"Invalid path: {path!r}")
    return path


class HubServer:
    """A local hub over `root` on http://host:port (port 0: a free one, see `url`).

    tokens: accepted bearer tokens, or None to accept any (then private and gated repos open only to tokens in
    their hub.json `access` list). page_size: tree API entries per page.
    aliases: extra `{alias: canonical_id}` redirects, over LEGACY_ALIASES and hub.json's.
    follow_symlinks_outside: serve what symlinks point to outside `root` (off: such files and folders are absent).
    public_url: the base URL clients reach this server at, for absolute links (default: `url`).
    """

    def __init__(self, root: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 0,
                 tokens: list[str] | None = None, page_size: int = 1000, aliases: dict[str, str] | None = None,
                 follow_symlinks_outside: bool = False, public_url: str | None = None):
        self.root = os.path.abspath(os.fspath(root))
        self.real_root = os.path.realpath(self.root)
        self.follow_symlinks_outside = follow_symlinks_outside
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"hub root {self.root} is not a folder")
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.tokens = None if tokens is None else frozenset(tokens)
        self.page_size = page_size
        self.aliases = dict(aliases or {})
        self.mirror = any(n.startswith(("models--", "datasets--")) for n in _listdir(self.root))
        self.fault: Callable[[str, str, dict[str, str]], Fault | None] | None = None
        self.requests: list[Request] = []
        self._lock = threading.Lock()        # guards requests, _connections, _stopped
        self._hash_lock = threading.Lock()   # one hashing at a time, so a big file is hashed once
        self._hashes: dict[tuple, str] = {}  # (path, size, mtime_ns, inode, lfs) -> etag
        self._config_cache: tuple[int, dict] = (-1, {})  # (hub.json mtime_ns, content)
        self._config()  # a malformed hub.json fails here rather than on every request
        self._connections: set[socket.socket] = set()
        self._thread: threading.Thread | None = None
        self._serving = self._stopped = False
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.hub = self
        self.host = host
        self.port = self._httpd.server_address[1]
        self.public_url = (public_url or self.url).rstrip("/")

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}"

    # ---- lifecycle ----

    def start(self) -> HubServer:
        """Serve in a daemon thread; returns self."""
        if self._stopped:
            raise RuntimeError("this HubServer was stopped; create a new one")
        if self._thread is None:
            self._serving = True
            self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                            name=f"hub-server-{self.port}", daemon=True)
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until KeyboardInterrupt or stop()."""
        try:
            if self._thread is not None:
                while self._thread.is_alive():
                    self._thread.join(0.2)
            elif not self._stopped:
                self._serving = True
                self._httpd.serve_forever(poll_interval=0.1)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving, close the listening socket and drop open connections. Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            connections = list(self._connections)
        if self._serving:
            self._httpd.shutdown()
        self._httpd.server_close()
        # Keep-alive connections would otherwise go on being served by their handler threads.
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _track(self, conn: socket.socket, open_: bool) -> None:
        with self._lock:
            (self._connections.add if open_ else self._connections.discard)(conn)

    # ---- repos ----

    def _config(self) -> dict:
        """hub.json, re-read when it changes: {"aliases": {...}, "repos": {id: {...}}}."""
        path = os.path.join(self.root, "hub.json")
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            return {}
        if self._config_cache[0] != mtime:
            with open(path, encoding="utf-8") as f:
                self._config_cache = (mtime, json.load(f))
        return self._config_cache[1]

    def _inside(self, path: str) -> bool:
        """Whether `path`, symlinks resolved, is in the served root (always, with follow_symlinks_outside)."""
        if self.follow_symlinks_outside:
            return True
        real = os.path.realpath(path)
        return real == self.real_root or real.startswith(self.real_root.rstrip(os.sep) + os.sep)

    def _revision_folders(self) -> set[str]:
        """Real paths of the folders hub.json declares as revisions of a repo. Each is only that revision
        (behind the repo's access checks): never a repo of its own, never part of another snapshot."""
        folders = set()
        for key, settings in ({} if self.mirror else self._config().get("repos", {})).items():
            own = os.path.realpath(os.path.join(self.root, key))  # the repo's folder: ROOT/{org/name, datasets/...}
            for target in [*settings.get("refs", {}).values(), *settings.get("tags", {}).values()]:
                real = os.path.realpath(os.path.join(self.root, target))
                if target != "main" and real != own:
                    folders.add(real)
        return folders

    def _repos(self, kind: str) -> dict[str, str]:
        """Every repo id of this kind -> its folder (a fresh scan: repos may appear while serving)."""
        if self.mirror:
            prefix = f"{kind}s--"
            return {name[len(prefix):].replace("--", "/", 1): os.path.join(self.root, name)
                    for name in _listdir(self.root)
                    if name.startswith(prefix) and self._inside(os.path.join(self.root, name))}
        base = self.root if kind == "model" else os.path.join(self.root, "datasets")
        hidden = self._revision_folders()
        repos = {}
        for org in _listdir(base):
            if kind == "model" and org == "datasets":
                continue
            folder = os.path.join(base, org)
            if _has_files(folder):  # a legacy repo with no namespace
                repos[org] = folder
            else:
                repos.update({f"{org}/{name}": os.path.join(folder, name) for name in _listdir(folder)
                              if os.path.isdir(os.path.join(folder, name))})
        return {repo_id: folder for repo_id, folder in repos.items()
                if self._inside(folder) and not _under(os.path.realpath(folder), hidden)}

    def lookup(self, kind: str, repo_id: str) -> tuple[Repo | None, str | None]:
        """(repo, None) when `repo_id` is a repo, (None, canonical_id) when it should redirect there
        (an alias or a mis-cased id), (None, None) when there is no such repo."""
        repos = self._repos(kind)
        if repo_id in repos:
            return self._make_repo(kind, repo_id, repos[repo_id]), None
        real_ids = {i.lower(): i for i in repos}
        aliases = {**LEGACY_ALIASES, **self._config().get("aliases", {}), **self.aliases}
        aliases = {alias.lower(): target for alias, target in aliases.items()}
        # Dataset aliases are written with their prefix: {"datasets/old": "datasets/org/new"}.
        prefix = "" if kind == "model" else "datasets/"
        target = aliases.get((prefix + repo_id).lower(), "")
        if target.startswith(prefix) and target[len(prefix):].lower() in real_ids:
            return None, real_ids[target[len(prefix):].lower()]
        return None, real_ids.get(repo_id.lower())

    def _make_repo(self, kind: str, repo_id: str, folder: str) -> Repo:
        settings = self._config().get("repos", {}).get(repo_id if kind == "model" else f"datasets/{repo_id}", {})
        repo = Repo(kind, repo_id, refs={} if self.mirror else {"main": folder},
                    private=bool(settings.get("private")), gated=bool(settings.get("gated")),
                    access=settings.get("access"))
        if self.mirror:
            snapshots = os.path.join(folder, "snapshots")
            repo.commits = {c: os.path.join(snapshots, c) for c in _listdir(snapshots)
                            if self._inside(os.path.join(snapshots, c))}
            refs_dir = os.path.join(folder, "refs")
            for dirpath, _, names in os.walk(refs_dir):
                for name in names:
                    ref = os.path.relpath(os.path.join(dirpath, name), refs_dir).replace(os.sep, "/")
                    if not self._inside(os.path.join(dirpath, name)):
                        continue
                    with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                        commit = f.read(100).strip()
                    if commit in repo.commits:
                        repo.refs[ref] = repo.commits[commit]
            if "main" not in repo.refs and repo.commits:  # no main ref: the newest snapshot
                repo.refs["main"] = max(repo.commits.values(), key=os.path.getmtime)
            return repo
        for key in ("refs", "tags"):
            for name, target in settings.get(key, {}).items():
                path = folder if target == "main" else os.path.join(self.root, target)
                if os.path.isdir(path) and self._inside(path):
                    repo.refs[name] = path
                    if key == "tags":
                        repo.tags.add(name)
                else:
                    log.warning("hub.json: %s %r of %s: no folder %s in the root", key, name, repo_id, path)
        return repo

    def snapshot(self, repo: Repo, revision: str) -> Snapshot:
        """The files and commit of `repo` at a branch, tag, PR ref or full commit sha."""
        folder = repo.refs.get(revision) or repo.commits.get(revision)
        if folder:
            return self._snapshot(repo, folder)
        if _COMMIT.fullmatch(revision):
            for folder in dict.fromkeys(repo.refs.values()):
                snap = self._snapshot(repo, folder)
                if snap.commit == revision:
                    return snap
        raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")

    def _snapshot(self, repo: Repo, folder: str) -> Snapshot:
        patterns = _lfs_patterns(folder) if self._inside(os.path.join(folder, ".gitattributes")) else []
        files = {}
        # Never into a folder out of the root, one declared as another revision, or one of its own ancestors
        # (a symlink cycle would never end). ancestors: walked path -> real paths of it and the folders above it.
        hidden, ancestors = self._revision_folders(), {folder: {os.path.realpath(folder)}}
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
            above, kept = ancestors.pop(dirpath), []
            for name in dirnames:
                path = os.path.join(dirpath, name)
                real = os.path.realpath(path)
                if name != ".git" and real not in above and real not in hidden and self._inside(path):
                    ancestors[path] = above | {real}
                    kept.append(name)
            dirnames[:] = kept
            for name in filenames:
                disk = os.path.join(dirpath, name)
                path = os.path.relpath(disk, folder).replace(os.sep, "/")
                entry = self._file_entry(path, disk, patterns)
                if entry:
                    files[path] = entry
        files = dict(sorted(files.items()))
        if self.mirror:
            commit = os.path.basename(folder)
        else:  # a content hash: identical content gives the identical commit
            digest = hashlib.sha1()
            for entry in files.values():
                digest.update(f"{entry.path}\0{entry.etag}\n".encode())
            commit = digest.hexdigest()
        return Snapshot(commit, files)

    def _file_entry(self, path: str, disk: str, lfs_patterns: list[str]) -> FileEntry | None:
        try:
            st = os.stat(disk)
        except OSError:  # a dangling symlink
            return None
        if not stat.S_ISREG(st.st_mode) or not self._inside(disk):
            return None
        if self.mirror and os.path.islink(disk):
            # The cache names each blob after the hub's etag: keep it (a sha256 means LFS).
            etag = os.path.basename(os.readlink(disk))
            return FileEntry(path, disk, st.st_size, st.st_mtime, bool(_SHA256.fullmatch(etag)), etag)
        lfs = (st.st_size >= LFS_MIN_SIZE or os.path.splitext(path)[1].lower() in LFS_EXTENSIONS
               or any(_matches(path, p) for p in lfs_patterns))
        key = (disk, st.st_size, st.st_mtime_ns, st.st_ino, lfs)
        # File times are coarse (a few ms): a small file rewritten just now may keep its key, so
        # re-hash it while it is fresh (as git does with "racily clean" entries).
        fresh = st.st_size < CHUNK and time.time() - st.st_mtime < 2
        with self._hash_lock:
            etag = self._hashes.get(key)
            if etag is None or fresh:
                etag = self._hashes[key] = _hash_file(disk, st.st_size, lfs)
        return FileEntry(path, disk, st.st_size, st.st_mtime, lfs, etag)

    def allowed(self, repo: Repo, token: str | None) -> bool:
        """Whether `token` opens a private or gated repo: a token of its hub.json `access` list; with no list,
        a token of the server's token list; with neither list (the server accepts any token), no token."""
        if token is None:
            return False
        if repo.access is not None:
            return token in repo.access
        return self.tokens is not None and token in self.tokens

    def hidden(self, repo: Repo, token: str | None) -> bool:
        """A private repo the token does not open answers exactly as a missing one."""
        return repo.private and not self.allowed(repo, token)

    def check_access(self, repo: Repo, token: str | None, files: bool) -> None:
        """Private repos hide as RepoNotFound; gated ones refuse their files without access."""
        allowed = self.allowed(repo, token)
        if repo.private and not allowed:
            raise repo_not_found(repo.id, token)
        if repo.gated and files and not allowed:
            raise HubError(401 if token is None else 403, "GatedRepo",
                           f"Access to {repo.kind} {repo.id} is restricted. You must have access to it "
                           "and be authenticated to access it. Please log in.")


def _under(path: str, folders: set[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip(os.sep) + os.sep) for f in folders)


def repo_not_found(repo_id: str, token: str | None) -> HubError:
    # As the hub: 401 when anonymous, 404 with a token, so private repos look like missing ones.
    return HubError(401 if token is None else 404, "RepoNotFound", f"Repository not found: {repo_id}")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    hub: HubServer

    def handle_error(self, request, client_address) -> None:
        log.debug("error while serving %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "autoload-hub/1"
    timeout = 120  # idle keep-alive connections are closed after this long
    # headers and body go out in two writes: without TCP_NODELAY the body waits ~40 ms for a delayed ACK
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.hub._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.hub._track(self.connection, False)

    def log_message(self, format: str, *args) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        hub = self.server.hub
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.fault, self.started = None, False
        try:
            self._discard_body()
        except HubError as err:  # the stream can no longer be trusted: answer, then close
            err.headers["Connection"] = "close"
            return self._send_error(err)
        hub._record(Request(self.command, self.path, headers))
        self.fault = hub.fault(self.command, self.path, headers) if hub.fault else None
        try:
            if self.fault and self.fault.delay:
                time.sleep(self.fault.delay)
            if self.fault and self.fault.status is not None:
                self._send_fault(self.fault)
            else:
                self._route(headers)
        except HubError as err:
            self._send_error(err)
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client went away: nothing to say
        except Exception:
            log.exception("hub server: %s %s failed", self.command, self.path)
            self.close_connection = True
            if not self.started:
                self._send_error(HubError(500, None, "Internal server error"))

    do_HEAD = do_GET

    def _discard_body(self) -> None:
        """Read and drop a body sent with a GET or HEAD, so it is never parsed as the next request."""
        if "Transfer-Encoding" in self.headers:
            raise HubError(400, "BadRequest", "Transfer-Encoding is not accepted on GET or HEAD")
        lengths = set(self.headers.get_all("Content-Length") or [])
        if not lengths:
            return
        length = lengths.pop()
        if lengths or not re.fullmatch(r"[0-9]{1,18}", length.strip()):
            raise HubError(400, "BadRequest", "Invalid Content-Length")
        if int(length) > MAX_IGNORED_BODY:
            raise HubError(413, "PayloadTooLarge", f"A {self.command} body may hold at most {MAX_IGNORED_BODY} bytes")
        if len(self.rfile.read(int(length))) < int(length):
            self.close_connection = True

    # ---- routing ----

    def _route(self, headers: dict[str, str]) -> None:
        raw_path, _, self.query = self.path.partition("?")
        self.params = dict(parse_qsl(self.query))
        segs = raw_path.split("/")[1:]
        if segs[:2] == ["api", "v1"]:  # ModelScope routes (hook): their own module, auth and envelope
            from . import server_modelscope
            return server_modelscope.route(self, raw_path)
        token = self._token(headers.get("authorization"))
        if segs[:1] == ["api"] and len(segs) >= 3 and segs[1] in ("models", "datasets"):
            return self._api(segs[1][:-1], f"/api/{segs[1]}", segs[2:], token)
        kind, prefix = ("dataset", "/datasets") if segs[:1] == ["datasets"] else ("model", "")
        if prefix:
            segs = segs[1:]
        # The repo id has one or two parts: "resolve" comes right after it.
        candidates = [(segs[:n], segs[n:]) for n in (1, 2) if len(segs) >= n + 3 and segs[n] == "resolve"]
        if not candidates:
            raise HubError(404, "NotFound", f"Not found: {raw_path}")
        repo, tail = self._open(kind, prefix, candidates, token)  # tail: ["resolve", revision, *path]
        self.server.hub.check_access(repo, token, files=True)
        revision, path = unquote(tail[1]), _check_path("/".join(unquote(s) for s in tail[2:]))
        snap = self.server.hub.snapshot(repo, revision)
        entry = snap.files.get(path)
        if entry is None:
            raise HubError(404, "EntryNotFound", f"Entry not found: {path}", {"X-Repo-Commit": snap.commit})
        self._send_file(entry, snap.commit)

    def _api(self, kind: str, prefix: str, segs: list[str], token: str | None) -> None:
        def valid(tail: list[str]) -> bool:
            return (not tail or tail == ["refs"] or (tail[0] == "revision" and len(tail) >= 2)
                    or (tail[0] == "tree" and len(tail) >= 2))
        candidates = [(segs[:n], segs[n:]) for n in (2, 1) if len(segs) >= n and valid(segs[n:])]
        if not candidates:
            raise HubError(404, "NotFound", "Not found")
        repo, tail = self._open(kind, prefix, candidates, token)
        hub = self.server.hub
        hub.check_access(repo, token, files=False)
        if tail == ["refs"]:
            return self._send_json(self._refs(repo))
        revision = unquote("/".join(tail[1:]) if tail and tail[0] == "revision" else tail[1] if tail else "main")
        snap = hub.snapshot(repo, revision)
        if tail and tail[0] == "tree":
            path = _check_path("/".join(unquote(s) for s in tail[2:]).strip("/"))
            return self._tree(snap, path)
        self._send_json(self._repo_info(repo, snap))

    def _open(self, kind: str, prefix: str, candidates: list, token: str | None) -> tuple[Repo, list]:
        """The repo of the first (id parts, rest of the path) reading that names one; aliases and
        mis-cased ids redirect to the same path with the canonical id, unless it is a private repo that the
        token does not open (then the name answers as a missing one)."""
        hub = self.server.hub
        for parts, tail in candidates:
            repo, redirect = hub.lookup(kind, "/".join(unquote(p) for p in parts))
            if repo:
                return repo, tail
            target = hub.lookup(kind, redirect)[0] if redirect else None
            if target and not hub.hidden(target, token):
                location = "/".join([prefix, quote(redirect), *tail]).rstrip("/")
                location += f"?{self.query}" if self.query else ""
                raise HubError(307, None, "", {"Location": location})
        raise repo_not_found("/".join(unquote(p) for p in candidates[0][0]), token)

    def _token(self, authorization: str | None) -> str | None:
        """The bearer token (None when absent); a token that is not accepted is a 401."""
        if authorization is None:
            return None
        scheme, _, token = authorization.partition(" ")
        tokens = self.server.hub.tokens
        if scheme.lower() != "bearer" or not token.strip() or (tokens is not None and token.strip() not in tokens):
            raise HubError(401, None, "Invalid credentials in Authorization header")
        return token.strip()

    # ---- API bodies ----

    def _repo_info(self, repo: Repo, snap: Snapshot) -> dict:
        blobs = self.params.get("blobs", "").lower() == "true"
        siblings = []
        for entry in snap.files.values():
            sibling = {"rfilename": entry.path}
            if blobs:
                sibling.update(size=entry.size, blobId=entry.blob_id)
                if entry.lfs:
                    sibling["lfs"] = {"sha256": entry.etag, "size": entry.size, "pointerSize": len(entry.pointer)}
            siblings.append(sibling)
        mtime = max((e.mtime for e in snap.files.values()), default=0.0)
        info = {"_id": hashlib.sha1(f"{repo.kind}:{repo.id}".encode()).hexdigest()[:24], "id": repo.id,
                "author": repo.id.split("/")[0] if "/" in repo.id else None, "sha": snap.commit,
                "lastModified": _iso(mtime), "createdAt": _iso(mtime), "private": repo.private,
                "gated": "manual" if repo.gated else False, "disabled": False, "downloads": 0, "likes": 0,
                "tags": [], "siblings": siblings}
        if repo.kind == "model":
            info["modelId"] = repo.id
        return info

    def _refs(self, repo: Repo) -> dict:
        hub, refs = self.server.hub, {"branches": [], "tags": [], "converts": [], "pullRequests": []}
        for name in sorted(repo.refs, key=lambda n: (n != "main", n)):
            commit = hub.snapshot(repo, name).commit
            if name.startswith("refs/pr/"):
                refs["pullRequests"].append({"name": name, "ref": name, "targetCommit": commit})
            elif name.startswith("refs/convert/"):
                refs["converts"].append({"name": name[len("refs/convert/"):], "ref": name, "targetCommit": commit})
            else:
                group = "tags" if name in repo.tags else "branches"
                ref = f"refs/{'tags' if group == 'tags' else 'heads'}/{name}"
                refs[group].append({"name": name, "ref": ref, "targetCommit": commit})
        return refs

    def _tree(self, snap: Snapshot, path: str) -> None:
        recursive = self.params.get("recursive", "").lower() == "true"
        # Folders exist through the files under them; each gets a deterministic oid from its content.
        folders: dict = {}  # folder path -> sha1 over the files under it
        for entry in snap.files.values():
            parts = entry.path.split("/")
            for depth in range(1, len(parts)):
                digest = folders.setdefault("/".join(parts[:depth]), hashlib.sha1())
                digest.update(f"{entry.path}\0{entry.etag}\n".encode())
        if path and path not in folders:
            raise HubError(404, "EntryNotFound", f"Entry not found: {path}", {"X-Repo-Commit": snap.commit})
        prefix = f"{path}/" if path else ""
        depth = prefix.count("/")

        def listed(p: str) -> bool:
            return p.startswith(prefix) and (recursive or p.count("/") == depth)
        items = [{"type": "directory", "oid": h.hexdigest(), "size": 0, "path": p}
                 for p, h in folders.items() if listed(p)]
        for entry in snap.files.values():
            if listed(entry.path):
                item = {"type": "file", "oid": entry.blob_id, "size": entry.size, "path": entry.path}
                if entry.lfs:
                    item["lfs"] = {"oid": entry.etag, "size": entry.size, "pointerSize": len(entry.pointer)}
                items.append(item)
        items.sort(key=lambda item: item["path"])
        try:
            start = int(self.params.get("cursor", "0"))
        except ValueError:
            raise HubError(400, "BadRequest", "Invalid cursor") from None
        page_size = self.server.hub.page_size
        headers = {}
        if start + page_size < len(items):
            # The client follows this absolute URL as-is.
            query = urlencode({**self.params, "cursor": str(start + page_size)})
            headers["Link"] = f'<{self.server.hub.public_url}{self.path.partition("?")[0]}?{query}>; rel="next"'
        self._send_json(items[start:start + page_size], headers)

    # ---- responses ----

    def _send_file(self, entry: FileEntry, commit: str) -> None:
        headers = {"X-Repo-Commit": commit, "ETag": f'"{entry.etag}"', "Accept-Ranges": "bytes",
                   "Content-Type": CONTENT_TYPES.get(os.path.splitext(entry.path)[1], "application/octet-stream")}
        if entry.lfs:
            headers.update({"X-Linked-Etag": f'"{entry.etag}"', "X-Linked-Size": str(entry.size)})
        status, start, end = 200, 0, entry.size - 1
        if "Range" in self.headers:
            byte_range = _parse_range(self.headers["Range"], entry.size)
            if byte_range == "unsatisfiable":
                raise HubError(416, "RangeNotSatisfiable", f"Range not satisfiable: {self.headers['Range']}",
                               {"Content-Range": f"bytes */{entry.size}", "X-Repo-Commit": commit})
            if byte_range:
                status, (start, end) = 206, byte_range
                headers["Content-Range"] = f"bytes {start}-{end}/{entry.size}"
        headers["Content-Length"] = str(end - start + 1)
        self._start(status, headers)
        if self.command == "GET" and end >= start:
            with open(entry.disk, "rb") as f:
                self._write_body(f, start, end - start + 1)

    def _send_json(self, obj, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(obj).encode()
        self._send(200, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})

    def _send_error(self, err: HubError) -> None:
        if err.status == 307:  # a redirect to the canonical path: relative, with no body, as the hub
            return self._send(307, b"", err.headers)
        # Header values must be latin-1: an id or path from the URL might not be.
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "X-Error-Message": err.message.encode("ascii", "replace").decode(), **err.headers}
        if err.code:
            headers["X-Error-Code"] = err.code
        self._send(err.status, json.dumps({"error": err.message}).encode(), headers)

    def _send_fault(self, fault: Fault) -> None:
        # A Content-Length given by the fault wins (a HEAD may announce a size); if it does not match
        # the body, close the connection so the next request is not read from a desynchronised stream.
        length = next((v for k, v in fault.headers.items() if k.lower() == "content-length"), None)
        headers = {k: v for k, v in fault.headers.items() if k.lower() != "content-length"}
        self._start(fault.status, {**headers, "Content-Length": length or str(len(fault.body))})
        if self.command != "HEAD":
            self.wfile.write(fault.body)
        self.close_connection = self.close_connection or (length is not None and length != str(len(fault.body)))

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self._start(status, {**headers, "Content-Length": str(len(body))})
        if self.command != "HEAD" and body:
            self._write_body(io.BytesIO(body), 0, len(body))

    def _start(self, status: int, headers: dict[str, str]) -> None:
        self.started = True
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, _header_value(value))
        self.end_headers()

    def _write_body(self, f, offset: int, count: int) -> None:
        """Send `count` bytes of `f` from `offset`, through the request's fault if it has one."""
        fault = self.fault
        if not fault or (fault.truncate_after is None and not fault.corrupt and not fault.rate):
            self.connection.sendfile(f, offset, count)  # zero-copy for real files
            return
        limit = count if fault.truncate_after is None else min(count, fault.truncate_after)
        step = max(1, min(CHUNK, fault.rate // 10)) if fault.rate else CHUNK  # ~10 writes a second
        f.seek(offset)
        sent, began = 0, time.monotonic()
        while sent < limit and (chunk := f.read(min(step, limit - sent))):
            self.wfile.write(chunk.translate(_FLIP) if fault.corrupt else chunk)
            sent += len(chunk)
            if fault.rate:
                time.sleep(max(0.0, began + sent / fault.rate - time.monotonic()))
        if sent < count:
            self.close_connection = True  # the announced Content-Length is never reached


def _parse_range(value: str, size: int) -> tuple[int, int] | str | None:
    """(start, end) inclusive, "unsatisfiable", or None to ignore a header we do not understand (or too long
    to be a real one: huge numbers cost time, and over 4300 digits int() refuses them)."""
    match = len(value) <= MAX_RANGE and re.fullmatch(r"\s*bytes=([0-9]*)-([0-9]*)\s*", value)
    if not match or match[1] == match[2] == "":
        return None
    if match[1] == "":  # "bytes=-N": the last N bytes
        suffix = int(match[2])
        return (max(0, size - suffix), size - 1) if suffix and size else "unsatisfiable"
    start, end = int(match[1]), int(match[2]) if match[2] else size - 1
    if start >= size:
        return "unsatisfiable"
    return (start, min(end, size - 1)) if start <= end else None
