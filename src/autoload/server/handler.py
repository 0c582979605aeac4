"""One HTTP connection of the local hub: read a request, pick the routes (Hugging Face or ModelScope, by
path), send the answer. The answer helpers (`send_file`, `send_json`, `send_answer`, `send_hub_error`,
`start_answer`) are public: both route modules call them. A test's `Fault` reaches the request only through
`faults.send_fault` and `faults.write_body`."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote

from . import faults, hf, modelscope, ms_writes, writes
from .repos import CONTENT_TYPES, FileEntry, HubError, Request

log = logging.getLogger("autoload.server")

_UNSAFE_IN_HEADER = re.compile(r"[\x00-\x1f\x7f]|[^\x00-\xff]")  # control characters and non-latin-1
MAX_RANGE = 200            # longer Range values are ignored (the whole file is sent)
MAX_IGNORED_BODY = 65536   # a GET or HEAD may carry a body this large, read and thrown away
MAX_DRAINED_BODY = 16 << 20  # a refused upload's body is read (and dropped) up to this size before the answer


class HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    hub = None  # the HubServer, set by it: the handler reads repos and settings through it

    def handle_error(self, request, client_address) -> None:
        log.debug("error while serving %s", client_address, exc_info=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "autoload-hub/1"
    timeout = 120  # idle keep-alive connections are closed after this long
    # headers and body go out in two writes: without TCP_NODELAY the body waits ~40 ms for a delayed ACK
    disable_nagle_algorithm = True
    server: HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.hub.track_connection(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.hub.track_connection(self.connection, False)

    def log_message(self, format: str, *args) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        hub = self.server.hub
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.fault, self.started = None, False
        try:
            self._discard_body()
        except HubError as err:  # the stream can no longer be trusted: answer, then close
            err.headers["Connection"] = "close"
            return self.send_hub_error(err)
        hub.record(Request(self.command, self.path, headers))
        self.fault = hub.fault(self.command, self.path, headers) if hub.fault else None
        try:
            if self.fault and self.fault.delay:
                time.sleep(self.fault.delay)
            if self.fault and self.fault.status is not None:
                faults.send_fault(self, self.fault)
            else:
                self._route(headers)
        except HubError as err:
            self.send_hub_error(err)
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client went away: nothing to say
        except Exception:
            log.exception("hub server: %s %s failed", self.command, self.path)
            self.close_connection = True
            if not self.started:
                self.send_hub_error(HubError(500, None, "Internal server error"))

    do_HEAD = do_GET

    def do_POST(self) -> None:
        """A write (POST, PUT, DELETE): its body is read by the route, through read_body / read_chunk."""
        hub = self.server.hub
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.fault, self.started, self.body_left = None, False, 0
        hub.record(Request(self.command, self.path, headers))
        try:
            lengths = set(self.headers.get_all("Content-Length") or [])
            if "Transfer-Encoding" in self.headers or len(lengths) > 1:
                raise HubError(411, "LengthRequired", "Send the body with one Content-Length (no chunked encoding)")
            length = lengths.pop().strip() if lengths else "0"
            if not re.fullmatch(r"[0-9]{1,18}", length):
                raise HubError(400, "BadRequest", "Invalid Content-Length")
            self.body_left = int(length)
            self.fault = hub.fault(self.command, self.path, headers) if hub.fault else None
            if self.fault and self.fault.delay:
                time.sleep(self.fault.delay)
            if self.fault and self.fault.status is not None:
                faults.send_fault(self, self.fault)
            else:
                raw_path, _, self.query = self.path.partition("?")
                if raw_path.split("/")[1:3] == ["api", "v1"]:  # ModelScope's upload API
                    ms_writes.route(self, [unquote(s) for s in raw_path.split("/")[3:]])
                else:
                    writes.route(self, raw_path, headers)
        except HubError as err:
            if self.body_left <= MAX_DRAINED_BODY:  # so that the client reads the answer, not a reset
                self.read_body(None)
            self.send_hub_error(err)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception:
            log.exception("hub server: %s %s failed", self.command, self.path)
            self.close_connection = True
            if not self.started:
                self.send_hub_error(HubError(500, None, "Internal server error"))
        if self.body_left:  # an unread body would be parsed as the next request
            self.close_connection = True

    do_PUT = do_DELETE = do_POST

    def read_chunk(self, n: int = 1 << 20) -> bytes:
        """Up to `n` bytes of the request body (b"" at its end)."""
        chunk = self.rfile.read(min(n, self.body_left)) if self.body_left else b""
        self.body_left -= len(chunk)
        if not chunk and self.body_left:
            raise ConnectionError("the client closed the connection mid-body")
        return chunk

    def read_body(self, limit: int | None) -> bytes:
        """The whole request body; 413 when it is over `limit` bytes (None: read and drop it)."""
        if limit is not None and self.body_left > limit:
            raise HubError(413, "PayloadTooLarge", f"The request body is over {limit} bytes")
        parts = []
        while self.body_left:
            chunk = self.read_chunk()
            if limit is not None:
                parts.append(chunk)
        return b"".join(parts)

    def _discard_body(self) -> None:
        """Read and drop a body sent with a GET or HEAD, so it is never parsed as the next request."""
        if "Transfer-Encoding" in self.headers:
            raise HubError(400, "BadRequest", "Transfer-Encoding is not accepted on GET or HEAD")
        lengths = set(self.headers.get_all("Content-Length") or [])
        if not lengths:
            return
        length = lengths.pop()
        if lengths or not re.fullmatch(r"[0-9]{1,18}", length.strip()):
            raise HubError(400, "BadRequest", "Invalid Content-Length")
        if int(length) > MAX_IGNORED_BODY:
            raise HubError(413, "PayloadTooLarge", f"A {self.command} body may hold at most {MAX_IGNORED_BODY} bytes")
        if len(self.rfile.read(int(length))) < int(length):
            self.close_connection = True

    def _route(self, headers: dict[str, str]) -> None:
        raw_path, _, self.query = self.path.partition("?")
        if raw_path.split("/")[1:3] == ["api", "v1"]:  # ModelScope: its own auth and JSON envelope
            return modelscope.route(self, raw_path)
        if raw_path == "/openapi/v1/users/me":
            return ms_writes.users_me(self)
        if raw_path == "/api/whoami-v2":
            return writes.whoami(self, headers)
        if "xet-write-token" in raw_path.split("/"):
            return writes.no_xet(self)
        hf.route(self, raw_path, headers)

    # ---- answers ----

    def send_file(self, entry: FileEntry, commit: str) -> None:
        """A file's bytes (or, for HEAD, its headers), honouring one Range."""
        headers = {"X-Repo-Commit": commit, "ETag": f'"{entry.etag}"', "Accept-Ranges": "bytes",
                   "Content-Type": CONTENT_TYPES.get(os.path.splitext(entry.path)[1], "application/octet-stream")}
        if entry.lfs:
            headers.update({"X-Linked-Etag": f'"{entry.etag}"', "X-Linked-Size": str(entry.size)})
        status, start, end = 200, 0, entry.size - 1
        if "Range" in self.headers:
            byte_range = _parse_range(self.headers["Range"], entry.size)
            if byte_range == "unsatisfiable":
                raise HubError(416, "RangeNotSatisfiable", f"Range not satisfiable: {self.headers['Range']}",
                               {"Content-Range": f"bytes */{entry.size}", "X-Repo-Commit": commit})
            if byte_range:
                status, (start, end) = 206, byte_range
                headers["Content-Range"] = f"bytes {start}-{end}/{entry.size}"
        headers["Content-Length"] = str(end - start + 1)
        self.start_answer(status, headers)
        if self.command == "GET" and end >= start:
            with open(entry.disk, "rb") as f:
                self._write_body(f, start, end - start + 1)

    def send_json(self, obj, headers: dict[str, str] | None = None) -> None:
        """A 200 answer with `obj` as JSON."""
        body = json.dumps(obj).encode()
        self.send_answer(200, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})

    def send_hub_error(self, err: HubError) -> None:
        """An error answer the way the Hugging Face hub writes it (X-Error-Code, X-Error-Message, JSON body)."""
        if err.status == 307:  # a redirect to the canonical path: relative, with no body, as the hub
            return self.send_answer(307, b"", err.headers)
        # Header values must be latin-1: an id or path from the URL might not be.
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "X-Error-Message": err.message.encode("ascii", "replace").decode(), **err.headers}
        if err.code:
            headers["X-Error-Code"] = err.code
        self.send_answer(err.status, json.dumps({"error": err.message}).encode(), headers)

    def send_answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        """`status`, `headers` and `body` (not for HEAD), with its Content-Length."""
        self.start_answer(status, {**headers, "Content-Length": str(len(body))})
        if self.command != "HEAD" and body:
            self._write_body(io.BytesIO(body), 0, len(body))

    def start_answer(self, status: int, headers: dict[str, str]) -> None:
        """The status line and headers (values made safe for a header line)."""
        self.started = True
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, _header_value(value))
        self.end_headers()

    def _write_body(self, f, offset: int, count: int) -> None:
        """Send `count` bytes of `f` from `offset`, through the request's fault if it has one."""
        fault = self.fault
        if not fault or (fault.truncate_after is None and not fault.corrupt and not fault.rate):
            self.connection.sendfile(f, offset, count)  # zero-copy for real files
            return
        faults.write_body(self, f, offset, count, fault)


def _header_value(value: str) -> str:
    """`value` fit for a header line: control characters and non-latin-1 percent-encoded, so nothing decoded
    from a request can end the line or add one."""
    return _UNSAFE_IN_HEADER.sub(lambda m: quote(m[0], safe=""), value)


def _parse_range(value: str, size: int) -> tuple[int, int] | str | None:
    """(start, end) inclusive, "unsatisfiable", or None to ignore a header we do not understand (or too long
    to be a real one: huge numbers cost time, and over 4300 digits int() refuses them)."""
    match = len(value) <= MAX_RANGE and re.fullmatch(r"\s*bytes=([0-9]*)-([0-9]*)\s*", value)
    if not match or match[1] == match[2] == "":
        return None
    if match[1] == "":  # "bytes=-N": the last N bytes
        suffix = int(match[2])
        return (max(0, size - suffix), size - 1) if suffix and size else "unsatisfiable"
    start, end = int(match[1]), int(match[2]) if match[2] else size - 1
    if start >= size:
        return "unsatisfiable"
    return (start, min(end, size - 1)) if start <= end else None
