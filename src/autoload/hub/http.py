"""HTTP layer: one pooled session per process, auth that never leaves the hub's origin,
redirects followed by hand, retries with backoff on 429/5xx, and typed errors.

Nothing here knows about the cache; `download.py` sits on top.
"""

from __future__ import annotations

import email.utils
import functools
import importlib.metadata
import json
import logging
import os
import platform
import random
import re
import threading
import time
import uuid
from datetime import timezone
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from . import settings
from .cache import shown
from .errors import (EntryNotFoundError, GatedRepoError, HubHTTPError, MalformedResponseError, OfflineModeError,
                     RepositoryNotFoundError, RetryLimitError, RevisionNotFoundError)

logger = logging.getLogger("autoload.hub")

RETRY_STATUSES = {429, 500, 502, 503, 504}
MAX_REDIRECTS = 20
_session_lock = threading.Lock()
_sessions: dict[int, requests.Session] = {}


def session() -> requests.Session:
    """The process's shared session (re-created after fork), pooled for parallel downloads."""
    pid = os.getpid()
    with _session_lock:
        sess = _sessions.get(pid)
        if sess is None:
            sess = requests.Session()
            adapter = HTTPAdapter(pool_connections=16, pool_maxsize=64, max_retries=0)
            sess.mount("http://", adapter)
            sess.mount("https://", adapter)
            sess.trust_env = True
            _sessions.clear()
            _sessions[pid] = sess
        return sess


@functools.lru_cache(maxsize=1)
def user_agent() -> str:
    """`autoload/<installed version>; python/<version>` (the version from the package metadata, so the hub
    layer imports nothing from the rest of autoload)."""
    try:
        version = importlib.metadata.version("autoload")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return f"autoload/{version}; python/{platform.python_version()}"


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def _asked_wait(response: requests.Response) -> float | None:
    """Seconds the server asks us to wait (RateLimit with r=0, else Retry-After as seconds or a date);
    None when it asks nothing we can read (garbage gets the default backoff, never an exception)."""
    limit = response.headers.get("RateLimit", "")
    match = re.search(r"\br=(\d{1,15})\b.*?\bt=(\d{1,15})\b", limit)
    if match and int(match.group(1)) == 0:
        return float(match.group(2)) + 1
    after = response.headers.get("Retry-After", "").strip()
    if re.fullmatch(r"\d{1,15}", after):
        return float(after)
    try:
        when = email.utils.parsedate_to_datetime(after)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    try:
        return max(0.0, when.timestamp() - time.time())
    except (OverflowError, OSError, ValueError):
        return None


def _retry_wait(response: requests.Response | None, attempt: int) -> float:
    """Seconds to wait before the next try: the server's Retry-After or RateLimit reset, else backoff."""
    asked = _asked_wait(response) if response is not None else None
    if asked is not None:
        return asked
    base = settings.retry_backoff()
    return min(8.0, base * 2 ** attempt) * (0.9 + 0.2 * random.random())


def request(method: str, url: str, *, endpoint: str, token: str | None = None,
            headers: dict | None = None, stream: bool = False, timeout: float | None = None,
            retries: int | None = None, origin_headers: dict | None = None) -> requests.Response:
    """Send a request, following redirects by hand.

    - The token goes only to the hub's own origin (`endpoint`), never to a redirect target elsewhere;
      so do `origin_headers` (credentials in another form, e.g. ModelScope's session cookie).
    - HEAD stops at a redirect to another host and returns that 3xx: the hub puts the file's
      metadata on it (the target is a CDN URL to GET later).
    - Connection errors, timeouts and 429/5xx are retried `retries` times with backoff,
      honouring Retry-After / RateLimit. The last response (or error) is returned (raised).
    """
    if settings.offline():
        raise OfflineModeError(f"Cannot reach {url}: offline mode is enabled (HF_HUB_OFFLINE / AUTOLOAD_OFFLINE). "
                               "Unset it to download, or use files that are already in the cache.",
                               endpoint=endpoint)
    retries = settings.max_retries() if retries is None else retries
    timeout = settings.download_timeout() if timeout is None else timeout
    hub_origin = origin(endpoint)
    base_headers = {"user-agent": user_agent(), "x-request-id": str(uuid.uuid4())}
    if method == "HEAD":
        base_headers["accept-encoding"] = "identity"
    base_headers.update(headers or {})
    attempt, waited, budget = 0, 0.0, settings.max_retry_wait()
    while True:
        try:
            response = _follow(method, url, base_headers, token, hub_origin, stream, timeout, origin_headers)
        except (requests.ConnectionError, requests.Timeout) as err:
            if attempt >= retries:
                raise
            wait = _retry_wait(None, attempt)
            logger.info("%s %s failed (%s); retrying in %.1fs", method, url, err, wait)
        else:
            if response.status_code not in RETRY_STATUSES or attempt >= retries:
                return response
            wait = _retry_wait(response, attempt)
            logger.info("%s %s answered %s; retrying in %.1fs", method, url, response.status_code, wait)
            response.close()
            if waited + wait > budget:  # an hour-long Retry-After is refused now, not slept through
                raise RetryLimitError(
                    f"{endpoint} answered HTTP {response.status_code} to {method} {url} and asked to wait "
                    f"{wait:.0f} s more (after {waited:.0f} s of waiting), beyond the retry budget of {budget:.0f} s "
                    "(AUTOLOAD_MAX_RETRY_WAIT). Try again later, or raise the budget.",
                    status=response.status_code, request_id=request_id(response), endpoint=endpoint)
        wait = min(wait, max(0.0, budget - waited))
        attempt += 1
        waited += wait
        time.sleep(wait)


def _follow(method, url, headers, token, hub_origin, stream, timeout, origin_headers=None) -> requests.Response:
    sess = session()
    visited = []
    for _ in range(MAX_REDIRECTS):
        visited.append(url)
        hop_headers = dict(headers)
        if origin(url) == hub_origin:
            if token:
                hop_headers["authorization"] = f"Bearer {token}"
            hop_headers.update(origin_headers or {})
        response = sess.request(method, url, headers=hop_headers, allow_redirects=False,
                                stream=stream, timeout=timeout)
        response.visited = visited  # every URL of the redirect chain, for spotting renamed repos
        location = response.headers.get("Location")
        if not (response.is_redirect and location):
            return response
        target = urljoin(url, location)
        if method == "HEAD" and origin(target) != origin(url):
            return response
        response.close()
        url = target
    raise HubHTTPError(f"Too many redirects (more than {MAX_REDIRECTS}) starting from {url}.")


def read_json(response: requests.Response, *, endpoint: str, what: str, **context):
    """The JSON body of `response`, read up to AUTOLOAD_MAX_METADATA_BYTES and parsed with bounded
    nesting; anything else is a MalformedResponseError naming the endpoint, the URL and `what` was asked.
    Stream the request (stream=True) so that an oversized body is never read whole."""
    limit = settings.max_metadata_bytes()
    url = response.url
    try:
        if response._content_consumed:
            body = response.content
        else:
            with response:
                body = response.raw.read(limit + 1, decode_content=True) or b""
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as err:
        raise MalformedResponseError(f"{endpoint} sent an unreadable body for {what} ({url}): {err}.",
                                     url=url, endpoint=endpoint, **context) from err
    if len(body) > limit:
        raise MalformedResponseError(f"{endpoint} sent more than {limit} bytes for {what} ({url}); refusing it "
                                     "(AUTOLOAD_MAX_METADATA_BYTES raises the limit).", url=url, endpoint=endpoint,
                                     **context)
    try:
        return json.loads(body)
    except RecursionError:
        problem = "JSON nested too deeply"
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
        problem = f"not JSON ({err})"
    raise MalformedResponseError(f"{endpoint} answered {what} ({url}) with {problem}; it does not speak the hub "
                                 "protocol here (check the endpoint URL, or a proxy in between).",
                                 url=url, endpoint=endpoint, **context)


def malformed(message: str, *, endpoint: str, url: str | None = None, value=None, **context) -> MalformedResponseError:
    """A MalformedResponseError for a value of the wrong shape; `message` says which and where."""
    return MalformedResponseError(f"{endpoint} sent {message}; refusing it (check HF_ENDPOINT / the mirror)."
                                  + (f" Request: {url}." if url else ""), url=url, value=value, endpoint=endpoint,
                                  **context)


def request_id(response: requests.Response) -> str | None:
    h = response.headers
    return h.get("X-Request-Id") or h.get("X-Amzn-Trace-Id") or response.request.headers.get("x-request-id")


def raise_for_status(response: requests.Response, *, repo_id: str, revision: str | None = None,
                     filename: str | None = None, endpoint: str, repo_type: str = "model",
                     token: str | None = None) -> None:
    """Turn an error response into the typed exception, decided on X-Error-Code first, as the hub intends."""
    status = response.status_code
    if status < 400:
        return
    code = response.headers.get("X-Error-Code", "")
    server_message = response.headers.get("X-Error-Message") or _body_message(response)
    context = dict(repo_id=repo_id, revision=revision, filename=filename, endpoint=endpoint,
                   status=status, request_id=request_id(response), server_message=server_message)
    where = f"repo '{repo_id}' ({repo_type}) on {endpoint}"
    tail = f" Server said: {shown(server_message, 500)}" if server_message else ""  # escaped: it reaches terminals
    tail += f" (HTTP {status}, request id {context['request_id']})"
    if code == "RevisionNotFound":
        raise RevisionNotFoundError(f"Revision '{revision}' does not exist in {where}. Check the branch, tag or "
                                    f"commit name (a commit must be the full 40-character hash).{tail}", **context)
    if code == "EntryNotFound" or (not code and status == 404 and filename and "/resolve/" in response.url):
        raise EntryNotFoundError(f"File '{filename}' does not exist at revision '{revision}' of {where}. "
                                 f"Check the file name against the repo's file list.{tail}", **context)
    if code == "GatedRepo":
        raise GatedRepoError(f"{where} is gated: accept its conditions on the hub page "
                             f"{endpoint}/{repo_id}, then pass a token that has access "
                             f"(token=..., HF_TOKEN or `huggingface-cli login`).{tail}", **context)
    if code == "RepoNotFound" or (not code and status in (401, 404)):
        hint = ("The token you sent does not give access to it." if token else
                "If it is private or gated, pass a token (token=..., HF_TOKEN or the token file).")
        raise RepositoryNotFoundError(f"Repository '{repo_id}' was not found on {endpoint}. Check the id "
                                      f"(namespace/name) and the repo type. {hint}{tail}", **context)
    if status == 403:
        raise HubHTTPError(f"Access to {where} is forbidden with this token. Check the token's permissions.{tail}",
                           **context)
    if status == 429:
        raise HubHTTPError(f"Rate limited by {endpoint} while fetching {where}; retried and gave up. "
                           f"Wait a few minutes, or pass a token (authenticated users get higher limits).{tail}",
                           **context)
    what = f"'{filename}' from {where}" if filename else where
    raise HubHTTPError(f"Request for {what} failed.{tail}", **context)


def _body_message(response: requests.Response) -> str | None:
    """The server's own words from an error body: its first 64 KiB at most (an error page may be endless)."""
    if response.request.method == "HEAD" or response.raw is None:
        return None
    try:
        if response._content_consumed:
            raw = response.content[:65536]
        else:
            raw = response.raw.read(65536, decode_content=True) or b""
        text = raw.decode(response.encoding or "utf-8", "replace")
    except Exception:  # a broken body must not hide the status
        return None
    if not text or text.lstrip().startswith("<"):
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return text[:500].strip()
    if isinstance(data, dict) and isinstance(data.get("error") or data.get("message"), str):
        return (data.get("error") or data.get("message"))[:500]
    return text[:500].strip()
