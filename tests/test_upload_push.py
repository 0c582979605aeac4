"""push_to_hub of a fine-tuned model, its tokenizer and config to `autoload serve --writable`, loaded back by
autoload and by transformers; and transformers' own push_to_hub into the same server, loaded by autoload."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import autoload
from autoload.server import HubServer
from conftest import BERT_CONFIG, ROOT

TOKEN = "wtok"
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "push", "##ed", "to", "a", "hub"]


@pytest.fixture
def srv(tmp_path, isolated_env):
    (tmp_path / "hub").mkdir()
    with HubServer(tmp_path / "hub", writable=True, write_tokens={TOKEN: "alice"}) as server:
        yield server


def fine_tuned() -> autoload.BertForMaskedLM:
    torch.manual_seed(0)
    config = autoload.BertConfig(**{k: v for k, v in BERT_CONFIG.items() if k not in ("model_type", "architectures")})
    model = autoload.BertForMaskedLM(config)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    ids = torch.tensor([[2, 5, 6, 3]])
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    return model.eval()


def test_push_fine_tuned_model_then_load_with_both(srv, tmp_path):
    import transformers
    from huggingface_hub import snapshot_download
    model = fine_tuned()
    info = model.push_to_hub("tiny-ft", endpoint=srv.url, token=TOKEN, max_shard_size="60KB", tags=["test"])
    assert info.commit_message == "Upload BertForMaskedLM" and len(info.oid) == 40
    ids = torch.tensor([[2, 5, 7, 8, 3]])
    with torch.no_grad():
        expected = model(input_ids=ids).logits
        ours = autoload.AutoModelForMaskedLM.from_pretrained("alice/tiny-ft", endpoint=srv.url).eval()
        torch.testing.assert_close(ours(input_ids=ids).logits, expected, rtol=0, atol=1e-6)
        folder = snapshot_download("alice/tiny-ft", endpoint=srv.url, cache_dir=str(tmp_path / "hf"))
        assert os.path.basename(folder) == info.oid
        files = set(os.listdir(folder))
        assert {"config.json", "README.md", "model.safetensors.index.json"} <= files
        assert len([f for f in files if f.endswith(".safetensors")]) > 1  # sharded
        assert "library_name: transformers" in Path(folder, "README.md").read_text()
        theirs = transformers.AutoModelForMaskedLM.from_pretrained(folder).eval()
        torch.testing.assert_close(theirs(input_ids=ids).logits, expected, rtol=0, atol=1e-4)
    # the same model again: nothing changed, no new commit; a config change: one small commit
    assert model.push_to_hub("alice/tiny-ft", endpoint=srv.url, token=TOKEN, max_shard_size="60KB").oid == info.oid
    model.config.id2label = {0: "a", 1: "b"}
    srv.reset_requests()
    second = model.config.push_to_hub("alice/tiny-ft", endpoint=srv.url, token=TOKEN)
    assert second.oid != info.oid and second.commit_message == "Upload config"
    assert not [r for r in srv.requests if r.method == "PUT"]  # the weights were not sent again


def test_tokenizer_push_to_hub_then_transformers(srv, tmp_path):
    import transformers
    from huggingface_hub import snapshot_download
    local = tmp_path / "tok"
    local.mkdir()
    (local / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    (local / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer"}))
    tokenizer = autoload.AutoTokenizer.from_pretrained(local)
    info = tokenizer.push_to_hub("alice/tok", endpoint=srv.url, token=TOKEN, revision="v2", create_pr=False)
    assert info.commit_message == "Upload tokenizer"
    folder = snapshot_download("alice/tok", revision="v2", endpoint=srv.url, cache_dir=str(tmp_path / "hf"))
    assert os.path.basename(folder) == info.oid
    text = "hello world pushed to a hub"
    theirs = transformers.AutoTokenizer.from_pretrained(folder)
    ours = autoload.AutoTokenizer.from_pretrained("alice/tok", revision="v2", endpoint=srv.url)
    assert ours(text)["input_ids"] == theirs(text)["input_ids"] == tokenizer(text)["input_ids"]


@pytest.mark.slow
def test_transformers_push_to_hub_into_the_server(srv, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "AUTOLOAD_"))}
    env.update(HF_ENDPOINT=srv.url, HF_TOKEN=TOKEN, HF_HUB_DISABLE_XET="1", HF_HOME=str(tmp_path / "hf_sub"),
               HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1", PYTHONPATH=str(ROOT / "src"))
    code = f"""
import json, torch, transformers
torch.manual_seed(0)
config = transformers.BertConfig(**{ {k: v for k, v in BERT_CONFIG.items() if k != "model_type"} !r})
model = transformers.BertForMaskedLM(config).eval()
info = model.push_to_hub("tf-pushed", private=True)
model.config.id2label = {{0: "a", 1: "b"}}
again = model.push_to_hub("tf-pushed", create_pr=True, commit_message="labels, as a PR")
with torch.no_grad():
    logits = model(input_ids=torch.tensor([[2, 5, 7, 3]])).logits
print(json.dumps({{"oid": info.oid, "pr": again.pr_revision, "logits": logits.tolist()}}))
"""
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["pr"] == "refs/pr/1"
    with pytest.raises(autoload.RepositoryNotFoundError):  # private: hidden without a token
        autoload.snapshot_download("alice/tf-pushed", endpoint=srv.url, token=False)
    folder = autoload.snapshot_download("alice/tf-pushed", endpoint=srv.url, token=TOKEN)
    assert os.path.basename(folder) == out["oid"]
    model = autoload.AutoModelForMaskedLM.from_pretrained("alice/tf-pushed", endpoint=srv.url, token=TOKEN).eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[2, 5, 7, 3]])).logits
    torch.testing.assert_close(logits, torch.tensor(out["logits"]), rtol=0, atol=1e-4)
