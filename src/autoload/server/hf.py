"""Hugging Face routes of the local hub (docs/hf-hub-protocol.md, sections 1, 2, 5, 10). Every function takes
the request's `handler` (a `handler.Handler`) and answers through its public `send_*` methods.

Routes (also under /datasets/... and /api/datasets/...): HEAD/GET /{repo}/resolve/{rev}/{path},
GET /api/models/{repo}[/revision/{rev}], /api/models/{repo}/tree/{rev}[/{path}], /api/models/{repo}/refs,
/api/models/{repo}/commits/{rev}.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from urllib.parse import parse_qsl, quote, unquote, urlencode

from .repos import HubError, Repo, Snapshot, check_path, repo_not_found


def route(handler, raw_path: str, headers: dict[str, str]) -> None:
    """Answer one Hugging Face request (`handler.query` holds the query string)."""
    handler.params = dict(parse_qsl(handler.query))
    segs = raw_path.split("/")[1:]
    token = _token(handler, headers.get("authorization"))
    if segs[:1] == ["api"] and len(segs) >= 3 and segs[1] in ("models", "datasets"):
        return _api(handler, segs[1][:-1], f"/api/{segs[1]}", segs[2:], token)
    kind, prefix = ("dataset", "/datasets") if segs[:1] == ["datasets"] else ("model", "")
    if prefix:
        segs = segs[1:]
    # The repo id has one or two parts: "resolve" comes right after it.
    candidates = [(segs[:n], segs[n:]) for n in (1, 2) if len(segs) >= n + 3 and segs[n] == "resolve"]
    if not candidates:
        raise HubError(404, "NotFound", f"Not found: {raw_path}")
    repo, tail = _open(handler, kind, prefix, candidates, token)  # tail: ["resolve", revision, *path]
    handler.server.hub.check_access(repo, token, files=True)
    revision, path = unquote(tail[1]), check_path("/".join(unquote(s) for s in tail[2:]))
    snap = handler.server.hub.snapshot(repo, revision)
    entry = snap.files.get(path)
    if entry is None:
        raise HubError(404, "EntryNotFound", f"Entry not found: {path}", {"X-Repo-Commit": snap.commit})
    handler.send_file(entry, snap.commit)


def _api(handler, kind: str, prefix: str, segs: list[str], token: str | None) -> None:
    def valid(tail: list[str]) -> bool:
        return (not tail or tail == ["refs"] or (tail[0] in ("revision", "commits") and len(tail) >= 2)
                or (tail[0] == "tree" and len(tail) >= 2))
    candidates = [(segs[:n], segs[n:]) for n in (2, 1) if len(segs) >= n and valid(segs[n:])]
    if not candidates:
        raise HubError(404, "NotFound", "Not found")
    repo, tail = _open(handler, kind, prefix, candidates, token)
    hub = handler.server.hub
    hub.check_access(repo, token, files=False)
    if tail == ["refs"]:
        return handler.send_json(_refs(handler, repo))
    revision = unquote("/".join(tail[1:]) if tail and tail[0] == "revision" else tail[1] if tail else "main")
    snap = hub.snapshot(repo, revision)
    if tail and tail[0] == "commits":  # a written repo's history; a folder repo has its one content commit
        log = hub.store.log(repo.history, snap.commit) if repo.history else [(snap.commit, {
            "summary": "content of the served folder", "description": "", "time": 0.0})]
        return handler.send_json([{"id": c, "title": body["summary"], "message": body["description"],
                                   "authors": [{"user": "autoload"}], "date": _iso(body["time"])} for c, body in log])
    if tail and tail[0] == "tree":
        path = check_path("/".join(unquote(s) for s in tail[2:]).strip("/"))
        return _tree(handler, snap, path)
    handler.send_json(_repo_info(handler, repo, snap))


def _open(handler, kind: str, prefix: str, candidates: list, token: str | None) -> tuple[Repo, list]:
    """The repo of the first (id parts, rest of the path) reading that names one; aliases and
    mis-cased ids redirect to the same path with the canonical id, unless it is a private repo that the
    token does not open (then the name answers as a missing one)."""
    hub = handler.server.hub
    for parts, tail in candidates:
        repo, redirect = hub.lookup(kind, "/".join(unquote(p) for p in parts))
        if repo:
            return repo, tail
        target = hub.lookup(kind, redirect)[0] if redirect else None
        if target and not hub.hidden(target, token):
            location = "/".join([prefix, quote(redirect), *tail]).rstrip("/")
            location += f"?{handler.query}" if handler.query else ""
            raise HubError(307, None, "", {"Location": location})
    raise repo_not_found("/".join(unquote(p) for p in candidates[0][0]), token)


def _token(handler, authorization: str | None) -> str | None:
    """The bearer token (None when absent); a token that is not accepted is a 401."""
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    hub = handler.server.hub
    token = token.strip()
    known = hub.tokens is None or token in hub.tokens or token in hub.write_tokens
    if scheme.lower() != "bearer" or not token or not known:
        raise HubError(401, None, "Invalid credentials in Authorization header")
    return token


def _repo_info(handler, repo: Repo, snap: Snapshot) -> dict:
    blobs = handler.params.get("blobs", "").lower() == "true"
    siblings = []
    for entry in snap.files.values():
        sibling = {"rfilename": entry.path}
        if blobs:
            sibling.update(size=entry.size, blobId=entry.blob_id)
            if entry.lfs:
                sibling["lfs"] = {"sha256": entry.etag, "size": entry.size, "pointerSize": len(entry.pointer)}
        siblings.append(sibling)
    mtime = max((e.mtime for e in snap.files.values()), default=0.0)
    info = {"_id": hashlib.sha1(f"{repo.kind}:{repo.id}".encode()).hexdigest()[:24], "id": repo.id,
            "author": repo.id.split("/")[0] if "/" in repo.id else None, "sha": snap.commit,
            "lastModified": _iso(mtime), "createdAt": _iso(mtime), "private": repo.private,
            "gated": "manual" if repo.gated else False, "disabled": False, "downloads": 0, "likes": 0,
            "tags": [], "siblings": siblings}
    if repo.kind == "model":
        info["modelId"] = repo.id
    return info


def _refs(handler, repo: Repo) -> dict:
    hub, refs = handler.server.hub, {"branches": [], "tags": [], "converts": [], "pullRequests": []}
    for name in sorted(repo.refs, key=lambda n: (n != "main", n)):
        commit = hub.snapshot(repo, name).commit
        if name.startswith("refs/pr/"):
            refs["pullRequests"].append({"name": name, "ref": name, "targetCommit": commit})
        elif name.startswith("refs/convert/"):
            refs["converts"].append({"name": name[len("refs/convert/"):], "ref": name, "targetCommit": commit})
        else:
            group = "tags" if name in repo.tags else "branches"
            ref = f"refs/{'tags' if group == 'tags' else 'heads'}/{name}"
            refs[group].append({"name": name, "ref": ref, "targetCommit": commit})
    return refs


def _tree(handler, snap: Snapshot, path: str) -> None:
    recursive = handler.params.get("recursive", "").lower() == "true"
    # Folders exist through the files under them; each gets a deterministic oid from its content.
    folders: dict = {}  # folder path -> sha1 over the files under it
    for entry in snap.files.values():
        parts = entry.path.split("/")
        for depth in range(1, len(parts)):
            digest = folders.setdefault("/".join(parts[:depth]), hashlib.sha1())
            digest.update(f"{entry.path}\0{entry.etag}\n".encode())
    if path and path not in folders:
        raise HubError(404, "EntryNotFound", f"Entry not found: {path}", {"X-Repo-Commit": snap.commit})
    prefix = f"{path}/" if path else ""
    depth = prefix.count("/")

    def listed(p: str) -> bool:
        return p.startswith(prefix) and (recursive or p.count("/") == depth)
    items = [{"type": "directory", "oid": h.hexdigest(), "size": 0, "path": p}
             for p, h in folders.items() if listed(p)]
    for entry in snap.files.values():
        if listed(entry.path):
            item = {"type": "file", "oid": entry.blob_id, "size": entry.size, "path": entry.path}
            if entry.lfs:
                item["lfs"] = {"oid": entry.etag, "size": entry.size, "pointerSize": len(entry.pointer)}
            items.append(item)
    items.sort(key=lambda item: item["path"])
    try:
        start = int(handler.params.get("cursor", "0"))
    except ValueError:
        raise HubError(400, "BadRequest", "Invalid cursor") from None
    page_size = handler.server.hub.page_size
    headers = {}
    if start + page_size < len(items):
        # The client follows this absolute URL as-is.
        query = urlencode({**handler.params, "cursor": str(start + page_size)})
        headers["Link"] = f'<{handler.server.hub.public_url}{handler.path.partition("?")[0]}?{query}>; rel="next"'
    handler.send_json(items[start:start + page_size], headers)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
