"""ModelScope routes of the local hub server (docs/modelscope.md; the minimal server contract of
/work/shared/docs/modelscope-protocol.md §7). The same repo folders as the Hugging Face routes,
answered under `/api/v1/...` with ModelScope's JSON envelope `{"Code", "Data", "Message", "RequestId", "Success"}`.

Routes: GET /api/v1/models/{o}/{n}, .../revisions, .../repo/files?Revision&Recursive[&Root],
.../repo?Revision&FilePath (Range honoured), and /api/v1/repos/internalAccelerationInfo.
Revision `master` is the folder the HF routes call `main`; hub.json refs and tags are served as they are named.
Tokens come as `Authorization: Bearer` or the `m_session_id` cookie. Standard library only, like the rest of the server.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from urllib.parse import parse_qsl, unquote

from .repos import HubError, Repo

NOT_FOUND_CODE = 10010101  # the business code seen with "Model does not exist." (protocol doc §2)
_sha_lock = threading.Lock()
_sha256: dict[tuple, str] = {}  # (disk path, size, mtime_ns, inode) -> sha256 hex


class MSError(Exception):
    """An error answer: HTTP status, business code and message, sent inside the envelope."""

    def __init__(self, status: int, message: str, code: int = NOT_FOUND_CODE):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def route(handler, raw_path: str) -> None:
    """Answer one `/api/v1/...` request on `handler` (a `handler.Handler`), through its public `send_*` methods."""
    try:
        _route(handler, raw_path)
    except MSError as err:
        _send(handler, err.status, None, message=err.message, code=err.code)


def _route(handler, raw_path: str) -> None:
    params = dict(parse_qsl(handler.query, keep_blank_values=True))
    segs = [unquote(s) for s in raw_path.split("/")[3:]]  # after "/api/v1"
    if segs == ["repos", "internalAccelerationInfo"]:
        return _send(handler, 200, {"InternalRegionQueryAddress": ""})
    if len(segs) < 3 or segs[0] != "models":
        raise MSError(404, f"Not found: {raw_path}", code=404)
    repo_id, tail = f"{segs[1]}/{segs[2]}", segs[3:]
    repo = _open(handler, repo_id)
    if not tail:
        return _send(handler, 200, {"Id": repo.id, "Path": segs[1], "Name": segs[2], "Private": repo.private})
    if tail == ["revisions"]:
        names = sorted(_revision_names(repo))
        branches = [{"Revision": n, "CreatedAt": 0} for n in names if n not in repo.tags]
        tags = [{"Revision": n, "CreatedAt": 0} for n in names if n in repo.tags]
        return _send(handler, 200, {"RevisionMap": {"Branches": branches, "Tags": tags}})
    revision = params.get("Revision") or "master"
    snap = _snapshot(handler, repo, revision)
    if tail == ["repo", "files"]:
        return _send(handler, 200, {"Files": _files(snap, params)})
    if tail == ["repo"]:
        path = params.get("FilePath", "").strip("/")
        entry = snap.files.get(path)
        if entry is None:
            raise MSError(404, f"The file path: {path} does not exist in: {repo.id} at revision {revision}")
        return handler.send_file(entry, snap.commit)
    raise MSError(404, f"Not found: {raw_path}", code=404)


def _open(handler, repo_id: str) -> Repo:
    """The repo, or a 404 (no alias redirects on ModelScope). A private repo that the token does not open
    answers as a missing one; a gated one refuses."""
    hub = handler.server.hub
    repo, _ = hub.lookup("model", repo_id)
    token = _token(handler)
    if repo is None or hub.hidden(repo, token):
        raise MSError(404, f"Model does not exist: {repo_id}")
    if repo.gated and not hub.allowed(repo, token):
        raise MSError(401 if token is None else 403, f"Permission denied for model {repo_id}", code=10010103)
    return repo


def _token(handler) -> str | None:
    """The bearer token or `m_session_id` cookie; one the server does not accept is a 401."""
    scheme, _, token = (handler.headers.get("Authorization") or "").partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    if not token:
        for part in (handler.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == "m_session_id" and value:
                token = value
    if not token:
        return None
    hub = handler.server.hub
    if hub.tokens is not None and token not in hub.tokens and token not in hub.write_tokens:
        raise MSError(401, "The authentication token is invalid.", code=10010103)
    return token


def _revision_names(repo: Repo) -> list[str]:
    return ["master" if name == "main" else name for name in repo.refs if not name.startswith("refs/")]


def _snapshot(handler, repo: Repo, revision: str):
    if revision not in _revision_names(repo):
        raise MSError(404, f"The model: {repo.id} has no revision: {revision}")
    try:
        return handler.server.hub.snapshot(repo, "main" if revision == "master" else revision)
    except HubError as err:
        raise MSError(404, err.message) from None


def _files(snap, params: dict) -> list[dict]:
    root = params.get("Root", "").strip("/")
    recursive = params.get("Recursive", "false").lower() == "true"
    prefix = f"{root}/" if root else ""
    depth = prefix.count("/")
    items, folders = [], set()
    for entry in snap.files.values():
        if not entry.path.startswith(prefix):
            continue
        parts = entry.path.split("/")
        folders.update("/".join(parts[:i]) for i in range(depth + 1, len(parts)))
        if not recursive and entry.path.count("/") != depth:
            continue
        items.append({"Name": parts[-1], "Path": entry.path, "Type": "blob", "Size": entry.size,
                      "Sha256": _file_sha256(entry), "IsLFS": entry.lfs, "Mode": "33188",
                      "Revision": hashlib.sha1(f"{snap.commit}\0{entry.path}".encode()).hexdigest()})
    for folder in sorted(folders):
        if recursive or folder.count("/") == depth:
            items.append({"Name": folder.rsplit("/", 1)[-1], "Path": folder, "Type": "tree", "Size": 0,
                          "Sha256": "", "IsLFS": False, "Mode": "16384", "Revision": snap.commit})
    return sorted(items, key=lambda item: item["Path"])


def _file_sha256(entry) -> str:
    """The content's sha256 (LFS entries carry it already; others are hashed once per version)."""
    if entry.lfs:
        return entry.etag
    st = os.stat(entry.disk)
    key = (entry.disk, st.st_size, st.st_mtime_ns, st.st_ino)
    with _sha_lock:
        if key not in _sha256:
            with open(entry.disk, "rb") as f:
                _sha256[key] = hashlib.file_digest(f, "sha256").hexdigest()
        return _sha256[key]


def _send(handler, status: int, data, *, message: str = "success", code: int = 200) -> None:
    ok = status == 200
    body = {"Code": 200 if ok else code, "Data": data, "Message": message,
            "RequestId": uuid.uuid4().hex, "Success": ok}
    if ok:
        return handler.send_json(body)
    handler.send_answer(status, json.dumps(body).encode(), {"Content-Type": "application/json; charset=utf-8"})
