"""Upload routes of a writable hub (`autoload serve --writable`), the Hugging Face protocol as the real clients
speak it (shared/docs/hub-upload.md): create repo, preupload, the LFS batch API with signed storage URLs (basic and
multipart), verify, the NDJSON commit, branches, tags and whoami. Every route but the storage URLs needs a write
token; history.py stores what they write.

Routes (models, and datasets under /api/datasets and /datasets/):
    POST /api/repos/create                         POST /api/validate-yaml
    POST /api/models/{repo}/preupload/{rev}        POST /api/models/{repo}/commit/{rev}[?create_pr=1]
    POST|DELETE /api/models/{repo}/branch/{name}   POST /api/models/{repo}/tag/{rev}
    POST /{repo}.git/info/lfs/objects/batch        PUT|POST /lfs-upload/{oid}[/part/{n}]?...&sig=  (signed)
    POST /lfs-verify/{oid}                         GET /api/whoami-v2
    DELETE /api/repos/delete
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import time
from urllib.parse import parse_qsl, unquote, urlencode

from . import history
from .history import SHA256, Store
from .repos import COMMIT, HubError, Repo, matches

MAX_JSON = 64 * 2**20          # a JSON request body (create, preupload, batch) may hold at most this
MAX_PATH = 1000                # characters of a file path in a repo
MAX_PART = 255                 # bytes of one path component
URL_LIFETIME = 24 * 3600       # seconds a signed upload URL stays valid
MULTIPART_THRESHOLD = 64 * 2**20  # objects above this go multipart when the client offers it
PART_SIZE = 32 * 2**20
LFS_MIN_SIZE = 10 * 2**20
_REF = re.compile(r"(?!.*\.\.)(?!.*//)(?!/)(?!.*/$)(?!.*\.lock(/|$))[A-Za-z0-9._/-]{1,200}")
_NAME = re.compile(r"(?!.*(--|\.\.))[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_HOST = re.compile(r"[A-Za-z0-9.:\[\]-]{1,300}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def route(handler, raw_path: str, headers: dict[str, str]) -> None:
    """Answer one write request (POST, PUT, DELETE) of the Hugging Face protocol."""
    hub = handler.server.hub
    handler.params = dict(parse_qsl(handler.query))
    segs = [unquote(s) for s in raw_path.split("/")[1:]]
    method = handler.command
    if segs[:1] == ["lfs-upload"] and len(segs) in (2, 4):
        return _storage(handler, segs)
    if not hub.writable:
        raise HubError(403, "ReadOnly", "This hub is read-only: start it with `autoload serve ROOT --writable "
                                        "--write-token TOKEN` to accept uploads")
    if segs == ["api", "validate-yaml"] and method == "POST":
        _json_body(handler)
        return handler.send_json({"errors": [], "warnings": []})
    token = write_token(handler, headers)
    if segs[:1] == ["lfs-verify"] and len(segs) == 2 and method == "POST":
        body = _json_body(handler)
        oid, size = segs[1], body.get("size") if isinstance(body, dict) else None
        if not SHA256.fullmatch(oid) or not hub.store.has_object(oid, size if isinstance(size, int) else None):
            raise HubError(404, "EntryNotFound", f"LFS object {oid} is not stored (or has another size)")
        return handler.send_json({"success": True})
    if segs == ["api", "repos", "create"] and method == "POST":
        return _create_repo(handler, headers, token)
    if segs == ["api", "repos", "delete"] and method == "DELETE":
        return _delete_repo(handler, token)
    if segs[:1] == ["api"] and len(segs) >= 5 and segs[1] in ("models", "datasets"):
        kind = segs[1][:-1]
        for n in (2, 1):
            if len(segs) >= 2 + n + 2 and segs[2 + n] in ("preupload", "commit", "branch", "tag"):
                repo_id, op, rest = "/".join(segs[2:2 + n]), segs[2 + n], "/".join(segs[3 + n:])
                repo = _repo(handler, kind, repo_id)
                if op == "preupload" and method == "POST":
                    return _preupload(handler, repo, rest)
                if op == "commit" and method == "POST":
                    return _commit(handler, headers, repo, rest)
                if op == "branch" and method in ("POST", "DELETE"):
                    return _branch(handler, repo, rest)
                if op == "tag" and method == "POST":
                    return _tag(handler, repo, rest)
    if len(segs) >= 5 and segs[-4:] == ["info", "lfs", "objects", "batch"] and segs[-5].endswith(".git"):
        kind, parts = ("dataset", segs[1:-4]) if segs[0] == "datasets" else ("model", segs[:-4])
        parts[-1] = parts[-1][:-4]
        return _batch(handler, headers, _repo(handler, kind, "/".join(parts)))
    raise HubError(404, "NotFound", f"No {method} route at {raw_path}")


def write_token(handler, headers: dict[str, str]) -> str:
    """The request's write token: 401 without a valid token, 403 with a token that may only read."""
    from .hf import _token
    token = _token(handler, headers.get("authorization"))
    if token is None:
        raise HubError(401, "Unauthorized", "Uploading needs a write token: pass one (token=..., HF_TOKEN)")
    if token not in handler.server.hub.write_tokens:
        raise HubError(403, "Forbidden", "This token can only read: uploading needs a write token of this hub "
                                         "(given with --write-token)")
    return token


def whoami(handler, headers: dict[str, str]) -> None:
    from .hf import _token
    hub = handler.server.hub
    token = _token(handler, headers.get("authorization"))
    if token is None:
        raise HubError(401, "Unauthorized", "Invalid user token")
    writer = token in hub.write_tokens
    handler.send_json({"name": hub.write_tokens.get(token, "reader"), "type": "user", "orgs": [],
                       "auth": {"accessToken": {"role": "write" if writer else "read", "displayName": "autoload"}}})


def no_xet(handler) -> None:
    raise HubError(501, "XetNotSupported", "This hub has no Xet storage: set HF_HUB_DISABLE_XET=1 before starting "
                                            "Python so that huggingface_hub uploads through plain LFS")


# ---- helpers ----

def _json_body(handler, limit: int = MAX_JSON):
    body = handler.read_body(limit)
    try:
        return json.loads(body or b"{}")
    except (ValueError, RecursionError):
        raise HubError(400, "BadRequest", "The request body is not JSON") from None


def _base(handler, headers: dict[str, str]) -> str:
    """The URL the client reached us at (the hub's clients want their own endpoint back in repo URLs)."""
    host = headers.get("host", "")
    return f"http://{host}" if _HOST.fullmatch(host) else handler.server.hub.public_url


def _prefix(kind: str) -> str:
    return "" if kind == "model" else "datasets/"


def _repo(handler, kind: str, repo_id: str) -> Repo:
    """The written repo `repo_id`; a folder repo is first imported into the history store (its current files as
    the first commit, under the folder's content-hash commit id), so its history starts where its readers are."""
    hub = handler.server.hub
    repo, _ = hub.lookup(kind, repo_id)
    if repo is None:
        raise HubError(404, "RepoNotFound", f"Repository not found: {repo_id}. Create it first (create_repo)")
    if repo.history is None:
        if hub.mirror:
            raise HubError(403, "ReadOnly", "A mirrored cache cannot be written")
        folder = hub.store.repo_dir(kind, repo.id)
        with hub.store.lock(folder):
            if not os.path.isfile(os.path.join(folder, "refs.json")):
                snap = hub.snapshot(repo, "main")
                files = {}
                for path, entry in snap.files.items():
                    with open(entry.disk, "rb") as f:
                        record = hub.store.put_stream(f.read, entry.size, blob=not entry.lfs)
                    files[path] = {**record, "lfs": entry.lfs}
                hub.store.create(folder, repo.private, files, "Import of the served folder", snap.commit)
        repo = hub.lookup(kind, repo.id)[0]
    return repo


def check_path(path, what: str = "path") -> str:
    """A file path inside a repo, as an upload names it: relative, '/'-separated, no '.', '..', '.git' or empty
    part, no backslash or control character, at most MAX_PATH characters and MAX_PART bytes a part."""
    if not isinstance(path, str) or not path or len(path) > MAX_PATH:
        raise HubError(400, "BadRequest", f"Invalid {what} {str(path)[:200]!r}: 1 to {MAX_PATH} characters")
    parts = path.split("/")
    if (path.startswith("/") or "\\" in path or _CONTROL.search(path) or re.match(r"[A-Za-z]:", path)
            or any(p in ("", ".", "..", ".git") or len(p.encode()) > MAX_PART for p in parts)):
        raise HubError(400, "BadRequest", f"Invalid {what} {path[:200]!r}: it must be relative, '/'-separated, "
                                          "without '.', '..', '.git' or empty parts, backslashes or control characters")
    return path


def _check_ref(name) -> str:
    if not isinstance(name, str) or not _REF.fullmatch(name) or name.startswith(("refs/", ".")) \
            or COMMIT.fullmatch(name):
        raise HubError(400, "BadRequest", f"Invalid branch or tag name {str(name)[:200]!r}")
    return name


def _sign(hub, *values: str) -> str:
    return hmac.new(hub.upload_secret, "\0".join(values).encode(), hashlib.sha256).hexdigest()


def _upload_href(handler, base: str, repo: Repo, oid: str, size: int, part: int | None = None) -> str:
    expires = str(int(time.time()) + URL_LIFETIME)
    query = {"repo": f"{repo.kind}:{repo.id}", "size": str(size), "expires": expires}
    query["sig"] = _sign(handler.server.hub, oid, query["repo"], query["size"], expires)
    tail = f"/part/{part}" if part else ""
    return f"{base}/lfs-upload/{oid}{tail}?{urlencode(query)}"


# ---- create ----

def _create_repo(handler, headers: dict[str, str], token: str) -> None:
    hub = handler.server.hub
    body = _json_body(handler)
    if not isinstance(body, dict):
        raise HubError(400, "BadRequest", "Expected a JSON object")
    kind = body.get("type") or "model"
    if kind not in ("model", "dataset"):
        raise HubError(400, "BadRequest", f"This hub stores model and dataset repos, not {kind!r}")
    name, namespace = body.get("name"), body.get("organization") or hub.write_tokens[token]
    for part in (name, namespace):
        if not isinstance(part, str) or not _NAME.fullmatch(part) or part.endswith(".git"):
            raise HubError(400, "BadRequest", f"Invalid repo name {str(part)[:200]!r}: letters, digits, '-', '_' "
                                              "and '.', at most 96, no '--' or '..'")
    repo_id = f"{namespace}/{name}"
    url = f"{_base(handler, headers)}/{_prefix(kind)}{repo_id}"
    private = bool(body.get("private")) or body.get("visibility") in ("private", "protected")
    if not create_repo(hub, kind, repo_id, private):
        return handler.send_answer(409, json.dumps({"error": f"You already created this {kind} repo",
                                                    "url": url}).encode(), {"Content-Type": "application/json"})
    handler.send_json({"url": url, "name": repo_id, "id": repo_id})


def _delete_repo(handler, token: str) -> None:
    """Delete a written repo: its folder moves to .hub/deleted/ (objects stay until cleaned); a folder repo of the
    served root is never deleted through the API."""
    hub = handler.server.hub
    body = _json_body(handler)
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        raise HubError(400, "BadRequest", "Expected {name, organization, type}")
    kind = body.get("type") or "model"
    namespace = body.get("organization") or hub.write_tokens[token]
    repo_id = f"{namespace}/{body['name']}"
    repo, _ = hub.lookup(kind, repo_id) if kind in ("model", "dataset") else (None, None)
    if repo is None or repo.id != repo_id:
        raise HubError(404, "RepoNotFound", f"Repository not found: {repo_id}")
    if repo.history is None:
        raise HubError(403, "ReadOnly", f"{repo_id} is a folder of the served root: delete the folder instead")
    with hub.store.lock(repo.history):
        trash = os.path.join(hub.store.dir, "deleted", f"{kind}s--{namespace}--{body['name']}--{time.time_ns()}")
        os.makedirs(os.path.dirname(trash), exist_ok=True)
        os.replace(repo.history, trash)
    handler.send_json({"success": True})


def create_repo(hub, kind: str, repo_id: str, private: bool) -> bool:
    """Create a written repo whose first commit holds the default .gitattributes; False if the id is taken."""
    folder = hub.store.repo_dir(kind, repo_id)
    with hub.store.lock(folder):
        existing, redirect = hub.lookup(kind, repo_id)
        if existing is not None or redirect is not None:
            return False
        gitattributes = hub.store.put_bytes(history.DEFAULT_GITATTRIBUTES.encode())
        hub.store.create(folder, private, {".gitattributes": {**gitattributes, "lfs": False}}, "initial commit")
    return True


# ---- preupload ----

def _preupload(handler, repo: Repo, rev: str) -> None:
    hub = handler.server.hub
    body = _json_body(handler)
    files = body.get("files") if isinstance(body, dict) else None
    if not isinstance(files, list) or len(files) > 25_000:
        raise HubError(400, "BadRequest", "Expected {\"files\": [{path, size, sample}, ...]} (at most 25000)")
    commit = hub.store.resolve(repo.history, rev)
    if commit is None and handler.params.get("create_pr") != "1":
        raise HubError(404, "RevisionNotFound", f"Invalid rev id: {rev}")
    tree = hub.store.commit(repo.history, commit)["files"] if commit else {}
    attributes = body.get("gitAttributes")
    if isinstance(attributes, str):
        patterns = [w[0].lstrip("/") for w in (line.split() for line in attributes.splitlines())
                    if w and "filter=lfs" in w[1:]]
    else:
        patterns = history.lfs_patterns_of(hub.store, tree)
    ignore = body.get("gitIgnore")
    ignored = [line.strip() for line in ignore.splitlines() if line.strip() and not line.startswith("#")] \
        if isinstance(ignore, str) else []
    answer = []
    for item in files:
        if not isinstance(item, dict):
            raise HubError(400, "BadRequest", "Each file must be an object {path, size, sample}")
        path, size = check_path(item.get("path")), item.get("size")
        if not isinstance(size, int) or size < 0:
            raise HubError(400, "BadRequest", f"Invalid size for {path!r}")
        try:
            sample = base64.b64decode(item.get("sample") or "", validate=True)
        except ValueError:
            raise HubError(400, "BadRequest", f"The sample of {path!r} is not base64") from None
        lfs = size > hub.inline_size and (size >= LFS_MIN_SIZE or b"\0" in sample
                                          or history.is_lfs_path(path, patterns))
        entry = {"path": path, "uploadMode": "lfs" if lfs else "regular",
                 "shouldIgnore": any(matches(path, p.rstrip("/")) for p in ignored)}
        current = tree.get(path)
        if current is not None:
            entry["oid"] = current["sha256"] if current["lfs"] else current["blob"]
        answer.append(entry)
    handler.send_json({"files": answer, "commitOid": commit})


# ---- LFS batch and storage ----

def _batch(handler, headers: dict[str, str], repo: Repo) -> None:
    hub = handler.server.hub
    body = _json_body(handler)
    if not isinstance(body, dict) or body.get("operation") != "upload" or not isinstance(body.get("objects"), list):
        raise HubError(400, "BadRequest", "Expected an LFS batch upload request {operation: upload, objects: [...]}")
    transfers = body.get("transfers") or ["basic"]
    multipart = isinstance(transfers, list) and "multipart" in transfers
    base = _base(handler, headers)
    objects = []
    for obj in body["objects"]:
        oid, size = (obj.get("oid"), obj.get("size")) if isinstance(obj, dict) else (None, None)
        if not isinstance(oid, str) or not SHA256.fullmatch(oid) or not isinstance(size, int) or size < 0:
            raise HubError(400, "BadRequest", f"Invalid LFS object {str(obj)[:200]}: oid must be a sha256, size an int")
        if size > hub.max_file_size:
            raise HubError(413, "PayloadTooLarge", f"LFS object {oid} of {size} bytes is over this hub's limit of "
                                                   f"{hub.max_file_size} bytes per file")
        answer = {"oid": oid, "size": size}
        if not hub.store.has_object(oid, size):
            href = _upload_href(handler, base, repo, oid, size)
            upload = {"href": href, "expires_in": URL_LIFETIME}
            if multipart and size > MULTIPART_THRESHOLD:
                parts = -(-size // PART_SIZE)
                upload["header"] = {"chunk_size": str(PART_SIZE), **{
                    f"{n:05d}": _upload_href(handler, base, repo, oid, size, n) for n in range(1, parts + 1)}}
            answer["actions"] = {"upload": upload, "verify": {"href": f"{base}/lfs-verify/{oid}"}}
        objects.append(answer)
    handler.send_answer(200, json.dumps({"transfer": "multipart" if multipart else "basic", "objects": objects,
                                         "hash_algo": "sha256"}).encode(),
                        {"Content-Type": "application/vnd.git-lfs+json"})


def _storage(handler, segs: list[str]) -> None:
    """The signed storage URLs: PUT an object (or a part), POST the multipart completion."""
    hub = handler.server.hub
    oid, p = segs[1], handler.params
    expected = _sign(hub, oid, p.get("repo", ""), p.get("size", ""), p.get("expires", ""))
    if not (SHA256.fullmatch(oid) and hmac.compare_digest(expected, p.get("sig", ""))
            and p.get("expires", "").isdigit() and int(p["expires"]) > time.time()):
        raise HubError(403, "Forbidden", "Invalid or expired upload URL: ask the LFS batch API for a new one")
    size = int(p["size"])
    if len(segs) == 4:  # a part of a multipart upload
        if handler.command != "PUT" or segs[2] != "part" or not segs[3].isdigit():
            raise HubError(404, "NotFound", "Unknown storage route")
        number = int(segs[3])
        start = (number - 1) * PART_SIZE
        length = handler.body_left
        if not 0 <= start < max(size, 1) or length != min(PART_SIZE, size - start):
            raise HubError(400, "BadRequest", f"Part {number} of {oid} must hold {min(PART_SIZE, size - start)} bytes")
        folder = os.path.join(hub.store.tmp, f"parts-{oid}-{size}")
        os.makedirs(folder, exist_ok=True)
        digest = hashlib.sha256()
        tmp = os.path.join(folder, f".{number}.{os.getpid()}.{id(handler)}")
        with open(tmp, "wb") as f:
            while handler.body_left:
                chunk = handler.read_chunk()
                digest.update(chunk)
                f.write(chunk)
        os.replace(tmp, os.path.join(folder, str(number)))
        return handler.send_answer(200, b"", {"ETag": f'"{digest.hexdigest()}"'})
    if handler.command == "PUT":
        if handler.body_left != size:
            raise HubError(400, "BadRequest", f"Object {oid} must be uploaded with {size} bytes, got "
                                              f"Content-Length {handler.body_left}")
        if not hub.store.has_object(oid, size):
            hub.store.put_stream(handler.read_chunk, size, expected=oid, blob=False)
        else:
            handler.read_body(None)
        return handler.send_json({"Code": 200, "Message": "success", "Success": True})
    if handler.command == "POST":  # multipart completion: {oid, parts: [{partNumber, etag}]}
        body = _json_body(handler)
        folder = os.path.join(hub.store.tmp, f"parts-{oid}-{size}")
        count = -(-size // PART_SIZE)
        names = [os.path.join(folder, str(n)) for n in range(1, count + 1)]
        if not hub.store.has_object(oid, size):
            if not all(os.path.isfile(n) for n in names):
                raise HubError(400, "BadRequest", f"Parts of {oid} are missing: upload every part first")
            files = [open(n, "rb") for n in names]
            try:
                index = 0

                def read(n: int) -> bytes:
                    nonlocal index
                    while index < len(files):
                        chunk = files[index].read(n)
                        if chunk:
                            return chunk
                        index += 1
                    return b""
                hub.store.put_stream(read, size, expected=oid, blob=False)
            finally:
                for f in files:
                    f.close()
        shutil.rmtree(folder, ignore_errors=True)
        return handler.send_json({"success": True, "parts": len(body.get("parts", [])) if isinstance(body, dict)
                                  else 0})
    raise HubError(405, "MethodNotAllowed", "Use PUT to upload")


# ---- commit ----

def _commit(handler, headers: dict[str, str], repo: Repo, rev: str) -> None:
    hub = handler.server.hub
    if handler.body_left > hub.max_commit_bytes:
        raise HubError(413, "PayloadTooLarge", f"The commit body of {handler.body_left} bytes is over this hub's "
                                               f"limit of {hub.max_commit_bytes}: upload large files through LFS")
    lines = [line for line in handler.read_body(hub.max_commit_bytes).splitlines() if line.strip()]
    try:
        ops = [json.loads(line) for line in lines]
    except (ValueError, RecursionError):
        raise HubError(400, "BadRequest", "The commit body must be NDJSON: one {key, value} object a line") from None
    if not ops or not all(isinstance(o, dict) and isinstance(o.get("value"), dict) for o in ops) \
            or ops[0].get("key") != "header":
        raise HubError(400, "BadRequest", "The commit body must start with a header line {key: header, value: ...}")
    header = ops[0]["value"]
    summary, description = header.get("summary"), header.get("description") or ""
    if not isinstance(summary, str) or not summary.strip() or not isinstance(description, str):
        raise HubError(400, "BadRequest", "The commit header needs a non-empty summary")
    create_pr = handler.params.get("create_pr") in ("1", "true")
    parent = header.get("parentCommit")
    if parent is not None and (not isinstance(parent, str) or not re.fullmatch(r"[0-9a-f]{7,40}", parent)):
        raise HubError(400, "BadRequest", "parentCommit must be a commit id")
    commit, pr = apply_commit(hub, repo, rev, ops[1:], summary, description, parent, create_pr)
    url = f"{_base(handler, headers)}/{_prefix(repo.kind)}{repo.id}"
    answer = {"success": True, "commitOid": commit, "commitUrl": f"{url}/commit/{commit}", "hookOutput": ""}
    if create_pr:
        answer["pullRequestUrl"] = f"{url}/discussions/{pr}"
    handler.send_json(answer)


def apply_commit(hub, repo: Repo, rev: str, ops: list[dict], summary: str, description: str = "",
                 parent: str | None = None, create_pr: bool = False) -> tuple[str, str | None]:
    """Commit `ops` ({key, value} operations of the NDJSON form) on branch or PR ref `rev`, under the repo's
    lock, after the parent check; returns (commit id, the new PR's number or None). Shared by both protocols."""
    store = hub.store
    folder = repo.history
    with store.lock(folder):
        refs = store.refs(folder)
        pr = rev[len("refs/pr/"):] if rev.startswith("refs/pr/") else None
        head = refs["heads"].get(rev) if pr is None else refs["prs"].get(pr)
        if head is None:
            if store.resolve(folder, rev) is not None:
                raise HubError(400, "BadRequest", f"Cannot commit to {rev!r}: it is not a branch")
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        base = head
        if parent is not None:
            if create_pr:
                base = store.resolve(folder, parent)
                if base is None:
                    raise HubError(404, "RevisionNotFound", f"Invalid rev id: {parent}")
            elif not head.startswith(parent):
                raise HubError(412, "PreconditionFailed", "A commit has happened since. Please refresh and try "
                                                          f"again. ({rev} is at {head}, not {parent})")
        files = dict(store.commit(folder, base)["files"])
        _apply(hub, store, files, ops)
        commit = store.write_commit(folder, [base], files, summary, description)
        if create_pr:
            pr = str(1 + max((int(n) for n in refs["prs"] if n.isdigit()), default=0))
            refs["prs"][pr] = commit
        elif pr is not None:
            refs["prs"][pr] = commit
            pr = None
        else:
            refs["heads"][rev] = commit
        store.write_refs(folder, refs)
    return commit, pr


def _apply(hub, store: Store, files: dict, ops: list[dict]) -> None:
    """Apply the commit's operations, in order, to `files` (the parent's tree)."""
    new_lfs = []
    for op in ops:
        key, value = op.get("key"), op["value"]
        if key == "file":
            path = check_path(value.get("path"))
            content, encoding = value.get("content"), value.get("encoding", "base64")
            if not isinstance(content, str):
                raise HubError(400, "BadRequest", f"No content for {path!r}")
            try:
                data = base64.b64decode(content, validate=True) if encoding == "base64" else content.encode()
            except ValueError:
                raise HubError(400, "BadRequest", f"The content of {path!r} is not base64") from None
            if len(data) > hub.max_file_size:
                raise HubError(413, "PayloadTooLarge", f"{path!r} is over the limit of {hub.max_file_size} bytes")
            files[path] = {**store.put_bytes(data), "lfs": False}
        elif key == "lfsFile":
            path, oid, size = check_path(value.get("path")), value.get("oid"), value.get("size")
            if value.get("algo", "sha256") != "sha256" or not isinstance(oid, str) or not SHA256.fullmatch(oid):
                raise HubError(400, "BadRequest", f"lfsFile {path!r} needs a sha256 oid")
            if not store.has_object(oid, size if isinstance(size, int) else None):
                raise HubError(422, "LfsObjectMissing", f"{path!r}: an LFS pointer pointed to a file that does not "
                                                        f"exist ({oid}, size {size}): upload it through the LFS "
                                                        "batch API first")
            files[path] = {"sha256": oid, "size": os.path.getsize(store.object_path(oid)), "lfs": True, "blob": None}
            new_lfs.append(path)
        elif key == "deletedFile":
            path = check_path(value.get("path"))
            if files.pop(path, None) is None:
                raise HubError(404, "EntryNotFound", f"A file with this name doesn't exist: {path}")
        elif key == "deletedFolder":
            prefix = check_path(str(value.get("path", "")).rstrip("/")) + "/"
            gone = [p for p in files if p.startswith(prefix)]
            if not gone:
                raise HubError(404, "EntryNotFound", f"A file with this name doesn't exist: {prefix}")
            for p in gone:
                del files[p]
        else:
            raise HubError(400, "BadRequest", f"Unknown commit operation {str(key)[:50]!r}")
    folders = {p[:i] for p in files for i in range(len(p)) if p[i] == "/"}
    clash = sorted(folders & set(files))
    if clash:
        raise HubError(400, "BadRequest", f"{clash[0]!r} would be both a file and a folder")
    patterns = history.lfs_patterns_of(store, files)
    missing = [p for p in new_lfs if not history.is_lfs_path(p, patterns)]
    if missing:  # as the hub: LFS files get a .gitattributes line
        old = b""
        if ".gitattributes" in files:
            with open(store.object_path(files[".gitattributes"]["sha256"]), "rb") as f:
                old = f.read()
        lines = "".join(f"{p.replace(' ', '[[:space:]]')} filter=lfs diff=lfs merge=lfs -text\n" for p in missing)
        data = old + (b"" if not old or old.endswith(b"\n") else b"\n") + lines.encode()
        files[".gitattributes"] = {**store.put_bytes(data), "lfs": False}


# ---- branches and tags ----

def _branch(handler, repo: Repo, name: str) -> None:
    store = handler.server.hub.store
    name = _check_ref(name)
    body = _json_body(handler) if handler.command == "POST" else {}
    with store.lock(repo.history):
        refs = store.refs(repo.history)
        if handler.command == "DELETE":
            if name == "main" or refs["heads"].pop(name, None) is None:
                raise HubError(404 if name != "main" else 400, "RevisionNotFound", f"Cannot delete branch {name}")
        else:
            if name in refs["heads"] or name in refs["tags"]:
                raise HubError(409, "Conflict", f"Reference already exists: {name}")
            start = body.get("startingPoint") if isinstance(body, dict) else None
            commit = store.resolve(repo.history, start if isinstance(start, str) and start else "main")
            if commit is None:
                raise HubError(404, "RevisionNotFound", f"Invalid rev id: {start}")
            refs["heads"][name] = commit
        store.write_refs(repo.history, refs)
    handler.send_json({"success": True})


def _tag(handler, repo: Repo, rev: str) -> None:
    store = handler.server.hub.store
    body = _json_body(handler)
    tag = _check_ref(body.get("tag") if isinstance(body, dict) else None)
    with store.lock(repo.history):
        refs = store.refs(repo.history)
        if tag in refs["tags"] or tag in refs["heads"]:
            raise HubError(409, "Conflict", f"Tag {tag} already exists")
        commit = store.resolve(repo.history, rev)
        if commit is None:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        refs["tags"][tag] = commit
        store.write_refs(repo.history, refs)
    handler.send_json({"success": True})

