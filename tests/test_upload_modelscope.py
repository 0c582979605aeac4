"""Uploads over the ModelScope protocol (`hub="modelscope"`) to `autoload serve --writable`, with the real
modelscope client (modelscope-hub) as the oracle both ways; the commits are the same the HF routes serve."""

from __future__ import annotations

import os
from pathlib import Path

import modelscope
import pytest
import torch

import autoload
from autoload.hub import upload
from autoload.server import HubServer
from conftest import BERT_CONFIG

TOKEN = "wtok"


@pytest.fixture
def srv(tmp_path, isolated_env, monkeypatch):
    monkeypatch.setenv("MODELSCOPE_CACHE", str(isolated_env / "ms_cache"))
    monkeypatch.setenv("MODELSCOPE_HOME", str(isolated_env / "ms_home"))
    for name in ("MODELSCOPE_DOMAIN", "MODELSCOPE_API_TOKEN", "MODELSCOPE_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "hub").mkdir()
    with HubServer(tmp_path / "hub", writable=True, write_tokens={TOKEN: "alice"}, tokens=["rtok"]) as server:
        yield server


@pytest.fixture
def folder(tmp_path) -> Path:
    files = {"config.json": b'{"model_type": "bert"}', "model.safetensors": os.urandom(100_000),
             "sub/notes.txt": b"notes\n", "tokenizer.json": os.urandom(70_000).hex().encode()}  # > 64 KiB: LFS
    for name, data in files.items():
        (tmp_path / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / name).write_bytes(data)
    return tmp_path / "src"


def tree(base) -> dict[str, bytes]:
    base = Path(base)
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in base.rglob("*")
            if p.is_file() and not any(part.startswith((".gitattributes", ".mdl", ".msc", ".ms_upload"))
                                       for part in p.relative_to(base).parts)}  # the clients' own records


def test_autoload_uploads_modelscope_downloads(srv, folder, tmp_path):
    kw = dict(endpoint=srv.url, token=TOKEN, hub="modelscope")
    upload.create_repo("alice/ms", **kw)
    with pytest.raises(autoload.HubHTTPError, match="exists"):
        upload.create_repo("alice/ms", **kw)
    info = upload.upload_folder("alice/ms", folder, commit_message="first", **kw)
    assert len(info.oid) == 40
    puts = [r for r in srv.requests if r.method == "PUT"]
    assert len(puts) == 2 and all("authorization" not in r.headers for r in puts)  # safetensors, tokenizer.json
    theirs = modelscope.snapshot_download("alice/ms", cache_dir=str(tmp_path / "theirs"), endpoint=srv.url)
    assert tree(theirs) == tree(folder)
    # the same commit over the HF routes; unchanged files are not sent again
    assert os.path.basename(autoload.snapshot_download("alice/ms", endpoint=srv.url, token="rtok")) == info.oid
    srv.reset_requests()
    again = upload.upload_file(b"changed\n", "sub/notes.txt", "alice/ms", **kw)
    assert again.oid != info.oid and not [r for r in srv.requests if r.method == "PUT"]
    with pytest.raises(autoload.WriteAccessError):
        upload.upload_file(b"x", "x.txt", "alice/ms", endpoint=srv.url, token="rtok", hub="modelscope")
    with pytest.raises(autoload.AuthenticationError):
        upload.upload_file(b"x", "x.txt", "alice/ms", endpoint=srv.url, token=False, hub="modelscope")


def test_modelscope_client_uploads_autoload_downloads(srv, folder, tmp_path):
    from modelscope.hub.api import HubApi
    api = HubApi(endpoint=srv.url)
    answer = api.upload_folder(repo_id="alice/theirs", folder_path=str(folder), token=TOKEN,
                               commit_message="from modelscope")
    ours = autoload.snapshot_download("alice/theirs", hub="modelscope", endpoint=srv.url,
                                      cache_dir=tmp_path / "ours")
    assert tree(ours) == tree(folder)
    hf_side = autoload.snapshot_download("alice/theirs", endpoint=srv.url, token="rtok")
    assert tree(hf_side) == tree(folder)
    assert answer["oid"] == os.path.basename(hf_side)


def test_push_to_hub_modelscope_then_from_pretrained(srv):
    torch.manual_seed(0)
    config = autoload.BertConfig(**{k: v for k, v in BERT_CONFIG.items() if k not in ("model_type", "architectures")})
    model = autoload.BertForMaskedLM(config).eval()
    info = model.push_to_hub("alice/ms-bert", endpoint=srv.url, token=TOKEN, hub="modelscope")
    assert info.commit_message == "Upload BertForMaskedLM"
    loaded = autoload.AutoModelForMaskedLM.from_pretrained("alice/ms-bert", hub="modelscope", endpoint=srv.url).eval()
    ids = torch.tensor([[2, 5, 7, 3]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, model(input_ids=ids).logits, rtol=0, atol=1e-6)
    folder = autoload.snapshot_download("alice/ms-bert", hub="modelscope", endpoint=srv.url)
    assert "configuration.json" in os.listdir(folder)
