"""The front of the hub client: `hub_download` and `snapshot_download` pick the hub (the `hub` argument,
else AUTOLOAD_HUB, else Hugging Face) and hand the call to that hub's client (`hf` or `modelscope`).

The two clients share `paths` (ids, file paths, selection) and `transfer` (the bounded download) and never
import each other.
"""

from __future__ import annotations

import os

from . import settings
from .hf import hf_hub_download, hf_snapshot_download
from .modelscope import ms_hub_download, ms_snapshot_download


def hub_download(repo_id: str, filename: str, *, revision: str = "main", repo_type: str = "model",
                 cache_dir: str | os.PathLike | None = None, endpoint: str | None = None,
                 token: str | bool | None = None, local_files_only: bool = False, force_download: bool = False,
                 progress: bool | None = None, hub: str | None = None) -> str:
    """Download one file of a hub repo into the shared cache and return its local path.

    `repo_id` may be a legacy short id (`bert-base-chinese`); it is stored under its canonical id.
    `revision` is a branch, tag, `refs/pr/N` or a full commit hash (a cached commit costs no request).
    Offline (`local_files_only=True` or HF_HUB_OFFLINE=1) only the cache is read.
    `hub="modelscope"` (or AUTOLOAD_HUB=modelscope) downloads from ModelScope instead (docs/modelscope.md).
    """
    if settings.which_hub(hub, repo_type, force_download=force_download) == "modelscope":
        return ms_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir, endpoint=endpoint,
                               token=token if isinstance(token, str) else None, local_files_only=local_files_only,
                               progress=progress)
    return hf_hub_download(repo_id, filename, revision=revision, repo_type=repo_type, cache_dir=cache_dir,
                           endpoint=endpoint, token=token, local_files_only=local_files_only,
                           force_download=force_download, progress=progress)


def snapshot_download(repo_id: str, *, revision: str = "main", repo_type: str = "model",
                      allow_patterns=None, ignore_patterns=None, cache_dir: str | os.PathLike | None = None,
                      endpoint: str | None = None, token: str | bool | None = None, local_files_only: bool = False,
                      max_workers: int = 8, progress: bool | None = None, hub: str | None = None) -> str:
    """Download the files of a repo at a revision (filtered by fnmatch patterns) and return the snapshot folder.
    `hub="modelscope"` (or AUTOLOAD_HUB=modelscope) downloads from ModelScope instead (docs/modelscope.md)."""
    if settings.which_hub(hub, repo_type) == "modelscope":
        return ms_snapshot_download(repo_id, revision=revision, allow_patterns=allow_patterns,
                                    ignore_patterns=ignore_patterns, cache_dir=cache_dir, endpoint=endpoint,
                                    token=token if isinstance(token, str) else None,
                                    local_files_only=local_files_only, max_workers=max_workers, progress=progress)
    return hf_snapshot_download(repo_id, revision=revision, repo_type=repo_type, allow_patterns=allow_patterns,
                                ignore_patterns=ignore_patterns, cache_dir=cache_dir, endpoint=endpoint, token=token,
                                local_files_only=local_files_only, max_workers=max_workers, progress=progress)
