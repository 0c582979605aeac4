"""ModelScope upload routes of a writable hub (shared/docs/hub-upload.md §3): create, login, the LFS
"validate" batch, the JSON commit, and `/openapi/v1/users/me`, answered in ModelScope's envelope. The storage
URLs, the history store and the commit logic are the Hugging Face side's (writes.py, history.py): both protocols
write the same repos. Branch `master` is `main`.

    POST /api/v1/models                                          {Path, Name, Visibility, ...}
    POST /api/v1/login                                           {AccessToken}
    POST /api/v1/repos/models/{o}/{n}/info/lfs/objects/batch     {operation: upload, objects: [{oid, size}]}
    POST /api/v1/repos/models/{o}/{n}/commit/{revision}          {commit_message, actions: [...]}
    GET  /openapi/v1/users/me
"""

from __future__ import annotations

import json

from . import writes
from .history import SHA256
from .modelscope import MSError, _send, _token
from .repos import HubError

EXISTS_CODE = 10010101001  # modelscope.cn's "model already exists" business code
BAD_TOKEN_CODE = 10010103009
MAX_ACTIONS = 2000


def route(handler, segs: list[str]) -> None:
    """Answer one write under /api/v1 (segs: the decoded path segments after it)."""
    try:
        _route(handler, segs)
    except MSError as err:
        _send(handler, err.status, None, message=err.message, code=err.code)
    except HubError as err:
        _send(handler, err.status, None, message=err.message, code=err.status)


def users_me(handler) -> None:
    hub = handler.server.hub
    token = _safe_token(handler)
    if token is None:
        return handler.send_answer(401, b'{"success": false}', {"Content-Type": "application/json"})
    handler.send_json({"success": True, "data": {"username": hub.write_tokens.get(token, "reader")}})


def _safe_token(handler):
    try:
        return _token(handler)
    except MSError:
        return None


def _writer(handler) -> str:
    hub = handler.server.hub
    token = _token(handler)
    if token is None:
        raise MSError(401, "Please log in first: uploading needs a write token", code=10010103)
    if token not in hub.write_tokens:
        raise MSError(403, "no write permission: this token can only read", code=10010103)
    return token


def _route(handler, segs: list[str]) -> None:
    hub = handler.server.hub
    if handler.command != "POST":
        raise MSError(405, "Use POST", code=405)
    if segs == ["login"]:
        body = _body(handler)
        token = body.get("AccessToken") if isinstance(body, dict) else None
        if not isinstance(token, str) or not (token in hub.write_tokens or hub.tokens is None
                                              or token in hub.tokens):
            raise MSError(400, "The access token is invalid", code=BAD_TOKEN_CODE)
        return _send(handler, 200, {"AccessToken": token, "Username": hub.write_tokens.get(token, "reader"),
                                    "Email": ""})
    if not hub.writable:
        raise MSError(403, "This hub is read-only: start it with `autoload serve ROOT --writable --write-token "
                           "TOKEN` to accept uploads", code=403)
    token = _writer(handler)
    if segs == ["models"]:
        body = _body(handler)
        if not isinstance(body, dict):
            raise MSError(400, "Expected a JSON object {Path, Name, Visibility}", code=400)
        owner, name = body.get("Path") or hub.write_tokens[token], body.get("Name")
        for part in (owner, name):
            if not isinstance(part, str) or not writes._NAME.fullmatch(part):
                raise MSError(400, f"Invalid model name {str(part)[:200]!r}", code=400)
        if not writes.create_repo(hub, "model", f"{owner}/{name}", body.get("Visibility") in (1, 3)):
            raise MSError(400, f"Model {owner}/{name} already exists", code=EXISTS_CODE)
        return _send(handler, 200, {"Path": owner, "Name": name})
    if len(segs) >= 6 and segs[:2] == ["repos", "models"]:
        repo = writes._repo(handler, "model", f"{segs[2]}/{segs[3]}")
        tail = segs[4:]
        if tail == ["info", "lfs", "objects", "batch"]:
            return _batch(handler, repo)
        if tail[0] == "commit" and len(tail) >= 2:
            return _commit(handler, repo, "/".join(tail[1:]))
    raise MSError(404, f"Not found: /api/v1/{'/'.join(segs)}", code=404)


def _body(handler):
    try:
        return json.loads(handler.read_body(writes.MAX_JSON) or b"{}")
    except (ValueError, RecursionError):
        raise MSError(400, "The request body is not JSON", code=400) from None


def _batch(handler, repo) -> None:
    hub = handler.server.hub
    body = _body(handler)
    objects = body.get("objects") if isinstance(body, dict) else None
    if not isinstance(objects, list):
        raise MSError(400, "Expected {operation: upload, objects: [{oid, size}]}", code=400)
    base = writes._base(handler, {k.lower(): v for k, v in handler.headers.items()})
    answer = []
    for obj in objects:
        oid, size = (obj.get("oid"), obj.get("size")) if isinstance(obj, dict) else (None, None)
        if not isinstance(oid, str) or not SHA256.fullmatch(oid) or not isinstance(size, int) or size < 0:
            raise MSError(400, f"Invalid object {str(obj)[:200]}", code=400)
        if size > hub.max_file_size:
            raise MSError(413, f"Object {oid} of {size} bytes is over the limit of {hub.max_file_size}", code=413)
        item = {"oid": oid, "size": size}
        if not hub.store.has_object(oid, size):
            item["actions"] = {"upload": {"href": writes._upload_href(handler, base, repo, oid, size)}}
        answer.append(item)
    _send(handler, 200, {"objects": answer})


def _commit(handler, repo, revision: str) -> None:
    hub = handler.server.hub
    body = _body(handler) if handler.body_left <= hub.max_commit_bytes else None
    if body is None:
        raise MSError(413, f"The commit body is over the limit of {hub.max_commit_bytes} bytes", code=413)
    actions = body.get("actions") if isinstance(body, dict) else None
    message = body.get("commit_message") if isinstance(body, dict) else None
    if not isinstance(actions, list) or not isinstance(message, str) or not message.strip():
        raise MSError(400, "Expected {commit_message, actions: [...]}", code=400)
    if len(actions) > MAX_ACTIONS:
        raise MSError(422, f"commit request exceeds actions limit ({MAX_ACTIONS})", code=422)
    ops = []
    for action in actions:
        if not isinstance(action, dict):
            raise MSError(400, "Each action must be an object", code=400)
        kind, path = action.get("action"), action.get("path")
        if kind == "delete":
            ops.append({"key": "deletedFile", "value": {"path": path}})
        elif kind in ("create", "update") and action.get("type") == "lfs":
            ops.append({"key": "lfsFile", "value": {"path": path, "algo": "sha256", "oid": action.get("sha256"),
                                                    "size": action.get("size")}})
        elif kind in ("create", "update"):
            ops.append({"key": "file", "value": {"path": path, "content": action.get("content") or "",
                                                 "encoding": "base64"}})
        else:
            raise MSError(400, f"Unknown action {str(kind)[:50]!r}", code=400)
    description = body.get("commit_description")
    commit, _ = writes.apply_commit(hub, repo, "main" if revision == "master" else revision, ops, message.strip(),
                                    description if isinstance(description, str) else "")
    _send(handler, 200, {"oid": commit, "CommitId": commit})
