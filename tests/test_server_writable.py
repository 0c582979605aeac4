"""`autoload serve --writable`: the upload routes on the wire (raw requests), history (commit ids, branches, old
commits), LFS objects checked before a commit may name them, the parent check, limits, hostile paths, and a
server killed mid-upload or mid-commit leaving the previous revision whole."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from autoload.server import HubServer
from conftest import ROOT, git_sha1, sha256, write_repo

W, R = {"authorization": "Bearer wtok"}, {"authorization": "Bearer rtok"}


@pytest.fixture
def root(tmp_path) -> Path:
    root = tmp_path / "hub"
    write_repo(root / "org" / "folder", {"config.json": b'{"a": 1}', "weights.bin": os.urandom(5000)})
    return root


@pytest.fixture
def srv(root):
    with HubServer(root, writable=True, write_tokens={"wtok": "alice"}, tokens=["rtok"], max_file_size=200_000,
                   max_commit_bytes=100_000) as server:
        yield server


def create(srv, name="alice/demo", headers=W, **extra):
    org, _, short = name.rpartition("/")
    return requests.post(f"{srv.url}/api/repos/create", json={"name": short, "organization": org or None, **extra},
                         headers=headers)


def commit(srv, repo, lines, rev="main", headers=W, query=""):
    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    return requests.post(f"{srv.url}/api/models/{repo}/commit/{rev}{query}", data=body,
                         headers={**headers, "content-type": "application/x-ndjson"})


def header(summary="msg", **extra):
    return {"key": "header", "value": {"summary": summary, "description": "", **extra}}


def add(path, data: bytes):
    return {"key": "file", "value": {"path": path, "content": base64.b64encode(data).decode(), "encoding": "base64"}}


def lfs(path, data: bytes):
    return {"key": "lfsFile", "value": {"path": path, "algo": "sha256", "oid": sha256(data), "size": len(data)}}


def batch(srv, repo, objects, headers=W, transfers=("basic",)):
    return requests.post(f"{srv.url}/{repo}.git/info/lfs/objects/batch", headers=headers,
                         json={"operation": "upload", "transfers": list(transfers), "hash_algo": "sha256",
                               "objects": [{"oid": sha256(d), "size": len(d)} for d in objects]})


def head_of(srv, repo, rev="main"):
    return requests.get(f"{srv.url}/api/models/{repo}/revision/{rev}", headers=R).json()["sha"]


def test_create_repo_answers_as_the_hub(srv):
    r = create(srv)
    assert r.status_code == 200 and r.json()["url"] == f"{srv.url}/alice/demo"
    again = create(srv)
    assert again.status_code == 409 and again.json()["url"] == f"{srv.url}/alice/demo"  # exist_ok reads it
    assert create(srv, "org/folder").status_code == 409  # a served folder counts as existing
    bare = create(srv, "solo")
    assert bare.json()["url"].endswith("/alice/solo")  # no namespace: the token owner's
    assert create(srv, "alice/x", headers={}).status_code == 401
    assert create(srv, "alice/x", headers={"authorization": "Bearer nope"}).status_code == 401
    assert create(srv, "alice/x", headers=R).status_code == 403
    for bad in ("alice/a--b", "alice/..", "alice/x.git", "alice/" + "a" * 97, "alice/a b"):
        assert create(srv, bad).status_code == 400, bad
    info = requests.get(f"{srv.url}/api/models/alice/demo", headers=R).json()
    assert len(info["sha"]) == 40 and [s["rfilename"] for s in info["siblings"]] == [".gitattributes"]


def test_history_branches_and_old_commits(srv):
    create(srv)
    first = head_of(srv, "alice/demo")
    r1 = commit(srv, "alice/demo", [header("one"), add("a.txt", b"v1")])
    c1 = r1.json()["commitOid"]
    assert r1.json()["commitUrl"] == f"{srv.url}/alice/demo/commit/{c1}" and len(c1) == 40
    c2 = commit(srv, "alice/demo", [header("two", parentCommit=c1), add("a.txt", b"v2")]).json()["commitOid"]
    assert head_of(srv, "alice/demo") == c2 and len({first, c1, c2}) == 3
    for rev, content in ((c1, b"v1"), (c2, b"v2"), ("main", b"v2"), (c1[:10], b"v1")):
        got = requests.get(f"{srv.url}/alice/demo/resolve/{rev}/a.txt", headers=R)
        assert got.content == content and got.headers["X-Repo-Commit"] in (c1, c2)
        assert got.headers["ETag"] == f'"{git_sha1(content)}"'
    assert requests.post(f"{srv.url}/api/models/alice/demo/branch/dev", json={"startingPoint": c1},
                         headers=W).status_code == 200
    assert requests.post(f"{srv.url}/api/models/alice/demo/branch/dev", json={}, headers=W).status_code == 409
    c3 = commit(srv, "alice/demo", [header("dev"), add("b.txt", b"dev")], rev="dev").json()["commitOid"]
    pr = commit(srv, "alice/demo", [header("pr"), add("c.txt", b"pr")], query="?create_pr=1").json()
    assert pr["pullRequestUrl"] == f"{srv.url}/alice/demo/discussions/1"
    assert requests.post(f"{srv.url}/api/models/alice/demo/tag/{c1}", json={"tag": "v1.0"}, headers=W).ok
    refs = requests.get(f"{srv.url}/api/models/alice/demo/refs", headers=R).json()
    assert {b["name"]: b["targetCommit"] for b in refs["branches"]} == {"main": c2, "dev": c3}
    assert refs["tags"] == [{"name": "v1.0", "ref": "refs/tags/v1.0", "targetCommit": c1}]
    assert refs["pullRequests"][0]["targetCommit"] == pr["commitOid"]
    assert head_of(srv, "alice/demo") == c2  # a PR leaves main alone
    tree = requests.get(f"{srv.url}/api/models/alice/demo/tree/refs%2Fpr%2F1", headers=R).json()
    assert sorted(e["path"] for e in tree) == [".gitattributes", "a.txt", "c.txt"]
    assert commit(srv, "alice/demo", [header(), add("x", b"")], rev=c1).status_code == 400  # not a branch
    assert commit(srv, "alice/demo", [header(), add("x", b"")], rev="nope").headers["X-Error-Code"] == \
        "RevisionNotFound"


def test_lfs_objects_are_checked_before_a_commit_names_them(srv):
    create(srv)
    data = os.urandom(50_000)
    answer = batch(srv, "alice/demo", [data]).json()["objects"][0]
    href = answer["actions"]["upload"]["href"]
    # nothing stored yet: a commit naming it is refused
    assert commit(srv, "alice/demo", [header(), lfs("w.bin", data)]).status_code == 422
    # tampered bytes, a forged signature, a wrong length: refused, nothing stored
    assert requests.put(href, data=bytes(reversed(data))).status_code == 400
    assert requests.put(href.replace("sig=", "sig=0"), data=data).status_code == 403
    assert requests.put(href, data=data[:-1]).status_code == 400
    verify = answer["actions"]["verify"]["href"]
    assert requests.post(verify, json={"oid": sha256(data), "size": len(data)}, headers=W).status_code == 404
    assert commit(srv, "alice/demo", [header(), lfs("w.bin", data)]).status_code == 422
    # the right bytes: stored, verified, committable; the batch then asks for nothing
    assert requests.put(href, data=data).status_code == 200
    assert requests.post(verify, json={"oid": sha256(data), "size": len(data)}, headers=W).status_code == 200
    bad_size = {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": sha256(data), "size": 7}}
    assert commit(srv, "alice/demo", [header(), bad_size]).status_code == 422
    assert commit(srv, "alice/demo", [header(), lfs("w.bin", data)]).ok
    assert "actions" not in batch(srv, "alice/demo", [data]).json()["objects"][0]
    got = requests.get(f"{srv.url}/alice/demo/resolve/main/w.bin", headers=R)
    assert got.content == data and got.headers["X-Linked-Etag"] == f'"{sha256(data)}"'


def test_multipart_upload_assembles_and_checks(srv, monkeypatch):
    from autoload.server import writes
    monkeypatch.setattr(writes, "MULTIPART_THRESHOLD", 1000)
    monkeypatch.setattr(writes, "PART_SIZE", 4000)
    create(srv)
    data = os.urandom(10_000)
    answer = batch(srv, "alice/demo", [data], transfers=["basic", "multipart"]).json()
    upload = answer["objects"][0]["actions"]["upload"]
    parts = sorted((k, v) for k, v in upload["header"].items() if k.isdigit())
    assert upload["header"]["chunk_size"] == "4000" and [k for k, _ in parts] == ["00001", "00002", "00003"]
    etags = []
    for n, (_, url) in enumerate(parts):
        r = requests.put(url, data=data[n * 4000:(n + 1) * 4000])
        etags.append({"partNumber": n + 1, "etag": r.headers["ETag"]})
    assert requests.put(parts[0][1], data=data[:10]).status_code == 400  # a part of the wrong length
    assert requests.post(upload["href"], json={"oid": sha256(data), "parts": etags}).ok
    assert commit(srv, "alice/demo", [header(), lfs("big.bin", data)]).ok
    assert requests.get(f"{srv.url}/alice/demo/resolve/main/big.bin", headers=R).content == data


def test_stale_parent_is_refused_and_commits_serialize(srv):
    create(srv)
    base = head_of(srv, "alice/demo")
    answers = []

    def push(i):
        answers.append(commit(srv, "alice/demo", [header(f"c{i}", parentCommit=base), add(f"{i}.txt", b"x")]))
    threads = [threading.Thread(target=push, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200, 412, 412, 412]
    assert "A commit has happened since" in next(r for r in answers if r.status_code == 412).json()["error"]
    # without a parent, concurrent commits all land, one after the other
    answers.clear()
    threads = [threading.Thread(target=lambda i=i: answers.append(
        commit(srv, "alice/demo", [header(f"n{i}"), add(f"n{i}.txt", b"y")]))) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.ok for r in answers)
    files = [s["rfilename"] for s in requests.get(f"{srv.url}/api/models/alice/demo", headers=R).json()["siblings"]]
    assert {f"n{i}.txt" for i in range(4)} <= set(files)


def test_limits_give_413(srv):
    create(srv)
    too_big = batch(srv, "alice/demo", [b"x" * 200_001])
    assert too_big.status_code == 413 and "200000" in too_big.json()["error"]
    body = commit(srv, "alice/demo", [header(), add("big.txt", os.urandom(90_000))])
    assert body.status_code == 413
    assert head_of(srv, "alice/demo") == requests.get(f"{srv.url}/api/models/alice/demo").json()["sha"]


HOSTILE_PATHS = ["../x", "/abs", "a\\b", "a/../b", "a//b", "a/./b", "x\x00y", "x\ny", ".git/config", "a/.git/x",
                 "C:/x", "a" * 1001, "b" * 256 + "/x", "dir/", ""]


@pytest.mark.parametrize("path", HOSTILE_PATHS)
def test_hostile_paths_are_400(srv, path):
    create(srv)
    before = head_of(srv, "alice/demo")
    r = commit(srv, "alice/demo", [header(), add(path, b"x")])
    assert r.status_code == 400, r.text
    pre = requests.post(f"{srv.url}/api/models/alice/demo/preupload/main", headers=W,
                        json={"files": [{"path": path, "size": 1, "sample": "eA=="}]})
    assert pre.status_code == 400
    assert head_of(srv, "alice/demo") == before
    assert not list((Path(srv.root) / ".hub" / "tmp").glob("*"))


def test_delete_repo(srv):
    from huggingface_hub import HfApi
    create(srv)
    commit(srv, "alice/demo", [header(), add("a.txt", b"x")])
    api = HfApi(endpoint=srv.url, token="wtok")
    api.delete_repo("alice/demo")
    assert requests.get(f"{srv.url}/api/models/alice/demo", headers=R).status_code == 404
    assert create(srv).ok  # the name is free again, with a fresh history
    assert [s["rfilename"] for s in requests.get(f"{srv.url}/api/models/alice/demo", headers=R).json()["siblings"]] \
        == [".gitattributes"]
    folder = requests.delete(f"{srv.url}/api/repos/delete", json={"name": "folder", "organization": "org"}, headers=W)
    assert folder.status_code == 403 and requests.get(f"{srv.url}/api/models/org/folder").ok
    assert requests.delete(f"{srv.url}/api/repos/delete", json={"name": "folder", "organization": "org"},
                           headers=R).status_code == 403


def test_file_and_folder_of_one_name_and_missing_deletes(srv):
    create(srv)
    commit(srv, "alice/demo", [header(), add("a/b.txt", b"x")])
    assert commit(srv, "alice/demo", [header(), add("a", b"y")]).status_code == 400
    missing = commit(srv, "alice/demo", [header(), {"key": "deletedFile", "value": {"path": "nope.txt"}}])
    assert missing.status_code == 404 and "A file with this name doesn't exist" in missing.json()["error"]
    gone = commit(srv, "alice/demo", [header(), {"key": "deletedFolder", "value": {"path": "a/"}}])
    assert gone.ok
    files = [s["rfilename"] for s in requests.get(f"{srv.url}/api/models/alice/demo", headers=R).json()["siblings"]]
    assert files == [".gitattributes"]


def test_a_folder_repo_is_imported_at_its_first_write(srv, root):
    before = requests.get(f"{srv.url}/api/models/org/folder").json()["sha"]
    r = commit(srv, "org/folder", [header("edit", parentCommit=before), add("new.txt", b"n")])
    assert r.ok
    after = head_of(srv, "org/folder")
    assert after == r.json()["commitOid"] != before
    old = requests.get(f"{srv.url}/org/folder/resolve/{before}/config.json")
    assert old.content == b'{"a": 1}' and old.headers["X-Repo-Commit"] == before
    assert requests.get(f"{srv.url}/org/folder/resolve/{before}/new.txt").status_code == 404
    assert requests.get(f"{srv.url}/org/folder/resolve/main/weights.bin").content == \
        (root / "org" / "folder" / "weights.bin").read_bytes()


def test_read_only_server_and_tokens(root):
    with pytest.raises(ValueError, match="write token"):
        HubServer(root, writable=True)
    with pytest.raises(ValueError, match="both"):
        HubServer(root, writable=True, write_tokens=["t"], tokens=["t"])
    with HubServer(root) as ro:
        r = requests.post(f"{ro.url}/api/repos/create", json={"name": "x", "organization": "a"}, headers=W)
        assert r.status_code == 403 and "--writable" in r.json()["error"]
    with HubServer(root, writable=True, write_tokens=["wtok"], tokens=["rtok"]) as srv:
        create(srv, "alice/private", private=True)
        assert requests.get(f"{srv.url}/api/models/alice/private").status_code == 401  # hidden, as missing
        assert requests.get(f"{srv.url}/api/models/alice/private", headers=R).ok  # a server read token opens it
        assert requests.get(f"{srv.url}/api/whoami-v2", headers=W).json()["auth"]["accessToken"]["role"] == "write"
        assert requests.get(f"{srv.url}/api/whoami-v2", headers=R).json()["auth"]["accessToken"]["role"] == "read"
        xet = requests.get(f"{srv.url}/api/models/alice/private/xet-write-token/main", headers=W)
        assert xet.status_code == 501 and "HF_HUB_DISABLE_XET=1" in xet.headers["X-Error-Message"]


# -- a server process killed mid-upload --------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(root: Path, port: int, **env) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "autoload.cli", "serve", str(root), "--port", str(port),
                             "--writable", "--write-token", "alice=wtok"],
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src"), **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert "Serving" in proc.stdout.readline()
    return proc


class _Url:
    def __init__(self, port):
        self.url = f"http://127.0.0.1:{port}"


def test_killed_server_never_shows_a_partial_commit(tmp_path):
    root, port = tmp_path / "hub", _free_port()
    root.mkdir()
    srv = _Url(port)
    proc = _serve(root, port, AUTOLOAD_SERVE_CRASH_AT="before-ref")
    with pytest.raises(requests.ConnectionError):
        create(srv)  # killed while creating: the first commit is written, the repo's refs never are
    proc.wait(10)
    proc = _serve(root, port)
    try:
        assert requests.get(f"{srv.url}/api/models/alice/demo").status_code == 401
        assert create(srv).ok
        c1 = commit(srv, "alice/demo", [header("one"), add("a.txt", b"v1")]).json()["commitOid"]
        # an LFS object uploaded, then the server killed before any commit names it
        data = os.urandom(30_000)
        href = batch(srv, "alice/demo", [data]).json()["objects"][0]["actions"]["upload"]["href"]
        assert requests.put(href, data=data).ok
        proc.kill()
        proc.wait(10)
        proc = _serve(root, port, AUTOLOAD_SERVE_CRASH_AT="before-ref")
        with pytest.raises(requests.ConnectionError):  # killed during the commit: commit written, ref not moved
            commit(srv, "alice/demo", [header("two"), lfs("w.bin", data), add("a.txt", b"v2")])
        proc.wait(10)
        proc = _serve(root, port)
        assert head_of(srv, "alice/demo") == c1
        assert requests.get(f"{srv.url}/alice/demo/resolve/main/a.txt").content == b"v1"
        assert requests.get(f"{srv.url}/alice/demo/resolve/main/w.bin").status_code == 404
        # the stored object is reused: the next commit needs no upload
        assert "actions" not in batch(srv, "alice/demo", [data]).json()["objects"][0]
        c3 = commit(srv, "alice/demo", [header("three", parentCommit=c1), lfs("w.bin", data)]).json()["commitOid"]
        assert head_of(srv, "alice/demo") == c3
    finally:
        proc.kill()
        proc.wait(10)
