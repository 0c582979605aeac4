"""Publishing over the Hugging Face protocol: `create_repo`, `create_branch`, `create_commit`, `upload_file`,
`upload_folder` (docs/publishing.md; wire formats in shared/docs/hub-upload.md).

One commit is: preupload (the hub says, per file, regular or LFS, and gives the oid it holds, so unchanged files
are left out) -> the LFS batch API, offering `basic` and `multipart` only (never Xet: the hub's LFS bridge accepts
plain LFS), PUT to the storage URLs it answers, streamed from disk with the sha256 computed once beforehand ->
the NDJSON commit. The token goes only to the endpoint's origin (storage URLs elsewhere never see it);
preupload, batch and PUTs are retried, the commit is sent once. Errors are typed: AuthenticationError (401),
WriteAccessError (403), CommitConflictError (409/412), PayloadTooLargeError (413), QuotaExceededError.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import requests

from . import http, settings
from .cache import UnsafeValueError, check_revision, shown
from .commits import (CommitInfo, CommitOperationAdd, CommitOperationDelete, RepoUrl, _json, _progress_bar, _Repo,
                      _send, _upload_one, check_repo_path)
from .errors import (AuthenticationError, CommitConflictError, HubHTTPError, InvalidRevisionError,
                     RevisionNotFoundError, WriteAccessError)
from .paths import select_files

logger = logging.getLogger("autoload.hub")

BATCH = 256                 # files per preupload / LFS batch request, as huggingface_hub
PARALLEL_UPLOADS = 4
_TYPES = {"model": ("models", ""), "dataset": ("datasets", "datasets/")}
__all__ = ["create_repo", "create_branch", "create_commit", "upload_file", "upload_folder", "CommitOperationAdd",
           "CommitOperationDelete", "CommitInfo", "RepoUrl", "check_repo_path"]


# -- public API -----------------------------------------------------------------------------------

def _modelscope(hub: str | None, repo_type: str) -> bool:
    return settings.which_hub(hub, repo_type) == "modelscope"


def create_repo(repo_id: str, *, repo_type: str = "model", private: bool | None = None, exist_ok: bool = False,
                token: str | bool | None = None, endpoint: str | None = None, hub: str | None = None) -> RepoUrl:
    """Create `repo_id` (`namespace/name`; a bare `name` goes to the token owner's namespace). With
    `exist_ok=True` an existing repo is fine. Returns its RepoUrl (`.repo_id` is the full id).
    `hub="modelscope"` (or AUTOLOAD_HUB): a ModelScope model, on MODELSCOPE_ENDPOINT."""
    if _modelscope(hub, repo_type):
        from . import ms_upload
        return ms_upload.create_repo(repo_id, private=private, exist_ok=exist_ok, token=token, endpoint=endpoint)
    name = repo_id.split("/")[-1] if isinstance(repo_id, str) else repo_id
    repo = _Repo.make(repo_id, repo_type, endpoint, token)
    body = {"name": name, "organization": repo_id.split("/")[0] if "/" in repo_id else None}
    if repo_type != "model":
        body["type"] = repo_type
    if private is not None:
        body["private"] = bool(private)
    try:
        response = _send("POST", f"{repo.endpoint}/api/repos/create", repo, what="Creating the repo",
                         json_body=body, retry=False)
    except CommitConflictError:
        if not exist_ok:
            raise
        return repo.url
    except (WriteAccessError, AuthenticationError):
        if exist_ok and _exists(repo):  # a reader of an existing repo may go on (e.g. to open a PR)
            return repo.url
        raise
    url = _json(response, repo, "create repo").get("url", "")
    full_id = url[len(repo.endpoint):].lstrip("/") if url.startswith(repo.endpoint) else repo.repo_id
    if repo_type == "dataset" and full_id.startswith("datasets/"):
        full_id = full_id[len("datasets/"):]
    repo.repo_id = full_id if full_id.count("/") == 1 else repo.repo_id
    return repo.url


def _exists(repo: _Repo) -> bool:
    try:
        return http.request("GET", repo.api(), endpoint=repo.endpoint, token=repo.token, retries=1).status_code == 200
    except requests.RequestException:
        return False


def create_branch(repo_id: str, branch: str, *, revision: str | None = None, repo_type: str = "model",
                  exist_ok: bool = False, token: str | bool | None = None, endpoint: str | None = None) -> None:
    """Create `branch` at `revision` (default: the head of main)."""
    repo = _Repo.make(repo_id, repo_type, endpoint, token)
    branch = _revision(branch, repo_id)
    body = {"startingPoint": _revision(revision, repo_id)} if revision else {}
    try:
        _send("POST", repo.api("branch", quote(branch, safe="")), repo, what=f"Creating branch '{branch}'",
              json_body=body, retry=False)
    except CommitConflictError:
        if not exist_ok:
            raise


def upload_file(path_or_fileobj, path_in_repo: str, repo_id: str, *, repo_type: str = "model",
                revision: str | None = None, commit_message: str | None = None, commit_description: str | None = None,
                create_pr: bool = False, parent_commit: str | None = None, token: str | bool | None = None,
                endpoint: str | None = None, progress: bool | None = None, hub: str | None = None) -> CommitInfo:
    """Upload one file (a path, bytes or a binary file object) as `path_in_repo`, in one commit."""
    operation = CommitOperationAdd(path_in_repo, path_or_fileobj)
    return create_commit(repo_id, [operation], commit_message=commit_message or f"Upload {path_in_repo}",
                         commit_description=commit_description, revision=revision, repo_type=repo_type,
                         create_pr=create_pr, parent_commit=parent_commit, token=token, endpoint=endpoint,
                         progress=progress, hub=hub)


def upload_folder(repo_id: str, folder_path: str | os.PathLike, *, path_in_repo: str = "", repo_type: str = "model",
                  revision: str | None = None, commit_message: str | None = None,
                  commit_description: str | None = None, create_pr: bool = False, parent_commit: str | None = None,
                  allow_patterns=None, ignore_patterns=None, delete_patterns=None, token: str | bool | None = None,
                  endpoint: str | None = None, progress: bool | None = None, hub: str | None = None) -> CommitInfo:
    """Upload a folder's files (filtered by `allow_patterns`/`ignore_patterns`, fnmatch globs on paths
    relative to the folder) under `path_in_repo`, in one commit. Remote files under `path_in_repo` matching
    `delete_patterns` and not re-uploaded are deleted in the same commit. `.git` folders are never uploaded."""
    folder = os.fspath(folder_path)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"No folder {folder!r} to upload")
    prefix = path_in_repo.strip("/")
    local = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d not in (".git", ".cache"))
        for name in sorted(filenames):
            local.append(os.path.relpath(os.path.join(dirpath, name), folder).replace(os.sep, "/"))
    chosen = select_files(local, allow_patterns, ignore_patterns)
    with ThreadPoolExecutor(PARALLEL_UPLOADS) as pool:  # hashing releases the GIL: shards hash side by side
        adds = list(pool.map(lambda p: CommitOperationAdd(f"{prefix}/{p}" if prefix else p, os.path.join(folder, p)),
                             chosen))
    operations: list = list(adds)
    if delete_patterns is not None:
        kept = {op.path_in_repo for op in adds}
        if _modelscope(hub, repo_type):
            from . import ms_upload
            remote = list(ms_upload.remote_files(repo_id, revision, endpoint, token))
        else:
            repo = _Repo.make(repo_id, repo_type, endpoint, token)
            try:
                remote = _list_remote(repo, _revision(revision, repo_id) if revision else "main")
            except RevisionNotFoundError:  # a new branch: it will start from main
                remote = _list_remote(repo, "main")
        under = [p[len(prefix) + 1:] if prefix else p for p in remote if not prefix or p.startswith(prefix + "/")]
        for rel in select_files(under, delete_patterns, None):
            path = f"{prefix}/{rel}" if prefix else rel
            if path not in kept and path != ".gitattributes":
                operations.append(CommitOperationDelete(path))
    return create_commit(repo_id, operations, commit_message=commit_message or "Upload folder using autoload",
                         commit_description=commit_description, revision=revision, repo_type=repo_type,
                         create_pr=create_pr, parent_commit=parent_commit, token=token, endpoint=endpoint,
                         progress=progress, hub=hub)


def _list_remote(repo: _Repo, revision: str) -> list[str]:
    url = repo.api("tree", quote(revision, safe="")) + "?recursive=true&expand=false"
    paths = []
    while url:
        response = _send("GET", url, repo, what="Listing the repo's files")
        items = _json(response, repo, "the file list")
        paths += [i["path"] for i in items if isinstance(i, dict) and i.get("type") == "file"]
        url = response.links.get("next", {}).get("url")
    return paths


def _revision(revision, repo_id: str) -> str:
    try:
        return check_revision(revision)
    except UnsafeValueError as err:
        raise InvalidRevisionError(f"Invalid revision for '{repo_id}': {err}.", repo_id=repo_id,
                                   revision=str(revision)) from None


def create_commit(repo_id: str, operations: list, *, commit_message: str, commit_description: str | None = None,
                  revision: str | None = None, repo_type: str = "model", create_pr: bool = False,
                  parent_commit: str | None = None, token: str | bool | None = None, endpoint: str | None = None,
                  progress: bool | None = None, hub: str | None = None) -> CommitInfo:
    """One commit of `operations` (CommitOperationAdd / CommitOperationDelete) on `revision` (default main; a
    branch that does not exist yet is created from main), or a pull request against it with `create_pr=True`.
    `hub="modelscope"`: ModelScope's commit API (no pull requests, no parent check; `main` is `master`)."""
    if not commit_message or not commit_message.strip():
        raise ValueError("commit_message must not be empty")
    if _modelscope(hub, repo_type):
        if create_pr or parent_commit:
            raise ValueError("hub='modelscope' uploads support neither create_pr nor parent_commit")
        from . import ms_upload
        return ms_upload.create_commit(repo_id, operations, commit_message=commit_message,
                                       commit_description=commit_description, revision=revision, token=token,
                                       endpoint=endpoint, progress=progress)
    repo = _Repo.make(repo_id, repo_type, endpoint, token)
    revision = _revision(revision or "main", repo_id)
    if parent_commit is not None and not re.fullmatch(r"[0-9a-f]{7,40}", str(parent_commit)):
        raise ValueError(f"parent_commit {parent_commit!r} is not a commit id")
    paths = [op.path_in_repo for op in operations]
    if len(set(paths)) != len(paths):
        raise ValueError("Each path may appear once in a commit")
    if revision != "main" and not revision.startswith("refs/") and not re.fullmatch(r"[0-9a-f]{40}", revision):
        create_branch(repo.repo_id, revision, repo_type=repo_type, exist_ok=True, token=token, endpoint=endpoint)
    rev_quoted = quote(revision, safe="")
    query = "?create_pr=1" if create_pr else ""
    adds = [op for op in operations if isinstance(op, CommitOperationAdd)]
    deletes = [op for op in operations if isinstance(op, CommitOperationDelete)]
    kept = _preupload(repo, adds, rev_quoted, query)
    if not kept and not deletes:
        info = _json(_send("GET", repo.api("revision", rev_quoted), repo, what="Reading the revision"), repo,
                     "the revision")
        logger.info("No files have changed since the last commit of %s; no commit made.", repo.repo_id)
        sha = info.get("sha") if isinstance(info, dict) else None
        return CommitInfo(f"{repo.url}/commit/{sha}", oid=sha, commit_message=commit_message,
                          commit_description=commit_description or "", repo_url=repo.url)
    lfs = [op for op in kept if op.upload_mode == "lfs"]
    if lfs:
        _upload_lfs(repo, lfs, None if create_pr else revision, progress)
    header = {"summary": commit_message.strip(), "description": commit_description or ""}
    if parent_commit:
        header["parentCommit"] = parent_commit
    lines = [{"key": "header", "value": header}]
    for op in kept:
        if op.upload_mode == "lfs":
            lines.append({"key": "lfsFile", "value": {"path": op.path_in_repo, "algo": "sha256", "oid": op.sha256,
                                                      "size": op.size}})
        else:
            lines.append({"key": "file", "value": {"path": op.path_in_repo, "encoding": "base64",
                                                   "content": base64.b64encode(op.content()).decode()}})
    for op in deletes:
        key = "deletedFolder" if op.is_folder else "deletedFile"
        lines.append({"key": key, "value": {"path": op.path_in_repo + ("/" if op.is_folder else "")}})
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    response = _send("POST", repo.api("commit", rev_quoted) + query, repo, what="The commit", body=body, retry=False,
                     headers={"content-type": "application/x-ndjson"})
    answer = _json(response, repo, "the commit")
    oid = answer.get("commitOid") if isinstance(answer, dict) else None
    if not isinstance(oid, str) or not re.fullmatch(r"[0-9a-f]{40}", oid):
        raise http.malformed(f"a commit answer without a commitOid ({shown(str(answer), 200)})", endpoint=repo.endpoint,
                             url=response.url, repo_id=repo.repo_id)
    return CommitInfo(answer.get("commitUrl") or f"{repo.url}/commit/{oid}", oid=oid, commit_message=commit_message,
                      commit_description=commit_description or "", repo_url=repo.url,
                      pr_url=answer.get("pullRequestUrl") if create_pr else None)


def _preupload(repo: _Repo, adds: list[CommitOperationAdd], rev_quoted: str, query: str) -> list:
    """Ask the hub how to send each file; return those it does not already hold, their upload_mode set."""
    kept = []
    for start in range(0, len(adds), BATCH):
        chunk = adds[start:start + BATCH]
        files = [{"path": op.path_in_repo, "size": op.size, "sample": base64.b64encode(op.sample).decode()}
                 for op in chunk]
        response = _send("POST", repo.api("preupload", rev_quoted) + query, repo, what="Preupload",
                         json_body={"files": files})
        answer = _json(response, repo, "preupload")
        modes = {f.get("path"): f for f in (answer.get("files") if isinstance(answer, dict) else None) or []
                 if isinstance(f, dict)}
        for op in chunk:
            info = modes.get(op.path_in_repo)
            if info is None or info.get("uploadMode") not in ("lfs", "regular"):
                raise http.malformed(f"a preupload answer without {op.path_in_repo!r}", endpoint=repo.endpoint,
                                     url=response.url, repo_id=repo.repo_id)
            if info.get("shouldIgnore"):
                continue
            op.upload_mode = "regular" if op.size == 0 else info["uploadMode"]
            remote = info.get("oid")
            if remote is not None:
                local = op.sha256 if op.upload_mode == "lfs" else op.git_blob_sha1()
                if remote == local:
                    continue
            kept.append(op)
    return kept


# -- LFS ------------------------------------------------------------------------------------------

def _upload_lfs(repo: _Repo, ops: list[CommitOperationAdd], ref: str | None, progress: bool | None) -> None:
    """Send the LFS files the hub does not hold yet (batch API, then basic or multipart PUTs, then verify)."""
    url = f"{repo.endpoint}/{_TYPES[repo.repo_type][1]}{repo.repo_id}.git/info/lfs/objects/batch"
    by_oid = {op.sha256: op for op in ops}
    todo = []
    for start in range(0, len(ops), BATCH):
        body = {"operation": "upload", "transfers": ["basic", "multipart"], "hash_algo": "sha256",
                "objects": [{"oid": op.sha256, "size": op.size} for op in ops[start:start + BATCH]]}
        if ref is not None:
            body["ref"] = {"name": ref}
        response = _send("POST", url, repo, what="The LFS batch request", json_body=body,
                         headers={"accept": "application/vnd.git-lfs+json",
                                  "content-type": "application/vnd.git-lfs+json"})
        answer = _json(response, repo, "the LFS batch answer")
        objects = answer.get("objects") if isinstance(answer, dict) else None
        if not isinstance(objects, list):
            raise http.malformed("an LFS batch answer without objects", endpoint=repo.endpoint, url=url,
                                 repo_id=repo.repo_id)
        for obj in objects:
            op = by_oid.get(obj.get("oid")) if isinstance(obj, dict) else None
            if op is None:
                continue
            if obj.get("error"):
                raise HubHTTPError(f"The hub refused LFS object {op.path_in_repo!r} of '{repo.repo_id}': "
                                   f"{shown(str(obj['error']), 300)}", repo_id=repo.repo_id, endpoint=repo.endpoint)
            actions = obj.get("actions") or {}
            if actions.get("upload"):
                todo.append((op, actions))
    if not todo:
        return
    bar = _progress_bar(repo, sum(op.size for op, _ in todo), progress)
    try:
        with ThreadPoolExecutor(min(PARALLEL_UPLOADS, len(todo))) as pool:
            for future in [pool.submit(_upload_one, repo, op, actions, bar) for op, actions in todo]:
                future.result()
    finally:
        if bar is not None:
            bar.close()
