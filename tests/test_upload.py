"""autoload's upload client (`autoload.hub.upload`) against `autoload serve --writable`, with huggingface_hub as the
oracle both ways: what one uploads the other downloads byte for byte, under the same commit id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import autoload
from autoload.hub import upload
from autoload.server import Fault, HubServer
from conftest import ROOT

TOKEN = "wtok"


@pytest.fixture
def srv(tmp_path, isolated_env):
    root = tmp_path / "hub"
    root.mkdir()
    with HubServer(root, writable=True, write_tokens={TOKEN: "alice"}, tokens=["rtok"], max_file_size=3_000_000,
                   max_commit_bytes=2_000_000) as server:
        yield server


@pytest.fixture
def folder(tmp_path) -> Path:
    files = {"config.json": b'{"model_type": "bert"}', "model.safetensors": os.urandom(400_000),
             "sub/deep/notes.txt": b"nested\n", "empty.txt": b"", "data.bin": os.urandom(2000),
             "skip.tmp": b"tmp"}
    base = tmp_path / "local"
    for name, data in files.items():
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_bytes(data)
    (base / ".git").mkdir()
    (base / ".git" / "HEAD").write_text("ref: main")  # never uploaded
    return base


def local_files(base: Path, ignore=()) -> dict[str, bytes]:
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in base.rglob("*")
            if p.is_file() and ".git" not in p.parts and p.relative_to(base).as_posix() not in ignore}


def snapshot(path: str) -> dict[str, bytes]:
    base = Path(path)
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in base.rglob("*")
            if p.is_file() and p.name != ".gitattributes"}


def run_hf(code: str, srv, tmp_path) -> dict:
    """Run huggingface_hub code in a fresh interpreter (HF_HUB_DISABLE_XET is read at import); it prints JSON."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "AUTOLOAD_"))}
    env.update(HF_ENDPOINT=srv.url, HF_TOKEN=TOKEN, HF_HUB_DISABLE_XET="1", HF_HOME=str(tmp_path / "hf_sub"),
               HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1", PYTHONPATH=str(ROOT / "src"))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_autoload_uploads_huggingface_hub_downloads(srv, folder, tmp_path):
    from huggingface_hub import HfApi, snapshot_download
    url = upload.create_repo("demo", endpoint=srv.url, token=TOKEN)
    assert url.repo_id == "alice/demo" and url == f"{srv.url}/alice/demo"
    assert upload.create_repo("alice/demo", exist_ok=True, endpoint=srv.url, token=TOKEN).repo_id == "alice/demo"
    with pytest.raises(autoload.CommitConflictError):
        upload.create_repo("alice/demo", endpoint=srv.url, token=TOKEN)
    info = upload.upload_folder("alice/demo", folder, ignore_patterns=["*.tmp"], endpoint=srv.url, token=TOKEN,
                                commit_message="first", commit_description="the description")
    assert len(info.oid) == 40 and info == f"{srv.url}/alice/demo/commit/{info.oid}"
    path = snapshot_download("alice/demo", endpoint=srv.url, cache_dir=str(tmp_path / "hf"), token="rtok")
    assert os.path.basename(path) == info.oid
    assert snapshot(path) == local_files(folder, ignore=("skip.tmp",))
    api = HfApi(endpoint=srv.url, token="rtok")
    assert api.repo_info("alice/demo").sha == info.oid
    commits = api.list_repo_commits("alice/demo")
    assert [(c.commit_id, c.title, c.message) for c in commits[:1]] == [(info.oid, "first", "the description")]
    assert [c.title for c in commits] == ["first", "initial commit"]
    # the LFS decision: the default .gitattributes puts *.safetensors and *.bin in LFS
    puts = [r for r in srv.requests if r.method == "PUT"]
    assert len(puts) == 2 and all("authorization" not in r.headers for r in puts)


def test_huggingface_hub_uploads_autoload_downloads(srv, folder, tmp_path, monkeypatch):
    from autoload.server import writes
    monkeypatch.setattr(writes, "MULTIPART_THRESHOLD", 100_000)  # model.safetensors (400 kB) goes multipart
    monkeypatch.setattr(writes, "PART_SIZE", 128 * 1024)
    out = run_hf(f"""
import json
from huggingface_hub import HfApi
api = HfApi()
api.create_repo("alice/theirs")
info = api.upload_folder(repo_id="alice/theirs", folder_path={str(folder)!r}, ignore_patterns=["*.tmp"])
api.create_branch("alice/theirs", branch="dev")
dev = api.upload_file(path_or_fileobj=b"on dev", path_in_repo="dev.txt", repo_id="alice/theirs", revision="dev")
pr = api.upload_file(path_or_fileobj=b"a pr", path_in_repo="pr.txt", repo_id="alice/theirs", create_pr=True)
print(json.dumps({{"main": info.oid, "dev": dev.oid, "pr": pr.pr_revision}}))
""", srv, tmp_path)
    puts = [r.path for r in srv.requests if r.method == "PUT"]
    assert len([p for p in puts if "/part/" in p]) == 4 and len(puts) == 5  # 4 parts + data.bin in one PUT
    main = autoload.snapshot_download("alice/theirs", endpoint=srv.url, token="rtok")
    assert os.path.basename(main) == out["main"]
    assert snapshot(main) == local_files(folder, ignore=("skip.tmp",))
    dev = autoload.snapshot_download("alice/theirs", revision="dev", endpoint=srv.url, token="rtok")
    assert os.path.basename(dev) == out["dev"] and snapshot(dev)["dev.txt"] == b"on dev"
    pr = autoload.hub_download("alice/theirs", "pr.txt", revision=out["pr"], endpoint=srv.url, token="rtok")
    assert Path(pr).read_bytes() == b"a pr"
    # older commits stay downloadable, and autoload's next commit builds on theirs
    mine = upload.upload_file(b"more", "more.txt", "alice/theirs", endpoint=srv.url, token=TOKEN,
                              parent_commit=out["main"])
    old = autoload.snapshot_download("alice/theirs", revision=out["main"], endpoint=srv.url, token="rtok")
    assert "more.txt" not in snapshot(old) and mine.oid != out["main"]


def test_upload_folder_options(srv, folder, tmp_path):
    kw = dict(endpoint=srv.url, token=TOKEN)
    upload.create_repo("alice/opts", **kw)
    first = upload.upload_folder("alice/opts", folder, allow_patterns=["*.json", "sub/*"], **kw)
    files = set(snapshot(autoload.snapshot_download("alice/opts", endpoint=srv.url, token="rtok")))
    assert files == {"config.json", "sub/deep/notes.txt"}
    # unchanged files: no upload and no commit at all
    srv.reset_requests()
    again = upload.upload_folder("alice/opts", folder, allow_patterns=["*.json", "sub/*"], **kw)
    assert again.oid == first.oid
    assert not [r for r in srv.requests if "/commit/" in r.path or r.method == "PUT"]
    # under a prefix, deleting what the patterns name and the upload does not bring back
    (tmp_path / "two").mkdir()
    (tmp_path / "two" / "config.json").write_text("{}")
    upload.upload_folder("alice/opts", tmp_path / "two", delete_patterns=["*.txt", "sub/"], **kw)
    files = set(snapshot(autoload.snapshot_download("alice/opts", endpoint=srv.url, token="rtok")))
    assert files == {"config.json"}
    # a new branch from main, and a pull request
    dev = upload.upload_file(b"dev", "dev.txt", "alice/opts", revision="feature/x", **kw)
    path = autoload.snapshot_download("alice/opts", revision="feature/x", endpoint=srv.url, token="rtok")
    assert os.path.basename(path) == dev.oid and set(snapshot(path)) == {"config.json", "dev.txt"}
    pr = upload.upload_file(b"pr", "pr.txt", "alice/opts", create_pr=True, commit_message="a PR", **kw)
    assert pr.pr_revision == "refs/pr/1" and pr.pr_url.endswith("/alice/opts/discussions/1")
    main = autoload.snapshot_download("alice/opts", endpoint=srv.url, token="rtok")
    assert "pr.txt" not in snapshot(main) and "dev.txt" not in snapshot(main)  # a PR and a branch leave main alone
    # delete patterns on a branch that does not exist yet: it starts from main
    upload.upload_file(b"t", "keep.txt", "alice/opts", **kw)
    fresh = upload.upload_folder("alice/opts", tmp_path / "two", revision="fresh", delete_patterns=["*.txt"], **kw)
    path = autoload.snapshot_download("alice/opts", revision="fresh", endpoint=srv.url, token="rtok")
    assert os.path.basename(path) == fresh.oid and set(snapshot(path)) == {"config.json"}
    with pytest.raises(autoload.UnsafePathError):
        upload.upload_file(b"x", "../escape", "alice/opts", **kw)


def test_typed_errors_name_the_repo_and_endpoint(srv, tmp_path):
    kw = dict(endpoint=srv.url)
    upload.create_repo("alice/errs", token=TOKEN, **kw)
    cases = [
        (autoload.AuthenticationError, dict(token="wrong")),
        (autoload.AuthenticationError, dict(token=False)),
        (autoload.WriteAccessError, dict(token="rtok")),
        (autoload.CommitConflictError, dict(token=TOKEN, parent_commit="0" * 40)),
        (autoload.RepositoryNotFoundError, dict(token=TOKEN, repo_id="alice/absent")),
    ]
    for error, options in cases:
        repo_id = options.pop("repo_id", "alice/errs")
        with pytest.raises(error) as caught:
            upload.upload_file(b"data", "f.txt", repo_id, **options, **kw)
        assert repo_id in str(caught.value) and srv.url in str(caught.value), caught.value
        assert caught.value.status in (401, 403, 404, 412)
    with pytest.raises(autoload.PayloadTooLargeError, match="size limit"):
        upload.upload_file(os.urandom(3_000_001), "w.bin", "alice/errs", token=TOKEN, **kw)
    srv.fault = lambda method, path, headers: Fault(status=507, body=b'{"error": "storage quota exceeded"}') \
        if method == "POST" and "/preupload/" in path else None
    with pytest.raises(autoload.QuotaExceededError, match="quota"):
        upload.upload_file(b"data", "f.txt", "alice/errs", token=TOKEN, **kw)


def test_token_stays_on_the_endpoint_origin(srv, monkeypatch):
    """A redirect to another origin (here: the same server as `localhost`) is followed without the token."""
    kw = dict(endpoint=srv.url, token=TOKEN)
    upload.create_repo("alice/origin", **kw)
    other = srv.url.replace("127.0.0.1", "localhost")
    srv.fault = lambda method, path, headers: Fault(status=307, headers={"Location": other + path}) \
        if "/preupload/" in path and headers.get("host", "").startswith("127.0.0.1") else None
    with pytest.raises(autoload.AuthenticationError):
        upload.upload_file(b"x", "x.txt", "alice/origin", **kw)
    redirected = [r for r in srv.requests if "/preupload/" in r.path and r.headers["host"].startswith("localhost")]
    assert redirected and all("authorization" not in r.headers for r in redirected)


def _multipart_file(srv, monkeypatch, repo: str, path: Path) -> tuple[dict, bytes]:
    """A server that answers 64 KiB multipart parts above 100 kB, a fresh repo, and a 300 kB file (5 parts)."""
    from autoload.server import writes
    monkeypatch.setattr(writes, "MULTIPART_THRESHOLD", 100_000)
    monkeypatch.setattr(writes, "PART_SIZE", 64 * 1024)
    kw = dict(endpoint=srv.url, token=TOKEN)
    upload.create_repo(repo, **kw)
    data = os.urandom(300_000)
    path.write_bytes(data)
    return kw, data


def test_multipart_retries_a_failed_part_and_shows_progress(srv, tmp_path, monkeypatch, capsys):
    kw, data = _multipart_file(srv, monkeypatch, "alice/parts", tmp_path / "w.bin")
    failed = []

    def fault(method, path, headers):
        if method == "PUT" and "/part/2?" in path and not failed:
            failed.append(path)
            return Fault(status=503)
        return None
    srv.fault = fault
    info = upload.upload_file(tmp_path / "w.bin", "w.bin", "alice/parts", progress=True, **kw)
    parts = [r.path for r in srv.requests if r.method == "PUT"]
    assert failed and len(parts) == 6  # five parts, part 2 twice
    assert "Uploading alice/parts" in capsys.readouterr().err
    got = autoload.hub_download("alice/parts", "w.bin", revision=info.oid, endpoint=srv.url, token="rtok")
    assert Path(got).read_bytes() == data


def test_multipart_from_a_file_object_sends_parts_in_order(srv, tmp_path, monkeypatch):
    """Parts of a file on disk go side by side (PARALLEL_PARTS); a caller's file object has one position, so its
    parts go one after another, and the bytes arrive intact either way."""
    kw, data = _multipart_file(srv, monkeypatch, "alice/fileobj", tmp_path / "f.bin")
    with open(tmp_path / "f.bin", "rb") as f:
        f.seek(1000)  # the upload reads from the start whatever the caller's position
        info = upload.upload_file(f, "f.bin", "alice/fileobj", progress=False, **kw)
        assert not f.closed  # the caller's object stays open
    puts = [r.path for r in srv.requests if r.method == "PUT"]
    assert [int(p.split("/part/")[1].split("?")[0]) for p in puts] == [1, 2, 3, 4, 5]
    got = autoload.hub_download("alice/fileobj", "f.bin", revision=info.oid, endpoint=srv.url, token="rtok")
    assert Path(got).read_bytes() == data


def test_cli_upload(srv, folder, capsys):
    from autoload.cli import main
    assert main(["upload", "alice/cli", str(folder), "weights", "--exclude", "*.tmp", "--endpoint", srv.url,
                 "--token", TOKEN, "--commit-message", "from the cli", "--quiet"]) == 0
    url = capsys.readouterr().out.strip()
    assert url.startswith(f"{srv.url}/alice/cli/commit/")
    path = autoload.snapshot_download("alice/cli", endpoint=srv.url, token="rtok")
    assert os.path.basename(path) == url.rsplit("/", 1)[1]
    assert snapshot(path) == {f"weights/{k}": v for k, v in local_files(folder, ignore=("skip.tmp",)).items()}
    assert main(["upload", "alice/cli", str(folder / "config.json"), "--endpoint", srv.url, "--token", "rtok",
                 "--quiet"]) == 1
    assert "cannot write" in capsys.readouterr().err


def test_inline_mode_lets_huggingface_hub_with_xet_push(tmp_path, isolated_env, folder):
    """Without HF_HUB_DISABLE_XET, huggingface_hub >= 1.20 sends LFS files to Xet; a server with inline_size
    asks for them inline instead, so a small model folder goes through unchanged."""
    (tmp_path / "inline").mkdir()
    with HubServer(tmp_path / "inline", writable=True, write_tokens={TOKEN: "alice"}, inline_size=1 << 20) as srv:
        code = f"""
import json, os
from huggingface_hub import HfApi
api = HfApi()
api.create_repo("alice/inline")
info = api.upload_folder(repo_id="alice/inline", folder_path={str(folder)!r}, ignore_patterns=["*.tmp"])
print(json.dumps({{"oid": info.oid}}))
"""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "AUTOLOAD_"))}
        env.update(HF_ENDPOINT=srv.url, HF_TOKEN=TOKEN, HF_HOME=str(tmp_path / "hf_sub"),
                   HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1")
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        oid = json.loads(result.stdout.strip().splitlines()[-1])["oid"]
        assert not [r for r in srv.requests if "xet" in r.path or r.method == "PUT"]
        path = autoload.snapshot_download("alice/inline", endpoint=srv.url)
        assert os.path.basename(path) == oid and snapshot(path) == local_files(folder, ignore=("skip.tmp",))
