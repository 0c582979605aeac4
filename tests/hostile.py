"""A hostile hub for the tests: a raw HTTP/1.1 server on 127.0.0.1 whose every answer the test chooses.

`HostileServer(handler)` calls `handler(request) -> Reply` for each request and writes the reply byte for
byte: any header (CR LF, absurd sizes, `../` commits), any status, a body longer or shorter than its
Content-Length, a body dribbled at a few bytes per second, a connection dropped half way, a body that
never ends. Nothing is checked or fixed on the way out; that is the point.

`FakeHub` is a handler that answers the Hugging Face protocol correctly for a set of repos held in
memory; a test passes `tamper(request, reply) -> reply` to corrupt exactly the part it attacks.
`FakeModelScope` does the same for the ModelScope routes.
"""

from __future__ import annotations

import hashlib
import json
import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable
from urllib.parse import parse_qsl, quote, unquote, urlsplit


@dataclass
class Request:
    method: str
    path: str                     # decoded path, no query
    raw_path: str                 # as sent, with the query
    query: dict[str, str]
    headers: dict[str, str]       # lower-cased names


@dataclass
class Reply:
    status: int = 200
    headers: list[tuple[str, str]] | dict[str, str] = field(default_factory=list)
    body: bytes | Iterable[bytes] = b""
    content_length: int | str | None = "auto"  # "auto": len(body) for bytes; None: no header (close-delimited)
    close: bool = False               # close the connection after this reply
    drop_after: int | None = None     # send this many body bytes, then close without finishing
    pause: float = 0.0                # seconds between body chunks (with chunk_size: a slow body)
    chunk_size: int = 64 * 1024

    def header(self, name: str) -> str | None:
        items = self.headers.items() if isinstance(self.headers, dict) else self.headers
        return next((v for k, v in items if k.lower() == name.lower()), None)

    def set_header(self, name: str, value: str) -> "Reply":
        items = list(self.headers.items() if isinstance(self.headers, dict) else self.headers)
        self.headers = [(k, v) for k, v in items if k.lower() != name.lower()] + [(name, value)]
        return self

    def drop_header(self, name: str) -> "Reply":
        items = self.headers.items() if isinstance(self.headers, dict) else self.headers
        self.headers = [(k, v) for k, v in items if k.lower() != name.lower()]
        return self


class _Handler(socketserver.StreamRequestHandler):
    timeout = 30

    def handle(self) -> None:
        server: HostileServer = self.server.owner  # type: ignore[attr-defined]
        while True:
            try:
                line = self.rfile.readline(65537)
            except (OSError, socket.timeout):
                return
            if not line or not line.strip():
                return
            try:
                method, target, _ = line.decode("latin-1").split(" ", 2)
            except ValueError:
                return
            headers: dict[str, str] = {}
            while (h := self.rfile.readline(65537)) not in (b"\r\n", b"\n", b""):
                name, _, value = h.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            if int(headers.get("content-length") or 0):
                self.rfile.read(int(headers["content-length"]))
            split = urlsplit(target)
            request = Request(method, unquote(split.path), target, dict(parse_qsl(split.query)), headers)
            server.requests.append(request)
            try:
                reply = server.handler(request)
            except Exception as err:  # a broken test handler answers 500, visibly
                reply = Reply(500, [("X-Handler-Error", repr(err)[:200].replace("\r", " ").replace("\n", " "))])
            if not self._send(method, reply) or reply.close:
                return

    def _send(self, method: str, reply: Reply) -> bool:
        items = list(reply.headers.items() if isinstance(reply.headers, dict) else reply.headers)
        body = reply.body
        if reply.content_length == "auto" and isinstance(body, (bytes, bytearray)):
            items.append(("Content-Length", str(len(body))))
        elif reply.content_length not in ("auto", None):
            items.append(("Content-Length", str(reply.content_length)))
        close = reply.close or reply.content_length is None
        if close:
            items.append(("Connection", "close"))
        head = f"HTTP/1.1 {reply.status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in items) + "\r\n"
        try:
            self.wfile.write(head.encode("latin-1", "replace"))
            if method != "HEAD":
                chunks = [bytes(body)] if isinstance(body, (bytes, bytearray)) else body
                sent = 0
                for chunk in chunks:
                    for i in range(0, len(chunk), reply.chunk_size):
                        piece = chunk[i:i + reply.chunk_size]
                        if reply.drop_after is not None and sent + len(piece) >= reply.drop_after:
                            self.wfile.write(piece[:reply.drop_after - sent])
                            self.wfile.flush()
                            return False
                        self.wfile.write(piece)
                        self.wfile.flush()
                        sent += len(piece)
                        if reply.pause:
                            time.sleep(reply.pause)
            self.wfile.flush()
        except OSError:
            return False
        return not close


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class HostileServer:
    """`with HostileServer(handler) as srv:` serves on `srv.url`; `srv.requests` records every request."""

    def __init__(self, handler: Callable[[Request], Reply]):
        self.handler = handler
        self.requests: list[Request] = []
        self._server = _TCPServer(("127.0.0.1", 0), _Handler)
        self._server.owner = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def __enter__(self) -> "HostileServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def count(self, method: str | None = None, contains: str = "") -> int:
        return sum(1 for r in self.requests if (method is None or r.method == method) and contains in r.raw_path)


# ---- a correct Hugging Face hub, to be tampered with ---------------------------------------------

def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_lfs(name: str) -> bool:
    return name.endswith((".safetensors", ".bin", ".gguf"))


@dataclass
class FakeHub:
    """Answers HEAD/GET resolve (with Range), /api/models/{id}[/revision/{rev}] and the tree API for
    `repos = {repo_id: {path: bytes}}` at one commit per repo. `tamper(request, reply)` may change any reply."""

    repos: dict[str, dict[str, bytes]]
    tamper: Callable[[Request, Reply], Reply] | None = None
    page_size: int = 1000
    url: str = ""  # set by the test once the server runs (for absolute Link headers)

    def commit(self, repo_id: str) -> str:
        files = self.repos[repo_id]
        return hashlib.sha1(json.dumps(sorted((k, sha256(v)) for k, v in files.items())).encode()).hexdigest()

    def etag(self, name: str, data: bytes) -> str:
        return sha256(data) if is_lfs(name) else git_sha1(data)

    def __call__(self, request: Request) -> Reply:
        reply = self.answer(request)
        return self.tamper(request, reply) if self.tamper else reply

    def answer(self, request: Request) -> Reply:
        path = request.path
        if path.startswith("/api/models/"):
            return self._api(request, path[len("/api/models/"):])
        if "/resolve/" in path:
            raw = request.raw_path.partition("?")[0]
            repo_id, _, rest = raw.lstrip("/").partition("/resolve/")
            revision, _, name = rest.partition("/")
            return self._resolve(request, unquote(repo_id), unquote(revision), unquote(name))
        return _error(404, "NotFound", f"no route {path}")

    def _api(self, request: Request, rest: str) -> Reply:
        for repo_id in self.repos:
            if rest == repo_id or rest.startswith(repo_id + "/"):
                tail = rest[len(repo_id):].lstrip("/")
                break
        else:
            return _error(401, "RepoNotFound", "Repository not found")
        commit = self.commit(repo_id)
        if tail == "" or tail.startswith("revision/"):
            info = {"id": repo_id, "sha": commit, "siblings": [{"rfilename": n} for n in self.repos[repo_id]]}
            return _json(info)
        if tail.startswith("tree/"):
            entries = []
            for name, data in sorted(self.repos[repo_id].items()):
                entry = {"type": "file", "path": name, "size": len(data), "oid": git_sha1(data)}
                if is_lfs(name):
                    entry["lfs"] = {"oid": sha256(data), "size": len(data), "pointerSize": 134}
                entries.append(entry)
            start = int(request.query.get("cursor", "0"))
            page = entries[start:start + self.page_size]
            reply = _json(page)
            if start + self.page_size < len(entries):
                base = request.raw_path.partition("?")[0]
                reply.set_header("Link", f'<{self.url}{base}?recursive=true&expand=false&cursor='
                                         f'{start + self.page_size}>; rel="next"')
            return reply
        return _error(404, "NotFound", "no such API route")

    def _resolve(self, request: Request, repo_id: str, revision: str, name: str) -> Reply:
        files = self.repos.get(repo_id)
        if files is None:
            return _error(401, "RepoNotFound", "Repository not found")
        commit = self.commit(repo_id)
        if name not in files:
            return _error(404, "EntryNotFound", "Entry not found", [("X-Repo-Commit", commit)])
        data = files[name]
        headers = [("X-Repo-Commit", commit), ("ETag", f'"{self.etag(name, data)}"'), ("Accept-Ranges", "bytes")]
        if is_lfs(name):
            headers += [("X-Linked-Etag", f'"{sha256(data)}"'), ("X-Linked-Size", str(len(data)))]
        byte_range = request.headers.get("range", "")
        if byte_range.startswith("bytes=") and byte_range.endswith("-"):
            start = int(byte_range[6:-1])
            headers.append(("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}"))
            return Reply(206, headers, data[start:])
        return Reply(200, headers, data)


# ---- a correct ModelScope hub, to be tampered with -----------------------------------------------

@dataclass
class FakeModelScope:
    """ModelScope's listing and file routes (docs: modelscope-protocol.md) over `repos = {owner/name: {path: bytes}}`."""

    repos: dict[str, dict[str, bytes]]
    tamper: Callable[[Request, Reply], Reply] | None = None

    def __call__(self, request: Request) -> Reply:
        reply = self.answer(request)
        return self.tamper(request, reply) if self.tamper else reply

    def answer(self, request: Request) -> Reply:
        path = request.path
        if not path.startswith("/api/v1/models/"):
            return _json({"Code": 10010205001, "Message": "not found", "Success": False}, 404)
        rest = path[len("/api/v1/models/"):]
        repo_id = "/".join(rest.split("/")[:2])
        tail = rest.split("/")[2:]
        files = self.repos.get(repo_id)
        if files is None:
            return _json({"Code": 10010205001, "Message": "model not found", "Success": False}, 404)
        if not tail:
            return _json({"Code": 200, "Data": {"Name": repo_id.split("/")[1]}, "Success": True})
        if tail == ["revisions"]:
            return _json({"Code": 200, "Success": True,
                          "Data": {"RevisionMap": {"Branches": [{"Revision": "master"}], "Tags": []}}})
        if tail == ["repo", "files"]:
            listing = [{"Name": n.rsplit("/", 1)[-1], "Path": n, "Type": "blob", "Size": len(d),
                        "Sha256": sha256(d), "Revision": "0" * 40} for n, d in sorted(files.items())]
            return _json({"Code": 200, "Data": {"Files": listing}, "Success": True})
        if tail == ["repo"]:
            name = request.query.get("FilePath", "")
            if name not in files:
                return _json({"Code": 10010205001, "Message": "file not found", "Success": False}, 404)
            data = files[name]
            byte_range = request.headers.get("range", "")
            if byte_range.startswith("bytes=") and byte_range.endswith("-"):
                start = int(byte_range[6:-1])
                return Reply(206, [("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")], data[start:])
            return Reply(200, [("Content-Type", "application/octet-stream")], data)
        return _json({"Code": 10010205001, "Message": "no route", "Success": False}, 404)


def _json(obj, status: int = 200) -> Reply:
    return Reply(status, [("Content-Type", "application/json")], json.dumps(obj).encode())


def _error(status: int, code: str, message: str, extra: list[tuple[str, str]] | None = None) -> Reply:
    return Reply(status, [("X-Error-Code", code), ("X-Error-Message", message), *(extra or [])],
                 json.dumps({"error": message}).encode())


def quote_path(name: str) -> str:
    return quote(name)
