"""Where a `from_pretrained` call reads its files from: a local folder, or a hub repo through the cache.

One `FileSource` serves one call: the first fetch pins the revision to a commit, so the config, tokenizer and
weights of one call come from the same commit and later fetches of cached files cost no request.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

from .errors import InvalidRepoIdError
from .paths import validate_repo_id
from .settings import which_hub

HUB_OPTIONS = ("revision", "token", "cache_dir", "local_files_only", "endpoint", "hub")


class FileSource:
    """Files of a model by repo-relative path, from a folder or a repo id."""

    def __init__(self, name_or_path: str | os.PathLike, *, revision: str | None = None, token=None,
                 cache_dir=None, local_files_only: bool = False, endpoint: str | None = None,
                 hub: str | None = None):
        self.hub = which_hub(hub, "model")  # "huggingface" or "modelscope" (argument, else AUTOLOAD_HUB)
        self.name = os.fspath(name_or_path)
        self.revision = revision or "main"
        self.requested_revision = self.revision
        self.token = token
        self.cache_dir = cache_dir
        self.local_files_only = local_files_only
        self.endpoint = endpoint
        self.folder = self.name if os.path.isdir(self.name) else None
        self.commit: str | None = None
        self._found: dict[str, str] = {}
        if self.folder is None and self.hub == "huggingface":  # ModelScope's client explains bare names itself
            try:
                validate_repo_id(self.name)
            except InvalidRepoIdError:
                raise OSError(f"'{self.name}' is neither a local folder nor a valid repo id ('name' or "
                              "'namespace/name'). Check the path or the id.") from None

    @property
    def is_local(self) -> bool:
        return self.folder is not None

    def describe(self) -> str:
        if self.folder is not None:
            return f"folder '{self.folder}'"
        return f"repo '{self.name}' (revision '{self.requested_revision}')"

    def fetch(self, patterns: list[str] | str) -> dict[str, str]:
        """Bring the files matching `patterns` (fnmatch globs or exact names) and return
        {repo-relative path: local path} for those that exist. Missing files are simply absent."""
        patterns = [patterns] if isinstance(patterns, str) else list(patterns)
        if self.folder is not None:
            root = Path(self.folder)
            found = {}
            for path in root.rglob("*"):
                relative = path.relative_to(root).as_posix()
                if path.is_file() and any(fnmatch.fnmatchcase(relative, p) for p in patterns):
                    found[relative] = str(path)
            return found
        from .download import snapshot_download  # requests and filelock load on the first remote fetch
        snapshot = snapshot_download(self.name, revision=self.commit or self.revision, allow_patterns=patterns,
                                     token=self.token, cache_dir=self.cache_dir, endpoint=self.endpoint,
                                     local_files_only=self.local_files_only, progress=None, hub=self.hub)
        if self.hub == "huggingface":
            self.commit = os.path.basename(snapshot)  # pin: the rest of this call reads the same commit
        root = Path(snapshot)
        found = {}
        for path in root.rglob("*"):
            relative = path.relative_to(root).as_posix()
            if path.is_file() and any(fnmatch.fnmatchcase(relative, p) for p in patterns):
                found[relative] = str(path)
        self._found.update(found)
        return found

    def get(self, filename: str) -> str | None:
        """One file's local path, or None if the repo/folder has no such file."""
        return self.fetch([filename]).get(filename)

    def require(self, filename: str, what: str = "") -> str:
        path = self.get(filename)
        if path is None:
            where = self.describe()
            hint = (f" See its files with `autoload download {self.name} --include '*.json'` or on the hub."
                    if not self.is_local else "")
            raise OSError(f"{where} has no file named '{filename}'{' ' + what if what else ''}.{hint}")
        return path


def split_hub_options(kwargs: dict) -> dict:
    """Pop the hub options out of a from_pretrained kwargs dict."""
    return {name: kwargs.pop(name) for name in HUB_OPTIONS if name in kwargs}
