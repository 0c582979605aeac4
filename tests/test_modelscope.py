"""The ModelScope backend (autoload.hub.modelscope) against the ModelScope routes of the local server."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import requests

from autoload.hub.errors import (EntryNotFoundError, HubHTTPError, IntegrityError, InvalidRepoIdError,
                                 OfflineModeError, RepositoryNotFoundError, RevisionNotFoundError)
from autoload.hub.modelscope import ms_hub_download, ms_snapshot_download, snapshot_dir
from autoload.server import Fault

REPO = "google-bert/bert-base-chinese"


@pytest.fixture
def ms(server, isolated_env, monkeypatch):
    """The server as the ModelScope endpoint; the ModelScope cache inside tmp_path."""
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", server.url)
    monkeypatch.setenv("MODELSCOPE_CACHE", str(isolated_env / "ms_cache"))
    monkeypatch.delenv("MODELSCOPE_DOMAIN", raising=False)
    monkeypatch.delenv("MODELSCOPE_API_TOKEN", raising=False)
    return server


def _file_gets(server) -> list[str]:
    return [r.path for r in server.requests if "/repo?" in r.path]


def test_server_envelope_and_listing(ms, repo_files):
    body = requests.get(f"{ms.url}/api/v1/models/{REPO}/repo/files?Revision=master&Recursive=True").json()
    assert body["Code"] == 200 and body["Success"] is True
    blobs = {f["Path"]: f for f in body["Data"]["Files"] if f["Type"] == "blob"}
    assert set(blobs) == set(repo_files)
    import hashlib
    assert blobs["vocab.txt"]["Sha256"] == hashlib.sha256(repo_files["vocab.txt"]).hexdigest()
    assert {f["Path"] for f in body["Data"]["Files"] if f["Type"] == "tree"} == {"sub", "sub/dir"}
    missing = requests.get(f"{ms.url}/api/v1/models/org/nope")
    assert missing.status_code == 404 and missing.json()["Success"] is False
    ranged = requests.get(f"{ms.url}/api/v1/models/{REPO}/repo?Revision=master&FilePath=vocab.txt",
                          headers={"Range": "bytes=2-"})
    assert ranged.status_code == 206 and ranged.content == repo_files["vocab.txt"][2:]
    # The HF routes are untouched.
    assert requests.get(f"{ms.url}/{REPO}/resolve/main/vocab.txt").content == repo_files["vocab.txt"]


def test_file_download_writes_new_layout(ms, repo_files, isolated_env):
    path = ms_hub_download(REPO, "config.json", revision="main")  # "main" by habit means master
    assert path == os.path.join(snapshot_dir(str(isolated_env / "ms_cache"), REPO, "master"), "config.json")
    assert Path(path).read_bytes() == repo_files["config.json"]
    ms.reset_requests()
    assert ms_hub_download(REPO, "config.json") == path  # fresh: one listing call, no file GET
    assert len(ms.requests) == 1 and not _file_gets(ms)


def test_snapshot_download_with_patterns(ms, repo_files):
    folder = ms_snapshot_download(REPO, ignore_patterns=["*.safetensors"])
    got = {os.path.relpath(os.path.join(d, n), folder).replace(os.sep, "/")
           for d, _, names in os.walk(folder) for n in names}
    assert got == set(repo_files) - {"model.safetensors"}
    folder = ms_snapshot_download(REPO, max_workers=4)
    for name, content in repo_files.items():
        assert Path(os.path.join(folder, name)).read_bytes() == content


def test_token_sent_as_bearer_and_cookie(ms, monkeypatch):
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "secret")
    ms_hub_download(REPO, "vocab.txt")
    for request in ms.requests:
        assert request.headers["authorization"] == "Bearer secret"
        assert request.headers["cookie"] == "m_session_id=secret"


def test_sha256_mismatch_is_deleted_and_raised(ms):
    ms.fault = lambda method, path, headers: Fault(corrupt=True) if "/repo?" in path else None
    with pytest.raises(IntegrityError, match="vocab.txt.*sha256") as info:
        ms_hub_download(REPO, "vocab.txt")
    folder = os.path.dirname(snapshot_dir(os.environ["MODELSCOPE_CACHE"], REPO, "master"))
    leftovers = [n for d, _, names in os.walk(folder) for n in names]
    assert leftovers == [] and info.value.repo_id == REPO


def test_missing_repo_file_and_revision(ms):
    with pytest.raises(RepositoryNotFoundError, match="org/nope.*" + ms.url.replace(".", r"\.")):
        ms_hub_download("org/nope", "config.json")
    with pytest.raises(EntryNotFoundError, match="confg.json.*master.*Did you mean: config.json"):
        ms_hub_download(REPO, "confg.json")
    with pytest.raises(RevisionNotFoundError, match="'v9'.*available: master"):
        ms_snapshot_download(REPO, revision="v9")


def test_short_names_resolve_or_name_the_full_ids(ms, hub_root, monkeypatch):
    """Where modelscope's client fails on a bare name, autoload resolves it: the canonical table, then the hub."""
    path = ms_hub_download("bert-base-chinese", "config.json")  # -> google-bert/bert-base-chinese, which exists
    assert "google-bert--bert-base-chinese" in path
    (hub_root / "AI-ModelScope" / "only-here").mkdir(parents=True)
    (hub_root / "AI-ModelScope" / "only-here" / "config.json").write_text("{}")
    assert "AI-ModelScope--only-here" in ms_hub_download("only-here", "config.json")  # found by asking the hub
    with pytest.raises(InvalidRepoIdError, match="'nowhere'.*AI-ModelScope/nowhere, damo/nowhere"):
        ms_hub_download("nowhere", "config.json")
    ms.reset_requests()
    monkeypatch.setenv("AUTOLOAD_OFFLINE", "1")
    assert ms_hub_download("bert-base-chinese", "config.json") == path  # offline: the one cached model of that name
    with pytest.raises(InvalidRepoIdError, match="offline"):
        ms_hub_download("nowhere", "config.json")
    assert ms.requests == []


def test_offline_reads_new_layout_with_zero_requests(ms, monkeypatch):
    path = ms_hub_download(REPO, "config.json")
    folder = ms_snapshot_download(REPO, allow_patterns=["*.json"])
    ms.reset_requests()
    assert ms_hub_download(REPO, "config.json", local_files_only=True) == path
    monkeypatch.setenv("AUTOLOAD_OFFLINE", "1")
    assert ms_snapshot_download(REPO) == folder
    with pytest.raises(OfflineModeError, match="vocab.txt.*google-bert/bert-base-chinese"):
        ms_hub_download(REPO, "vocab.txt")
    with pytest.raises(OfflineModeError):
        ms_snapshot_download("org/tiny")
    assert ms.requests == []


def test_offline_reads_classic_layout(ms, isolated_env):
    # modelscope <= 1.37: MODELSCOPE_CACHE/models/{owner}/{name with '.' -> '___'}/ + a pickled .msc
    repo_dir = isolated_env / "ms_cache" / "models" / "Qwen" / "Qwen2___5-0___5B"
    repo_dir.mkdir(parents=True)
    (repo_dir / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    (repo_dir / ".msc").write_bytes(pickle.dumps([{"Path": "config.json", "Revision": "abc123"}], protocol=4))
    (repo_dir / ".mv").write_text("Revision:master,CreatedAt:1795550516")
    assert ms_hub_download("Qwen/Qwen2.5-0.5B", "config.json", local_files_only=True) == str(repo_dir / "config.json")
    assert ms_snapshot_download("Qwen/Qwen2.5-0.5B", local_files_only=True) == str(repo_dir)
    with pytest.raises(OfflineModeError):  # on disk but not recorded in .msc: classic would not trust it either
        (repo_dir / "extra.txt").write_text("x")
        ms_hub_download("Qwen/Qwen2.5-0.5B", "extra.txt", local_files_only=True)
    assert ms.requests == []


def test_resume_after_dropped_connection(ms, repo_files):
    calls = []

    def drop_first(method, path, headers):
        if "FilePath=model.safetensors" in path:
            calls.append(headers.get("range"))
            if len(calls) == 1:
                return Fault(truncate_after=1024 * 1024)
        return None
    ms.fault = drop_first
    path = ms_hub_download(REPO, "model.safetensors")
    assert Path(path).read_bytes() == repo_files["model.safetensors"]
    assert calls == [None, f"bytes={1024 * 1024}-"]
    assert not os.path.exists(path + ".incomplete")


def test_hub_keyword_and_env_delegate_to_modelscope(ms, repo_files, monkeypatch, isolated_env):
    import autoload
    path = autoload.hub_download(REPO, "vocab.txt", hub="modelscope")
    assert path.startswith(str(isolated_env / "ms_cache")) and Path(path).read_bytes() == repo_files["vocab.txt"]
    monkeypatch.setenv("AUTOLOAD_HUB", "modelscope")
    folder = autoload.snapshot_download(REPO, allow_patterns=["*.json"])
    assert folder == snapshot_dir(str(isolated_env / "ms_cache"), REPO, "master")
    assert all("/api/v1/" in r.path for r in ms.requests)  # nothing went to the HF routes
    with pytest.raises(ValueError, match="supported: huggingface, modelscope"):
        autoload.hub_download(REPO, "vocab.txt", hub="modelscop")


def test_hub_failure_falls_back_to_the_cache(ms):
    path = ms_hub_download(REPO, "config.json")
    folder = ms_snapshot_download(REPO, allow_patterns=["*.json"])
    ms.fault = lambda method, p, headers: Fault(status=503) if "/repo/files" in p else None
    assert ms_hub_download(REPO, "config.json") == path
    assert ms_snapshot_download(REPO) == folder
    with pytest.raises(HubHTTPError, match="503"):
        ms_hub_download("org/tiny", "config.json")


def test_private_repo_needs_a_token(hub_root, isolated_env, monkeypatch):
    from autoload.server import HubServer
    (hub_root / "hub.json").write_text(json.dumps({"repos": {"org/tiny": {"private": True}}}))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(isolated_env / "ms_cache"))
    with HubServer(hub_root, tokens=["good"]) as srv:
        with pytest.raises(RepositoryNotFoundError, match="org/tiny.*pass a token"):
            ms_hub_download("org/tiny", "config.json", endpoint=srv.url)
        with pytest.raises(RepositoryNotFoundError, match="does not give access"):
            ms_hub_download("org/tiny", "config.json", endpoint=srv.url, token="bad")
        path = ms_hub_download("org/tiny", "config.json", endpoint=srv.url, token="good")
    assert Path(path).read_text() == '{"model_type": "gpt2"}'


def test_auto_classes_on_modelscope(ms, hub_root, monkeypatch):
    """The seed usage: AutoModelForCausalLM on a BERT repo from ModelScope gives the BERT LM-head model, with the
    same numbers as transformers on the same checkpoint; AUTOLOAD_HUB=modelscope selects the hub too."""
    import torch
    import transformers

    import autoload
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=37, is_decoder=True)
    reference = transformers.BertLMHeadModel(config).eval()
    reference.save_pretrained(hub_root / "owner" / "bert-base-chinese")
    model = autoload.AutoModelForCausalLM.from_pretrained("owner/bert-base-chinese", hub="modelscope")
    assert type(model).__name__ == "BertLMHeadModel"
    ids = torch.tensor([[2, 5, 7, 3]])
    torch.testing.assert_close(model(ids).logits, reference(ids).logits, atol=1e-4, rtol=0)
    ms.reset_requests()
    monkeypatch.setenv("AUTOLOAD_HUB", "modelscope")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = autoload.AutoConfig.from_pretrained("owner/bert-base-chinese")
    assert again.is_decoder is True and ms.requests == []  # offline, from the ModelScope cache


def test_cache_commands_cover_modelscope(ms, isolated_env, capsys):
    """`autoload cache ls/rm/verify --hub modelscope` on both layouts."""
    from autoload.cli import main
    ms_snapshot_download(REPO)
    classic = isolated_env / "ms_cache" / "models" / "Qwen" / "Qwen2___5-0___5B"
    classic.mkdir(parents=True)
    (classic / "config.json").write_text("{}")
    (classic / ".msc").write_bytes(pickle.dumps([{"Path": "config.json", "Revision": "abc"}], protocol=4))
    assert main(["cache", "ls", "--hub", "modelscope"]) == 0
    out = capsys.readouterr().out
    assert "Qwen/Qwen2.5-0.5B" in out and "classic" in out and REPO in out and "master" in out
    assert main(["cache", "verify", REPO, "--hub", "modelscope"]) == 0
    assert "0 bad" in capsys.readouterr().out
    target = snapshot_dir(os.environ["MODELSCOPE_CACHE"], REPO, "master")
    with open(os.path.join(target, "vocab.txt"), "ab") as f:
        f.write(b"tampered")
    assert main(["cache", "verify", REPO, "--hub", "modelscope"]) == 1
    assert "corrupt    vocab.txt" in capsys.readouterr().out
    assert main(["cache", "rm", "Qwen/Qwen2.5-0.5B", "--hub", "modelscope"]) == 0
    assert not classic.exists()
    assert main(["cache", "rm", REPO, "--hub", "modelscope", "--revision", "main"]) == 0  # main -> master
    assert not os.path.exists(target)
    assert main(["cache", "rm", REPO, "--hub", "modelscope", "--revision", "v9"]) == 1
    assert "not in the ModelScope cache" in capsys.readouterr().err


def test_progress_bars(ms, isolated_env, capsys):
    """Per-file bars for large files and a total bar, on stderr; silenced by progress=False."""
    ms_snapshot_download(REPO, progress=True)
    err = capsys.readouterr().err
    assert f"Fetching {REPO}" in err and "model.safetensors" in err
    ms_hub_download(REPO, "vocab.txt", progress=False, cache_dir=str(isolated_env / "other-ms-cache"))
    assert capsys.readouterr().err == ""


def test_cli_download_with_hub_flag(ms, capsys):
    from autoload.cli import main
    assert main(["download", REPO, "config.json", "--hub", "modelscope", "--quiet"]) == 0
    path = capsys.readouterr().out.strip()
    assert path.endswith("config.json") and "snapshots/master" in path
    assert main(["download", "nobody/nothing", "--hub", "modelscope", "--quiet"]) == 1
    assert "nobody/nothing" in capsys.readouterr().err
