"""The local hub server: raw protocol checks with `requests`, then conformance with the real clients
(huggingface_hub and transformers are the oracles), concurrency and the fault hooks."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from autoload.server import Fault, HubServer

TINY = {
    "config.json": b'{"model_type": "gpt2", "n_layer": 2}',
    "weights.bin": os.urandom(300_000),              # LFS by extension
    "data/table.dat": os.urandom(5000),              # LFS by the .gitattributes rule
    "sub/dir/notes.txt": b"nested file\n",
    ".gitattributes": b"*.dat filter=lfs diff=lfs merge=lfs -text\n",
}
HUB_JSON = {
    "aliases": {"old-tiny": "org/tiny"},
    "repos": {
        "org/tiny": {"refs": {"dev": "versions/tiny-dev", "refs/pr/1": "versions/tiny-pr1"}, "tags": {"v1.0": "main"}},
        "org/secret": {"private": True},
        "org/gated": {"gated": True, "access": ["tok-a"]},
    },
}


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(folder: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    return folder


def make_root(tmp_path: Path) -> Path:
    root = tmp_path / "hub"
    write(root / "org" / "tiny", TINY)
    write(root / "versions" / "tiny-dev", {**TINY, "config.json": b'{"model_type": "gpt2", "n_layer": 4}'})
    write(root / "versions" / "tiny-pr1", {"config.json": b'{"pr": 1}'})
    write(root / "google-bert" / "bert-base-chinese", {"config.json": b'{"model_type": "bert"}'})
    write(root / "org" / "secret", {"config.json": b"{}"})
    write(root / "org" / "gated", {"config.json": b'{"gated": true}'})
    write(root / "legacy", {"config.json": b'{"legacy": true}'})
    write(root / "datasets" / "org" / "data", {"train.csv": b"a,b\n1,2\n"})
    (root / "hub.json").write_text(json.dumps(HUB_JSON))
    return root


@pytest.fixture
def srv(tmp_path):
    with HubServer(make_root(tmp_path), tokens=["tok-a", "tok-b"]) as server:
        yield server


def head(srv, path, **kw):
    return requests.head(srv.url + path, allow_redirects=False, **kw)


def get(srv, path, **kw):
    return requests.get(srv.url + path, allow_redirects=False, **kw)


# ---- raw protocol ----

def test_resolve_headers_and_content(srv):
    r = head(srv, "/org/tiny/resolve/main/config.json")
    assert r.status_code == 200 and len(r.headers["X-Repo-Commit"]) == 40
    assert r.headers["ETag"] == f'"{git_sha1(TINY["config.json"])}"'
    assert r.headers["Content-Length"] == str(len(TINY["config.json"])) and "X-Linked-Etag" not in r.headers
    for path in ("weights.bin", "data/table.dat"):
        r = head(srv, f"/org/tiny/resolve/main/{path}")
        assert r.headers["X-Linked-Etag"] == r.headers["ETag"] == f'"{sha256(TINY[path])}"'
        assert r.headers["X-Linked-Size"] == str(len(TINY[path]))
        assert not [h for h in r.headers if h.lower().startswith("x-xet")]
        assert get(srv, f"/org/tiny/resolve/main/{path}").content == TINY[path]
    assert get(srv, "/datasets/org/data/resolve/main/train.csv").content == b"a,b\n1,2\n"
    assert get(srv, "/legacy/resolve/main/config.json").content == b'{"legacy": true}'
    info = get(srv, "/api/models/org/tiny?blobs=true").json()
    assert info["id"] == info["modelId"] == "org/tiny" and info["sha"] == r.headers["X-Repo-Commit"]
    siblings = {s["rfilename"]: s for s in info["siblings"]}
    assert set(siblings) == set(TINY) and siblings["config.json"]["blobId"] == git_sha1(TINY["config.json"])
    lfs = {"sha256": sha256(TINY["weights.bin"]), "size": 300_000, "pointerSize": 131}  # pointer: 125 + digits
    assert siblings["weights.bin"]["lfs"] == lfs
    assert get(srv, "/api/datasets/org/data").json()["id"] == "org/data"


def test_range_requests(srv):
    url, data = "/org/tiny/resolve/main/weights.bin", TINY["weights.bin"]
    r = get(srv, url, headers={"Range": "bytes=1000-"})
    assert r.status_code == 206 and r.content == data[1000:]
    assert r.headers["Content-Range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
    r = get(srv, url, headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == data[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    r = get(srv, url, headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{len(data)}"


def test_alias_and_miscased_redirects(srv):
    r = head(srv, "/bert-base-chinese/resolve/main/config.json?download=true")
    assert r.status_code == 307 and r.headers["Content-Length"] == "0"
    assert r.headers["Location"] == "/google-bert/bert-base-chinese/resolve/main/config.json?download=true"
    r = get(srv, "/api/models/old-tiny/revision/refs%2Fpr%2F1")
    assert r.status_code == 307 and r.headers["Location"] == "/api/models/org/tiny/revision/refs%2Fpr%2F1"
    assert head(srv, "/Org/TINY/resolve/main/config.json").headers["Location"] == "/org/tiny/resolve/main/config.json"
    r = get(srv, "/api/models/GOOGLE-BERT/bert-base-chinese")
    assert r.headers["Location"] == "/api/models/google-bert/bert-base-chinese"
    assert requests.get(srv.url + "/gpt2/resolve/main/config.json").status_code == 401  # target absent: no redirect
    r = requests.get(srv.url + "/bert-base-chinese/resolve/main/config.json")  # followed
    assert r.status_code == 200 and r.content == b'{"model_type": "bert"}'


def test_alias_never_hides_a_repo(tmp_path):
    root = write(tmp_path / "hub", {"distilgpt2/config.json": b"legacy", "distilbert/distilgpt2/config.json": b"new"})
    with HubServer(root, aliases={"tiny-alias": "distilbert/distilgpt2"}) as srv:
        assert get(srv, "/distilgpt2/resolve/main/config.json").content == b"legacy"
        location = head(srv, "/tiny-alias/resolve/main/config.json").headers["Location"]
        assert location == "/distilbert/distilgpt2/resolve/main/config.json"


def test_tree_paging_and_subfolders(tmp_path):
    with HubServer(make_root(tmp_path), page_size=2) as srv:
        url, pages, entries = srv.url + "/api/models/org/tiny/tree/main?recursive=true&expand=false", 0, []
        while url:
            r = requests.get(url)
            entries += r.json()
            pages += 1
            assert len(r.json()) <= 2
            url = r.links.get("next", {}).get("url")
            assert url is None or url.startswith(srv.url + "/api/models/org/tiny/tree/main?")
        files = {e["path"]: e for e in entries if e["type"] == "file"}
        assert set(files) == set(TINY) and pages == 4  # 5 files and 3 folders
        assert {e["path"] for e in entries if e["type"] == "directory"} == {"data", "sub", "sub/dir"}
        assert files["config.json"]["oid"] == git_sha1(TINY["config.json"])
        assert files["weights.bin"]["lfs"]["oid"] == sha256(TINY["weights.bin"])
        assert files["weights.bin"]["size"] == 300_000
        top = requests.get(srv.url + "/api/models/org/tiny/tree/main").json()
        top += requests.get(srv.url + "/api/models/org/tiny/tree/main?cursor=2").json()
        top += requests.get(srv.url + "/api/models/org/tiny/tree/main?cursor=4").json()
        assert [e["path"] for e in top] == [".gitattributes", "config.json", "data", "sub", "weights.bin"]
        assert [e["path"] for e in requests.get(srv.url + "/api/models/org/tiny/tree/main/sub%2Fdir").json()] == [
            "sub/dir/notes.txt"]
        r = requests.get(srv.url + "/api/models/org/tiny/tree/main/nope")
        assert r.status_code == 404 and r.headers["X-Error-Code"] == "EntryNotFound"


def test_errors(srv):
    cases = [
        ("/org/nope/resolve/main/config.json", {}, 401, "RepoNotFound"),
        ("/org/nope/resolve/main/config.json", {"Authorization": "Bearer tok-a"}, 404, "RepoNotFound"),
        ("/api/models/org/nope", {}, 401, "RepoNotFound"),
        ("/org/tiny/resolve/nope/config.json", {}, 404, "RevisionNotFound"),
        ("/api/models/org/tiny/revision/nope", {}, 404, "RevisionNotFound"),
        ("/org/tiny/resolve/main/nope.txt", {}, 404, "EntryNotFound"),
        ("/org/tiny/resolve/main/sub", {}, 404, "EntryNotFound"),
    ]
    for path, headers, status, code in cases:
        for method in (head, get):
            r = method(srv, path, headers=headers)
            assert (r.status_code, r.headers.get("X-Error-Code")) == (status, code), (method, path)
            assert r.headers["X-Error-Message"]
        if method is get:
            assert r.json()["error"] == r.headers["X-Error-Message"]
    r = head(srv, "/org/tiny/resolve/main/nope.txt")
    assert r.headers["X-Repo-Commit"] == head(srv, "/org/tiny/resolve/main/config.json").headers["X-Repo-Commit"]
    assert get(srv, "/no/such/route").status_code == 404
    conn = http.client.HTTPConnection("127.0.0.1", srv.port)  # `requests` would normalise the ".."
    conn.request("GET", "/org/tiny/resolve/main/sub/../../secret.txt")
    assert conn.getresponse().status == 400
    conn.close()


def test_private_gated_and_tokens(srv):
    r = get(srv, "/api/models/org/tiny", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.headers["X-Error-Message"] == "Invalid credentials in Authorization header"
    assert "X-Error-Code" not in r.headers
    secret = "/org/secret/resolve/main/config.json"
    assert (get(srv, secret).status_code, get(srv, secret).headers["X-Error-Code"]) == (401, "RepoNotFound")
    assert get(srv, secret, headers={"Authorization": "Bearer tok-b"}).content == b"{}"
    gated = "/org/gated/resolve/main/config.json"
    r = head(srv, gated)
    assert (r.status_code, r.headers["X-Error-Code"]) == (401, "GatedRepo")
    assert "Access to model org/gated is restricted" in r.headers["X-Error-Message"]
    r = head(srv, gated, headers={"Authorization": "Bearer tok-b"})
    assert (r.status_code, r.headers["X-Error-Code"]) == (403, "GatedRepo")
    assert get(srv, gated, headers={"Authorization": "Bearer tok-a"}).content == b'{"gated": true}'
    assert get(srv, "/api/models/org/gated").json()["gated"] == "manual"  # repo info stays visible


def test_revisions_and_commits(srv):
    def commit(rev):
        return head(srv, f"/org/tiny/resolve/{rev}/config.json").headers["X-Repo-Commit"]
    main, dev, pr = commit("main"), commit("dev"), commit("refs%2Fpr%2F1")
    assert len({main, dev, pr}) == 3 and commit("v1.0") == main
    assert get(srv, "/org/tiny/resolve/refs%2Fpr%2F1/config.json").content == b'{"pr": 1}'
    assert get(srv, f"/org/tiny/resolve/{dev}/config.json").content.endswith(b"4}")
    assert get(srv, f"/api/models/org/tiny/revision/{pr}").json()["sha"] == pr
    assert get(srv, "/api/models/org/tiny/revision/refs%2Fpr%2F1").json()["sha"] == pr
    assert head(srv, f"/org/tiny/resolve/{'0' * 40}/config.json").headers["X-Error-Code"] == "RevisionNotFound"
    refs = get(srv, "/api/models/org/tiny/refs").json()
    assert {(b["name"], b["targetCommit"]) for b in refs["branches"]} == {("main", main), ("dev", dev)}
    assert refs["tags"] == [{"name": "v1.0", "ref": "refs/tags/v1.0", "targetCommit": main}]
    assert refs["pullRequests"][0]["targetCommit"] == pr
    # The commit is a hash of the content: the same files give the same commit, a change a new one.
    write(Path(srv.root) / "org" / "copy", TINY)
    assert head(srv, "/org/copy/resolve/main/config.json").headers["X-Repo-Commit"] == main
    (Path(srv.root) / "org" / "tiny" / "config.json").write_bytes(b'{"model_type": "gpt2", "n_layer": 3}')
    assert commit("main") not in (main, dev)
    assert get(srv, "/org/tiny/resolve/main/config.json").content.endswith(b"3}")


# ---- conformance with huggingface_hub and transformers ----

def test_huggingface_hub_downloads(srv, tmp_path):
    from huggingface_hub import hf_hub_download, snapshot_download
    kw = {"endpoint": srv.url, "cache_dir": tmp_path / "cache", "token": False}
    for name, content in TINY.items():
        assert Path(hf_hub_download("org/tiny", name, **kw)).read_bytes() == content
    path = hf_hub_download("org/tiny", "weights.bin", **kw)
    assert os.path.basename(os.readlink(path)) == sha256(TINY["weights.bin"])
    assert Path(hf_hub_download("bert-base-chinese", "config.json", **kw)).read_bytes() == b'{"model_type": "bert"}'
    assert Path(hf_hub_download("org/tiny", "config.json", revision="refs/pr/1", **kw)).read_bytes() == b'{"pr": 1}'
    assert Path(hf_hub_download("org/tiny", "config.json", revision="v1.0", **kw)).read_bytes() == TINY["config.json"]
    assert Path(hf_hub_download("org/data", "train.csv", repo_type="dataset", **kw)).read_bytes() == b"a,b\n1,2\n"
    gated = hf_hub_download("org/gated", "config.json", **{**kw, "token": "tok-a"})
    assert Path(gated).read_bytes() == b'{"gated": true}'
    folder = Path(snapshot_download("org/tiny", **kw))
    assert {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == TINY
    dev = Path(snapshot_download("old-tiny", revision="dev", **kw))
    assert (dev / "config.json").read_bytes().endswith(b"4}")


def test_huggingface_hub_errors(srv, tmp_path):
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, RepositoryNotFoundError,
                                        RevisionNotFoundError)
    kw = {"endpoint": srv.url, "cache_dir": tmp_path / "cache", "token": False}
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/nope", "config.json", **kw)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/secret", "config.json", **kw)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("org/tiny", "nope.json", **kw)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("org/tiny", "config.json", revision="nope", **kw)
    with pytest.raises(RevisionNotFoundError):
        snapshot_download("org/tiny", revision="nope", **kw)
    with pytest.raises(GatedRepoError):
        hf_hub_download("org/gated", "config.json", **kw)
    with pytest.raises(GatedRepoError):
        hf_hub_download("org/gated", "config.json", **{**kw, "token": "tok-b"})


def test_mirror_mode_serves_a_huggingface_hub_cache(srv, tmp_path):
    from huggingface_hub import hf_hub_download, snapshot_download
    cache = tmp_path / "cache"
    snapshot_download("org/tiny", endpoint=srv.url, cache_dir=cache, token=False)
    hf_hub_download("org/tiny", "config.json", revision="refs/pr/1", endpoint=srv.url, cache_dir=cache, token=False)
    hf_hub_download("legacy", "config.json", endpoint=srv.url, cache_dir=cache, token=False)
    with HubServer(cache) as mirror:
        for path in ("config.json", "weights.bin", "data/table.dat"):
            theirs, ours = head(srv, f"/org/tiny/resolve/main/{path}"), head(mirror, f"/org/tiny/resolve/main/{path}")
            for name in ("X-Repo-Commit", "ETag", "X-Linked-Etag", "X-Linked-Size", "Content-Length"):
                assert theirs.headers.get(name) == ours.headers.get(name), (path, name)
        assert get(mirror, "/org/tiny/resolve/refs%2Fpr%2F1/config.json").content == b'{"pr": 1}'
        assert get(mirror, "/legacy/resolve/main/config.json").content == b'{"legacy": true}'
        assert head(mirror, "/org/tiny/resolve/dev/config.json").headers["X-Error-Code"] == "RevisionNotFound"
        folder = Path(snapshot_download("org/tiny", endpoint=mirror.url, cache_dir=tmp_path / "cache2", token=False))
        assert {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == TINY
        assert folder.name == head(srv, "/org/tiny/resolve/main/config.json").headers["X-Repo-Commit"]


TRANSFORMERS_SCRIPT = """
import json, torch
from transformers import AutoConfig, AutoModel, AutoTokenizer
repo = "sentence-transformers/all-MiniLM-L6-v2"
config = AutoConfig.from_pretrained(repo)
tokenizer = AutoTokenizer.from_pretrained(repo)
model = AutoModel.from_pretrained(repo)
with torch.no_grad():
    out = model(**tokenizer(["hello world"], return_tensors="pt")).last_hidden_state
alias = AutoConfig.from_pretrained("bert-base-chinese")
print(json.dumps({"hidden": config.hidden_size, "ids": tokenizer("hello world")["input_ids"],
                  "shape": list(out.shape), "alias": alias.model_type}))
"""


@pytest.mark.slow
def test_transformers_loads_through_the_server(tmp_path, minilm_dir):
    root = make_root(tmp_path)
    (root / "sentence-transformers").mkdir()
    (root / "sentence-transformers" / "all-MiniLM-L6-v2").symlink_to(minilm_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "TRANSFORMERS_"))}
    with HubServer(root, follow_symlinks_outside=True) as srv:  # the repo folder links out of the root
        env.update(HF_ENDPOINT=srv.url, HF_HOME=str(tmp_path / "home"), HF_HUB_CACHE=str(tmp_path / "cache"),
                   HF_HUB_DISABLE_PROGRESS_BARS="1", TRANSFORMERS_VERBOSITY="error")
        proc = subprocess.run([sys.executable, "-c", TRANSFORMERS_SCRIPT], env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        assert result == {"hidden": 384, "ids": [101, 7592, 2088, 102], "shape": [1, 4, 384], "alias": "bert"}
        assert any(r.method == "GET" and r.path.endswith("/model.safetensors") for r in srv.requests)


# ---- concurrency, lifecycle and fault hooks ----

def test_concurrent_downloads_and_prompt_stop(tmp_path, monkeypatch):
    from autoload.server import core as server_module
    real_hash, hashed = server_module._hash_file, []

    def counting_hash(path, size, lfs):
        hashed.append(path)
        return real_hash(path, size, lfs)
    monkeypatch.setattr(server_module, "_hash_file", counting_hash)
    big = os.urandom(4 * 1024 * 1024 + 3)
    root = write(tmp_path / "hub", {"org/big/model.safetensors": big})
    srv = HubServer(root).start()
    results = []

    def fetch():
        with requests.Session() as session:  # keep-alive connections stay open until stop()
            results.append(session.get(srv.url + "/org/big/resolve/main/model.safetensors").content == big)
    threads = [threading.Thread(target=fetch) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 16 and len(srv.requests) == 16
    assert len(hashed) == 1  # by the first request only: the others wait for it, then hit the cache
    srv.reset_requests()
    assert srv.requests == []
    began = time.monotonic()
    srv.stop()
    srv.stop()  # idempotent
    assert time.monotonic() - began < 2
    with pytest.raises(requests.ConnectionError):
        requests.get(srv.url + "/api/models/org/big", timeout=2)


def test_fault_hooks(srv, tmp_path):
    url, data = "/org/tiny/resolve/main/weights.bin", TINY["weights.bin"]
    srv.fault = lambda method, path, headers: Fault(status=503, headers={"Retry-After": "1"}, body=b"busy")
    r = get(srv, url)
    assert (r.status_code, r.headers["Retry-After"], r.content) == (503, "1", b"busy")
    srv.fault = lambda method, path, headers: Fault(corrupt=True) if method == "GET" else None
    r = get(srv, url)
    assert len(r.content) == len(data) and r.content == bytes(255 - b for b in data)
    srv.fault = lambda method, path, headers: Fault(truncate_after=1000)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port)
    conn.request("GET", url)
    response = conn.getresponse()
    assert response.getheader("Content-Length") == str(len(data))
    with pytest.raises(http.client.IncompleteRead) as short:
        response.read()
    assert short.value.partial == data[:1000]
    conn.close()
    srv.fault = lambda method, path, headers: Fault(rate=1_000_000, delay=0.1)
    began = time.monotonic()
    assert get(srv, url).content == data and time.monotonic() - began > 0.25  # 0.1 s delay, then ~0.2 s of throttling
    # One dropped connection: huggingface_hub retries and still gets the right bytes.
    from huggingface_hub import hf_hub_download
    drops = []

    def drop_first_get(method, path, headers):
        if method == "GET" and not drops:
            drops.append(path)
            return Fault(truncate_after=5000)
    srv.fault = drop_first_get
    path = hf_hub_download("org/tiny", "weights.bin", endpoint=srv.url, cache_dir=tmp_path / "cache", token=False)
    assert Path(path).read_bytes() == data and drops
    srv.fault = None
