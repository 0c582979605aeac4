"""hub_download / snapshot_download against the local hub server: happy paths, layout, revisions,
short ids, offline behaviour (counting requests on the server) and typed errors."""

from __future__ import annotations

import json
import os

import pytest

import autoload
from conftest import git_sha1, sha256, write_repo

REPO = "google-bert/bert-base-chinese"
CANON_FOLDER = "models--google-bert--bert-base-chinese"


def test_download_layout(hub, cache_dir, repo_files):
    path = autoload.hub_download(REPO, "config.json")
    repo = cache_dir / CANON_FOLDER
    commit = (repo / "refs" / "main").read_text()
    assert len(commit) == 40 and not commit.endswith("\n")
    assert path == str(repo / "snapshots" / commit / "config.json")
    assert open(path, "rb").read() == repo_files["config.json"]
    link = os.readlink(path)
    assert link == f"../../blobs/{git_sha1(repo_files['config.json'])}"  # relative, named by the git blob sha1

    big = autoload.hub_download(REPO, "model.safetensors")
    assert os.readlink(big) == f"../../blobs/{sha256(repo_files['model.safetensors'])}"  # LFS: sha256
    nested = autoload.hub_download(REPO, "sub/dir/notes.txt")
    assert os.readlink(nested) == f"../../../../blobs/{git_sha1(repo_files['sub/dir/notes.txt'])}"
    assert (cache_dir / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55")
    assert (cache_dir / ".locks" / CANON_FOLDER).is_dir()
    assert not list((repo / "blobs").glob("*.incomplete"))


def test_snapshot_download(hub, cache_dir, repo_files):
    hub.reset_requests()
    folder = autoload.snapshot_download(REPO)
    for name, content in repo_files.items():
        assert open(os.path.join(folder, name), "rb").read() == content
    commit = os.path.basename(folder)
    tree = json.loads((cache_dir / CANON_FOLDER / "trees" / f"{commit}.json").read_text())
    assert tree["format_version"] == 1 and set(tree["files"]) == set(repo_files)
    # one revision call, one tree listing, one GET per file: no HEAD per file
    methods = [r.method for r in hub.requests]
    assert methods.count("HEAD") == 0 and methods.count("GET") == 2 + len(repo_files)

    hub.reset_requests()
    assert autoload.snapshot_download(REPO, revision=commit) == folder
    assert hub.requests == []  # a cached commit costs zero requests, online


def test_snapshot_patterns(hub, repo_files):
    folder = autoload.snapshot_download(REPO, allow_patterns=["*.json", "sub/"], ignore_patterns="tokenizer*")
    got = sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)
    assert got == ["config.json", "sub/dir/notes.txt"]


def test_short_id_shares_one_cache_entry(hub, cache_dir, repo_files):
    hub.reset_requests()
    path = autoload.hub_download("bert-base-chinese", "config.json")  # table: no redirect needed
    assert CANON_FOLDER in path
    assert not any("/bert-base-chinese/" in r.path and "google-bert" not in r.path for r in hub.requests)
    again = autoload.hub_download(REPO, "config.json")
    assert again == path
    blobs = list((cache_dir / CANON_FOLDER / "blobs").iterdir())
    assert len(blobs) == 1
    # the id as typed resolves for huggingface_hub too, through links into the canonical blobs
    alias = cache_dir / "models--bert-base-chinese"
    commit = (alias / "refs" / "main").read_text()
    aliased = alias / "snapshots" / commit / "config.json"
    assert aliased.read_bytes() == repo_files["config.json"]
    assert os.path.realpath(aliased) == os.path.realpath(path)
    assert not (alias / "blobs").exists() or not list((alias / "blobs").iterdir())


def test_short_id_through_server_redirect(server, cache_dir, hub_root, monkeypatch):
    """An id that is not in the built-in table follows the hub's 307 and is stored under the new name."""
    write_repo(hub_root, {"hub.json": json.dumps({"aliases": {"old-name": "org/tiny"}})})
    from autoload.server import HubServer
    with HubServer(hub_root) as srv:
        path = autoload.hub_download("old-name", "config.json", endpoint=srv.url)
        assert "models--org--tiny" in path
        folder = autoload.snapshot_download("old-name", endpoint=srv.url)
        assert "models--org--tiny" in folder
    # offline, the id as typed still resolves (through its link folder)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert autoload.hub_download("old-name", "config.json") is not None


def test_existing_short_id_folder_from_huggingface_hub_is_found(hub, cache_dir, repo_files):
    """huggingface_hub caches `bert-base-chinese` under models--bert-base-chinese: autoload finds it."""
    from huggingface_hub import hf_hub_download
    hf_path = hf_hub_download("bert-base-chinese", "vocab.txt", cache_dir=str(cache_dir), endpoint=hub.url)
    assert "models--bert-base-chinese" in hf_path
    hub.reset_requests()
    assert autoload.hub_download("bert-base-chinese", "vocab.txt", local_files_only=True) == hf_path
    assert hub.requests == []


def test_revisions(server, hub_root, cache_dir, monkeypatch):
    base = hub_root / "org" / "tiny"
    write_repo(hub_root / "versions" / "dev", {"config.json": '{"model_type": "gpt2", "dev": true}'})
    write_repo(hub_root / "versions" / "pr1", {"config.json": '{"model_type": "gpt2", "pr": 1}'})
    (hub_root / "hub.json").write_text(json.dumps({"repos": {"org/tiny": {"refs": {
        "dev": "versions/dev", "v1.0": "main", "refs/pr/1": "versions/pr1"}}}}))
    from autoload.server import HubServer
    with HubServer(hub_root) as srv:
        monkeypatch.setenv("HF_ENDPOINT", srv.url)
        main = autoload.hub_download("org/tiny", "config.json")
        dev = autoload.hub_download("org/tiny", "config.json", revision="dev")
        tag = autoload.hub_download("org/tiny", "config.json", revision="v1.0")
        pr = autoload.hub_download("org/tiny", "config.json", revision="refs/pr/1")
        assert open(main).read() == (base / "config.json").read_text() == open(tag).read()
        assert json.loads(open(dev).read())["dev"] is True
        assert json.loads(open(pr).read())["pr"] == 1
        repo = cache_dir / "models--org--tiny"
        assert (repo / "refs" / "refs" / "pr" / "1").read_text() == pr.split("/snapshots/")[1].split("/")[0]
        commit = (repo / "refs" / "dev").read_text()
        srv.reset_requests()
        assert autoload.hub_download("org/tiny", "config.json", revision=commit) == dev
        assert srv.requests == []  # cached commit: no request online
        with pytest.raises(autoload.RevisionNotFoundError, match="no-such-branch"):
            autoload.hub_download("org/tiny", "config.json", revision="no-such-branch")
    # offline: branch names resolve through refs/
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert autoload.hub_download("org/tiny", "config.json", revision="dev") == dev
    assert autoload.hub_download("org/tiny", "config.json", revision="refs/pr/1") == pr


def test_offline_makes_zero_requests(hub, monkeypatch):
    path = autoload.hub_download(REPO, "config.json")
    folder = autoload.snapshot_download(REPO)
    hub.reset_requests()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert autoload.hub_download(REPO, "config.json") == path
    assert autoload.snapshot_download(REPO) == folder
    assert autoload.snapshot_download("bert-base-chinese") == folder
    with pytest.raises(autoload.OfflineModeError, match="HF_HUB_OFFLINE"):
        autoload.hub_download("org/tiny", "config.json")
    with pytest.raises(autoload.OfflineModeError):
        autoload.snapshot_download("org/tiny")
    assert hub.requests == []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert autoload.hub_download(REPO, "config.json", local_files_only=True) == path
    with pytest.raises(autoload.LocalEntryNotFoundError, match="local_files_only"):
        autoload.hub_download("org/tiny", "config.json", local_files_only=True)
    with pytest.raises(ValueError, match="force"):
        autoload.hub_download(REPO, "config.json", local_files_only=True, force_download=True)
    assert hub.requests == []


def test_incomplete_snapshot_offline(hub, cache_dir, monkeypatch):
    folder = autoload.snapshot_download(REPO)
    os.unlink(os.path.join(folder, "vocab.txt"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(autoload.IncompleteSnapshotError, match="vocab.txt") as info:
        autoload.snapshot_download(REPO)
    assert info.value.missing == ["vocab.txt"]
    assert autoload.snapshot_download(REPO, allow_patterns="*.json") == folder


def test_server_down_uses_cache(hub, cache_dir, monkeypatch):
    path = autoload.hub_download(REPO, "config.json")
    folder = autoload.snapshot_download(REPO)
    hub.stop()
    assert autoload.hub_download(REPO, "config.json") == path
    assert autoload.snapshot_download(REPO) == folder
    monkeypatch.setenv("AUTOLOAD_MAX_RETRIES", "1")
    with pytest.raises(autoload.LocalEntryNotFoundError, match="Could not reach"):
        autoload.hub_download("org/tiny", "config.json")


def test_errors_name_repo_file_revision(hub, cache_dir):
    with pytest.raises(autoload.RepositoryNotFoundError) as info:
        autoload.hub_download("nobody/nothing", "config.json")
    assert "nobody/nothing" in str(info.value) and hub.url in str(info.value) and "token" in str(info.value)
    with pytest.raises(autoload.RepositoryNotFoundError):
        autoload.snapshot_download("nobody/nothing")
    with pytest.raises(autoload.EntryNotFoundError) as info:
        autoload.hub_download(REPO, "missing.bin")
    assert "missing.bin" in str(info.value) and REPO in str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    commit = (cache_dir / CANON_FOLDER / "refs" / "main").read_text() if (cache_dir / CANON_FOLDER / "refs").exists() \
        else None
    no_exist = list((cache_dir / CANON_FOLDER / ".no_exist").rglob("missing.bin"))
    assert len(no_exist) == 1 and (commit is None or commit in str(no_exist[0]))
    with pytest.raises(autoload.RevisionNotFoundError) as info:
        autoload.snapshot_download(REPO, revision="v9")
    assert "v9" in str(info.value)


@pytest.mark.parametrize("bad", ["../etc/passwd", "/etc/passwd", "a/../../b", "C:/windows", "a//b", ""])
def test_unsafe_paths_refused(hub, bad, cache_dir):
    with pytest.raises(autoload.UnsafePathError):
        autoload.hub_download(REPO, bad)
    assert not (cache_dir / CANON_FOLDER / "blobs").exists() or not list((cache_dir / CANON_FOLDER / "blobs").iterdir())


@pytest.mark.parametrize("bad", ["a/b/c", "a--b", "-a", "a..b", "x.git", "a b"])
def test_invalid_repo_ids(bad, isolated_env):
    with pytest.raises(autoload.InvalidRepoIdError):
        autoload.hub_download(bad, "config.json")


def test_gated_and_private_repos(server, hub_root, cache_dir, monkeypatch):
    write_repo(hub_root / "org" / "gated", {"config.json": "{}"})
    write_repo(hub_root / "org" / "private", {"config.json": "{}"})
    (hub_root / "hub.json").write_text(json.dumps({"repos": {
        "org/gated": {"gated": True, "access": ["good-token"]}, "org/private": {"private": True}}}))
    from autoload.server import HubServer
    with HubServer(hub_root, tokens=["good-token", "other-token"]) as srv:
        with pytest.raises(autoload.GatedRepoError, match="org/gated"):
            autoload.hub_download("org/gated", "config.json", endpoint=srv.url)
        with pytest.raises(autoload.GatedRepoError):
            autoload.hub_download("org/gated", "config.json", endpoint=srv.url, token="other-token")
        assert autoload.hub_download("org/gated", "config.json", endpoint=srv.url, token="good-token")
        with pytest.raises(autoload.RepositoryNotFoundError, match="pass a token"):
            autoload.hub_download("org/private", "config.json", endpoint=srv.url)
        monkeypatch.setenv("HF_TOKEN", "other-token")  # the implicit token
        assert autoload.hub_download("org/private", "config.json", endpoint=srv.url)
        monkeypatch.delenv("HF_TOKEN")
        (cache_dir.parent / "hf_home").mkdir(exist_ok=True)
        (cache_dir.parent / "hf_home" / "token").write_text("good-token\n")  # the token file
        assert autoload.snapshot_download("org/gated", endpoint=srv.url, cache_dir=cache_dir / "other")
        with pytest.raises(autoload.GatedRepoError):  # token=False sends none
            autoload.hub_download("org/gated", "config.json", endpoint=srv.url, token=False,
                                  cache_dir=cache_dir / "third")


def test_token_not_sent_to_other_hosts(hub, monkeypatch):
    """A redirect to another origin (a CDN) gets no Authorization header."""
    from autoload.hub import http

    seen = []
    real = http.session().request

    def spy(method, url, headers=None, **kw):
        seen.append((url, "authorization" in {k.lower() for k in (headers or {})}))
        return real(method, url, headers=headers, **kw)

    monkeypatch.setattr(http.session(), "request", spy)
    other = hub.url.replace("127.0.0.1", "localhost")  # same server, another origin
    hub.fault = lambda method, path, headers: (
        _redirect(other + path) if "/resolve/" in path and "cdn" not in path and method == "GET" else None)
    autoload.hub_download("org/tiny", "weights.bin", token="secret", force_download=True)
    assert any(url.startswith(hub.url) and auth for url, auth in seen)
    assert seen and all(not auth for url, auth in seen if url.startswith(other))
    assert any(url.startswith(other) for url, _ in seen)


def _redirect(location):
    from autoload.server import Fault
    return Fault(status=302, headers={"Location": location + ("&" if "?" in location else "?") + "cdn=1"})


def test_force_download_and_progress_off(hub, cache_dir, capsys):
    path = autoload.hub_download(REPO, "vocab.txt", progress=False)
    hub.reset_requests()
    assert autoload.hub_download(REPO, "vocab.txt", force_download=True, progress=False) == path
    assert [r.method for r in hub.requests] == ["HEAD", "GET"]
    assert capsys.readouterr().err == ""


def test_no_symlink_mode(hub, cache_dir, monkeypatch, repo_files):
    monkeypatch.setenv("HF_HUB_DISABLE_SYMLINKS", "1")
    path = autoload.hub_download(REPO, "model.safetensors")
    assert not os.path.islink(path) and open(path, "rb").read() == repo_files["model.safetensors"]
    folder = autoload.snapshot_download(REPO)
    assert all(not os.path.islink(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs)


def test_dataset_repo_type(server, hub_root, cache_dir, monkeypatch):
    write_repo(hub_root / "datasets" / "org" / "data", {"train.csv": "a,b\n1,2\n"})
    from autoload.server import HubServer
    with HubServer(hub_root) as srv:
        path = autoload.hub_download("org/data", "train.csv", repo_type="dataset", endpoint=srv.url)
        assert "datasets--org--data" in path and open(path).read() == "a,b\n1,2\n"
    with pytest.raises(ValueError, match="repo_type"):
        autoload.hub_download("org/data", "train.csv", repo_type="bucket")


def test_rename_followed_through_a_resolve_cache_hop(hub, cache_dir, hub_root):
    """The real hub answers a legacy id with 307 to the new id, then 307 to /api/resolve-cache/...: the
    client must learn the new id from the chain, not from the last URL."""
    from autoload.server import Fault
    import requests as rq

    real = rq.head(f"{hub.url}/org/tiny/resolve/main/config.json")

    def hook(method, path, headers):
        if method == "HEAD" and path.startswith("/renamed-model/resolve/"):
            return Fault(status=307, headers={"Location": path.replace("/renamed-model/", "/org/tiny/")})
        if method == "HEAD" and path.startswith("/org/tiny/resolve/main/"):
            return Fault(status=307, headers={"Location": "/api/resolve-cache/models/org/tiny/x/config.json"})
        if method == "HEAD" and path.startswith("/api/resolve-cache/"):
            return Fault(status=200, headers={"X-Repo-Commit": real.headers["X-Repo-Commit"], "ETag": real.headers["ETag"],
                                              "X-Linked-Size": real.headers["Content-Length"]})
        if method == "GET" and path.startswith("/api/resolve-cache/"):
            return Fault(status=307, headers={"Location": "/org/tiny/resolve/main/config.json"})
        return None
    hub.fault = hook
    path = autoload.hub_download("renamed-model", "config.json")
    assert "models--org--tiny" in path and open(path).read() == (hub_root / "org/tiny/config.json").read_text()
    assert (cache_dir / "models--renamed-model" / "refs" / "main").exists()  # the old id keeps working offline


def test_server_paths_that_escape_are_refused(hub, cache_dir):
    """A hostile tree listing cannot make the client write outside the snapshot."""
    from autoload.server import Fault

    body = json.dumps([{"type": "file", "path": "../../../evil.txt", "oid": "a" * 40, "size": 4}]).encode()
    hub.fault = lambda method, path, headers: Fault(status=200, body=body, headers={
        "Content-Type": "application/json"}) if "/tree/" in path else None
    with pytest.raises(autoload.UnsafePathError, match="evil"):
        autoload.snapshot_download("org/tiny")
    assert not list(cache_dir.parent.rglob("evil.txt"))


def test_empty_file(hub, hub_root):
    (hub_root / "org" / "tiny" / "empty.txt").write_bytes(b"")
    path = autoload.hub_download("org/tiny", "empty.txt")
    assert os.path.getsize(path) == 0
