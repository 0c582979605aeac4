"""The cache on disk, byte-compatible with huggingface_hub's. Pure filesystem: no network.

    <cache>/
      CACHEDIR.TAG
      .locks/models--org--name/<etag>.lock
      models--org--name/
        refs/<revision>                 40-hex commit, no trailing newline
        blobs/<etag>                    content; etag = sha256 (LFS) or git blob sha1
        blobs/<etag>.incomplete         a partial download, resumed by the next process
        snapshots/<commit>/<path>       relative symlink -> ../../blobs/<etag>
        .no_exist/<commit>/<path>       empty: "path does not exist at commit"
        trees/<commit>.json             the commit's file list (format_version 1)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile

from . import settings

REPO_TYPES = {"model": "models", "dataset": "datasets", "space": "spaces", "kernel": "kernels"}
_COMMIT = re.compile(r"[0-9a-f]{40}")
_ETAG = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_REF_PART = re.compile(r"[A-Za-z0-9._+\-@]{1,255}")
_symlink_support: dict[str, bool] = {}

CACHEDIR_TAG = ("Signature: 8a477f597d28d172789f06886806bc55\n"
                "# This file is a cache directory tag created by autoload (shared with huggingface_hub).\n"
                "# For information about cache directory tags see https://bford.info/cachedir/\n")


def is_commit(revision: str) -> bool:
    """A commit is exactly 40 lowercase hex characters; anything else is a branch, tag or ref name."""
    return bool(_COMMIT.fullmatch(revision))


def check_commit(value, what: str = "commit") -> str:
    """A commit from a server or a caller: exactly 40 lowercase hex, else UnsafeValueError."""
    if isinstance(value, str) and _COMMIT.fullmatch(value):
        return value
    raise UnsafeValueError(f"{what} {shown(value)} is not a commit (40 lowercase hex characters)", value=value)


def is_etag(name: str) -> bool:
    return bool(_ETAG.fullmatch(name))


def check_etag(value, what: str = "etag") -> str:
    """A blob name: a git blob sha1 (40 hex) or a sha256 (64 hex), lowercase."""
    if isinstance(value, str) and _ETAG.fullmatch(value):
        return value
    raise UnsafeValueError(f"{what} {shown(value)} is not a 40- or 64-character lowercase hex hash", value=value)


def check_revision(value) -> str:
    """A branch, tag, `refs/pr/N` or commit, validated like a git ref name: parts of letters, digits and
    `._+-@` separated by single slashes; no `..`, no part starting with `.` or ending in `.lock`, no
    absolute path, backslash, control character or whitespace."""
    parts = value.split("/") if isinstance(value, str) and len(value) <= 255 else [""]
    if all(_REF_PART.fullmatch(p) and not p.startswith(".") and not p.endswith((".lock", "."))
           for p in parts) and ".." not in value and "@{" not in value:
        return value
    raise UnsafeValueError(f"revision {shown(value)} is not a valid branch, tag or commit name (git ref rules: "
                           "no '..', no leading '/' or '.', no backslash, space or control character)", value=value)


def inside(root: str, path: str) -> str:
    """`path`, after checking that it stays inside `root` once `..` and symlinked folders are resolved
    (the last part itself may be a link: snapshot files are links into blobs/)."""
    real_root = os.path.realpath(root)
    name = os.path.basename(path)
    real = os.path.join(os.path.realpath(os.path.dirname(path)), name)
    if name in ("", ".", "..") or os.path.commonpath([real_root, real]) != real_root:
        raise UnsafeValueError(f"path {shown(path)} would leave the cache folder {root}", value=path)
    return path


def shown(value, limit: int = 200) -> str:
    """A value from a server or a repo as it may be printed: quoted, control and bidi characters escaped."""
    text = value if isinstance(value, str) else repr(value)
    escaped = text.encode("unicode_escape").decode("ascii") if _UNPRINTABLE.search(text) else text
    return "'" + (escaped[:limit] + "..." if len(escaped) > limit else escaped) + "'"


_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


class UnsafeValueError(ValueError):
    """A value that would become a path, name or header is not of its legal shape. The hub layers turn it
    into `UnsafeServerValueError` (naming the endpoint and request) or `UnsafePathError`."""

    def __init__(self, message: str, *, value):
        super().__init__(message)
        self.value = value


def repo_folder_name(repo_id: str, repo_type: str = "model") -> str:
    return f"{REPO_TYPES[repo_type]}--{repo_id.replace('/', '--')}"


def _atomic_write(path: str, data: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def symlinks_supported(cache_dir: str) -> bool:
    """Probe once per cache folder whether relative symlinks can be made there."""
    if settings.symlinks_disabled():
        return False
    if cache_dir not in _symlink_support:
        os.makedirs(cache_dir, exist_ok=True)
        probe = tempfile.mkdtemp(dir=cache_dir, prefix=".symlink-probe-")
        try:
            open(os.path.join(probe, "src"), "w").close()
            os.symlink("src", os.path.join(probe, "dst"))
            _symlink_support[cache_dir] = True
        except OSError:
            _symlink_support[cache_dir] = False
        finally:
            shutil.rmtree(probe, ignore_errors=True)
    return _symlink_support[cache_dir]


class RepoCache:
    """One repo's folder in the cache."""

    def __init__(self, cache_dir: str, repo_id: str, repo_type: str = "model"):
        self.cache_dir = cache_dir
        self.repo_id = repo_id
        self.repo_type = repo_type
        self.folder_name = repo_folder_name(repo_id, repo_type)
        self.path = os.path.join(cache_dir, self.folder_name)

    def __repr__(self) -> str:
        return f"RepoCache({self.path!r})"

    # -- refs ---------------------------------------------------------------------------------
    def read_ref(self, revision: str) -> str | None:
        """The commit a revision points to: itself for a commit, else the content of refs/<revision>."""
        if is_commit(revision):
            return revision
        try:
            with open(self._ref_path(revision)) as f:
                commit = f.read(100).strip()
        except (OSError, ValueError):
            return None
        return commit if is_commit(commit) else None

    def write_ref(self, revision: str, commit: str) -> None:
        if revision == commit or self.read_ref(revision) == commit:
            return
        _atomic_write(self._ref_path(revision), check_commit(commit))

    # -- paths: every one built from a checked name and checked to stay in the repo's folder ---------
    # (the layers above validate what a server sends; these checks are the last line before the disk)
    def _ref_path(self, revision: str) -> str:
        return inside(self.path, os.path.join(self.path, "refs", *check_revision(revision).split("/")))

    def snapshot_dir(self, commit: str) -> str:
        return os.path.join(self.path, "snapshots", check_commit(commit))

    def snapshot_file(self, commit: str, filename: str) -> str:
        return inside(self.path, os.path.join(self.snapshot_dir(commit), *filename.split("/")))

    def blob_path(self, etag: str) -> str:
        return os.path.join(self.path, "blobs", check_etag(etag))

    def lock_path(self, etag: str) -> str:
        return os.path.join(self.cache_dir, ".locks", self.folder_name, f"{check_etag(etag)}.lock")

    def ensure_layout(self) -> None:
        os.makedirs(os.path.join(self.path, "blobs"), exist_ok=True)
        tag = os.path.join(self.cache_dir, "CACHEDIR.TAG")
        if not os.path.exists(tag):
            try:
                _atomic_write(tag, CACHEDIR_TAG)
            except OSError:
                pass

    # -- linking ------------------------------------------------------------------------------
    def link(self, commit: str, filename: str, etag: str, blob_owner: "RepoCache | None" = None) -> str:
        """Point snapshots/<commit>/<filename> at a blob (this repo's, or `blob_owner`'s for an alias folder).

        Relative symlink where the filesystem allows it; otherwise the blob is moved (first use) or
        copied (later uses), as huggingface_hub does.
        """
        blob = (blob_owner or self).blob_path(etag)
        target = self.snapshot_file(commit, filename)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            os.utime(blob)  # "linked just now": a concurrent `cache rm` garbage collection leaves it alone
        except OSError:
            pass
        if symlinks_supported(self.cache_dir):
            relative = os.path.relpath(blob, os.path.dirname(target))
            tmp = f"{target}.{os.getpid()}.{id(self):x}.link"
            _unlink(tmp)
            os.symlink(relative, tmp)
            os.replace(tmp, target)
        elif blob_owner is None:
            if os.path.exists(target):
                return target
            tmp = f"{target}.{os.getpid()}.copy"
            shutil.copyfile(blob, tmp)
            os.replace(tmp, target)
        return target

    def adopt_blob(self, commit: str, filename: str, etag: str, downloaded: str) -> str:
        """Put a finished download in place: blobs/<etag> (+ link), or straight into the snapshot without symlinks."""
        if symlinks_supported(self.cache_dir):
            os.replace(downloaded, self.blob_path(etag))
            return self.link(commit, filename, etag)
        target = self.snapshot_file(commit, filename)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(downloaded, target)
        return target

    # -- markers and file lists ---------------------------------------------------------------
    def _no_exist(self, commit: str, filename: str) -> str:
        return inside(self.path, os.path.join(self.path, ".no_exist", check_commit(commit), *filename.split("/")))

    def mark_missing(self, commit: str, filename: str) -> None:
        path = self._no_exist(commit, filename)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "a").close()

    def is_marked_missing(self, commit: str, filename: str) -> bool:
        return os.path.isfile(self._no_exist(commit, filename))

    def read_tree(self, commit: str) -> dict[str, dict] | None:
        """The file list recorded for a commit: {path: {"size", "blob_id", "lfs_sha256"?, ...}}."""
        try:
            with open(os.path.join(self.path, "trees", f"{check_commit(commit)}.json")) as f:
                data = json.load(f)
        except (OSError, ValueError, RecursionError):
            return None
        if not isinstance(data, dict) or data.get("format_version") != 1 or not isinstance(data.get("files"), dict):
            return None
        return data["files"]

    def write_tree(self, commit: str, files: dict[str, dict]) -> None:
        _atomic_write(os.path.join(self.path, "trees", f"{check_commit(commit)}.json"),
                      json.dumps({"format_version": 1, "files": files}, sort_keys=True))

    def cached_file(self, commit: str, filename: str) -> str | None:
        path = self.snapshot_file(commit, filename)
        return path if os.path.isfile(path) else None

    def unusable_files(self, commit: str) -> tuple[list[str], bool]:
        """(files of a cached snapshot that cannot be read: dangling links, left by a deleted blob or an
        interrupted download; whether the snapshot holds any readable file at all)."""
        root, broken, readable = self.snapshot_dir(commit), [], False
        for folder, _, names in os.walk(root):
            for name in names:
                path = os.path.join(folder, name)
                if os.path.isfile(path):
                    readable = True
                elif not name.endswith(".link"):
                    broken.append(os.path.relpath(path, root).replace(os.sep, "/"))
        return sorted(broken), readable
