"""`HubServer`: a local Hugging Face (and ModelScope) hub serving folders of files. Standard library only; it
shares nothing with the client, so tests can use it as an independent oracle.

Layouts of `root`: folders `ORG/NAME/`, legacy `NAME/` (holds files directly) and `datasets/ORG/NAME/`,
with commits and etags hashed from the content and an optional `hub.json` (aliases, refs and tags,
private and gated repos); or a huggingface_hub cache (`models--org--name/`), served read-only with its
own commits and etags ("mirror mode"). Routes: `hf.py` and `modelscope.py`; test faults: `faults.py`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import stat
import threading
import time
from typing import Callable

from .faults import Fault
from .handler import Handler, HTTPServer
from .history import Store
from .repos import (CHUNK, COMMIT, LEGACY_ALIASES, LFS_EXTENSIONS, LFS_MIN_SIZE, SHA256, FileEntry, HubError, Repo,
                    Request, Snapshot, has_files, lfs_patterns, listdir, matches, repo_not_found, under)

log = logging.getLogger("autoload.server")


def _hash_file(path: str, size: int, lfs: bool) -> str:
    """sha256 (LFS) or git blob sha1 of a file, streamed in 1 MiB chunks."""
    digest = hashlib.sha256() if lfs else hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class HubServer:
    """A local hub over `root` on http://host:port (port 0: a free one, see `url`).

    tokens: accepted bearer tokens, or None to accept any (then private and gated repos open only to tokens in
    their hub.json `access` list). page_size: tree API entries per page.
    aliases: extra `{alias: canonical_id}` redirects, over LEGACY_ALIASES and hub.json's.
    follow_symlinks_outside: serve what symlinks point to outside `root` (off: such files and folders are absent).
    public_url: the base URL clients reach this server at, for absolute links (default: `url`).
    writable: accept uploads (docs/hub-server.md, "Writable mode"), from `write_tokens` only: a list of tokens,
    or {token: user} (the user owns the namespace of a `create_repo` that names none). Written repos live in
    ROOT/.hub (history.py). max_file_size, max_commit_bytes: upload limits in bytes (413 beyond). inline_size:
    files up to this size are asked inline in the commit, never through LFS ("inline mode": lets huggingface_hub
    with Xet on push them; 0: the hub's rules).
    """

    def __init__(self, root: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 0,
                 tokens: list[str] | None = None, page_size: int = 1000, aliases: dict[str, str] | None = None,
                 follow_symlinks_outside: bool = False, public_url: str | None = None, writable: bool = False,
                 write_tokens: list[str] | dict[str, str] | None = None, max_file_size: int = 50 * 2**30,
                 max_commit_bytes: int = 2**30, inline_size: int = 0):
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
        self.mirror = any(n.startswith(("models--", "datasets--")) for n in listdir(self.root))
        if isinstance(write_tokens, dict):
            self.write_tokens = dict(write_tokens)
        else:
            self.write_tokens = {t: "user" for t in (write_tokens or [])}
        if writable and not self.write_tokens:
            raise ValueError("a writable hub needs at least one write token (--write-token)")
        if writable and self.mirror:
            raise ValueError("a huggingface_hub cache (mirror mode) cannot be served writable")
        if self.tokens is not None and self.tokens & set(self.write_tokens):
            raise ValueError("a token cannot be both a read token and a write token")
        self.writable = writable
        self.max_file_size, self.max_commit_bytes, self.inline_size = max_file_size, max_commit_bytes, inline_size
        self.store = Store(self.root)
        self.upload_secret = os.urandom(32)  # signs the LFS upload URLs of this run
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
        self._httpd = HTTPServer((host, port), Handler)
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

    def record(self, request: Request) -> None:
        """Append one received request to `requests` (what tests inspect)."""
        with self._lock:
            self.requests.append(request)

    def track_connection(self, conn: socket.socket, open_: bool) -> None:
        """Remember an open connection (dropped by stop()), or forget a closed one."""
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
                    for name in listdir(self.root)
                    if name.startswith(prefix) and self._inside(os.path.join(self.root, name))}
        base = self.root if kind == "model" else os.path.join(self.root, "datasets")
        hidden = self._revision_folders()
        repos = {}
        for org in listdir(base):
            if kind == "model" and org == "datasets":
                continue
            folder = os.path.join(base, org)
            if has_files(folder):  # a legacy repo with no namespace
                repos[org] = folder
            else:
                repos.update({f"{org}/{name}": os.path.join(folder, name) for name in listdir(folder)
                              if os.path.isdir(os.path.join(folder, name))})
        repos = {repo_id: folder for repo_id, folder in repos.items()
                 if self._inside(folder) and not under(os.path.realpath(folder), hidden)}
        return {**repos, **self.store.repos(kind)}  # a written repo shadows a folder of the same id

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
        if not self.mirror and folder.startswith(self.store.dir + os.sep):
            refs = self.store.refs(folder)
            repo = Repo(kind, repo_id, refs={**refs["heads"], **refs["tags"],
                                             **{f"refs/pr/{n}": c for n, c in refs["prs"].items()}},
                        tags=set(refs["tags"]), private=bool(self.store.settings(folder).get("private")),
                        access=settings.get("access"), history=folder)
            return repo
        repo = Repo(kind, repo_id, refs={} if self.mirror else {"main": folder},
                    private=bool(settings.get("private")), gated=bool(settings.get("gated")),
                    access=settings.get("access"))
        if self.mirror:
            snapshots = os.path.join(folder, "snapshots")
            repo.commits = {c: os.path.join(snapshots, c) for c in listdir(snapshots)
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
        if repo.history is not None:
            commit = self.store.resolve(repo.history, revision)
            if commit is None:
                raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return self.store.snapshot(repo.history, commit)
        folder = repo.refs.get(revision) or repo.commits.get(revision)
        if folder:
            return self._snapshot(repo, folder)
        if COMMIT.fullmatch(revision):
            for folder in dict.fromkeys(repo.refs.values()):
                snap = self._snapshot(repo, folder)
                if snap.commit == revision:
                    return snap
        raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")

    def _snapshot(self, repo: Repo, folder: str) -> Snapshot:
        patterns = lfs_patterns(folder) if self._inside(os.path.join(folder, ".gitattributes")) else []
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
            return FileEntry(path, disk, st.st_size, st.st_mtime, bool(SHA256.fullmatch(etag)), etag)
        lfs = (st.st_size >= LFS_MIN_SIZE or os.path.splitext(path)[1].lower() in LFS_EXTENSIONS
               or any(matches(path, p) for p in lfs_patterns))
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
        if token in self.write_tokens:
            return True
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
