"""The `autoload` command: download, cache ls/rm/verify, serve, demo.

Exit codes: 0 success; 1 the operation failed (the message says why and what to do); 2 bad usage;
130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time


def _add_hub_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--revision", default="main", help="branch, tag, refs/pr/N or full commit (default: main)")
    p.add_argument("--repo-type", default="model", choices=["model", "dataset", "space"])
    p.add_argument("--endpoint", help="hub URL (default: $HF_ENDPOINT or https://huggingface.co)")
    p.add_argument("--cache-dir", help="cache folder (default: $HF_HUB_CACHE or ~/.cache/huggingface/hub)")
    p.add_argument("--token", help="access token (default: $HF_TOKEN or the token file)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autoload", description="Load pretrained models by name.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (retries, resumes)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("download", help="download a repo (or some of its files) into the cache")
    p.add_argument("repo_id")
    p.add_argument("files", nargs="*", help="files to download (default: the whole repo)")
    _add_hub_options(p)
    p.add_argument("--include", nargs="+", help="glob patterns of files to take (snapshot)")
    p.add_argument("--exclude", nargs="+", help="glob patterns of files to skip (snapshot)")
    p.add_argument("--local-files-only", action="store_true", help="only look in the cache")
    p.add_argument("--force", action="store_true", help="download again even if cached (files only)")
    p.add_argument("--max-workers", type=int, default=8)
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    cache = sub.add_parser("cache", help="inspect and clean the cache").add_subparsers(dest="cache_command",
                                                                                       required=True)
    p = cache.add_parser("ls", help="list cached repos with sizes, revisions and last use")
    p.add_argument("--cache-dir")
    p = cache.add_parser("rm", help="delete a cached repo, or one revision of it")
    p.add_argument("repo_id")
    p.add_argument("--revision", help="delete only this revision (branch, tag or commit)")
    p.add_argument("--repo-type", default="model", choices=["model", "dataset", "space"])
    p.add_argument("--cache-dir")
    p = cache.add_parser("verify", help="re-hash a cached repo's files against their recorded etags")
    p.add_argument("repo_id")
    p.add_argument("--repo-type", default="model", choices=["model", "dataset", "space"])
    p.add_argument("--cache-dir")

    p = sub.add_parser("serve", help="serve a folder of repos (or an HF cache) over the Hugging Face protocol")
    p.add_argument("root", help="folder of ORG/NAME repo folders, or a huggingface_hub cache folder")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--token", action="append", dest="tokens", help="accepted token (repeatable); default: no auth")

    p = sub.add_parser("demo", help="run the end-to-end demo on a built-in local hub")
    p.add_argument("--cache-dir", help="cache to use (default: a fresh temporary folder)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    from .hub.errors import HubError
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (HubError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def cmd_download(args) -> int:
    from .hub.download import hub_download, snapshot_download
    common = dict(revision=args.revision, repo_type=args.repo_type, cache_dir=args.cache_dir,
                  endpoint=args.endpoint, token=args.token, local_files_only=args.local_files_only,
                  progress=False if args.quiet else None)
    if args.files:
        if args.include or args.exclude:
            raise ValueError("--include/--exclude apply to whole-repo downloads; name files or patterns, not both")
        for name in args.files:
            print(hub_download(args.repo_id, name, force_download=args.force, **common))
    else:
        print(snapshot_download(args.repo_id, allow_patterns=args.include, ignore_patterns=args.exclude,
                                max_workers=args.max_workers, **common))
    return 0


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return ""


def _ago(ts: float) -> str:
    if not ts:
        return "-"
    seconds = max(0, time.time() - ts)
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{int(seconds // length)}{unit} ago"
    return "just now"


def cmd_cache(args) -> int:
    from .hub import manage, settings
    cache_dir = settings.hub_cache(args.cache_dir)
    if args.cache_command == "ls":
        repos = manage.scan_cache(cache_dir)
        rows = [("REPO ID", "TYPE", "SIZE", "FILES", "REVISIONS", "LAST USED")]
        for r in repos:
            revisions = ", ".join(sorted(r.refs)) or ", ".join(c[:8] for c in r.commits) or "-"
            size = f"-> {r.alias_of}" if r.alias_of else _size(r.size)
            rows.append((r.repo_id, r.repo_type, size, str(r.files), revisions, _ago(r.last_used)))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        print(f"\n{len(repos)} repo(s), {_size(sum(r.size for r in repos))} in {cache_dir}")
        return 0
    if args.cache_command == "rm":
        removed = manage.delete_repo(cache_dir, args.repo_id, args.repo_type, args.revision)
        if not removed:
            what = f"revision '{args.revision}' of " if args.revision else ""
            print(f"error: {what}'{args.repo_id}' is not in the cache {cache_dir} (see `autoload cache ls`)",
                  file=sys.stderr)
            return 1
        for path in removed:
            print(f"removed {path}")
        return 0
    checks = manage.verify_repo(cache_dir, args.repo_id, args.repo_type)
    if not checks:
        print(f"error: '{args.repo_id}' is not in the cache {cache_dir} (see `autoload cache ls`)", file=sys.stderr)
        return 1
    bad = [c for c in checks if c.status in ("corrupt", "missing")]
    for c in checks:
        print(f"{c.status:9}  {c.path}" + (f"  ({c.detail})" if c.detail else ""))
    print(f"\n{len(checks)} file(s) checked, {len(bad)} bad")
    if bad:
        print("Delete the bad revision with `autoload cache rm` and download it again.", file=sys.stderr)
    return 1 if bad else 0


def cmd_serve(args) -> int:
    from .hub.server import HubServer
    srv = HubServer(args.root, host=args.host, port=args.port, tokens=args.tokens)
    print(f"Serving {args.root} at {srv.url} (Ctrl-C to stop). Point clients at it with HF_ENDPOINT={srv.url}")
    try:
        srv.serve_forever()
    finally:
        srv.stop()
    return 0


def cmd_demo(args) -> int:
    from .demo import run
    return run(cache_dir=args.cache_dir)


COMMANDS = {"download": cmd_download, "cache": cmd_cache, "serve": cmd_serve, "demo": cmd_demo}

if __name__ == "__main__":
    sys.exit(main())
