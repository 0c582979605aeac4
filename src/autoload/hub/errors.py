"""Typed errors of the hub client.

Every error names what the user asked for (repo id, file, revision, endpoint) and says
what to do next. The class tree mirrors huggingface_hub's where users catch by type:
`RepositoryNotFoundError`, `GatedRepoError`, `RevisionNotFoundError`, `EntryNotFoundError`,
`LocalEntryNotFoundError` (a `FileNotFoundError`), plus `IntegrityError` and `OfflineModeError`.
"""

from __future__ import annotations


class HubError(Exception):
    """Base class of every error raised by the hub client."""

    def __init__(self, message: str, *, repo_id: str | None = None, filename: str | None = None,
                 revision: str | None = None, endpoint: str | None = None):
        super().__init__(message)
        self.repo_id = repo_id
        self.filename = filename
        self.revision = revision
        self.endpoint = endpoint

    def __str__(self) -> str:  # OSError (FileNotFoundError) would format errno/filename instead
        return str(self.args[0]) if self.args else ""


class HubHTTPError(HubError):
    """The hub answered with an HTTP error. `status` and `request_id` come from the response."""

    def __init__(self, message: str, *, status: int | None = None, request_id: str | None = None,
                 server_message: str | None = None, **context):
        super().__init__(message, **context)
        self.status = status
        self.request_id = request_id
        self.server_message = server_message


class MalformedResponseError(HubHTTPError):
    """The server's answer is not of the protocol's shape: not JSON, too large or too deep, a missing key,
    a wrong type, or a value that would become an unsafe path, name or size (`value` holds it)."""

    def __init__(self, message: str, *, url: str | None = None, value=None, **context):
        super().__init__(message, **context)
        self.url = url
        self.value = value


class RetryLimitError(HubHTTPError):
    """The server kept asking to wait (429/503 with Retry-After or RateLimit) or kept failing past the
    retry budget (AUTOLOAD_MAX_RETRY_WAIT seconds of waiting, AUTOLOAD_MAX_RETRIES tries)."""


class AuthenticationError(HubHTTPError):
    """An upload without a token, or with one the hub does not know (HTTP 401)."""


class WriteAccessError(HubHTTPError, PermissionError):
    """The token may read but not write to this repo or namespace (HTTP 403)."""


class CommitConflictError(HubHTTPError):
    """The branch moved since `parent_commit` (HTTP 412), or the repo, branch or tag already exists (HTTP 409)."""


class PayloadTooLargeError(HubHTTPError):
    """A file or a commit is over the hub's size limit (HTTP 413)."""


class QuotaExceededError(HubHTTPError):
    """The hub refused the upload for a storage or rate quota (HTTP 402, 429 or 507)."""


class RepositoryNotFoundError(HubHTTPError):
    """The repo does not exist, is private, or the token has no access to it."""


class GatedRepoError(RepositoryNotFoundError):
    """The repo is gated: the user must accept its conditions on the hub and pass a token."""


class RevisionNotFoundError(HubHTTPError):
    """The branch, tag or commit does not exist in the repo."""


class EntryNotFoundError(HubHTTPError, FileNotFoundError):
    """The file does not exist in the repo at that revision."""


class LocalEntryNotFoundError(HubError, FileNotFoundError):
    """The file is not in the local cache and the hub could not (or may not) be asked."""


class OfflineModeError(LocalEntryNotFoundError):
    """Offline mode (HF_HUB_OFFLINE / local_files_only) is on and the file is not cached."""


class IncompleteSnapshotError(LocalEntryNotFoundError):
    """A cached snapshot lacks files that its recorded file list names."""

    def __init__(self, message: str, *, snapshot_path: str, missing: list[str], **context):
        super().__init__(message, **context)
        self.snapshot_path = snapshot_path
        self.missing = missing


class IntegrityError(HubError):
    """Downloaded bytes do not match the size or hash the hub announced; they were deleted."""


class CacheLockTimeoutError(HubError, TimeoutError):
    """Another process held a blob's download lock longer than AUTOLOAD_LOCK_TIMEOUT seconds."""


class UnsafePathError(HubError, ValueError):
    """A file path would escape the snapshot folder (`..`, absolute, drive letter)."""


class InvalidRepoIdError(HubError, ValueError):
    """The repo id is not of the form `name` or `namespace/name`."""


class InvalidRevisionError(HubError, ValueError):
    """The caller's revision is not a valid branch, tag or commit name (git ref rules)."""


__all__ = [
    "HubError", "HubHTTPError", "RepositoryNotFoundError", "GatedRepoError", "RevisionNotFoundError",
    "EntryNotFoundError", "LocalEntryNotFoundError", "OfflineModeError", "IncompleteSnapshotError",
    "IntegrityError", "UnsafePathError", "InvalidRepoIdError", "InvalidRevisionError", "MalformedResponseError",
    "RetryLimitError", "CacheLockTimeoutError", "AuthenticationError", "WriteAccessError", "CommitConflictError",
    "PayloadTooLargeError", "QuotaExceededError",
]
