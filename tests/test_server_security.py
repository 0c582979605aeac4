"""The local hub server against hostile clients and hostile served folders: symlinks out of the root, private
repos (revision folders, the token rule, names that must not leak), header injection, request smuggling,
forged Host headers, huge Range values. Raw sockets and http.client, since `requests` would clean the attacks."""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path

import pytest

from autoload.cli import build_parser
from autoload.server import HubServer


def write(folder: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    return folder


def ask(srv, path: str, method: str = "GET", headers: dict | None = None) -> tuple[int, dict, bytes]:
    """(status, headers, body) of one request sent as-is."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def raw(srv, data: bytes, wait: float = 1.0) -> bytes:
    """Everything the server answers to `data` on one connection, until it closes or stays quiet for `wait` s."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=wait) as s:
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            pass
        return out


def header_lines(response: bytes) -> list[bytes]:
    return response.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]


# ---- 1. symlinks ----

@pytest.fixture
def linked_root(tmp_path):
    outside = write(tmp_path / "outside", {"passwd": b"root:x:0:0", "id_rsa": b"PRIVATE KEY",
                                           "repo/config.json": b'{"outside": true}', "org2/name/config.json": b"{}",
                                           "ref/config.json": b'{"ref": 1}'})
    root = write(tmp_path / "hub", {"org/leaky/config.json": b'{"a": 1}', "org/leaky/sub/inner.txt": b"inner"})
    leaky = root / "org" / "leaky"
    (leaky / "etc").symlink_to(outside, target_is_directory=True)        # a folder out of the root
    (leaky / "id_rsa").symlink_to(outside / "id_rsa")                    # a file out of the root
    (leaky / "same.json").symlink_to("config.json")                      # inside: fine
    (leaky / "shared").symlink_to(leaky / "sub", target_is_directory=True)  # inside: fine
    (leaky / "sub" / "loop").symlink_to("..", target_is_directory=True)  # a cycle must not hang the walk
    (root / "org" / "linked").symlink_to(outside / "repo", target_is_directory=True)  # a repo folder out
    (root / "evil").symlink_to(outside / "org2", target_is_directory=True)  # a namespace folder out
    (root / "legacy").symlink_to(outside, target_is_directory=True)      # a namespace-less repo out
    (root / "hub.json").write_text(json.dumps({"repos": {"org/leaky": {"refs": {"abs": str(outside / "ref")}}}}))
    return root


def test_symlinks_out_of_the_root_are_absent(linked_root):
    with HubServer(linked_root) as srv:
        for path in ("etc/passwd", "etc/id_rsa", "id_rsa"):
            status, headers, _ = ask(srv, f"/org/leaky/resolve/main/{path}")
            assert (status, headers["X-Error-Code"]) == (404, "EntryNotFound"), path
        assert ask(srv, "/org/leaky/resolve/main/same.json")[2] == b'{"a": 1}'
        assert ask(srv, "/org/leaky/resolve/main/shared/inner.txt")[2] == b"inner"
        listed = {e["path"] for e in json.loads(ask(srv, "/api/models/org/leaky/tree/main?recursive=true")[2])}
        assert listed == {"config.json", "same.json", "sub", "sub/inner.txt", "shared", "shared/inner.txt"}
        siblings = {s["rfilename"] for s in json.loads(ask(srv, "/api/models/org/leaky")[2])["siblings"]}
        assert siblings == {"config.json", "same.json", "sub/inner.txt", "shared/inner.txt"}
        files = json.loads(ask(srv, "/api/v1/models/org/leaky/repo/files?Recursive=true")[2])["Data"]["Files"]
        assert {f["Path"] for f in files if f["Type"] == "blob"} == siblings
        assert ask(srv, "/api/v1/models/org/leaky/repo?FilePath=etc/passwd")[0] == 404
        for path in ("/org/linked/resolve/main/config.json", "/evil/name/resolve/main/config.json",
                     "/legacy/resolve/main/passwd", "/api/models/org/linked", "/api/v1/models/org/linked"):
            assert ask(srv, path)[0] in (401, 404), path
        assert ask(srv, "/org/leaky/resolve/abs/config.json")[1]["X-Error-Code"] == "RevisionNotFound"  # hub.json
    with HubServer(linked_root, follow_symlinks_outside=True) as srv:  # the opt-in for trusted setups
        assert ask(srv, "/org/leaky/resolve/main/id_rsa")[2] == b"PRIVATE KEY"
        assert ask(srv, "/org/leaky/resolve/main/etc/passwd")[2] == b"root:x:0:0"
        assert ask(srv, "/org/leaky/resolve/abs/config.json")[2] == b'{"ref": 1}'
        assert ask(srv, "/legacy/resolve/main/passwd")[2] == b"root:x:0:0"
        assert ask(srv, "/org/linked/resolve/main/config.json")[2] == b'{"outside": true}'
    args = build_parser().parse_args(["serve", "root", "--follow-symlinks-outside"])
    assert args.follow_symlinks_outside and not build_parser().parse_args(["serve", "root"]).follow_symlinks_outside


def test_mirror_mode_keeps_its_blob_links_and_refuses_others(tmp_path):
    outside = write(tmp_path / "outside", {"secret": b"secret"})
    repo = tmp_path / "cache" / "models--org--m"
    etag = "a" * 40
    write(repo, {f"blobs/{etag}": b'{"m": 1}', "refs/main": b"c" * 40})
    snap = repo / "snapshots" / ("c" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").symlink_to(f"../../blobs/{etag}")
    (snap / "stolen.txt").symlink_to(outside / "secret")
    with HubServer(tmp_path / "cache") as srv:
        status, headers, body = ask(srv, "/org/m/resolve/main/config.json")
        assert (status, body, headers["ETag"]) == (200, b'{"m": 1}', f'"{etag}"')
        assert ask(srv, "/org/m/resolve/main/stolen.txt")[1]["X-Error-Code"] == "EntryNotFound"


# ---- 2. private repos ----

PRIVATE_HUB = {
    "aliases": {"old-secret": "org/secret"},
    "repos": {
        "org/secret": {"private": True, "access": ["tok-a"], "refs": {"v1": "versions/secret-v1"}},
        "org/public": {"refs": {"old": "org/public/old"}},
        "org/plain-private": {"private": True},
        "datasets/org/hidden": {"private": True, "access": ["tok-a"]},
    },
}


@pytest.fixture
def private_root(tmp_path):
    root = write(tmp_path / "hub", {"org/secret/config.json": b'{"secret": 1}',
                                    "versions/secret-v1/config.json": b'{"secret": "v1"}',
                                    "org/public/config.json": b"{}", "org/public/old/config.json": b'{"old": 1}',
                                    "org/plain-private/config.json": b"{}",
                                    "datasets/org/hidden/train.csv": b"a\n"})
    (root / "hub.json").write_text(json.dumps(PRIVATE_HUB))
    return root


def test_revision_folders_are_only_reachable_as_their_revision(private_root):
    with HubServer(private_root, tokens=["tok-a", "tok-b"]) as srv:
        for path in ("/versions/secret-v1/resolve/main/config.json", "/api/models/versions/secret-v1",
                     "/api/v1/models/versions/secret-v1"):
            assert ask(srv, path)[0] in (401, 404), path
        assert ask(srv, "/org/secret/resolve/v1/config.json")[1]["X-Error-Code"] == "RepoNotFound"
        auth = {"Authorization": "Bearer tok-a"}
        assert ask(srv, "/org/secret/resolve/v1/config.json", headers=auth)[2] == b'{"secret": "v1"}'
        # a revision folder inside another repo's folder is not part of that repo's main
        assert ask(srv, "/org/public/resolve/main/old/config.json")[1]["X-Error-Code"] == "EntryNotFound"
        assert ask(srv, "/org/public/resolve/old/config.json")[2] == b'{"old": 1}'


def test_private_repo_without_access_list_needs_a_server_token(private_root):
    path = "/org/plain-private/resolve/main/config.json"
    with HubServer(private_root) as srv:  # accepts any token: then no token opens it
        for token in ("anything", "tok-a"):
            status, headers, _ = ask(srv, path, headers={"Authorization": f"Bearer {token}"})
            assert (status, headers["X-Error-Code"]) == (404, "RepoNotFound")
        assert ask(srv, "/api/v1/models/org/plain-private", headers={"Authorization": "Bearer x"})[0] == 404
        assert ask(srv, "/org/secret/resolve/main/config.json", headers={"Authorization": "Bearer tok-a"})[0] == 200
    with HubServer(private_root, tokens=["tok-a"]) as srv:
        assert ask(srv, path, headers={"Authorization": "Bearer tok-a"})[0] == 200


def _same_answer(srv, private: str, absent: str, private_id: str, absent_id: str, headers: dict) -> None:
    (s1, h1, b1), (s2, h2, b2) = ask(srv, private, headers=headers), ask(srv, absent, headers=headers)
    assert (s1, h1.get("X-Error-Code"), "Location" in h1) == (s2, h2.get("X-Error-Code"), False), (private, headers)
    assert h1.get("X-Error-Message", "").replace(private_id, absent_id) == h2.get("X-Error-Message", "")
    j1, j2 = json.loads(b1), json.loads(b2)
    for j in (j1, j2):
        j.pop("RequestId", None)
    assert json.dumps(j1).replace(private_id, absent_id) == json.dumps(j2), private


def test_private_and_absent_answer_alike(private_root):
    pairs = [  # (path to a private repo, its absent twin, the id as written in each)
        ("/Org/Secret/resolve/main/config.json", "/org/nope/resolve/main/config.json", "Org/Secret", "org/nope"),
        ("/old-secret/resolve/main/config.json", "/old-nope/resolve/main/config.json", "old-secret", "old-nope"),
        ("/org/secret/resolve/main/a/../../b", "/org/nope/resolve/main/a/../../b", "org/secret", "org/nope"),
        ("/org/secret/resolve/nope/config.json", "/org/nope/resolve/nope/config.json", "org/secret", "org/nope"),
        ("/api/models/ORG/secret", "/api/models/org/nope", "ORG/secret", "org/nope"),
        ("/api/models/org/secret/revision/nope", "/api/models/org/nope/revision/nope", "org/secret", "org/nope"),
        ("/api/models/org/SECRET/tree/main", "/api/models/org/nope/tree/main", "org/SECRET", "org/nope"),
        ("/api/models/org/secret/refs", "/api/models/org/nope/refs", "org/secret", "org/nope"),
        ("/datasets/org/HIDDEN/resolve/main/train.csv", "/datasets/org/nope/resolve/main/train.csv",
         "org/HIDDEN", "org/nope"),
        ("/api/datasets/org/hidden", "/api/datasets/org/nope", "org/hidden", "org/nope"),
        ("/api/v1/models/org/secret", "/api/v1/models/org/nope", "org/secret", "org/nope"),
        ("/api/v1/models/org/secret/revisions", "/api/v1/models/org/nope/revisions", "org/secret", "org/nope"),
        ("/api/v1/models/org/secret/repo/files?Revision=master", "/api/v1/models/org/nope/repo/files?Revision=master",
         "org/secret", "org/nope"),
        ("/api/v1/models/org/secret/repo?FilePath=config.json", "/api/v1/models/org/nope/repo?FilePath=config.json",
         "org/secret", "org/nope"),
    ]
    with HubServer(private_root, tokens=["tok-a", "tok-b"]) as srv:
        for headers in ({}, {"Authorization": "Bearer tok-b"}, {"Cookie": "m_session_id=tok-b"}):
            for private, absent, private_id, absent_id in pairs:
                _same_answer(srv, private, absent, private_id, absent_id, headers)
        # with access, the redirects and answers are the usual ones
        status, headers, _ = ask(srv, "/Org/Secret/resolve/main/config.json", headers={"Authorization": "Bearer tok-a"})
        assert (status, headers["Location"]) == (307, "/org/secret/resolve/main/config.json")
        assert ask(srv, "/api/v1/models/org/secret", headers={"Authorization": "Bearer tok-a"})[0] == 200


# ---- 3. header injection ----

def test_control_characters_never_reach_a_header(tmp_path):
    root = write(tmp_path / "hub", {"org/tiny/config.json": b"{}", "Org2/x/config.json": b"{}"})
    with HubServer(root) as srv:
        attacks = [b"/org/x%0d%0aSet-Cookie:%20a=b/resolve/main/f", b"/org/tiny/resolve/%0d%0aSet-Cookie:%20a=b/f",
                   b"/org/tiny/resolve/main/%0aSet-Cookie:%20a=b",
                   b"/api/models/org/tiny/revision/%0d%0aSet-Cookie:%20a=b",
                   b"/org2/x/resolve/main/%0d%0aSet-Cookie:%20a=b",  # a mis-cased id: the 307's Location
                   b"/org/tiny/resolve/main/%C3%A9%E2%82%AC%00"]
        for path in attacks:
            response = raw(srv, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            lines = header_lines(response)
            assert response.startswith(b"HTTP/1.1 "), path
            assert all(b":" in line and not line.lower().startswith(b"set-cookie") for line in lines), (path, lines)
        status, headers, _ = ask(srv, "/org/tiny/resolve/%0d%0aX:%20y/f")
        assert status == 404 and "%0D%0AX: y" in headers["X-Error-Message"]  # readable, percent-encoded


def test_hostile_mirror_folder_names_never_reach_a_header(tmp_path):
    commit = "c" * 40 + "\r\nSet-Cookie: a=b"
    repo = tmp_path / "cache" / "models--org--m"
    write(repo, {"blobs/" + "a" * 40: b"{}", "refs/main": commit.encode()})
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").symlink_to("../../blobs/" + "a" * 40)
    with HubServer(tmp_path / "cache") as srv:
        response = raw(srv, b"HEAD /org/m/resolve/main/config.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert response.startswith(b"HTTP/1.1 200")
        assert not any(line.lower().startswith(b"set-cookie") for line in header_lines(response))


# ---- 4. request smuggling ----

def test_a_get_body_is_never_a_second_request(tmp_path):
    write(tmp_path / "hub", {"org/tiny/config.json": b"{}"})
    smuggled = b"GET /api/models/org/tiny/refs HTTP/1.1\r\nHost: x\r\n\r\n"
    with HubServer(tmp_path / "hub") as srv:
        for method in (b"GET", b"HEAD"):
            request = (method + b" /api/models/org/tiny HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                       % len(smuggled) + smuggled)
            response = raw(srv, request)
            assert response.count(b"HTTP/1.1 ") == 1 and response.startswith(b"HTTP/1.1 200"), response
        assert [r.path for r in srv.requests] == ["/api/models/org/tiny"] * 2
        chunked = b"GET /api/models/org/tiny HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % len(
            smuggled) + smuggled + b"\r\n0\r\n\r\n"
        response = raw(srv, chunked)
        assert response.count(b"HTTP/1.1 ") == 1 and response.startswith(b"HTTP/1.1 400"), response
        big = b"GET /api/models/org/tiny HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n" + smuggled
        response = raw(srv, big)
        assert response.count(b"HTTP/1.1 ") == 1 and response.startswith(b"HTTP/1.1 413"), response
        two = b"GET /api/models/org/tiny HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 48\r\n\r\n"
        response = raw(srv, two + smuggled)
        assert response.count(b"HTTP/1.1 ") == 1 and response.startswith(b"HTTP/1.1 400"), response


# ---- 5. links from the configured URL, never the Host header ----

def test_tree_links_ignore_the_host_header(tmp_path):
    write(tmp_path / "hub", {"org/tiny/a.txt": b"a", "org/tiny/b.txt": b"b"})
    forged = {"Host": "evil.example"}
    with HubServer(tmp_path / "hub", page_size=1) as srv:
        link = ask(srv, "/api/models/org/tiny/tree/main", headers=forged)[1]["Link"]
        assert link == f'<{srv.url}/api/models/org/tiny/tree/main?cursor=1>; rel="next"'
    with HubServer(tmp_path / "hub", page_size=1, public_url="https://hub.example/") as srv:
        link = ask(srv, "/api/models/org/tiny/tree/main", headers=forged)[1]["Link"]
        assert link == '<https://hub.example/api/models/org/tiny/tree/main?cursor=1>; rel="next"'
    assert build_parser().parse_args(["serve", "r", "--public-url", "https://h"]).public_url == "https://h"


# ---- 6. Range ----

def test_huge_range_values_are_never_a_server_error(tmp_path):
    write(tmp_path / "hub", {"org/tiny/config.json": b"0123456789"})
    ranges = ["bytes=99999999999999999999999999-", "bytes=0-99999999999999999999999999999",
              "bytes=-99999999999999999999999999", "bytes=" + "9" * 5000 + "-", "bytes=0-" + "9" * 5000,
              "bytes=" + "0" * 5000 + "1-", "bytes=-" + "9" * 5000, "bytes=" + "1-2," * 3000 + "3-4"]
    with HubServer(tmp_path / "hub") as srv:
        for path in ("/org/tiny/resolve/main/config.json", "/api/v1/models/org/tiny/repo?FilePath=config.json"):
            for value in ranges:
                status, headers, body = ask(srv, path, headers={"Range": value})
                assert status in (200, 206, 400, 416), (path, value[:40], status)
                assert len(headers.get("X-Error-Message", "")) < 1000
            assert ask(srv, path, headers={"Range": "bytes=2-4"})[2] == b"234"
            assert ask(srv, path, headers={"Range": "bytes=0-" + "9" * 30})[2] == b"0123456789"


# ---- 7. request size limits (already enforced by http.server; kept as a check) ----

def test_header_count_and_line_length_are_bounded(tmp_path):
    write(tmp_path / "hub", {"org/tiny/config.json": b"{}"})
    with HubServer(tmp_path / "hub") as srv:
        many = b"".join(b"X-%d: y\r\n" % i for i in range(101))
        assert raw(srv, b"GET /api/models/org/tiny HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n").split(b" ")[1] == b"431"
        assert raw(srv, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n").split(b" ")[1] == b"414"
