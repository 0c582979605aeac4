"""The cache is shared with huggingface_hub and transformers, both ways."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import autoload

REPO = "google-bert/bert-base-chinese"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture
def minilm_hub(hub_root, minilm_dir):
    (hub_root / "sentence-transformers").mkdir()
    (hub_root / "sentence-transformers" / "all-MiniLM-L6-v2").symlink_to(minilm_dir, target_is_directory=True)
    from autoload.server import HubServer
    with HubServer(hub_root, follow_symlinks_outside=True) as srv:  # the repo folder links out of the root
        yield srv


def _offline_python(code: str, cache_dir: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "AUTOLOAD_", "TRANSFORMERS_"))}
    env.update(HF_HUB_CACHE=str(cache_dir), HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9",
               HF_HUB_DISABLE_PROGRESS_BARS="1")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_autoload_cache_read_by_huggingface_hub(hub, cache_dir, repo_files):
    from huggingface_hub import hf_hub_download, scan_cache_dir, snapshot_download, try_to_load_from_cache

    folder = autoload.snapshot_download(REPO)
    autoload.snapshot_download("bert-base-chinese")
    with pytest.raises(autoload.EntryNotFoundError):
        autoload.hub_download(REPO, "absent.json")
    hub.reset_requests()
    assert snapshot_download(REPO, cache_dir=str(cache_dir), local_files_only=True) == folder
    assert hf_hub_download(REPO, "vocab.txt", cache_dir=str(cache_dir), local_files_only=True) == \
        os.path.join(folder, "vocab.txt")
    # the .no_exist marker is understood
    from huggingface_hub.file_download import _CACHED_NO_EXIST
    assert try_to_load_from_cache(REPO, "absent.json", cache_dir=str(cache_dir)) is _CACHED_NO_EXIST
    # the short id too, through its link folder
    assert snapshot_download("bert-base-chinese", cache_dir=str(cache_dir), local_files_only=True)
    report = scan_cache_dir(str(cache_dir))
    assert report.warnings == []
    repo = next(r for r in report.repos if r.repo_id == REPO)
    assert repo.size_on_disk == sum(len(v) for v in repo_files.values())
    assert not [r for r in hub.requests if "/resolve/" in r.path or "/api/models" in r.path]


def test_autoload_cache_loaded_by_transformers_offline(minilm_hub, cache_dir):
    autoload.snapshot_download(MINILM, endpoint=minilm_hub.url)
    autoload.snapshot_download("bert-base-chinese", endpoint=minilm_hub.url)
    out = _offline_python(
        "import torch, transformers as t\n"
        f"tok = t.AutoTokenizer.from_pretrained({MINILM!r})\n"
        f"model = t.AutoModel.from_pretrained({MINILM!r})\n"
        "ids = tok(['a cache shared with huggingface_hub'], return_tensors='pt')\n"
        "print(model(**ids).last_hidden_state.shape[-1])\n"
        "print(t.AutoConfig.from_pretrained('bert-base-chinese').model_type)\n", cache_dir)
    assert out.split() == ["384", "bert"]
    assert minilm_hub.requests and all(r.path.startswith(("/api/", "/sentence", "/google-bert"))
                                       for r in minilm_hub.requests)


def test_huggingface_hub_cache_used_by_autoload(hub, cache_dir, monkeypatch, repo_files):
    from huggingface_hub import snapshot_download

    hf_folder = snapshot_download(REPO, cache_dir=str(cache_dir), endpoint=hub.url)
    commit = os.path.basename(hf_folder)
    hub.reset_requests()
    assert autoload.snapshot_download(REPO, revision=commit) == hf_folder  # commit: no request, online
    assert autoload.hub_download(REPO, "vocab.txt", revision=commit) == os.path.join(hf_folder, "vocab.txt")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert autoload.snapshot_download(REPO) == hf_folder
    assert autoload.hub_download(REPO, "model.safetensors") == os.path.join(hf_folder, "model.safetensors")
    assert hub.requests == []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    autoload.snapshot_download(REPO)  # online with a branch: metadata only, every blob reused
    assert not any(r.method == "GET" and "/resolve/" in r.path for r in hub.requests)


def test_legacy_short_id_folder_written_by_huggingface_hub(hub, cache_dir, monkeypatch):
    from huggingface_hub import snapshot_download

    hf_folder = snapshot_download("bert-base-chinese", cache_dir=str(cache_dir), endpoint=hub.url)
    assert "models--bert-base-chinese" in hf_folder
    hub.reset_requests()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert autoload.snapshot_download("bert-base-chinese") == hf_folder
    assert autoload.hub_download("bert-base-chinese", "config.json") == os.path.join(hf_folder, "config.json")
    assert hub.requests == []


def test_tree_cache_written_like_huggingface_hub(hub, cache_dir):
    from huggingface_hub import snapshot_download

    folder = autoload.snapshot_download(REPO, cache_dir=str(cache_dir / "a"))
    commit = os.path.basename(folder)
    hf_folder = snapshot_download(REPO, cache_dir=str(cache_dir / "b"), endpoint=hub.url)
    ours = json.loads(Path(folder, "..", "..", "trees", f"{commit}.json").read_text())
    theirs = json.loads(Path(hf_folder, "..", "..", "trees", f"{commit}.json").read_text())
    assert ours == theirs


def test_commit_pinned_fetch_completes_a_partial_huggingface_hub_cache(hub, cache_dir, repo_files):
    """huggingface_hub's hf_hub_download leaves a snapshot folder without a file list: a commit-pinned
    snapshot_download must not take that folder for complete."""
    from huggingface_hub import hf_hub_download

    config = hf_hub_download(REPO, "config.json", cache_dir=str(cache_dir), endpoint=hub.url)
    commit = config.split("/snapshots/")[1].split("/")[0]
    folder = autoload.snapshot_download(REPO, revision=commit, allow_patterns=["*.safetensors"])
    assert open(os.path.join(folder, "model.safetensors"), "rb").read() == repo_files["model.safetensors"]
