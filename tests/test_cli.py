"""The `autoload` command line: download, cache ls/rm/verify, serve, with the exit codes a shell expects."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import requests

from autoload.cli import main
from conftest import ROOT

REPO = "google-bert/bert-base-chinese"


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_download_files_and_snapshot(hub, cache_dir, capsys, repo_files):
    code, out, _ = run(capsys, "download", "bert-base-chinese", "config.json", "vocab.txt", "--quiet")
    assert code == 0
    paths = out.split()
    assert len(paths) == 2 and open(paths[0], "rb").read() == repo_files["config.json"]
    code, out, _ = run(capsys, "download", REPO, "--include", "*.json", "--exclude", "tokenizer*", "--quiet")
    assert code == 0 and sorted(os.listdir(out.strip())) == ["config.json", "vocab.txt"]  # vocab from before
    code, _, err = run(capsys, "download", "nobody/nothing", "config.json", "--quiet")
    assert code == 1 and "nobody/nothing" in err and err.startswith("error:")


def test_cache_ls_rm(hub, cache_dir, capsys):
    run(capsys, "download", "bert-base-chinese", "--quiet")
    run(capsys, "download", "org/tiny", "--quiet")
    code, out, _ = run(capsys, "cache", "ls")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["REPO", "ID", "TYPE"]
    tiny = next(line for line in lines if line.startswith("org/tiny"))
    assert "main" in tiny and "KB" in tiny
    assert any(line.startswith("bert-base-chinese") and "google-bert/bert-base-chinese" in line for line in lines)
    assert "3 repo(s)" in out

    code, out, _ = run(capsys, "cache", "rm", "bert-base-chinese")  # the model and its short-id links
    assert code == 0 and out.count("removed") == 2
    assert sorted(os.listdir(cache_dir)) == [".locks", "CACHEDIR.TAG", "models--org--tiny"]
    code, _, err = run(capsys, "cache", "rm", "bert-base-chinese")
    assert code == 1 and "not in the cache" in err


def test_cache_rm_one_revision_keeps_shared_blobs(server, hub_root, cache_dir, capsys, monkeypatch):
    import json

    (hub_root / "v2").mkdir()
    (hub_root / "v2" / "config.json").write_text('{"model_type": "gpt2", "v": 2}')
    (hub_root / "hub.json").write_text(json.dumps({"repos": {"org/tiny": {"refs": {"v2": "v2"}}}}))
    from autoload.server import HubServer
    with HubServer(hub_root) as srv:
        monkeypatch.setenv("HF_ENDPOINT", srv.url)
        run(capsys, "download", "org/tiny", "--quiet")
        run(capsys, "download", "org/tiny", "config.json", "--revision", "v2", "--quiet")
    blobs = cache_dir / "models--org--tiny" / "blobs"
    assert len(os.listdir(blobs)) == 3
    code, out, _ = run(capsys, "cache", "rm", "org/tiny", "--revision", "v2")
    assert code == 0 and "removed" in out
    assert len(os.listdir(blobs)) == 2  # the v2-only blob went, main's stayed
    assert not (cache_dir / "models--org--tiny" / "refs" / "v2").exists()
    assert (cache_dir / "models--org--tiny" / "refs" / "main").exists()


def test_cache_verify_detects_corruption(hub, cache_dir, capsys):
    run(capsys, "download", REPO, "--quiet")
    code, out, _ = run(capsys, "cache", "verify", "bert-base-chinese")
    assert code == 0 and "5 file(s) checked, 0 bad" in out
    blob = next(p for p in (cache_dir / "models--google-bert--bert-base-chinese" / "blobs").iterdir()
                if p.stat().st_size > 1_000_000)
    with open(blob, "r+b") as f:
        f.write(b"X")
    code, out, err = run(capsys, "cache", "verify", REPO)
    assert code == 1 and "corrupt" in out and "model.safetensors" in out and "autoload cache rm" in err
    code, _, err = run(capsys, "cache", "verify", "nobody/nothing")
    assert code == 1 and "not in the cache" in err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["download"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_serve_command_and_console_script(hub_root, isolated_env):
    """`autoload serve` in its own process answers hub requests and stops on SIGINT."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "autoload.cli", "serve", str(hub_root), "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                response = requests.get(f"{url}/api/models/{REPO}", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        assert response.status_code == 200 and response.json()["id"] == REPO
    finally:
        proc.send_signal(__import__("signal").SIGINT)
        proc.wait(timeout=10)
    assert proc.returncode in (0, 130)
    assert url in proc.stdout.read()


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
