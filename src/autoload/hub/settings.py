"""Environment settings of the hub client, read at call time (not frozen at import).

The names are huggingface_hub's, so one environment drives both libraries; an AUTOLOAD_*
variable, where one exists, wins over its HF_* twin.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "on", "yes", "true"}


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _flag(*names: str) -> bool:
    value = _env(*names)
    return value is not None and value.strip().lower() in _TRUE


def _expand(path: str) -> str:
    """Environment values get `~` and `$VARS` expanded (as huggingface_hub does for HF_HOME/HF_HUB_CACHE)."""
    return os.path.expanduser(os.path.expandvars(path))


def hf_home() -> str:
    """`$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`."""
    home = _env("HF_HOME")
    if home:
        return _expand(home)
    xdg = _env("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return _expand(os.path.join(xdg, "huggingface"))


def hub_cache(cache_dir: str | os.PathLike | None = None) -> str:
    """The cache folder: the argument, `AUTOLOAD_CACHE`, `HF_HUB_CACHE`, `HUGGINGFACE_HUB_CACHE`, `$HF_HOME/hub`."""
    if cache_dir is not None:  # an argument is a path: only `~` is expanded, never `$VARS`
        return os.path.realpath(os.path.expanduser(os.fspath(cache_dir)))
    env = _env("AUTOLOAD_CACHE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")
    return os.path.realpath(_expand(env) if env else os.path.join(hf_home(), "hub"))


def endpoint(value: str | None = None) -> str:
    """The hub URL: the argument, `AUTOLOAD_ENDPOINT`, `HF_ENDPOINT`, else huggingface.co. No trailing slash."""
    return (value or _env("AUTOLOAD_ENDPOINT", "HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def offline() -> bool:
    """`AUTOLOAD_OFFLINE`, `HF_HUB_OFFLINE` or `TRANSFORMERS_OFFLINE` set to 1/on/yes/true."""
    return _flag("AUTOLOAD_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def token(value: str | bool | None = None) -> str | None:
    """The token to send: an explicit string; `False` for none; else `HF_TOKEN`, `HUGGING_FACE_HUB_TOKEN`,
    then the token file (`HF_TOKEN_PATH` or `$HF_HOME/token`). `HF_HUB_DISABLE_IMPLICIT_TOKEN` stops the implicit ones."""
    if value is False:
        return None
    if isinstance(value, str):
        return value
    if _flag("HF_HUB_DISABLE_IMPLICIT_TOKEN"):
        return None
    env = _env("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
    if env:
        return env.strip()
    path = Path(_expand(_env("HF_TOKEN_PATH") or os.path.join(hf_home(), "token")))
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def progress_disabled() -> bool:
    return _flag("AUTOLOAD_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS")


def symlinks_disabled() -> bool:
    return _flag("AUTOLOAD_DISABLE_SYMLINKS", "HF_HUB_DISABLE_SYMLINKS")


def metadata_timeout() -> float:
    name = "AUTOLOAD_ETAG_TIMEOUT" if _env("AUTOLOAD_ETAG_TIMEOUT") else "HF_HUB_ETAG_TIMEOUT"
    return _number(name, 10, 0.01, 3600)


def download_timeout() -> float:
    """Seconds without a byte before a connection counts as dead (the idle timeout); see also low_speed_limit."""
    name = "AUTOLOAD_DOWNLOAD_TIMEOUT" if _env("AUTOLOAD_DOWNLOAD_TIMEOUT") else "HF_HUB_DOWNLOAD_TIMEOUT"
    return _number(name, 10, 0.01, 3600)


def _number(name: str, default: float, low: float, high: float) -> float:
    """A numeric setting; a value that is not a number, or out of [low, high], is an error naming the variable."""
    raw = _env(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        raise ValueError(f"{name}={raw!r} is not a number between {low:g} and {high:g}.")
    return value


def max_retries() -> int:
    """Tries after the first, per request and per dropped download (AUTOLOAD_MAX_RETRIES, default 5)."""
    return int(_number("AUTOLOAD_MAX_RETRIES", 5, 0, 100))


def retry_backoff() -> float:
    """Seconds of the first retry wait; each next wait doubles, capped at 8 s."""
    return _number("AUTOLOAD_RETRY_BACKOFF", 1.0, 0, 60)


def max_retry_wait() -> float:
    """Total seconds one request may spend waiting between tries, whatever Retry-After/RateLimit ask
    (AUTOLOAD_MAX_RETRY_WAIT, default 60). A server asking for more gets a RetryLimitError at once."""
    return _number("AUTOLOAD_MAX_RETRY_WAIT", 60, 0, 86400)


def low_speed_limit() -> float:
    """Bytes per second below which a download counts as stalled (AUTOLOAD_LOW_SPEED_LIMIT, default 1024),
    measured over `low_speed_time()` seconds, as curl's --speed-limit/--speed-time. 0 switches it off."""
    return _number("AUTOLOAD_LOW_SPEED_LIMIT", 1024, 0, 1e12)


def low_speed_time() -> float:
    """Seconds of the low-speed window (AUTOLOAD_LOW_SPEED_TIME, default 30)."""
    return _number("AUTOLOAD_LOW_SPEED_TIME", 30, 0.1, 86400)


def lock_timeout() -> float:
    """Seconds to wait for another process's download of the same blob (AUTOLOAD_LOCK_TIMEOUT, default 600)."""
    return _number("AUTOLOAD_LOCK_TIMEOUT", 600, 0, 86400 * 7)


def max_metadata_bytes() -> int:
    """The largest JSON answer (repo info, a tree page, a ModelScope listing) read from a server:
    AUTOLOAD_MAX_METADATA_BYTES, default 64 MiB."""
    return int(_number("AUTOLOAD_MAX_METADATA_BYTES", 64 * 2**20, 1024, 2**40))


HUBS = ("huggingface", "modelscope")


def which_hub(hub: str | None, repo_type: str, *, force_download: bool = False) -> str:
    """The hub to use: the argument, `AUTOLOAD_HUB`, else huggingface. ModelScope (models only) is served
    by `autoload.hub.modelscope`, which has its own cache (MODELSCOPE_CACHE) and endpoint (MODELSCOPE_ENDPOINT)."""
    name = (hub or _env("AUTOLOAD_HUB") or "huggingface").strip().lower()
    if name not in HUBS:
        raise ValueError(f"Unknown hub {name!r}; supported: {', '.join(HUBS)}.")
    if name == "modelscope" and (repo_type != "model" or force_download):
        raise ValueError("hub='modelscope' supports repo_type='model' only, without force_download.")
    return name
