"""Shared fixtures: a local hub server on a free 127.0.0.1 port over repos built in tmp_path, and an
isolated environment where every cache points into tmp_path and no real hub can be reached."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

# The test models are tiny: one thread avoids thread start-up and contention costs that dwarf their maths.
import torch  # noqa: E402

torch.set_num_threads(1)

ENV_VARS = ["HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ENDPOINT", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN",
            "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN_PATH", "HF_HUB_DISABLE_IMPLICIT_TOKEN",
            "AUTOLOAD_CACHE", "AUTOLOAD_ENDPOINT", "AUTOLOAD_OFFLINE", "AUTOLOAD_DISABLE_SYMLINKS",
            "HF_HUB_DISABLE_SYMLINKS", "XDG_CACHE_HOME"]


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_repo(folder: Path, files: dict[str, bytes | str]) -> Path:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return folder


BERT_CONFIG = {"model_type": "bert", "architectures": ["BertForMaskedLM"], "hidden_size": 32,
               "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 37, "vocab_size": 99}


@pytest.fixture
def isolated_env(tmp_path, monkeypatch):
    """No inherited hub settings; HF_HOME and the cache inside tmp_path; quick retries; no bars."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AUTOLOAD_RETRY_BACKOFF", "0.01")
    monkeypatch.setenv("AUTOLOAD_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    return tmp_path


@pytest.fixture
def cache_dir(isolated_env) -> Path:
    return isolated_env / "cache"


@pytest.fixture
def repo_files() -> dict[str, bytes]:
    """The content of google-bert/bert-base-chinese on the test hub: small text files and one LFS file."""
    return {
        "config.json": json.dumps(BERT_CONFIG, indent=2).encode(),
        "vocab.txt": "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "你", "好"]).encode(),
        "tokenizer_config.json": b'{"do_lower_case": false, "model_max_length": 512}',
        "model.safetensors": os.urandom(3 * 1024 * 1024 + 17),
        "sub/dir/notes.txt": b"nested file\n",
    }


@pytest.fixture
def hub_root(tmp_path, repo_files) -> Path:
    root = tmp_path / "hub"
    write_repo(root / "google-bert" / "bert-base-chinese", repo_files)
    write_repo(root / "org" / "tiny", {"config.json": '{"model_type": "gpt2"}', "weights.bin": os.urandom(200_000)})
    return root


@pytest.fixture
def server(hub_root):
    from autoload.hub.server import HubServer
    with HubServer(hub_root) as srv:
        yield srv


@pytest.fixture
def hub(server, cache_dir, monkeypatch):
    """The server, with autoload's endpoint pointed at it."""
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    return server


@pytest.fixture
def hostile_hub(isolated_env, monkeypatch):
    """`start(repos, tamper=None, page_size=1000)` serves a FakeHub (tests/hostile.py) on 127.0.0.1 with
    HF_ENDPOINT pointed at it; returns (server, fake). Servers stop at the end of the test."""
    from hostile import FakeHub, HostileServer
    started = []

    def start(repos, tamper=None, page_size=1000):
        fake = FakeHub(repos, tamper, page_size)
        server = HostileServer(fake).__enter__()
        fake.url = server.url
        started.append(server)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        return server, fake

    yield start
    for server in started:
        server.__exit__(None, None, None)


@pytest.fixture
def hostile_modelscope(isolated_env, monkeypatch):
    """`start(repos, tamper=None)` serves a FakeModelScope with MODELSCOPE_ENDPOINT and MODELSCOPE_CACHE set."""
    from hostile import FakeModelScope, HostileServer
    started = []
    monkeypatch.setenv("MODELSCOPE_CACHE", str(isolated_env / "ms_cache"))

    def start(repos, tamper=None):
        fake = FakeModelScope(repos, tamper)
        server = HostileServer(fake).__enter__()
        started.append(server)
        monkeypatch.setenv("MODELSCOPE_ENDPOINT", server.url)
        return server, fake

    yield start
    for server in started:
        server.__exit__(None, None, None)
