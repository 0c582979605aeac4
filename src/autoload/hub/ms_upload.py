"""Publishing over the ModelScope protocol (`hub="modelscope"`; shared/docs/hub-upload.md §3): create the model
(an existing one is fine), list what the revision holds (unchanged files are not sent), the LFS "validate" batch,
PUTs to the URLs it answers (no token off the endpoint's origin), then JSON commits of at most 256 actions and
~8 MiB of inline content each. Which files go to LFS is the client's choice, with the modelscope SDK's rule.
Models only; `main` is ModelScope's `master`. Entry points: `upload.create_repo` / `create_commit` with
`hub="modelscope"`."""

from __future__ import annotations

import base64
import os
from urllib.parse import quote

from . import modelscope
from .errors import HubHTTPError
from .commits import (CommitInfo, CommitOperationAdd, CommitOperationDelete, RepoUrl, _json, _Repo, _send,
                     _upload_one)

LFS_THRESHOLD = 64 * 1024
INLINE_NAMES = {"readme.md", ".gitattributes", ".gitignore", "configuration.json", "configuration.yaml",
                "configuration.yml", "dataset_infos.json", "config.json", ".msc", ".mdl"}
LFS_SUFFIXES = set(".bin .safetensors .pt .pth .ckpt .h5 .onnx .msgpack .model .npy .npz .pkl .pickle .pb .tflite "
                   ".zip .tar .gz .tgz .7z .xz .zst .rar .arrow .parquet .joblib .ftz .ot .wasm .bz2 .mlmodel .gguf"
                   .split())
MAX_ACTIONS = 256
MAX_INLINE = 8 * 2**20
BATCH = 64


def _repo(repo_id: str, endpoint: str | None, token) -> _Repo:
    repo = _Repo.make(repo_id, "model", modelscope.ms_endpoint(endpoint), token if isinstance(token, str) else None)
    repo.token = modelscope.ms_token(token if isinstance(token, str) else None) if token is not False else None
    repo.cookie = True
    return repo


def create_repo(repo_id: str, *, private: bool | None = None, exist_ok: bool = False, token=None,
                endpoint: str | None = None) -> RepoUrl:
    repo = _repo(repo_id, endpoint, token)
    owner, _, name = repo_id.rpartition("/")
    if not owner:
        raise ValueError(f"ModelScope repo ids are 'owner/name', not {repo_id!r}")
    body = {"Path": owner, "Name": name, "Visibility": 1 if private else 5, "License": "Apache-2.0"}
    try:
        _send("POST", f"{repo.endpoint}/api/v1/models", repo, what="Creating the model", json_body=body, retry=False)
    except HubHTTPError as err:
        exists = err.status in (400, 409) and "exist" in (err.server_message or "").lower()
        if not (exists and exist_ok):
            raise
    return RepoUrl(f"{repo.endpoint}/models/{repo_id}", repo_id=repo_id, repo_type="model", endpoint=repo.endpoint)


def is_lfs(op: CommitOperationAdd) -> bool:
    name = op.path_in_repo.rsplit("/", 1)[-1].lower()
    if name in INLINE_NAMES:
        return False
    return op.size > LFS_THRESHOLD or os.path.splitext(name)[1] in LFS_SUFFIXES


def remote_files(repo_id: str, revision: str, endpoint, token) -> dict[str, dict]:
    """Path -> listing entry at `revision` ({} for a repo or revision that has none yet)."""
    ctx = {"repo_id": repo_id, "revision": modelscope.ms_revision(revision),
           "endpoint": modelscope.ms_endpoint(endpoint),
           "token": None if token is False else modelscope.ms_token(token if isinstance(token, str) else None)}
    try:
        return modelscope.list_files(ctx)
    except HubHTTPError as err:
        if err.status == 404:
            return {}
        raise


def create_commit(repo_id: str, operations: list, *, commit_message: str, commit_description: str | None = None,
                  revision: str | None = None, token=None, endpoint: str | None = None,
                  progress: bool | None = None) -> CommitInfo:
    repo = _repo(repo_id, endpoint, token)
    revision = modelscope.ms_revision(revision)
    remote = remote_files(repo_id, revision, endpoint, token)
    adds = [op for op in operations if isinstance(op, CommitOperationAdd)
            and (remote.get(op.path_in_repo) or {}).get("Sha256") != op.sha256]
    actions = []
    for op in operations:
        if isinstance(op, CommitOperationDelete):
            gone = [p for p in remote if p.startswith(op.path_in_repo + "/")] if op.is_folder else [op.path_in_repo]
            actions += [({"action": "delete", "path": p, "type": "normal", "size": 0, "sha256": "", "content": "",
                          "encoding": ""}, 0) for p in gone]
    lfs = [op for op in adds if is_lfs(op)]
    for op in adds:
        op.upload_mode = "lfs" if op in lfs else "regular"
    _upload_blobs(repo, lfs, progress)
    for op in adds:
        verb = "update" if op.path_in_repo in remote else "create"
        if op.upload_mode == "lfs":
            actions.append(({"action": verb, "path": op.path_in_repo, "type": "lfs", "size": op.size,
                             "sha256": op.sha256, "content": "", "encoding": ""}, 0))
        else:
            content = base64.b64encode(op.content()).decode()
            actions.append(({"action": verb, "path": op.path_in_repo, "type": "normal", "size": op.size,
                             "sha256": "", "content": content, "encoding": "base64"}, len(content)))
    batches, current, inline = [], [], 0
    for action, size in actions:
        if current and (len(current) >= MAX_ACTIONS or inline + size > MAX_INLINE):
            batches.append(current)
            current, inline = [], 0
        current.append(action)
        inline += size
    if current:
        batches.append(current)
    url = f"{repo.endpoint}/api/v1/repos/models/{repo_id}/commit/{quote(revision, safe='')}"
    oid = None
    for number, batch in enumerate(batches, 1):
        message = commit_message + (f" (batch {number}/{len(batches)})" if len(batches) > 1 else "")
        body = {"commit_message": message, "actions": batch}
        if commit_description:
            body["commit_description"] = commit_description
        answer = _json(_send("POST", url, repo, what="The commit", json_body=body, retry=False), repo, "the commit")
        data = answer.get("Data") if isinstance(answer, dict) else None
        if isinstance(answer, dict) and answer.get("Success") is False:
            raise HubHTTPError(f"The commit to ModelScope model '{repo_id}' on {repo.endpoint} failed: "
                               f"{str(answer.get('Message'))[:300]}", repo_id=repo_id, endpoint=repo.endpoint)
        oid = data.get("oid") if isinstance(data, dict) else None
    url = f"{repo.endpoint}/models/{repo_id}"
    return CommitInfo(f"{url}/commit/{oid}" if oid else url, oid=oid, commit_message=commit_message,
                      commit_description=commit_description or "",
                      repo_url=RepoUrl(url, repo_id=repo_id, repo_type="model", endpoint=repo.endpoint))


def _upload_blobs(repo: _Repo, ops: list[CommitOperationAdd], progress) -> None:
    url = f"{repo.endpoint}/api/v1/repos/models/{repo.repo_id}/info/lfs/objects/batch"
    todo = []
    by_oid = {op.sha256: op for op in ops}
    for start in range(0, len(ops), BATCH):
        body = {"operation": "upload", "objects": [{"oid": op.sha256, "size": op.size}
                                                   for op in ops[start:start + BATCH]]}
        answer = _json(_send("POST", url, repo, what="The LFS validate request", json_body=body), repo,
                       "the LFS validate answer")
        data = answer.get("Data", answer) if isinstance(answer, dict) else None
        for obj in (data.get("objects") if isinstance(data, dict) else None) or []:
            op = by_oid.get(obj.get("oid")) if isinstance(obj, dict) else None
            actions = obj.get("actions") if op is not None else None
            if isinstance(actions, dict) and isinstance(actions.get("upload"), dict):
                todo.append((op, {"upload": actions["upload"]}))
    if not todo:
        return
    from .commits import _progress_bar
    bar = _progress_bar(repo, sum(op.size for op, _ in todo), progress)
    try:
        for op, actions in todo:
            _upload_one(repo, op, actions, bar)
    finally:
        if bar is not None:
            bar.close()
