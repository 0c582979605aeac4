"""Fault injection for tests: a `Fault` breaks one request of the local hub (status, headers and body
instead of the answer, a delay, a cut or inverted body, a throttled rate).

Set `HubServer.fault` to a function `(method, path, headers) -> Fault | None`. The request path touches this
module through two calls only: `send_fault` (a fault with a status answers in place of the route) and
`write_body` (the body of a normal answer, cut, corrupted or throttled as the fault says).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

CHUNK = 1024 * 1024
_FLIP = bytes(255 - i for i in range(256))  # translate table that inverts every byte


@dataclass
class Fault:
    """What `HubServer.fault` returns to break one request (None answers normally)."""
    status: int | None = None           # answer this status with `headers` and `body` instead
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    truncate_after: int | None = None   # close the connection after this many body bytes
    corrupt: bool = False               # invert every body byte (same length)
    delay: float = 0                    # seconds to sleep before answering
    rate: int | None = None             # throttle the body to this many bytes per second


def send_fault(handler, fault: Fault) -> None:
    """Answer `fault.status` with the fault's headers and body on `handler` (a server.handler.Handler)."""
    # A Content-Length given by the fault wins (a HEAD may announce a size); if it does not match
    # the body, close the connection so the next request is not read from a desynchronised stream.
    length = next((v for k, v in fault.headers.items() if k.lower() == "content-length"), None)
    headers = {k: v for k, v in fault.headers.items() if k.lower() != "content-length"}
    handler.start_answer(fault.status, {**headers, "Content-Length": length or str(len(fault.body))})
    if handler.command != "HEAD":
        handler.wfile.write(fault.body)
    handler.close_connection = handler.close_connection or (length is not None and length != str(len(fault.body)))


def write_body(handler, f, offset: int, count: int, fault: Fault) -> None:
    """Send `count` bytes of `f` from `offset` on `handler`, cut after `fault.truncate_after` bytes, inverted
    when `fault.corrupt`, at most `fault.rate` bytes a second."""
    limit = count if fault.truncate_after is None else min(count, fault.truncate_after)
    step = max(1, min(CHUNK, fault.rate // 10)) if fault.rate else CHUNK  # ~10 writes a second
    f.seek(offset)
    sent, began = 0, time.monotonic()
    while sent < limit and (chunk := f.read(min(step, limit - sent))):
        handler.wfile.write(chunk.translate(_FLIP) if fault.corrupt else chunk)
        sent += len(chunk)
        if fault.rate:
            time.sleep(max(0.0, began + sent / fault.rate - time.monotonic()))
    if sent < count:
        handler.close_connection = True  # the announced Content-Length is never reached
