"""Conformance with the real `modelscope` client (>= 1.38, modelscope-hub): it downloads from our server's
ModelScope routes, and its cache and ours are the same files (modelscope is in the [test] extra).
modelscope reads MODELSCOPE_CACHE and MODELSCOPE_ENDPOINT once, at import, so it gets `cache_dir=` and
`endpoint=` explicitly."""

from __future__ import annotations

import os
from pathlib import Path

import modelscope
import pytest

from autoload.hub.modelscope import ms_hub_download, ms_snapshot_download

REPO = "google-bert/bert-base-chinese"


@pytest.fixture
def ms(server, isolated_env, monkeypatch):
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", server.url)
    monkeypatch.setenv("MODELSCOPE_CACHE", str(isolated_env / "ms_cache"))
    monkeypatch.setenv("MODELSCOPE_HOME", str(isolated_env / "ms_home"))
    for name in ("MODELSCOPE_DOMAIN", "MODELSCOPE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return server


def _tree(folder: str) -> dict[str, bytes]:
    return {os.path.relpath(os.path.join(d, n), folder).replace(os.sep, "/"): Path(os.path.join(d, n)).read_bytes()
            for d, _, names in os.walk(folder) for n in names}


def test_real_client_downloads_from_our_server_and_we_read_its_cache(ms, repo_files):
    cache = os.environ["MODELSCOPE_CACHE"]
    theirs = modelscope.snapshot_download(REPO, cache_dir=cache, endpoint=ms.url)
    assert _tree(theirs) == repo_files
    ms.reset_requests()
    assert ms_snapshot_download(REPO, cache_dir=cache, local_files_only=True) == theirs
    assert (ms_hub_download(REPO, "sub/dir/notes.txt", cache_dir=cache, local_files_only=True)
            == os.path.join(theirs, "sub/dir/notes.txt"))
    assert ms.requests == []


def test_real_client_reads_our_cache_offline(ms, isolated_env):
    cache = os.environ["MODELSCOPE_CACHE"]
    ours = ms_snapshot_download(REPO, cache_dir=cache, allow_patterns=["*.json", "*.txt"])
    locks_ours = set(os.listdir(isolated_env / "ms_cache" / ".lock"))
    ms.reset_requests()
    assert modelscope.snapshot_download(REPO, cache_dir=cache, endpoint=ms.url, local_files_only=True) == ours
    assert ms.requests == []
    # Online, every file is a cache hit: no file GET.
    modelscope.snapshot_download(REPO, cache_dir=cache, endpoint=ms.url, allow_patterns=["*.json", "*.txt"])
    assert not [r for r in ms.requests if "/repo?" in r.path]
    assert locks_ours <= set(os.listdir(isolated_env / "ms_cache" / ".lock"))  # the same per-file lock names
