"""One file's bytes from a server into a partial file, bounded and verified; shared by the Hugging Face
and ModelScope clients. No cache layout here: the caller names the partial file and renames it.

What a hostile or broken server cannot do to it:
- send more than the announced size: reading stops at size + 1 byte and the bytes are deleted;
- inflate a compressed body: identity is asked for, and an encoded answer is decoded with a bound;
- stall: a low-speed limit (AUTOLOAD_LOW_SPEED_LIMIT bytes/s over AUTOLOAD_LOW_SPEED_TIME s) on top of
  the idle timeout;
- loop: a dropped connection is resumed with Range, and the retry count only resets when the download
  gets further than ever before (a server that ignores Range and drops half way runs out of tries);
- leave bad bytes: size and hash are checked, a failed check deletes the file, retries once, then raises.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Callable

import requests
import urllib3

from . import http, settings
from .cache import shown
from .errors import HubHTTPError, IntegrityError, RetryLimitError

logger = logging.getLogger("autoload.hub")

READ_SIZE = 256 * 1024          # per read from the socket
HASH_CHUNK = 8 * 1024 * 1024
UNKNOWN_SIZE_LIMIT = 50 * 10**9  # a body of unannounced size is cut here (huggingface_hub's plain-HTTP limit)


class _Stalled(requests.ConnectionError):
    """The body arrives slower than the low-speed limit: handled like a dropped connection."""


class _TooLong(Exception):
    """The body goes past the announced size."""


@dataclass
class Source:
    """Where the bytes come from and what they must be."""
    url: str
    endpoint: str                    # the hub: the token and origin_headers go to its origin only
    size: int | None                 # announced size (None: unknown, bounded by UNKNOWN_SIZE_LIMIT)
    algorithm: str | None = None     # "sha256", "git-sha1" or None (size check only)
    digest: str | None = None        # expected hex digest
    token: str | None = None
    origin_headers: dict | None = None
    context: dict = field(default_factory=dict)  # repo_id, revision, filename, endpoint for errors
    raise_for_status: Callable[[requests.Response], None] = lambda response: None

    @property
    def name(self) -> str:
        return shown(self.context.get("filename") or self.url)

    def where(self) -> str:
        return f"{self.name} of '{self.context.get('repo_id')}' from {self.endpoint}"


def _hasher(source: Source, size: int | None):
    if source.algorithm == "sha256":
        return hashlib.sha256()
    if source.algorithm == "git-sha1" and size is not None:
        h = hashlib.sha1()
        h.update(b"blob %d\0" % size)
        return h
    return None


class _Digest:
    """Hashes a download while it is written, in a worker thread (hashlib releases the GIL on large
    buffers), so the check overlaps with the network and costs no second read of the file.
    A resumed download first hashes the `prefix` bytes already on disk."""

    def __init__(self, source: Source, partial: str, prefix: int):
        self.hasher = _hasher(source, source.size)
        self.queue: queue.Queue = queue.Queue(maxsize=64)
        self.thread = None
        if self.hasher is not None:
            self.thread = threading.Thread(target=self._run, args=(partial, prefix), daemon=True)
            self.thread.start()

    def _run(self, partial: str, prefix: int) -> None:
        with open(partial, "rb") as f:
            while prefix > 0 and (chunk := f.read(min(HASH_CHUNK, prefix))):
                self.hasher.update(chunk)
                prefix -= len(chunk)
        while (chunk := self.queue.get()) is not None:
            self.hasher.update(chunk)

    def feed(self, chunk: bytes) -> None:
        if self.thread is not None:
            self.queue.put(chunk)

    def close(self) -> str | None:
        """Finish and return the hex digest (None when there is nothing to check)."""
        if self.thread is None:
            return None
        self.queue.put(None)
        self.thread.join()
        self.thread = None
        return self.hasher.hexdigest()


def download(source: Source, partial: str, bar) -> None:
    """Bring `partial` to the complete, verified content of `source`, resuming what is there.

    A failed size or hash check deletes the bytes and downloads once more from scratch; a second failure
    raises IntegrityError. Network trouble past the retry budget raises HubHTTPError, keeping the bytes
    for the next run to resume."""
    for attempt in range(2):
        try:
            digest = _stream(source, partial, bar)
            problem = _verify(partial, source, digest)
        except _TooLong as err:
            problem = str(err)
        if problem is None:
            _chmod_like_folder(partial)
            return
        os.unlink(partial)
        logger.warning("Integrity check failed for %s (%s); the bytes were deleted%s.", source.where(), problem,
                       ", downloading again" if attempt == 0 else "")
    raise IntegrityError(f"Downloaded {source.where()} twice and both copies failed the check: {problem}. The bad "
                         "bytes were deleted from the cache. Retry later; if it persists the server, a mirror or a "
                         "proxy is sending wrong data.", **source.context)


def _chmod_like_folder(path: str) -> None:
    """Give the file the mode a new file gets in its folder (probed, never by flipping the process's umask)."""
    probe = f"{path}.mode-probe"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        os.close(fd)
        os.chmod(path, os.stat(probe).st_mode & 0o777)
    except OSError:
        pass
    finally:
        try:
            os.unlink(probe)
        except OSError:
            pass


def _verify(path: str, source: Source, digest: str | None) -> str | None:
    size = os.path.getsize(path)
    if source.size is not None and size != source.size:
        return f"expected {source.size} bytes, got {size}"
    if digest is not None and source.digest is not None and digest != source.digest:
        return f"{source.algorithm} is {digest}, expected {source.digest}"
    return None


class _Body:
    """The bytes of one response, read in bounded steps: decoded when the server compressed them anyway,
    never past `limit` bytes of content, and checked against the low-speed limit."""

    def __init__(self, response: requests.Response, limit: int):
        self.raw = response.raw
        self.limit = limit
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("identity", "", "gzip", "x-gzip", "deflate"):
            raise HubHTTPError(f"The server sent the file with Content-Encoding {shown(encoding)}, which autoload "
                               "does not decode (it asks for identity).", status=response.status_code)
        self.decoder = zlib.decompressobj(47) if encoding not in ("identity", "") else None  # gzip or zlib
        self.speed_limit, self.window = settings.low_speed_limit(), settings.low_speed_time()
        self.window_start, self.window_bytes = time.monotonic(), 0

    @property
    def encoded(self) -> bool:
        return self.decoder is not None

    def chunks(self, offset: int):
        """Yield content chunks; `offset` is where the content already written ends."""
        while True:
            room = self.limit - offset + 1  # one byte past the limit proves the body is too long
            data = self.raw.read1(READ_SIZE if self.decoder else min(READ_SIZE, room), decode_content=False)
            if not data:
                if self.decoder is not None:
                    data = self.decoder.flush()
                    if data:
                        offset += len(data)
                        self._check(offset)
                        yield data
                return
            self._speed(len(data))
            if self.decoder is not None:
                data = self.decoder.decompress(data, room)
                if self.decoder.unconsumed_tail:
                    raise _TooLong(f"the compressed body inflates past the announced {self.limit} bytes")
            offset += len(data)
            self._check(offset)
            yield data

    def _check(self, offset: int) -> None:
        if offset > self.limit:
            raise _TooLong(f"the server sent more than the announced {self.limit} bytes")

    def _speed(self, n: int) -> None:
        self.window_bytes += n
        now = time.monotonic()
        if now - self.window_start >= self.window:
            rate = self.window_bytes / (now - self.window_start)
            if self.speed_limit and rate < self.speed_limit:
                raise _Stalled(f"{rate:.0f} bytes/s for {now - self.window_start:.0f} s, below the low-speed limit "
                               f"of {self.speed_limit:.0f} bytes/s (AUTOLOAD_LOW_SPEED_LIMIT/AUTOLOAD_LOW_SPEED_TIME)")
            self.window_start, self.window_bytes = now, 0


def _stream(source: Source, partial: str, bar) -> str | None:
    """Download into `partial` from where it ends; return the content's digest (see `_Digest`)."""
    open(partial, "ab").close()  # exists from here on, also for an empty file
    with bar.file(source.context.get("filename") or source.url, source.size, os.path.getsize(partial)) as file_bar:
        run = _Run(source, partial, file_bar)
        try:
            return run.loop()
        finally:
            run.digest.close()


class _Run:
    """One download's state across its GETs: the bytes on disk (`offset`) and the digest fed with them."""

    def __init__(self, source: Source, partial: str, file_bar):
        self.source, self.partial, self.file_bar = source, partial, file_bar
        self.offset = os.path.getsize(partial)
        if source.size is not None and self.offset > source.size:
            self.offset = 0
        if self.offset:
            logger.info("Resuming %s at byte %d", source.where(), self.offset)
        self.digest = _Digest(source, partial, self.offset)

    def loop(self) -> str | None:
        # Tries reset only when the download gets further than ever before: a server that ignores Range and
        # drops every connection half way runs out of them; a flaky link that keeps progressing does not.
        failures, best, attempts = 0, self.offset, 0
        max_attempts = 20 * (settings.max_retries() + 1)
        while True:
            attempts += 1
            try:
                self.get()
                return self.digest.close()  # complete by its own length; _verify compares sizes and hashes
            except (requests.ConnectionError, requests.Timeout, urllib3.exceptions.HTTPError) as err:
                if self.offset > best and not isinstance(err, _Stalled):  # a dribble is no progress
                    failures = 0
                best = max(best, self.offset)
                failures += 1
                if failures > settings.max_retries() or attempts >= max_attempts:
                    raise RetryLimitError(
                        f"Download of {self.source.where()} keeps failing ({_short(err)}; {attempts} tries); "
                        f"{self.offset} bytes are kept in the cache and the next run resumes from there.",
                        **self.source.context) from err
                wait = min(8.0, settings.retry_backoff() * 2 ** (failures - 1))
                logger.info("Connection lost on %s at byte %d (%s); resuming in %.1fs", self.source.name,
                            self.offset, _short(err), wait)
                time.sleep(wait)

    def restart(self) -> None:
        """Start over from byte 0 (the server ignored or refused Range)."""
        self.digest.close()
        self.offset = 0
        with open(self.partial, "r+b") as f:
            f.truncate(0)
        self.file_bar.reset(0)
        self.digest = _Digest(self.source, self.partial, 0)

    def get(self) -> None:
        """One GET from `offset` until the body ends."""
        source, offset = self.source, self.offset
        headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={offset}-"} if offset else {})}
        response = http.request("GET", source.url, endpoint=source.endpoint, token=source.token, headers=headers,
                                stream=True, origin_headers=source.origin_headers)
        with response:
            if response.status_code == 416 and offset:
                self.restart()
                raise requests.ConnectionError(f"the server refused range {offset}- (the partial file does not "
                                               "fit the file any more); starting over")
            source.raise_for_status(response)
            if response.status_code >= 400:
                raise HubHTTPError(f"Download of {source.where()} failed (HTTP {response.status_code}).",
                                   status=response.status_code, **source.context)
            limit = source.size if source.size is not None else _announced(response)
            body = _Body(response, limit)
            resumed = (offset and response.status_code == 206 and not body.encoded
                       and response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"))
            if offset and not resumed:  # the server ignored Range (or answered another one): the whole body
                self.restart()
            with open(self.partial, "r+b") as f:
                f.seek(self.offset)
                for chunk in body.chunks(self.offset):
                    f.write(chunk)
                    self.digest.feed(chunk)
                    self.offset += len(chunk)
                    self.file_bar.update(len(chunk))


def _announced(response: requests.Response) -> int:
    length = response.headers.get("Content-Length", "")
    if response.headers.get("Content-Encoding", "identity") in ("identity", "") and length.isdigit() \
            and len(length) < 16 and response.status_code == 200:
        return int(length)
    return UNKNOWN_SIZE_LIMIT


def _short(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[:300]
