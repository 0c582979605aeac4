"""Upload benchmark: autoload vs huggingface_hub (HF_HUB_DISABLE_XET=1), side by side, into `autoload serve --writable`.

    python bench/upload.py                 # a 1 GiB file + a 50-file folder, 3 repeats
    python bench/upload.py --size-mib 32   # a smoke check

Two cases, the same calls on both sides: one large file (`model.safetensors`, random bytes: LFS, so preupload ->
LFS batch -> PUT -> commit) with `upload_file`, and a folder of 50 small json/txt files (regular: preupload ->
one inline commit) with `upload_folder`.

How it measures (as bench/download.py, whose test-data helpers it reuses):
- every measurement gets a fresh, empty hub root and its own `autoload serve --writable` process, started and
  answering before timing (the store deduplicates content, so a second upload of the same bytes would be free);
- the client runs in a fresh child process that imports it, creates the repo (untimed), then times only the
  upload call; the repeats alternate which client goes first and the table shows the median;
- afterwards the server's tree API must list every file with the source's sha256 (LFS) or git blob id.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import download as dl  # noqa: E402  (bench/download.py: test data, ports, child environment)

CLIENTS = ("autoload", "huggingface_hub")
TOKEN = "bench-write-token"
MIB = dl.MIB


def child_main(spec: dict) -> None:
    began = time.perf_counter()
    repo = spec["repo"]
    if spec["client"] == "autoload":
        from autoload.hub import upload
        kw = dict(endpoint=spec["endpoint"], token=TOKEN)
        upload.create_repo(repo, **kw)
        if spec["case"] == "file":
            def run():
                return upload.upload_file(spec["path"], dl.LARGE_FILE, repo, progress=False, **kw).oid
        else:
            def run():
                return upload.upload_folder(repo, spec["path"], progress=False, **kw).oid
    else:
        from huggingface_hub import HfApi
        api = HfApi(endpoint=spec["endpoint"], token=TOKEN)
        api.create_repo(repo)
        if spec["case"] == "file":
            def run():
                return api.upload_file(path_or_fileobj=spec["path"], path_in_repo=dl.LARGE_FILE, repo_id=repo).oid
        else:
            def run():
                return api.upload_folder(repo_id=repo, folder_path=spec["path"]).oid
    import_seconds = time.perf_counter() - began
    start = time.perf_counter()
    oid = run()
    print(json.dumps({"seconds": time.perf_counter() - start, "import_seconds": import_seconds, "oid": oid}))


def start_server(root: Path, log: Path):
    port = dl.free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "autoload.cli", "serve", str(root), "--port", str(port),
                                 "--writable", "--write-token", f"bench={TOKEN}"], cwd=dl.ROOT,
                                env={**os.environ, "PYTHONPATH": dl.pythonpath()}, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/models/none", timeout=5)
        except urllib.error.HTTPError:
            return proc, url  # answering (404)
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                dl.stop_server(proc)
                raise RuntimeError(f"the hub server did not start:\n{log.read_text()[-2000:]}") from None
            time.sleep(0.1)


def measure(client: str, case: str, source: Path, workdir: Path) -> float:
    root = workdir / "hub-upload"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    server, endpoint = start_server(root, workdir / "upload-server.log")
    try:
        repo = f"bench/{case}-{client}"
        spec = dict(client=client, case=case, repo=repo, endpoint=endpoint, path=str(source))
        env = dl.child_env(endpoint, workdir / "caches" / "upload", workdir / "hf_home")
        env["HF_HUB_DISABLE_XET"] = "1"
        (workdir / "hf_home").mkdir(parents=True, exist_ok=True)
        os.sync()
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
                              cwd=dl.ROOT, env=env, capture_output=True, text=True, timeout=dl.CHILD_TIMEOUT)
        if proc.returncode != 0:
            raise RuntimeError(f"{client} {case} upload failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        check(endpoint, repo, source, out["oid"])
        return out["seconds"]
    finally:
        dl.stop_server(server)


def check(endpoint: str, repo: str, source: Path, oid: str) -> None:
    """The server's tree at the new commit lists the source's files with their hashes."""
    with urllib.request.urlopen(f"{endpoint}/api/models/{repo}/tree/{oid}?recursive=true") as answer:
        tree = {e["path"]: e for e in json.load(answer) if e["type"] == "file" and e["path"] != ".gitattributes"}
    files = {source.name: source} if source.is_file() else \
        {p.relative_to(source).as_posix(): p for p in source.rglob("*") if p.is_file()}
    if set(tree) != set(files):
        raise RuntimeError(f"{repo}: the server holds {sorted(tree)[:5]}..., not the source's files")
    for path, disk in files.items():
        data = disk.read_bytes() if disk.stat().st_size < 64 * MIB else None
        if "lfs" in tree[path]:
            ok = tree[path]["lfs"]["oid"] == dl.file_sha256(disk)
        else:
            ok = tree[path]["oid"] == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        if not ok:
            raise RuntimeError(f"{repo}: {path} differs from the source on the server")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="large file size in MiB (default 1024)")
    parser.add_argument("--files", type=int, default=50, help="files in the folder (default 50)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per client and case (default 3)")
    parser.add_argument("--workdir", type=Path, default=dl.ROOT / ".bench", help="test data (default .bench/)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(json.loads(args.child))
        return 0
    workdir = args.workdir.resolve()
    sources = workdir / "upload-sources"
    size = args.size_mib * MIB
    dl.make_large_file(sources, size)  # sources/bench/large-model/model.safetensors
    large = sources / dl.LARGE_REPO / dl.LARGE_FILE
    folder = sources / "small-folder"
    shutil.rmtree(folder, ignore_errors=True)
    for i in range(args.files):
        rel, content = dl.small_file_content(i)
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(content)
    cases = {"file": (large, f"1 file, {args.size_mib} MiB", size),
             "folder": (folder, f"folder, {args.files} files", sum(p.stat().st_size for p in folder.rglob("*")
                                                                    if p.is_file()))}
    print(dl.environment_line() + " | HF_HUB_DISABLE_XET=1")
    results: dict[tuple[str, str], list[float]] = {}
    for case, (source, _, _) in cases.items():
        for run in range(args.repeat):
            order = CLIENTS if run % 2 == 0 else CLIENTS[::-1]
            for client in order:
                results.setdefault((case, client), []).append(measure(client, case, source, workdir))
    print(f"\n{'case':<24} {'client':<16} {'median s':>9} {'MB/s':>8} {'min s':>8} {'max s':>8}")
    for case, (_, label, nbytes) in cases.items():
        for client in CLIENTS:
            runs = results[case, client]
            median = statistics.median(runs)
            print(f"{label:<24} {client:<16} {median:>9.3f} {nbytes / 1e6 / median:>8.1f} {min(runs):>8.3f} "
                  f"{max(runs):>8.3f}")
    print()
    for case, (_, label, _) in cases.items():
        ratio = statistics.median(results[case, "huggingface_hub"]) / statistics.median(results[case, "autoload"])
        print(f"ratio autoload/huggingface_hub (speed), {label}: {ratio:.2f}x "
              f"({'autoload faster' if ratio > 1 else 'huggingface_hub faster'})")
    print(f"\nmedian of {args.repeat} run(s); the upload call only (repo created before), in a fresh child per run, "
          "into a fresh `autoload serve --writable` process; every upload checked against the source's hashes.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
