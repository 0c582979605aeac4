"""Progress bars for downloads: tqdm.auto (widgets in notebooks, text in terminals), one bar per file
plus a total bar for snapshots. Silenced by `progress=False` or AUTOLOAD/HF_HUB_DISABLE_PROGRESS_BARS=1."""

from __future__ import annotations

import contextlib
import threading

from . import settings
from .cache import shown

SMALL_FILE = 1 << 20


class _NullBar:
    def update(self, n: int) -> None:
        pass

    def reset(self, n: int) -> None:
        pass


class _FileBar:
    """A file's bar; its updates also feed the total bar."""

    def __init__(self, bar, total_bar: "Progress"):
        self.bar = bar
        self.total_bar = total_bar

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)
        self.total_bar.update(n)

    def reset(self, n: int) -> None:
        if self.bar is not None:
            self.total_bar.update(n - self.bar.n)
            self.bar.n = n
            self.bar.refresh()


class Progress:
    """A download session's bars. `enabled=False` makes every method a no-op."""

    def __init__(self, enabled: bool, total: int | None = None, desc: str | None = None):
        self.enabled = enabled
        self.lock = threading.Lock()
        self.total_bar = None
        if enabled and total is not None:
            from tqdm.auto import tqdm
            self.total_bar = tqdm(total=total, desc=f"Fetching {desc}" if desc else "Fetching",
                                  unit="B", unit_scale=True, unit_divisor=1024, dynamic_ncols=True)

    @classmethod
    def maybe(cls, progress: bool | None, total: int | None = None, desc: str | None = None) -> "Progress":
        enabled = (not settings.progress_disabled()) if progress is None else bool(progress)
        return cls(enabled, total, desc)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        if self.total_bar is not None:
            self.total_bar.close()

    def update(self, n: int) -> None:
        if self.total_bar is not None:
            with self.lock:
                self.total_bar.update(n)

    @contextlib.contextmanager
    def file(self, name: str, size: int | None, initial: int = 0):
        if not self.enabled:
            yield _NullBar()
            return
        if self.total_bar is not None and size is not None and size < SMALL_FILE:
            self.update(initial)
            yield _FileBar(None, self)  # small files of a snapshot only move the total bar
            return
        from tqdm.auto import tqdm
        bar = tqdm(total=size, initial=initial, desc=shown(name)[1:-1],  # a server's name: control chars escaped unit="B", unit_scale=True, unit_divisor=1024,
                   dynamic_ncols=True, leave=self.total_bar is None)
        self.update(initial)
        try:
            yield _FileBar(bar, self)
        finally:
            bar.close()
