"""The Hugging Face client against a hostile hub (tests/hostile.py): every value that becomes a path, a
size or a wait is an attack; nothing may land outside the cache, nothing may wait or read without bound,
and every failure is a typed error that names the endpoint."""

from __future__ import annotations

import gzip
import os
import threading
import time
import zlib

import pytest

import autoload
from autoload.hub import manage
from hostile import Reply, git_sha1, sha256

REPO = "org/model"
CONFIG = b'{"model_type": "bert"}'
WEIGHTS = os.urandom(300_000)


def repos():
    return {REPO: {"config.json": CONFIG, "model.safetensors": WEIGHTS}}


def files_outside(root, cache_dir):
    """Every file under `root` that is not inside the cache (what a hostile server might have written)."""
    found = []
    for folder, _, names in os.walk(root):
        if not str(folder).startswith(str(cache_dir)):
            found += [os.path.join(folder, n) for n in names]
    return sorted(found)


def on(method, needle, change):
    """A tamper that applies `change(reply)` to requests of `method` whose path contains `needle`."""
    def tamper(request, reply):
        if (method is None or request.method == method) and needle in request.raw_path:
            changed = change(reply)
            return changed if isinstance(changed, Reply) else reply
        return reply
    return tamper


# ---- server values that become paths ----------------------------------------------------------------

@pytest.mark.parametrize("header, value", [
    ("X-Repo-Commit", "../../../../escaped"),
    ("X-Repo-Commit", "not-a-commit"),
    ("X-Repo-Commit", "A" * 40),
    ("ETag", '"../../../../escaped"'),
    ("ETag", '"/etc/passwd"'),
    ("X-Linked-Etag", '"../../../../../escaped"'),
    ("X-Linked-Size", "-5"),
    ("X-Linked-Size", "1e12"),
])
def test_head_values_that_become_paths_are_refused(hostile_hub, isolated_env, cache_dir, header, value):
    name = "model.safetensors" if header.startswith("X-Linked") else "config.json"
    before = files_outside(isolated_env, cache_dir)
    server, _ = hostile_hub(repos(), on("HEAD", name, lambda r: r.set_header(header, value)))
    with pytest.raises(autoload.MalformedResponseError) as info:
        autoload.hub_download(REPO, name)
    assert server.url in str(info.value) and header in str(info.value)
    assert info.value.value is not None
    assert files_outside(isolated_env, cache_dir) == before
    assert not [p for p in cache_dir.rglob("*") if "escaped" in str(p)]


def test_force_download_cannot_overwrite_a_user_file(hostile_hub, isolated_env, cache_dir):
    victim = isolated_env / "victim.txt"
    victim.write_text("precious")
    relative = os.path.relpath(victim, cache_dir / "models--org--model" / "blobs")
    hostile_hub(repos(), on("HEAD", "config.json", lambda r: r.set_header("ETag", f'"{relative}"')))
    for force in (False, True):
        with pytest.raises(autoload.MalformedResponseError):
            autoload.hub_download(REPO, "config.json", force_download=force)
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("field, value", [
    ("oid", "../../../../escaped"), ("lfs.oid", "../../x"), ("size", "big"), ("size", -1), ("size", True),
    ("lfs.size", 10**20), ("path", 7), ("entry", "not an object"),
])
def test_tree_entries_are_checked(hostile_hub, cache_dir, field, value):
    def change(reply):
        import json
        entries = json.loads(reply.body)
        target = next(e for e in entries if e["path"] == "model.safetensors")
        if field == "entry":
            entries[entries.index(target)] = value
        elif "." in field:
            target["lfs"][field.split(".")[1]] = value
        else:
            target[field] = value
        reply.body = json.dumps(entries).encode()
    hostile_hub(repos(), on("GET", "/tree/", change))
    with pytest.raises(autoload.MalformedResponseError):
        autoload.snapshot_download(REPO)
    assert not [p for p in cache_dir.rglob("*") if "escaped" in str(p)]


@pytest.mark.parametrize("sha", ["../../../../escaped", "not-a-commit", 12, None])
def test_api_commit_is_checked(hostile_hub, cache_dir, sha):
    def change(reply):
        import json
        info = json.loads(reply.body)
        info["sha"] = sha
        reply.body = json.dumps(info).encode()
    hostile_hub(repos(), on("GET", "/revision/", change))
    with pytest.raises(autoload.MalformedResponseError) as info:
        autoload.snapshot_download(REPO)
    assert "/api/models/org/model/revision/main" in str(info.value)
    assert not [p for p in cache_dir.rglob("*") if "escaped" in str(p)]


@pytest.mark.parametrize("revision", ["../../../../escaped", "/abs", "a\\b", "main\r\nX: y", "a..b", "a b",
                                      "refs/../../x", ".hidden", "x.lock", ""])
def test_caller_revisions_are_git_ref_names(hostile_hub, cache_dir, revision):
    server, _ = hostile_hub(repos())
    for call in (lambda: autoload.hub_download(REPO, "config.json", revision=revision or None),
                 lambda: autoload.snapshot_download(REPO, revision=revision or None)):
        if revision == "":  # None/empty means the default branch
            call()
            continue
        with pytest.raises(autoload.InvalidRevisionError, match="revision"):
            call()
    if revision:
        assert server.requests == []
    assert not [p for p in cache_dir.rglob("*") if "escaped" in str(p)]


def test_valid_revisions_still_work(hostile_hub):
    hostile_hub(repos())
    for revision in ("main", "refs/pr/1", "v1.0", "release-2024_01", "feature/x+y"):
        assert open(autoload.hub_download(REPO, "config.json", revision=revision), "rb").read() == CONFIG


def test_symlinked_folder_in_the_cache_is_not_followed_out(hostile_hub, isolated_env, cache_dir):
    """A local folder link planted in a snapshot (snapshots/<c>/sub -> elsewhere) is not written through."""
    files = {REPO: {"sub/a.txt": b"data"}}
    _, fake = hostile_hub(files)
    elsewhere = isolated_env / "elsewhere"
    elsewhere.mkdir()
    snapshot = cache_dir / "models--org--model" / "snapshots" / fake.commit(REPO)
    snapshot.mkdir(parents=True)
    (snapshot / "sub").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ValueError, match="leave the cache"):
        autoload.hub_download(REPO, "sub/a.txt")
    assert list(elsewhere.iterdir()) == []


# ---- renames ------------------------------------------------------------------------------------------

def test_api_id_cannot_rename_into_another_repo(hostile_hub, cache_dir):
    """The JSON `id` of a request for X names Y: X is stored as X, Y's cache entry is untouched."""
    def change(reply):
        import json
        info = json.loads(reply.body)
        info["id"] = "victim/repo"
        reply.body = json.dumps(info).encode()
    hostile_hub(repos(), on("GET", "/revision/", change))
    folder = autoload.snapshot_download(REPO)
    assert "models--org--model" in folder
    assert not (cache_dir / "models--victim--repo").exists()


def test_cross_origin_redirect_cannot_rename(hostile_hub, cache_dir):
    """A redirect of X's file to another origin's /resolve/ URL of Y downloads the bytes, stores them as X."""
    other, _ = hostile_hub({"victim/repo": {"config.json": CONFIG}})
    server, fake = hostile_hub(repos())

    def tamper(request, reply):
        if "config.json" in request.raw_path:
            reply = Reply(302, [("Location", f"{other.url}/victim/repo/resolve/main/config.json"),
                                ("X-Repo-Commit", fake.commit(REPO)), ("ETag", f'"{git_sha1(CONFIG)}"'),
                                ("X-Linked-Size", str(len(CONFIG)))])
        return reply
    fake.tamper = tamper
    path = autoload.hub_download(REPO, "config.json")
    assert "models--org--model" in path and open(path, "rb").read() == CONFIG
    assert not (cache_dir / "models--victim--repo").exists()


def test_same_origin_redirect_renames_and_links(hostile_hub, cache_dir):
    """The real hub's rename: a relative 307 to the canonical id. X's folder links to the canonical one."""
    files = {"new/name": {"config.json": CONFIG}}
    _, fake = hostile_hub(files)

    def tamper(request, reply):
        if request.path.startswith(("/old/name/", "/api/models/old/name/")):
            return Reply(307, [("Location", request.raw_path.replace("old/name", "new/name"))])
        return reply
    fake.tamper = tamper
    path = autoload.hub_download("old/name", "config.json")
    assert "models--new--name" in os.path.realpath(path)
    assert (cache_dir / "models--old--name" / "refs" / "main").exists()
    assert "models--new--name" in autoload.snapshot_download("old/name")


# ---- waits --------------------------------------------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("headers", [
    [("Retry-After", "3600")],
    [("Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT")],
    [("RateLimit", '"api";r=0;t=86400')],
])
def test_long_waits_are_refused_at_once(hostile_hub, headers):
    server, fake = hostile_hub(repos())
    fake.tamper = lambda request, reply: Reply(429, headers, b"slow down")
    began = time.monotonic()
    with pytest.raises(autoload.RetryLimitError) as info:
        autoload.hub_download(REPO, "config.json")
    assert time.monotonic() - began < 30
    assert "AUTOLOAD_MAX_RETRY_WAIT" in str(info.value) and server.url in str(info.value)
    assert server.count("HEAD") == 1


def test_total_wait_is_capped(hostile_hub, monkeypatch):
    """Many short waits add up to at most the budget, then a typed error."""
    monkeypatch.setenv("AUTOLOAD_MAX_RETRY_WAIT", "1.5")
    monkeypatch.setenv("AUTOLOAD_MAX_RETRIES", "50")
    server, fake = hostile_hub(repos())
    fake.tamper = lambda request, reply: Reply(503, [("Retry-After", "1")], b"")
    with pytest.raises(autoload.RetryLimitError):
        autoload.hub_download(REPO, "config.json")
    assert server.count("HEAD") <= 3


@pytest.mark.parametrize("value", ["soon", "-3", "99999999999999999999999", "Mon, 99 Foo 2024 99:99:99 GMT", "\x01"])
def test_garbage_retry_after_gets_the_default_backoff(hostile_hub, value):
    server, fake = hostile_hub(repos())
    calls = []

    def tamper(request, reply):
        if request.method == "HEAD" and not calls:
            calls.append(1)
            return Reply(503, [("Retry-After", value)], b"")
        return reply
    fake.tamper = tamper
    assert open(autoload.hub_download(REPO, "config.json"), "rb").read() == CONFIG
    assert server.count("HEAD") == 2


# ---- pages --------------------------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_tree_link_that_points_at_itself(hostile_hub):
    server, fake = hostile_hub(repos(), page_size=1)

    def tamper(request, reply):
        if "/tree/" in request.raw_path:
            reply.set_header("Link", f'<{server.url}{request.raw_path}>; rel="next"')
        return reply
    fake.tamper = tamper
    with pytest.raises(autoload.MalformedResponseError, match="repeats a page"):
        autoload.snapshot_download(REPO)
    assert server.count("GET", "/tree/") == 1


def test_tree_link_to_another_origin(hostile_hub):
    other, _ = hostile_hub(repos())
    server, fake = hostile_hub(repos(), page_size=1)
    fake.tamper = on("GET", "/tree/", lambda r: r.set_header("Link", f'<{other.url}/api/x>; rel="next"'))
    with pytest.raises(autoload.MalformedResponseError, match="origin"):
        autoload.snapshot_download(REPO)
    assert other.requests == []


def test_tree_pages_are_followed(hostile_hub):
    files = {REPO: {f"f{i}.txt": str(i).encode() for i in range(7)}}
    server, _ = hostile_hub(files, page_size=2)
    folder = autoload.snapshot_download(REPO)
    assert sorted(os.listdir(folder)) == sorted(files[REPO])
    assert server.count("GET", "/tree/") == 4


# ---- bodies -------------------------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_body_longer_than_announced_stops_at_size_plus_one(hostile_hub, cache_dir):
    sent = []

    def endless():
        while True:
            sent.append(1)
            yield b"x" * 65536

    server, fake = hostile_hub(repos())
    fake.tamper = on("GET", "model.safetensors", lambda r: setattr(r, "body", endless()) or
                     setattr(r, "content_length", None))
    with pytest.raises(autoload.IntegrityError, match="more than the announced"):
        autoload.hub_download(REPO, "model.safetensors")
    assert len(sent) * 65536 < 64 * 2**20  # two tries of 300 kB each, plus what socket buffers held
    assert not [p for p in cache_dir.rglob("*") if p.is_file() and p.stat().st_size > len(WEIGHTS)]
    assert not list(cache_dir.rglob("*.incomplete"))


@pytest.mark.timeout(60)
def test_gzip_bomb_is_not_inflated_past_the_size(hostile_hub, cache_dir):
    bomb = zlib.compress(b"\0" * (200 * 2**20), 9)  # 200 MiB of zeros in ~200 kB
    gz = gzip.compress(b"\0" * (200 * 2**20), 9)
    for body in (bomb, gz):
        server, fake = hostile_hub(repos())
        fake.tamper = on("GET", "model.safetensors", lambda r, body=body: (
            setattr(r, "body", body), r.set_header("Content-Encoding", "gzip" if body is gz else "deflate")))
        with pytest.raises(autoload.IntegrityError, match="inflates past"):
            autoload.hub_download(REPO, "model.safetensors")
        assert not list(cache_dir.rglob("*.incomplete"))


def test_gzip_body_of_the_right_content_is_decoded(hostile_hub):
    _, fake = hostile_hub(repos())
    fake.tamper = on("GET", "model.safetensors", lambda r: (setattr(r, "body", gzip.compress(WEIGHTS)),
                                                            r.set_header("Content-Encoding", "gzip")))
    assert open(autoload.hub_download(REPO, "model.safetensors"), "rb").read() == WEIGHTS


@pytest.mark.timeout(120)
def test_server_ignoring_range_and_dropping_half_way_runs_out_of_tries(hostile_hub, monkeypatch, cache_dir):
    monkeypatch.setenv("AUTOLOAD_MAX_RETRIES", "3")
    server, fake = hostile_hub(repos())

    def tamper(request, reply):
        if request.method == "GET" and "model.safetensors" in request.raw_path:
            return Reply(200, [("Content-Length", str(len(WEIGHTS)))], WEIGHTS, content_length=None,
                         drop_after=len(WEIGHTS) // 2)
        return reply
    fake.tamper = tamper
    with pytest.raises(autoload.RetryLimitError, match="keeps failing"):
        autoload.hub_download(REPO, "model.safetensors")
    assert server.count("GET", "model.safetensors") == 4  # the first try and 3 retries, not hundreds


def test_dropped_connections_that_progress_still_finish(hostile_hub, monkeypatch):
    """The retry count resets when a resumed download gets further: 6 drops with 2 retries allowed."""
    monkeypatch.setenv("AUTOLOAD_MAX_RETRIES", "2")
    server, fake = hostile_hub(repos())
    step = len(WEIGHTS) // 7

    def tamper(request, reply):
        if request.method == "GET" and "model.safetensors" in request.raw_path:
            reply.drop_after = step if server.count("GET", "model.safetensors") < 7 else None
        return reply
    fake.tamper = tamper
    assert open(autoload.hub_download(REPO, "model.safetensors"), "rb").read() == WEIGHTS
    assert server.count("GET", "model.safetensors") == 7


@pytest.mark.timeout(60)
def test_a_dribbling_body_hits_the_low_speed_limit(hostile_hub, monkeypatch, cache_dir):
    monkeypatch.setenv("AUTOLOAD_LOW_SPEED_LIMIT", "10000")
    monkeypatch.setenv("AUTOLOAD_LOW_SPEED_TIME", "1")
    monkeypatch.setenv("AUTOLOAD_MAX_RETRIES", "1")
    server, fake = hostile_hub(repos())
    fake.tamper = on("GET", "model.safetensors", lambda r: (setattr(r, "chunk_size", 16), setattr(r, "pause", 0.05)))
    began = time.monotonic()
    with pytest.raises(autoload.RetryLimitError, match="low-speed limit"):
        autoload.hub_download(REPO, "model.safetensors")
    assert time.monotonic() - began < 20
    assert server.count("GET", "model.safetensors") == 2
    assert list(cache_dir.rglob("*.incomplete"))  # the bytes are kept for the next run to resume


# ---- malformed metadata -------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    b"<html>not json</html>", b"[1, 2, 3]", b'"a string"', b"{" * 100_000, b"[" * 100_000 + b"]" * 100_000,
    b'{"sha": ["list"]}', b"\xff\xfe garbage", b"",
])
def test_malformed_repo_info(hostile_hub, body):
    server, _ = hostile_hub(repos(), on("GET", "/revision/", lambda r: setattr(r, "body", body)))
    with pytest.raises(autoload.MalformedResponseError) as info:
        autoload.snapshot_download(REPO)
    assert isinstance(info.value, autoload.HubError) and server.url in str(info.value)


@pytest.mark.parametrize("body", [b'{"not": "a list"}', b"[[[[[", b"[" * 100_000 + b"]" * 100_000,
                                  b'[{"type": "file"}]', b'[{"type": "file", "path": "a", "size": 1}]'])
def test_malformed_tree(hostile_hub, body):
    hostile_hub(repos(), on("GET", "/tree/", lambda r: setattr(r, "body", body)))
    with pytest.raises(autoload.MalformedResponseError):
        autoload.snapshot_download(REPO)


def test_oversized_metadata_is_not_read_whole(hostile_hub, monkeypatch):
    monkeypatch.setenv("AUTOLOAD_MAX_METADATA_BYTES", "4096")
    sent = []

    def endless():
        yield b"["
        while True:
            sent.append(1)
            yield b'{"type": "directory", "path": "d", "oid": "0", "size": 0},' * 1000

    hostile_hub(repos(), on("GET", "/tree/", lambda r: (setattr(r, "body", endless()),
                                                        setattr(r, "content_length", None))))
    with pytest.raises(autoload.MalformedResponseError, match="AUTOLOAD_MAX_METADATA_BYTES"):
        autoload.snapshot_download(REPO)
    assert len(sent) < 2000


# ---- what reaches the terminal ------------------------------------------------------------------------

def test_control_characters_in_file_names_are_escaped(hostile_hub, capfd):
    name = "evil\x1b[2J\x1b]0;pwned\x07\r\nname.bin"
    hostile_hub({REPO: {name: os.urandom(2 * 2**20)}})
    autoload.snapshot_download(REPO, progress=True)
    err = capfd.readouterr().err
    assert "\x1b[2J" not in err and "\x07" not in err and "\\x1b[2J" in err


def test_server_messages_are_escaped_in_errors(hostile_hub):
    hostile_hub(repos(), on("HEAD", "config.json", lambda r: Reply(
        500, [("X-Error-Message", "boom\x1b[31m red")], b"")))
    with pytest.raises(autoload.HubHTTPError) as info:
        autoload.hub_download(REPO, "config.json")
    assert "\x1b" not in str(info.value) and "\\x1b[31m" in str(info.value)


# ---- the cache folder ---------------------------------------------------------------------------------

def test_cache_dir_argument_expands_only_the_home(hostile_hub, isolated_env, monkeypatch):
    monkeypatch.chdir(isolated_env)
    monkeypatch.setenv("HOME", str(isolated_env / "home"))
    hostile_hub(repos())
    path = autoload.hub_download(REPO, "config.json", cache_dir="x $HOME y")
    assert path.startswith(str(isolated_env / "x $HOME y"))
    path = autoload.hub_download(REPO, "config.json", cache_dir="~/c")
    assert path.startswith(str(isolated_env / "home" / "c"))


@pytest.mark.timeout(120)
def test_garbage_collection_beside_a_running_snapshot(hostile_hub, cache_dir):
    """`cache rm` of another repo, again and again while a snapshot downloads: no link left dangling."""
    files = {REPO: {f"w{i}.bin": os.urandom(40_000) for i in range(60)}, "other/repo": {"a.txt": b"a"}}
    _, fake = hostile_hub(files, on("GET", ".bin", lambda r: (setattr(r, "chunk_size", 1024),
                                                              setattr(r, "pause", 0.002))))
    done = threading.Event()
    errors = []

    def download():
        try:
            autoload.snapshot_download(REPO, max_workers=8)
        except Exception as err:  # reported below
            errors.append(err)
        done.set()

    thread = threading.Thread(target=download)
    thread.start()
    rounds = 0
    while not done.is_set():
        autoload.snapshot_download("other/repo")
        manage.delete_repo(str(cache_dir), "other/repo")
        rounds += 1
    thread.join()
    assert errors == [] and rounds >= 1  # at least one full clean-up ran while the snapshot was in flight
    snapshot = cache_dir / "models--org--model" / "snapshots" / fake.commit(REPO)
    links = list(snapshot.iterdir())
    assert len(links) == 60 and all(p.is_file() for p in links)
    assert {p.read_bytes() for p in links} == set(files[REPO].values())


def test_garbage_collection_skips_a_blob_being_downloaded(hostile_hub, cache_dir):
    from filelock import FileLock
    from autoload.hub.cache import RepoCache
    hostile_hub(repos())
    autoload.snapshot_download(REPO)
    repo = RepoCache(str(cache_dir), REPO)
    orphan = repo.blob_path("c" * 40)
    open(orphan, "w").close()
    os.utime(orphan, (0, 0))
    with FileLock(repo.lock_path("c" * 40)):
        manage.delete_repo(str(cache_dir), "none/such")
        assert os.path.exists(orphan)  # locked: in use
    manage.delete_repo(str(cache_dir), "none/such")
    assert not os.path.exists(orphan)  # unlocked, old and unreferenced: collected


# ---- offline: one story for files and snapshots -------------------------------------------------------

def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_offline_with_only_an_incomplete_file(hostile_hub, cache_dir, monkeypatch):
    _, fake = hostile_hub(repos())
    commit = fake.commit(REPO)
    folder = cache_dir / "models--org--model"
    (folder / "blobs").mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)
    (folder / "snapshots" / commit).mkdir(parents=True)
    (folder / "blobs" / (sha256(WEIGHTS) + ".incomplete")).write_bytes(WEIGHTS[:1000])
    _offline(monkeypatch)
    with pytest.raises(autoload.LocalEntryNotFoundError) as file_error:
        autoload.hub_download(REPO, "model.safetensors")
    with pytest.raises(autoload.LocalEntryNotFoundError) as snapshot_error:
        autoload.snapshot_download(REPO)
    assert "autoload download org/model model.safetensors" in str(file_error.value)
    assert "autoload download org/model" in str(snapshot_error.value)


def test_offline_with_a_dangling_link(hostile_hub, cache_dir, monkeypatch):
    hostile_hub(repos())
    folder = autoload.snapshot_download(REPO)
    os.remove(os.path.realpath(os.path.join(folder, "model.safetensors")))
    tree = next((cache_dir / "models--org--model" / "trees").iterdir())
    tree.unlink()  # no recorded file list: the gap must still be seen
    _offline(monkeypatch)
    with pytest.raises(autoload.LocalEntryNotFoundError) as file_error:
        autoload.hub_download(REPO, "model.safetensors")
    with pytest.raises(autoload.IncompleteSnapshotError) as snapshot_error:
        autoload.snapshot_download(REPO)
    assert snapshot_error.value.missing == ["model.safetensors"]
    assert "autoload download org/model" in str(snapshot_error.value)
    assert "autoload download org/model model.safetensors" in str(file_error.value)
    assert open(autoload.hub_download(REPO, "config.json"), "rb").read() == CONFIG  # what is there still serves


def test_a_held_download_lock_is_waited_for_with_a_bound(hostile_hub, cache_dir, monkeypatch):
    from filelock import FileLock
    from autoload.hub.cache import RepoCache
    monkeypatch.setenv("AUTOLOAD_LOCK_TIMEOUT", "0.5")
    hostile_hub(repos())
    lock = RepoCache(str(cache_dir), REPO).lock_path(git_sha1(CONFIG))
    os.makedirs(os.path.dirname(lock), exist_ok=True)
    held = threading.Event()
    release = threading.Event()

    def hold():  # another process's download, as far as the lock can tell
        with FileLock(lock):
            held.set()
            release.wait(30)
    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(10)
    try:
        with pytest.raises(autoload.CacheLockTimeoutError, match="AUTOLOAD_LOCK_TIMEOUT"):
            autoload.hub_download(REPO, "config.json")
    finally:
        release.set()
        thread.join()
    assert open(autoload.hub_download(REPO, "config.json"), "rb").read() == CONFIG


def test_an_endless_error_body_is_read_only_in_part(hostile_hub, monkeypatch):
    sent = []

    def endless():
        while True:
            sent.append(1)
            yield b"e" * 65536
    hostile_hub(repos(), on("GET", "model.safetensors", lambda r: Reply(500, [], endless(), content_length=None)))
    monkeypatch.setenv("AUTOLOAD_MAX_RETRIES", "0")
    with pytest.raises(autoload.HubHTTPError):
        autoload.hub_download(REPO, "model.safetensors")
    assert len(sent) * 65536 < 64 * 2**20
