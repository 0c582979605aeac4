"""Failure paths of the downloader: dropped connections, corrupt bytes, 429/5xx, a process killed
mid-download and resumed by the next one, and 8 processes racing for one file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import autoload
from autoload.server import Fault
from conftest import ROOT, sha256, write_repo

REPO = "google-bert/bert-base-chinese"
BLOBS = "models--google-bert--bert-base-chinese/blobs"


def faults_for(match, *faults):
    """A fault hook that answers the first requests matching `match` (method, path substring) with `faults`."""
    queue = list(faults)

    def hook(method, path, headers):
        if queue and method == match[0] and match[1] in path:
            return queue.pop(0)
        return None
    return hook


def test_dropped_connection_resumes_with_range(hub, cache_dir, repo_files):
    hub.fault = faults_for(("GET", "model.safetensors"), Fault(truncate_after=1_000_000), Fault(truncate_after=500_000))
    path = autoload.hub_download(REPO, "model.safetensors")
    assert open(path, "rb").read() == repo_files["model.safetensors"]
    gets = [r for r in hub.requests if r.method == "GET" and "model.safetensors" in r.path]
    assert [r.headers.get("range") for r in gets] == [None, "bytes=1000000-", "bytes=1500000-"]


def test_corrupt_bytes_detected_and_deleted(hub, cache_dir, repo_files):
    hub.fault = lambda method, path, headers: Fault(corrupt=True) if method == "GET" and "vocab" in path else None
    with pytest.raises(autoload.IntegrityError) as info:
        autoload.hub_download(REPO, "vocab.txt")
    message = str(info.value)
    assert "vocab.txt" in message and REPO in message and "deleted" in message
    assert not os.listdir(cache_dir / BLOBS)  # neither a bad blob nor an .incomplete is left
    assert not list((cache_dir / BLOBS).parent.rglob("vocab.txt"))
    # LFS files are checked by sha256; a corruption that happens once is repaired by one retry
    hub.fault = faults_for(("GET", "model.safetensors"), Fault(corrupt=True))
    path = autoload.hub_download(REPO, "model.safetensors")
    assert open(path, "rb").read() == repo_files["model.safetensors"]


def test_announced_size_mismatch_is_an_integrity_error(hub, cache_dir):
    """The HEAD announces 999 bytes, the GET serves the real (shorter) file: refused, nothing kept."""
    def lying_head(method, path, headers):
        if method == "HEAD" and "config.json" in path:
            return Fault(status=200, headers={"X-Repo-Commit": "a" * 40, "ETag": '"' + "b" * 40 + '"',
                                              "X-Linked-Size": "999", "Content-Length": "999"})
        return None
    hub.fault = lying_head
    with pytest.raises(autoload.IntegrityError, match="expected 999 bytes") as info:
        autoload.hub_download(REPO, "config.json")
    assert "config.json" in str(info.value)
    assert os.listdir(cache_dir / BLOBS) == []
    assert not list((cache_dir / BLOBS).parent.rglob("config.json"))


def test_retries_honour_retry_after(hub, repo_files):
    hub.fault = faults_for(("GET", "config.json"), Fault(status=429, headers={"Retry-After": "0"}),
                           Fault(status=503, headers={"Retry-After": "0"}))
    path = autoload.hub_download(REPO, "config.json")
    assert open(path, "rb").read() == repo_files["config.json"]
    assert sum(r.method == "GET" for r in hub.requests) == 3


def test_persistent_5xx_gives_up_with_a_clear_error(hub, monkeypatch):
    monkeypatch.setenv("AUTOLOAD_MAX_RETRIES", "2")
    hub.fault = lambda method, path, headers: Fault(status=503, body=b'{"error": "maintenance"}')
    with pytest.raises(autoload.HubHTTPError) as info:
        autoload.hub_download(REPO, "config.json")
    assert "503" in str(info.value) and REPO in str(info.value)
    assert len(hub.requests) == 3  # first try + 2 retries


def test_not_a_hub_server(isolated_env, tmp_path):
    """An endpoint that answers 200 without hub headers gets a clear message, not a crash."""
    import http.server
    import threading

    class Plain(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Plain)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        with pytest.raises(autoload.HubError, match="X-Repo-Commit"):
            autoload.hub_download("a/b", "config.json", endpoint=f"http://127.0.0.1:{srv.server_port}")
    finally:
        srv.shutdown()
        srv.server_close()


DOWNLOAD_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {src!r})
    import autoload
    print(autoload.hub_download({repo!r}, {filename!r}, endpoint={endpoint!r}, cache_dir={cache!r}, progress=False))
""")


def _spawn(hub, cache_dir, filename):
    code = DOWNLOAD_SCRIPT.format(src=str(ROOT / "src"), repo=REPO, filename=filename, endpoint=hub.url,
                                  cache=str(cache_dir))
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_killed_download_resumes_in_next_process(hub, cache_dir, hub_root):
    data = os.urandom(4 * 1024 * 1024)
    write_repo(hub_root / "google-bert" / "bert-base-chinese", {"big.bin": data})
    hub.fault = lambda method, path, headers: Fault(rate=1024 * 1024) if method == "GET" else None
    proc = _spawn(hub, cache_dir, "big.bin")
    partial = cache_dir / BLOBS / f"{sha256(data)}.incomplete"
    deadline = time.time() + 60
    while time.time() < deadline and (not partial.exists() or partial.stat().st_size < 0.6 * len(data)):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = partial.stat().st_size
    assert 0.5 * len(data) < kept < len(data)

    hub.fault = None
    hub.reset_requests()
    path = autoload.hub_download(REPO, "big.bin")
    assert open(path, "rb").read() == data
    ranges = [r.headers.get("range") for r in hub.requests if r.method == "GET"]
    assert ranges == [f"bytes={kept}-"]  # continued where the killed process stopped
    assert not partial.exists()


def test_eight_processes_one_blob(hub, cache_dir, hub_root):
    data = os.urandom(2 * 1024 * 1024)
    write_repo(hub_root / "google-bert" / "bert-base-chinese", {"shared.bin": data})
    hub.fault = lambda method, path, headers: Fault(rate=4 * 1024 * 1024) if method == "GET" else None
    procs = [_spawn(hub, cache_dir, "shared.bin") for _ in range(8)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    paths = {out.strip() for out, _ in outputs}
    assert len(paths) == 1 and open(paths.pop(), "rb").read() == data
    assert os.listdir(cache_dir / BLOBS) == [sha256(data)]
    assert sum(r.method == "GET" for r in hub.requests) == 1  # the others waited on the lock
