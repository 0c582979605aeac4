"""The ModelScope client against a hostile server (tests/hostile.py's FakeModelScope, tampered with) and hostile
arguments: paths stay inside the cache, malformed answers are typed errors, offline answers agree, server strings
are printed escaped, remote code works on ModelScope, and a failing hub is never reported as "not found"."""

from __future__ import annotations

import json
import os
import sys

import pytest

import autoload

from autoload.hub import modelscope
from autoload.hub.errors import (HubError, HubHTTPError, IncompleteSnapshotError, InvalidRepoIdError,
                                 InvalidRevisionError, MalformedResponseError, OfflineModeError,
                                 RepositoryNotFoundError, RevisionNotFoundError, UnsafePathError)
from autoload.hub.modelscope import ms_cache, ms_hub_download, ms_snapshot_download, snapshot_dir
from hostile import Reply

REPO = "owner/name"
FILES = {"config.json": b'{"model_type": "bert"}', "vocab.txt": b"[PAD]\n[UNK]\n", "sub/notes.txt": b"nested\n"}


def envelope(data=None, status: int = 200, **fields) -> Reply:
    body = {"Code": 200, "Success": True, "Message": "", "Data": data, **fields}
    return Reply(status, [("Content-Type", "application/json")], json.dumps(body).encode())


def listing(entries) -> Reply:
    return envelope({"Files": entries})


def on(route: str, reply_for):
    """A tamper that replaces the answer of requests whose path ends with `route` ("" = the model info)."""
    def tamper(request, reply):
        rest = request.path[len("/api/v1/models/"):].split("/")[2:]
        return reply_for(request, reply) if "/".join(rest) == route else reply
    return tamper


def cache_files(root) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, n), root) for d, _, names in os.walk(root) for n in names)


def has_raw_controls(text: str) -> bool:
    return any(ch in text for ch in ("\x1b", "\x07", "\r", "\u202e"))


# ---- 1. the caller's revision and every path stay inside the cache ----

@pytest.mark.parametrize("revision", ["../../../../escaped", "/tmp/abs", "..\\..\\x", "v1\x1b[2J", "a/../../b",
                                      "refs/heads/../x", "v1\n", "master.lock", 5])
def test_revision_that_would_become_a_path_is_refused(hostile_modelscope, isolated_env, revision):
    server, _ = hostile_modelscope({REPO: FILES})
    for call in (lambda: ms_hub_download(REPO, "config.json", revision=revision),
                 lambda: ms_snapshot_download(REPO, revision=revision),
                 lambda: ms_snapshot_download(REPO, revision=revision, local_files_only=True)):
        with pytest.raises(InvalidRevisionError, match=REPO) as info:
            call()
        assert not has_raw_controls(str(info.value))
    assert server.requests == []  # refused before any request
    assert not (isolated_env / "escaped").exists() and cache_files(isolated_env / "ms_cache") == []


def test_symlinked_folders_out_of_the_cache_are_refused_before_writing(hostile_modelscope, isolated_env):
    hostile_modelscope({REPO: FILES})
    root = isolated_env / "ms_cache"
    outside = isolated_env / "outside"
    outside.mkdir()
    snapshots = root / "models" / "owner--name" / "snapshots"
    snapshots.mkdir(parents=True)
    (snapshots / "master").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="owner/name"):
        ms_hub_download(REPO, "config.json")
    with pytest.raises(UnsafePathError):
        ms_snapshot_download(REPO)
    with pytest.raises(UnsafePathError):
        ms_snapshot_download(REPO, local_files_only=True)
    assert list(outside.iterdir()) == []

    (snapshots / "master").unlink()
    (root / ".lock").symlink_to(outside, target_is_directory=True)  # the lock folder points elsewhere
    with pytest.raises(UnsafePathError, match="lock"):
        ms_hub_download(REPO, "config.json")
    assert list(outside.iterdir()) == [] and not (snapshots / "master" / "config.json").exists()


def test_listing_path_that_is_not_a_string_or_has_control_characters(hostile_modelscope, isolated_env):
    entry = {"Name": "x", "Type": "blob", "Size": 1, "Sha256": "0" * 64}
    server, fake = hostile_modelscope({REPO: FILES})
    for path in (5, None, ["config.json"]):
        fake.tamper = on("repo/files", lambda r, reply, p=path: listing([{**entry, "Path": p}]))
        with pytest.raises(MalformedResponseError, match="Path") as info:
            ms_snapshot_download(REPO)
        assert "/repo/files" in info.value.url
    for path in ("evil\x1b[2J.txt", "a\nb.txt", "name\u202etxt.exe", "config.json.incomplete"):
        fake.tamper = on("repo/files", lambda r, reply, p=path: listing([{**entry, "Path": p}]))
        with pytest.raises(UnsafePathError) as info:
            ms_snapshot_download(REPO)
        assert not has_raw_controls(str(info.value)) and server.url in str(info.value)
    fake.tamper = on("repo/files", lambda r, reply: listing([{**entry, "Path": "../../escape.txt"}]))
    with pytest.raises(UnsafePathError, match="escape"):  # safe_filename still guards traversal
        ms_snapshot_download(REPO)
    assert cache_files(isolated_env / "ms_cache") == []


# ---- 2. malformed metadata is a MalformedResponseError naming the endpoint and the request ----

GOOD = {"Name": "config.json", "Path": "config.json", "Type": "blob", "Size": len(FILES["config.json"]),
        "Sha256": __import__("hashlib").sha256(FILES["config.json"]).hexdigest()}
MALFORMED_LISTINGS = {
    "not json": Reply(200, [], b"<html>hello</html>"),
    "deep nesting": Reply(200, [], b"[" * 2000 + b"]" * 2000),  # under the size limit, over any sane depth
    "too large": Reply(200, [], b'{"Code": 200, "Data": {"Files": []}, "Pad": "' + b"x" * 5000 + b'"}'),
    "a list": Reply(200, [], b"[1, 2]"),
    "Data a string": envelope("files"),
    "Data null": envelope(None),
    "Files an object": envelope({"Files": {"config.json": {}}}),
    "entry a string": listing(["config.json"]),
    "Path missing": listing([{k: v for k, v in GOOD.items() if k != "Path"}]),
    "Size a string": listing([{**GOOD, "Size": "22"}]),
    "Size negative": listing([{**GOOD, "Size": -1}]),
    "Size a bool": listing([{**GOOD, "Size": True}]),
    "Size a float": listing([{**GOOD, "Size": 22.0}]),
    "Sha256 short": listing([{**GOOD, "Sha256": "abc"}]),
    "Sha256 a number": listing([{**GOOD, "Sha256": 12}]),
    "Code a string": envelope({"Files": [GOOD]}, Code="200"),
    "Code missing": Reply(200, [], json.dumps({"Data": {"Files": [GOOD]}, "Success": True}).encode()),
    "Success a string": envelope({"Files": [GOOD]}, Success="yes"),
    "Message an object": envelope({"Files": [GOOD]}, Message={"zh": "x"}),
    "Type a number": listing([{**GOOD, "Type": 1}]),
    "duplicate path": listing([GOOD, GOOD]),
    "file and folder": listing([GOOD, {**GOOD, "Path": "config.json/x"}]),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_LISTINGS))
def test_malformed_listing_is_a_typed_error(hostile_modelscope, isolated_env, monkeypatch, case):
    monkeypatch.setenv("AUTOLOAD_MAX_METADATA_BYTES", "4096")
    server, _ = hostile_modelscope({REPO: FILES}, tamper=on("repo/files", lambda r, reply: MALFORMED_LISTINGS[case]))
    for call in (lambda: ms_hub_download(REPO, "config.json"), lambda: ms_snapshot_download(REPO)):
        with pytest.raises(MalformedResponseError) as info:
            call()
        assert server.url in str(info.value) and info.value.repo_id == REPO
        assert info.value.endpoint == server.url
    assert cache_files(isolated_env / "ms_cache") == []  # nothing written


def test_malformed_revisions_and_repo_info_are_typed(hostile_modelscope, isolated_env):
    not_found = envelope(None, 404, Code=10010101, Success=False, Message="revision not found")
    server, fake = hostile_modelscope({REPO: FILES})
    for bad in (Reply(200, [], b"nope"), envelope({"RevisionMap": []}), envelope({"RevisionMap": {"Branches": "x"}}),
                envelope({"RevisionMap": {"Branches": [{"Revision": 7}]}}), envelope("x"),
                Reply(200, [], b"[" * 100_000)):
        def tamper(request, reply, bad=bad):
            if request.path.endswith("/repo/files"):
                return not_found
            return bad if request.path.endswith("/revisions") else reply
        fake.tamper = tamper
        with pytest.raises(MalformedResponseError, match="revisions") as info:
            ms_snapshot_download(REPO, revision="v9")
        assert "revision not found" in str(info.value)  # the original failure is kept in the message
    for bad in (Reply(200, [], b"<html>"), Reply(200, [], b"[]"), envelope({}, Code=True)):
        fake.tamper = lambda request, reply, bad=bad: (not_found if request.path.endswith("/repo/files") else
                                                       bad if request.path.endswith(REPO) else reply)
        with pytest.raises(MalformedResponseError, match=REPO):
            ms_hub_download(REPO, "config.json")


def test_error_envelopes_that_are_garbage_keep_the_typed_status_error(hostile_modelscope):
    _, fake = hostile_modelscope({REPO: FILES})
    for body in (b"[" * 200_000, b"\xff\xfe garbage", json.dumps({"Message": {"a": 1}}).encode(), b"x" * 100_000):
        fake.tamper = lambda request, reply, body=body: Reply(404, [], body)
        with pytest.raises(RepositoryNotFoundError, match=REPO):
            ms_hub_download(REPO, "config.json")


# ---- 3. offline, a partial download is reported the same way by both entry points ----

def test_offline_partial_or_empty_snapshot_is_reported_by_both(hostile_modelscope, isolated_env):
    server, _ = hostile_modelscope({REPO: FILES})
    folder = snapshot_dir(str(isolated_env / "ms_cache"), REPO, "master")
    os.makedirs(folder)
    with open(os.path.join(folder, "config.json.incomplete"), "wb") as f:
        f.write(b'{"model')
    for call in (lambda: ms_hub_download(REPO, "config.json", local_files_only=True),
                 lambda: ms_snapshot_download(REPO, local_files_only=True)):
        with pytest.raises(IncompleteSnapshotError, match="config.json") as info:
            call()
        assert info.value.missing == ["config.json"] and info.value.snapshot_path == folder
        assert "`autoload download owner/name --hub modelscope`" in str(info.value)

    os.remove(os.path.join(folder, "config.json.incomplete"))  # an empty folder
    for call in (lambda: ms_hub_download(REPO, "config.json", local_files_only=True),
                 lambda: ms_snapshot_download(REPO, local_files_only=True)):
        with pytest.raises(OfflineModeError, match="autoload download owner/name --hub modelscope"):
            call()
    with pytest.raises(OfflineModeError, match="--revision v2"):
        ms_snapshot_download(REPO, revision="v2", local_files_only=True)
    assert server.requests == []

    path = ms_hub_download(REPO, "config.json")  # complete files still serve offline
    with open(os.path.join(folder, "vocab.txt.incomplete"), "wb") as f:
        f.write(b"[PA")
    assert ms_hub_download(REPO, "config.json", local_files_only=True) == path
    assert ms_snapshot_download(REPO, allow_patterns=["*.json"], local_files_only=True) == folder
    with pytest.raises(IncompleteSnapshotError, match="vocab.txt"):  # the whole snapshot is known to lack it
        ms_snapshot_download(REPO, local_files_only=True)


# ---- 4. server strings are printed escaped ----

def test_server_strings_in_errors_are_escaped(hostile_modelscope):
    evil = "\x1b]0;pwned\x07\x1b[2J\u202e"
    _, fake = hostile_modelscope({REPO: FILES})
    fake.tamper = lambda request, reply: envelope(None, 500, Code=500, Success=False, Message=evil)
    with pytest.raises(HubHTTPError) as info:
        ms_hub_download(REPO, "config.json", revision="v1")
    assert not has_raw_controls(str(info.value)) and "\\x1b]0;pwned" in str(info.value)

    def revisions(request, reply):
        if request.path.endswith("/repo/files"):
            return envelope(None, 404, Code=10010101, Success=False, Message="no revision")
        if request.path.endswith("/revisions"):
            return envelope({"RevisionMap": {"Branches": [{"Revision": "master" + evil}], "Tags": []}})
        return reply
    fake.tamper = revisions
    with pytest.raises(RevisionNotFoundError) as info:
        ms_hub_download(REPO, "config.json", revision="v1")
    assert not has_raw_controls(str(info.value)) and "master\\x1b" in str(info.value)


# ---- 5. remote code (auto_map + trust_remote_code) on ModelScope ----

@pytest.fixture
def modules(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOLOAD_MODULES_CACHE", str(tmp_path / "modules"))
    yield tmp_path / "modules"
    for name in [n for n in sys.modules if n == "autoload_modules" or n.startswith("autoload_modules.")]:
        del sys.modules[name]


def test_remote_code_on_modelscope(hostile_modelscope, modules, monkeypatch):
    from test_remote_code import CHAT_CONFIG, CHAT_MODEL, CHAT_TOKENIZER

    import autoload
    chat = {
        "config.json": json.dumps({"model_type": "chatglm-like", "prefix": "答:", "auto_map": {
            "AutoConfig": "configuration_chat.ChatConfig", "AutoModel": "modeling_chat.ChatModel"}}),
        "tokenizer_config.json": json.dumps({"auto_map": {"AutoTokenizer": [None, "tokenization_chat.ChatTokenizer"]}}),
        "vocab.json": json.dumps({t: i for i, t in enumerate(["<unk>", "你", "好", "答", ":"])}, ensure_ascii=False),
        "configuration_chat.py": CHAT_CONFIG, "modeling_chat.py": CHAT_MODEL, "tokenization_chat.py": CHAT_TOKENIZER}
    elsewhere = {"config.json": json.dumps({"model_type": "chatglm-like", "auto_map": {
        "AutoConfig": "org/chat-code--configuration_chat.ChatConfig"}})}  # code kept in another ModelScope repo
    repos = {"org/chat": chat, "org/chat-code": {"configuration_chat.py": CHAT_CONFIG}, "org/uses-code": elsewhere}
    server, _ = hostile_modelscope({r: {k: v.encode() for k, v in f.items()} for r, f in repos.items()})

    config = autoload.AutoConfig.from_pretrained("org/chat", hub="modelscope", trust_remote_code=True)
    tok = autoload.AutoTokenizer.from_pretrained("org/chat", hub="modelscope", trust_remote_code=True)
    model = autoload.AutoModel.from_pretrained("org/chat", hub="modelscope", trust_remote_code=True)
    assert type(config).__name__ == "ChatConfig" and config.prefix == "答:"
    assert type(model.config) is model.config_class is type(config)  # one package for the repo's code
    assert model.chat(tok, "你好")[0] == "答:好你"
    assert all(r.path.startswith("/api/v1/models/") for r in server.requests)  # nothing went to the HF routes

    other = autoload.AutoConfig.from_pretrained("org/uses-code", hub="modelscope", trust_remote_code=True)
    assert type(other).__name__ == "ChatConfig"
    assert any("org/chat-code/repo" in r.raw_path for r in server.requests)  # the code repo, on ModelScope too

    for name in [n for n in sys.modules if n.startswith("autoload_modules")]:  # a new process, offline
        del sys.modules[name]
    server.requests.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = autoload.AutoModel.from_pretrained("org/chat", hub="modelscope", trust_remote_code=True)
    assert again.chat(tok, "你好")[0] == "答:好你" and server.requests == []


# ---- 6. arguments are paths: only `~` is expanded ----

def test_cache_dir_argument_expands_no_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("SOME_DIR", str(tmp_path / "from-env"))
    monkeypatch.chdir(tmp_path)
    assert ms_cache("x $SOME_DIR y") == os.path.realpath(tmp_path / "x $SOME_DIR y")
    assert ms_cache("~/c") == os.path.realpath(os.path.expanduser("~/c"))
    monkeypatch.setenv("MODELSCOPE_CACHE", "$SOME_DIR/ms")  # the environment keeps its expansion
    assert ms_cache() == os.path.realpath(tmp_path / "from-env" / "ms")


# ---- 7. a failing hub is never "not found" ----

def test_failing_hub_is_not_reported_as_not_found(hostile_modelscope, monkeypatch):
    monkeypatch.setenv("AUTOLOAD_MAX_RETRIES", "0")
    _, fake = hostile_modelscope({"AI-ModelScope/tiny": FILES, REPO: FILES})
    fake.tamper = lambda request, reply: Reply(503, [], b"busy") if request.path.count("/") == 5 else reply
    with pytest.raises(HubHTTPError, match="Could not look up the short name 'tiny'.*503") as info:
        ms_hub_download("tiny", "config.json")  # the model-info probe fails: no "no such model"
    assert not isinstance(info.value, (InvalidRepoIdError, RepositoryNotFoundError))

    fake.tamper = lambda request, reply: Reply(200, [], b"<html>") if request.path.count("/") == 5 else reply
    with pytest.raises(MalformedResponseError, match="tiny"):
        ms_hub_download("tiny", "config.json")

    not_found = envelope(None, 404, Code=10010101, Success=False, Message="gone?")

    def info_fails(request, reply):
        if request.path.endswith("/repo/files"):
            return not_found
        return Reply(500, [], b"oops") if request.path.endswith(REPO) else reply
    fake.tamper = info_fails
    with pytest.raises(HubHTTPError, match="asking the hub why failed too") as info:
        ms_hub_download(REPO, "config.json")
    assert not isinstance(info.value, RepositoryNotFoundError)

    def revisions_fail(request, reply):
        if request.path.endswith("/repo/files"):
            return not_found
        return Reply(502, [], b"bad gateway") if request.path.endswith("/revisions") else reply
    fake.tamper = revisions_fail
    with pytest.raises(HubHTTPError, match="502") as info:
        ms_snapshot_download(REPO, revision="v9")
    assert not isinstance(info.value, RevisionNotFoundError)
    assert isinstance(info.value, HubError)


# ---- file bodies: the shared bounded transfer (autoload.hub.transfer) -----------------------------------

@pytest.mark.timeout(60)
def test_body_longer_than_the_listing_stops_at_size_plus_one(hostile_modelscope, isolated_env):
    from hostile import Reply
    data = os.urandom(50_000)
    sent = []

    def endless():
        while True:
            sent.append(1)
            yield b"x" * 65536

    def tamper(request, reply):
        if request.query.get("FilePath") == "w.bin":
            return Reply(200, [], endless(), content_length=None)
        return reply
    hostile_modelscope({"owner/name": {"w.bin": data}}, tamper)
    with pytest.raises(autoload.IntegrityError, match="more than the announced"):
        ms_hub_download("owner/name", "w.bin")
    assert len(sent) * 65536 < 64 * 2**20
    assert not list((isolated_env / "ms_cache").rglob("w.bin*"))


@pytest.mark.timeout(120)
def test_server_ignoring_range_and_dropping_runs_out_of_tries(hostile_modelscope, monkeypatch):
    from hostile import Reply
    monkeypatch.setenv("AUTOLOAD_MAX_RETRIES", "2")
    data = os.urandom(100_000)

    def tamper(request, reply):
        if request.query.get("FilePath") == "w.bin":
            return Reply(200, [], data, content_length=len(data), drop_after=len(data) // 2)
        return reply
    server, _ = hostile_modelscope({"owner/name": {"w.bin": data}}, tamper)
    with pytest.raises(autoload.RetryLimitError, match="keeps failing"):
        ms_hub_download("owner/name", "w.bin")
    assert server.count("GET", "FilePath=w.bin") == 3
