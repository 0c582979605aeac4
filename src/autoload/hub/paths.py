"""Checks and selection shared by both hub clients (Hugging Face and ModelScope): repo ids, repo-relative
file paths, and fnmatch file selection. Pure functions; no network, no filesystem."""

from __future__ import annotations

import fnmatch
import re

from .errors import InvalidRepoIdError, UnsafePathError

_REPO_PART = re.compile(r"[A-Za-z0-9_.\-]{1,96}")


def validate_repo_id(repo_id: str) -> None:
    """Raise InvalidRepoIdError unless `repo_id` is 'name' or 'namespace/name' in the hub's alphabet."""
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


def select_files(paths, allow_patterns, ignore_patterns) -> list[str]:
    """The paths kept by `allow_patterns` (None: all) and not dropped by `ignore_patterns` (fnmatch globs;
    a pattern ending in '/' means everything under that folder)."""
    return [p for p in paths
            if (allow_patterns is None or _matches(p, allow_patterns))
            and not (ignore_patterns is not None and _matches(p, ignore_patterns))]
