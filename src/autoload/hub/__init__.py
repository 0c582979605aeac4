"""The hub client (Hugging Face and ModelScope protocols): `hub_download`, `snapshot_download`, errors.

Importing this package is cheap: the download machinery (requests, filelock, tqdm) loads on first use.
"""

from .errors import *  # noqa: F401,F403  (plain exception classes, no heavy imports)
from .errors import __all__ as _errors

_UPLOADS = ("create_repo", "create_branch", "create_commit", "upload_file", "upload_folder", "CommitOperationAdd",
            "CommitOperationDelete", "CommitInfo", "RepoUrl")
__all__ = ["hub_download", "snapshot_download", *_UPLOADS, *_errors]


def __getattr__(name: str):
    if name in ("hub_download", "snapshot_download"):
        from . import download
        return getattr(download, name)
    if name in _UPLOADS:
        from . import upload
        return getattr(upload, name)
    raise AttributeError(f"module 'autoload.hub' has no attribute {name!r}")
