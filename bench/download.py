"""Download benchmark: autoload vs huggingface_hub, side by side, against the local hub server.

    python bench/download.py            # 1 GiB file + 50-file snapshot, 3 repeats (about a minute)
    python bench/download.py --quick    # 128 MiB, 1 repeat: a smoke check (about 15 s)
    python bench/download.py --profile  # then one cProfile'd run per client and case (not timed)

Two cases: one large LFS file (`model.safetensors`, random bytes) with `hub_download` /
`hf_hub_download`, and a snapshot of small json/txt files with `snapshot_download` on both sides.

How it measures, so the two clients get the same treatment:
- the hub server (`python -m autoload.cli serve`) runs in its own process, warmed up before timing
  (it hashes every file once), so it never competes for the client's GIL;
- every measurement is a fresh child process with a fresh empty cache folder; the child imports its
  client first, then times only the download call with time.perf_counter and prints JSON (import
  time is reported apart);
- each case starts with --warmup untimed runs per client (the first 1 GiB written after an idle
  spell is ~2 s slower on a VM, whatever writes it); then the repeats alternate which client goes
  first, and the table shows the median; os.sync() runs before each measurement so no one pays for
  the previous one's disk writeback;
- the downloaded bytes are hashed against the source after the child exits (outside the timing).

Test data lives in --workdir (default `.bench/` in the repo root, git-ignored) and is reused.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import importlib.metadata
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent  # the repo root
CLIENTS = ("autoload", "huggingface_hub")
LARGE_REPO, LARGE_FILE = "bench/large-model", "model.safetensors"  # .safetensors: served as LFS
SMALL_REPO = "bench/small-files"
MIB = 1024 * 1024
CHILD_TIMEOUT = 600  # seconds for one download, well above any expected time


# -- test data ------------------------------------------------------------------------------------

def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def make_large_file(hub_root: Path, size: int) -> str:
    """The large file of `size` random bytes (kept from an earlier run if its size is right); its sha256."""
    path = hub_root / LARGE_REPO / LARGE_FILE
    record = hub_root.parent / "large.sha256"  # "size mtime_ns sha256", outside the served tree
    if not (path.exists() and path.stat().st_size == size):
        print(f"writing {size / MIB:.0f} MiB of random bytes to {path} ...", flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            for start in range(0, size, 16 * MIB):
                f.write(os.urandom(min(16 * MIB, size - start)))
        os.replace(tmp, path)
    st = path.stat()
    key = f"{st.st_size} {st.st_mtime_ns}"
    if record.exists() and record.read_text().rsplit(" ", 1)[0] == key:
        return record.read_text().rsplit(" ", 1)[1]
    sha = file_sha256(path)
    record.write_text(f"{key} {sha}")
    return sha


def small_file_content(index: int) -> tuple[str, bytes]:
    """File `index` of the snapshot: alternately json and txt, 2-100 KB (log-uniform), deterministic."""
    rng = random.Random(index)
    size = int(2000 * 50 ** rng.random())
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 10))) for _ in range(500)]
    folder = "extra/" if index % 5 == 4 else ""  # a few in a subfolder, as in real repos
    if index % 2 == 0:
        table, n = {}, 0
        while len(json.dumps(table)) < size:
            table[f"{rng.choice(words)}_{n}"] = rng.randint(0, 1 << 20)
            n += 1
        return f"{folder}config_{index:03d}.json", json.dumps(table, indent=1).encode()
    lines, total = [], 0
    while total < size:
        line = " ".join(rng.choices(words, k=rng.randint(4, 16)))
        lines.append(line)
        total += len(line) + 1
    return f"{folder}notes_{index:03d}.txt", ("\n".join(lines) + "\n").encode()


def make_small_files(hub_root: Path, count: int) -> dict[str, str]:
    """Write the snapshot repo (rewriting only what differs, removing extras); {path: sha256}."""
    folder = hub_root / SMALL_REPO
    wanted = dict(small_file_content(i) for i in range(count))
    for path in sorted(folder.rglob("*"), reverse=True):  # files before their folders
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel not in wanted:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    newest = 0.0
    for rel, content in wanted.items():
        path = folder / rel
        if not (path.is_file() and path.read_bytes() == content):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        newest = max(newest, path.stat().st_mtime)
    # The server re-hashes a small file on every request while it is under 2 s old: let them age.
    time.sleep(max(0.0, newest + 2.1 - time.time()))
    return {rel: hashlib.sha256(content).hexdigest() for rel, content in wanted.items()}


# -- the server process ---------------------------------------------------------------------------

def pythonpath() -> str:
    """PYTHONPATH for the server and the children: this checkout's src/ first."""
    return os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(hub_root: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    """`autoload serve` in its own process; returns once it answers and has hashed every file."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": pythonpath()}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "autoload.cli", "serve", str(hub_root), "--host", "127.0.0.1",
                                 "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the hub server exited with {proc.returncode}:\n{log_path.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"{url}/api/models/{SMALL_REPO}", timeout=5).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the hub server did not answer on {url} within 30 s") from None
                time.sleep(0.1)
        # The first request for a repo hashes its files (seconds for 1 GiB): do it before any timing.
        urllib.request.urlopen(f"{url}/api/models/{LARGE_REPO}?blobs=true", timeout=300).read()
    except BaseException:
        stop_server(proc)
        raise
    return proc, url


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def probe_small_get(url: str, path: str, count: int = 30) -> float:
    """Median seconds of a small-file GET, repeated on one kept-alive connection (stdlib client).

    Enough requests to get past TCP's quick-ACK start, during which a Nagle stall does not show."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    times = []
    try:
        for _ in range(count):
            start = time.perf_counter()
            conn.request("GET", path)
            conn.getresponse().read()
            times.append(time.perf_counter() - start)
    finally:
        conn.close()
    return statistics.median(times)


# -- one measurement (child process) --------------------------------------------------------------

def child_main(spec: dict) -> None:
    """Import the client, then time one download call; print {"seconds", "import_seconds", "path"}."""
    began = time.perf_counter()
    common = dict(cache_dir=spec["cache_dir"], token=False)
    if spec["client"] == "autoload":
        import autoload
        common.update(endpoint=spec["endpoint"], progress=False)
        file_download, snapshot_download = autoload.hub_download, autoload.snapshot_download  # imports them
    else:
        from huggingface_hub import hf_hub_download as file_download, snapshot_download  # endpoint: $HF_ENDPOINT
    if spec["case"] == "file":
        def download() -> str:
            return file_download(LARGE_REPO, LARGE_FILE, **common)
    else:
        def download() -> str:
            return snapshot_download(SMALL_REPO, max_workers=spec["max_workers"], **common)
    import_seconds = time.perf_counter() - began

    if spec.get("profile"):
        path, seconds = profiled(download, spec["profile"])
    else:
        start = time.perf_counter()
        path = download()
        seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "import_seconds": import_seconds, "path": path}))


def profiled(download, out_path: str) -> tuple[str, float]:
    """Run `download` under cProfile in every thread (snapshots work in a thread pool); save merged stats."""
    import cProfile
    import pstats
    import threading

    profiles = [cProfile.Profile()]

    def start_in_thread(*_) -> None:  # runs once at the first call event of each new thread
        sys.setprofile(None)
        profile = cProfile.Profile()
        profiles.append(profile)
        profile.enable()

    threading.setprofile(start_in_thread)
    profiles[0].enable()
    start = time.perf_counter()
    path = download()
    seconds = time.perf_counter() - start
    profiles[0].disable()
    threading.setprofile(None)
    stats = pstats.Stats(profiles[0])
    for profile in profiles[1:]:
        stats.add(profile)
    stats.dump_stats(out_path)
    return path, seconds


@dataclass
class Result:
    case: str
    client: str
    seconds: float
    import_seconds: float
    process_seconds: float  # the whole child, interpreter start included


def child_env(endpoint: str, cache_dir: Path, hf_home: Path) -> dict[str, str]:
    """The same environment for both clients: no inherited hub settings, no token, no bars, no proxy."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGING_FACE_", "HUGGINGFACE_", "AUTOLOAD_", "TRANSFORMERS_"))
           and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update(PYTHONPATH=pythonpath(), HF_ENDPOINT=endpoint, HF_HUB_CACHE=str(cache_dir), HF_HOME=str(hf_home),
               HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1", NO_PROXY="127.0.0.1,localhost")
    return env


def measure(client: str, case: str, *, endpoint: str, workdir: Path, max_workers: int,
            profile: str | None = None) -> tuple[Result, str]:
    """One download in a fresh child process and cache; returns the result and the downloaded path."""
    cache_dir = workdir / "caches" / f"{case}-{client}"
    shutil.rmtree(cache_dir, ignore_errors=True)
    cache_dir.mkdir(parents=True)
    hf_home = workdir / "hf_home"  # stays empty: no token file, no config
    hf_home.mkdir(exist_ok=True)
    spec = dict(client=client, case=case, cache_dir=str(cache_dir), endpoint=endpoint, max_workers=max_workers,
                profile=profile)
    os.sync()  # start with no dirty pages from the previous measurement
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)], cwd=ROOT,
                          env=child_env(endpoint, cache_dir, hf_home), capture_output=True, text=True,
                          timeout=CHILD_TIMEOUT)
    process_seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{client} {case} download failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return Result(case, client, out["seconds"], out["import_seconds"], process_seconds), out["path"]


def verify(case: str, client: str, path: str, cache_dir: Path, expected: dict[str, str]) -> None:
    """The downloaded file(s) must be in the cache and hash to the source's sha256."""
    if not os.path.realpath(path).startswith(str(cache_dir.resolve()) + os.sep):
        raise RuntimeError(f"{client} {case}: {path} is not inside the cache {cache_dir}")
    if case == "file":
        got = {LARGE_FILE: file_sha256(path)}
    else:
        base = Path(path)
        got = {p.relative_to(base).as_posix(): file_sha256(p) for p in base.rglob("*") if p.is_file()}
    if got != expected:
        wrong = sorted(k for k in expected.keys() | got.keys() if got.get(k) != expected.get(k))
        raise RuntimeError(f"{client} {case}: downloaded content differs from the source for {wrong[:5]}")


# -- report ---------------------------------------------------------------------------------------

def environment_line() -> str:
    sys.path.insert(0, str(ROOT / "src"))
    import autoload
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip() or "?"
    versions = {name: importlib.metadata.version(name) for name in ("huggingface_hub", "hf_xet", "requests")}
    return (f"python {platform.python_version()} | autoload {autoload.__version__} ({commit}) | "
            f"huggingface_hub {versions['huggingface_hub']} (hf_xet {versions['hf_xet']}, unused: plain HTTP) | "
            f"requests {versions['requests']} | {os.cpu_count()} CPUs | {platform.system()} {platform.machine()}")


def print_report(results: list[Result], sizes: dict[str, int], labels: dict[str, str], repeat: int,
                 warmup: int) -> None:
    header = (f"{'case':<28} {'client':<16} {'median s':>9} {'MB/s':>8} {'min s':>8} {'max s':>8} "
              f"{'import s':>9} {'process s':>10}")
    print(header)
    print("-" * len(header))
    speed: dict[tuple[str, str], float] = {}
    for case in labels:
        for i, client in enumerate(CLIENTS):
            runs = [r for r in results if r.case == case and r.client == client]
            seconds = [r.seconds for r in runs]
            median = statistics.median(seconds)
            speed[case, client] = sizes[case] / 1e6 / median
            import_s = statistics.median(r.import_seconds for r in runs)
            process_s = statistics.median(r.process_seconds for r in runs)
            print(f"{labels[case] if i == 0 else '':<28} {client:<16} {median:>9.3f} {speed[case, client]:>8.1f} "
                  f"{min(seconds):>8.3f} {max(seconds):>8.3f} {import_s:>9.3f} {process_s:>10.3f}")
    print()
    for case in labels:
        ratio = speed[case, "autoload"] / speed[case, "huggingface_hub"]
        verdict = "autoload faster" if ratio > 1 else "huggingface_hub faster"
        print(f"ratio autoload/huggingface_hub, {labels[case]}: {ratio:.2f}x ({verdict})")
    print(f"\nmedian of {repeat} run(s) each after {warmup} warm-up run(s), alternating which client goes first; "
          "MB = 10^6 bytes.\n"
          "Timing: the download call only, inside a fresh child process per run with a fresh empty cache\n"
          "(interpreter start + client import are excluded: 'import s' shows the import, 'process s' the whole\n"
          "child). Server: `autoload serve` in its own process on 127.0.0.1. Every download verified by sha256.")


def print_profile(path: Path, title: str, package: str, limit: int = 12) -> None:
    """The functions that cost most by themselves, then the package's own by cumulative time."""
    import pstats
    print(f"\n=== profile: {title} ({path}; times summed over threads) ===")
    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(limit)
    stats.sort_stats("cumulative").print_stats(f"{package}/", limit)


# -- main -----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, help="large file size in MiB (default 1024; 128 with --quick)")
    parser.add_argument("--files", type=int, default=50, help="files in the snapshot (default 50)")
    parser.add_argument("--repeat", type=int, help="runs per client and case (default 3; 1 with --quick)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per client before each case (default 1)")
    parser.add_argument("--max-workers", type=int, default=8, help="snapshot threads, both clients (default 8)")
    parser.add_argument("--workdir", type=Path, default=ROOT / ".bench", help="test data and caches (default .bench/)")
    parser.add_argument("--quick", action="store_true", help="128 MiB, 1 repeat (--size-mb/--repeat still win)")
    parser.add_argument("--profile", action="store_true", help="afterwards, one cProfile'd run per client and case")
    parser.add_argument("--json", type=Path, help="also write every run's numbers to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: one measurement
    args = parser.parse_args(argv)
    if args.child:
        child_main(json.loads(args.child))
        return 0
    size = (args.size_mb or (128 if args.quick else 1024)) * MIB
    repeat = args.repeat or (1 if args.quick else 3)
    if size <= 0 or args.files < 1 or repeat < 1 or args.warmup < 0:
        parser.error("--size-mb, --files and --repeat must be positive, --warmup not negative")

    workdir = args.workdir.resolve()
    hub_root = workdir / "hub"
    large_sha = make_large_file(hub_root, size)
    small = make_small_files(hub_root, args.files)
    expected = {"file": {LARGE_FILE: large_sha}, "snapshot": small}
    sizes = {"file": size, "snapshot": sum((hub_root / SMALL_REPO / p).stat().st_size for p in small)}
    labels = {"file": f"1 file, {size / MIB:.0f} MiB", "snapshot": f"snapshot, {args.files} files, "
                                                                    f"{sizes['snapshot'] / 1e6:.1f} MB"}
    shutil.rmtree(workdir / "caches", ignore_errors=True)

    print(environment_line())
    server, endpoint = start_server(hub_root, workdir / "server.log")
    results: list[Result] = []
    try:
        probe = probe_small_get(endpoint, f"/{SMALL_REPO}/resolve/main/{next(iter(small))}")
        print(f"hub server pid {server.pid} at {endpoint}; small-file GET on a kept-alive connection: "
              f"{probe * 1e3:.1f} ms")
        if probe > 0.02:
            print("  note: >20 ms means the server holds small bodies back (Nagle's algorithm meets delayed ACK):\n"
                  "  the snapshot case then measures mostly that stall, the same for both clients")
        print(f"{args.warmup} warm-up + {repeat} timed run(s) per client and case\n", flush=True)
        for case in labels:
            for rep in range(-args.warmup, repeat):  # negative: warm-up, not counted
                for client in CLIENTS if rep % 2 == 0 else CLIENTS[::-1]:
                    result, path = measure(client, case, endpoint=endpoint, workdir=workdir,
                                           max_workers=args.max_workers)
                    verify(case, client, path, workdir / "caches" / f"{case}-{client}", expected[case])
                    shutil.rmtree(workdir / "caches" / f"{case}-{client}")
                    run = f"run {rep + 1}/{repeat}" if rep >= 0 else "warm-up"
                    print(f"  {labels[case]:<28} {run:<8} {client:<16} {result.seconds:8.3f} s "
                          f"{sizes[case] / 1e6 / result.seconds:8.1f} MB/s  (verified)", flush=True)
                    if rep >= 0:
                        results.append(result)
        print()
        print_report(results, sizes, labels, repeat, args.warmup)
        if args.json:
            args.json.write_text(json.dumps({"environment": environment_line(), "sizes": sizes,
                                             "results": [vars(r) for r in results]}, indent=1))
        if args.profile:
            (workdir / "profiles").mkdir(exist_ok=True)
            for case in labels:
                for client in CLIENTS:
                    prof = workdir / "profiles" / f"{case}-{client}.prof"
                    result, _ = measure(client, case, endpoint=endpoint, workdir=workdir,
                                        max_workers=args.max_workers, profile=str(prof))
                    print_profile(prof, f"{client}, {labels[case]}, {result.seconds:.3f} s under cProfile",
                                  "autoload/hub" if client == "autoload" else "huggingface_hub")
    finally:
        stop_server(server)
        shutil.rmtree(workdir / "caches", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
