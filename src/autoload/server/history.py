"""The history store of a writable hub (`autoload serve --writable`): content-addressed objects, immutable
commits and atomically updated refs, under `ROOT/.hub/` (hidden from the folder scan). Standard library only.

    .hub/objects/ab/<sha256>                  every uploaded file's bytes, once (LFS and regular alike)
    .hub/tmp/                                 uploads in progress (hashed while streamed, renamed when checked)
    .hub/repos/{models,datasets}/ORG/NAME/
        repo.json                             {"private": bool}
        refs.json                             {"heads": {branch: commit}, "tags": {...}, "prs": {"1": commit}}
        commits/<40-hex>.json                 {"parents", "summary", "description", "time", "files"}

A commit's `files` is the whole tree: {path: {"sha256", "size", "lfs", "blob"}} (`blob`: the git blob sha1 of a
regular file, its etag). A commit is written (temp file, fsync, rename) before the ref moves to it, and refs.json
is replaced in one rename: a crash at any point leaves every ref on a complete commit. Writers of one repo are
serialized by a lock; a commit whose parent is no longer its branch's head is refused (`StaleParent`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
import time

from .repos import COMMIT, CHUNK, FileEntry, HubError, Snapshot, matches

STORE = ".hub"
SHA256 = re.compile(r"[0-9a-f]{64}")

# The .gitattributes a new repo starts with (the hub's default, shortened to the patterns that matter here).
DEFAULT_GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in (
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gguf", "*.gz", "*.h5", "*.joblib", "*.lfs.*",
    "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb", "*.pickle",
    "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*", "*.tar", "*.tflite",
    "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*"))


def _write_atomic(path: str, data: bytes) -> None:
    """Write `data` to `path` through a temp file in the same folder, fsynced, then renamed over it."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with _quiet():
            os.unlink(tmp)
        raise


class _quiet:
    def __enter__(self):
        return self

    def __exit__(self, kind, *_):
        return kind is not None and issubclass(kind, OSError)


def crash_point(name: str) -> None:
    """Test hook: AUTOLOAD_SERVE_CRASH_AT=name ends the server process here, as a power cut would."""
    if os.environ.get("AUTOLOAD_SERVE_CRASH_AT") == name:
        os._exit(137)


class Store:
    """Objects, commits and refs of the repos written to a hub root."""

    def __init__(self, root: str):
        self.dir = os.path.join(root, STORE)
        self.objects = os.path.join(self.dir, "objects")
        self.tmp = os.path.join(self.dir, "tmp")
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    # ---- repos ----

    def repo_dir(self, kind: str, repo_id: str) -> str:
        return os.path.join(self.dir, "repos", f"{kind}s", *repo_id.split("/"))

    def repos(self, kind: str) -> dict[str, str]:
        """repo id -> its folder in the store, for every repo of this kind that has a refs.json."""
        base = os.path.join(self.dir, "repos", f"{kind}s")
        found = {}
        for first in _names(base):
            folder = os.path.join(base, first)
            if os.path.isfile(os.path.join(folder, "refs.json")):
                found[first] = folder
                continue
            for name in _names(folder):
                if os.path.isfile(os.path.join(folder, name, "refs.json")):
                    found[f"{first}/{name}"] = os.path.join(folder, name)
        return found

    def lock(self, folder: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(folder, threading.Lock())

    def settings(self, folder: str) -> dict:
        return _read_json(os.path.join(folder, "repo.json")) or {}

    def refs(self, folder: str) -> dict[str, dict[str, str]]:
        refs = _read_json(os.path.join(folder, "refs.json")) or {}
        return {key: dict(refs.get(key, {})) for key in ("heads", "tags", "prs")}

    def write_refs(self, folder: str, refs: dict) -> None:
        crash_point("before-ref")
        _write_atomic(os.path.join(folder, "refs.json"), json.dumps(refs, sort_keys=True).encode())

    def create(self, folder: str, private: bool, files: dict[str, dict], summary: str,
               commit: str | None = None) -> str:
        """A new repo with one commit holding `files` (a default .gitattributes, or an imported folder, then under
        the folder's own commit id)."""
        _write_atomic(os.path.join(folder, "repo.json"), json.dumps({"private": private}).encode())
        commit = self.write_commit(folder, [], files, summary, "", commit)
        self.write_refs(folder, {"heads": {"main": commit}, "tags": {}, "prs": {}})
        return commit

    # ---- commits ----

    def commit(self, folder: str, commit: str) -> dict | None:
        if not COMMIT.fullmatch(commit):
            return None
        return _read_json(os.path.join(folder, "commits", f"{commit}.json"))

    def write_commit(self, folder: str, parents: list[str], files: dict, summary: str, description: str,
                     commit: str | None = None) -> str:
        """Store a commit (its id: sha1 of its canonical JSON, unless given) and return its id."""
        body = {"parents": parents, "summary": summary, "description": description, "time": time.time(),
                "files": dict(sorted(files.items()))}
        data = json.dumps(body, sort_keys=True).encode()
        commit = commit or hashlib.sha1(b"commit %d\0" % len(data) + data).hexdigest()
        _write_atomic(os.path.join(folder, "commits", f"{commit}.json"), data)
        return commit

    def resolve(self, folder: str, revision: str) -> str | None:
        """The commit a branch, tag, refs/pr/N, full commit or unique commit prefix (7+ hex) names."""
        refs = self.refs(folder)
        if revision in refs["heads"]:
            return refs["heads"][revision]
        if revision in refs["tags"]:
            return refs["tags"][revision]
        if revision.startswith("refs/pr/") and revision[8:] in refs["prs"]:
            return refs["prs"][revision[8:]]
        if COMMIT.fullmatch(revision) and self.commit(folder, revision) is not None:
            return revision
        if re.fullmatch(r"[0-9a-f]{7,39}", revision):
            found = [n[:-5] for n in _names(os.path.join(folder, "commits")) if n.startswith(revision)]
            if len(found) == 1:
                return found[0]
        return None

    def snapshot(self, folder: str, commit: str) -> Snapshot:
        body = self.commit(folder, commit)
        if body is None:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {commit}")
        files = {}
        for path, f in body["files"].items():
            etag = f["sha256"] if f["lfs"] else f["blob"]
            files[path] = FileEntry(path, self.object_path(f["sha256"]), f["size"], body["time"], f["lfs"], etag)
        return Snapshot(commit, files)

    def log(self, folder: str, commit: str, limit: int = 1000) -> list[tuple[str, dict]]:
        """(id, commit) from `commit` back along first parents."""
        out = []
        while commit and len(out) < limit:
            body = self.commit(folder, commit)
            if body is None:
                break
            out.append((commit, body))
            commit = body["parents"][0] if body["parents"] else None
        return out

    # ---- objects ----

    def object_path(self, sha256: str) -> str:
        return os.path.join(self.objects, sha256[:2], sha256)

    def has_object(self, sha256: str, size: int | None = None) -> bool:
        try:
            st = os.stat(self.object_path(sha256))
        except (OSError, ValueError):
            return False
        return size is None or st.st_size == size

    def put_stream(self, read, size: int, expected: str | None = None, blob: bool = True) -> dict:
        """Stream `size` bytes from `read(n)` into the store, hashed on the way; refused (400) when short or
        not `expected` (sha256). Returns the file record {"sha256", "size", "blob"} (`blob`: the git blob sha1,
        None unless asked: LFS files do not need it)."""
        os.makedirs(self.tmp, exist_ok=True)
        sha256, sha1 = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % size) if blob else None
        fd, tmp = tempfile.mkstemp(dir=self.tmp)
        try:
            with os.fdopen(fd, "wb") as f:
                left = size
                while left:
                    chunk = read(min(CHUNK, left))
                    if not chunk:
                        raise HubError(400, "BadRequest", f"Upload ended after {size - left} of {size} bytes")
                    sha256.update(chunk)
                    if sha1 is not None:
                        sha1.update(chunk)
                    f.write(chunk)
                    left -= len(chunk)
                f.flush()
                os.fsync(f.fileno())
            digest = sha256.hexdigest()
            if expected is not None and digest != expected:
                raise HubError(400, "BadRequest", f"Uploaded content has sha256 {digest}, expected {expected}")
            target = self.object_path(digest)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(tmp, target)
        except BaseException:
            with _quiet():
                os.unlink(tmp)
            raise
        return {"sha256": digest, "size": size, "blob": sha1.hexdigest() if sha1 is not None else None}

    def put_bytes(self, data: bytes) -> dict:
        view = memoryview(data)
        pos = 0

        def read(n: int) -> bytes:
            nonlocal pos
            chunk = view[pos:pos + n].tobytes()
            pos += len(chunk)
            return chunk
        return self.put_stream(read, len(data))


def lfs_patterns_of(store: Store, files: dict) -> list[str]:
    """The filter=lfs patterns of the .gitattributes in a commit's files."""
    record = files.get(".gitattributes")
    if record is None:
        return []
    with open(store.object_path(record["sha256"]), encoding="utf-8", errors="replace") as f:
        lines = f.read(1 << 20).splitlines()
    words = [line.split() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [w[0].lstrip("/") for w in words if "filter=lfs" in w[1:]]


def is_lfs_path(path: str, patterns: list[str]) -> bool:
    return any(matches(path, p) for p in patterns)


def _names(folder: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(folder) if not n.startswith("."))
    except OSError:
        return []


def _read_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
