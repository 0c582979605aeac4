"""`autoload cache ls|rm|verify`: inspect and clean the cache (Hugging Face's, or ModelScope's with --hub)."""

from __future__ import annotations

import sys
import time

from .options import HUBS


def add_parser(sub):
    p = sub.add_parser("cache", help="inspect and clean the cache")
    cache = p.add_subparsers(dest="cache_command", required=True)
    hub_choice = dict(choices=HUBS, help="default: $AUTOLOAD_HUB or huggingface")
    c = cache.add_parser("ls", help="list cached repos with sizes, revisions and last use")
    c.add_argument("--cache-dir")
    c.add_argument("--hub", **hub_choice)
    c = cache.add_parser("rm", help="delete a cached repo, or one revision of it")
    c.add_argument("repo_id")
    c.add_argument("--revision", help="delete only this revision (branch, tag or commit)")
    c.add_argument("--repo-type", default="model", choices=["model", "dataset", "space"])
    c.add_argument("--cache-dir")
    c.add_argument("--hub", **hub_choice)
    c = cache.add_parser("verify", help="re-hash a cached repo's files against their recorded etags "
                                        "(ModelScope: against the hub's listing)")
    c.add_argument("repo_id")
    c.add_argument("--repo-type", default="model", choices=["model", "dataset", "space"])
    c.add_argument("--cache-dir")
    c.add_argument("--hub", **hub_choice)
    c.add_argument("--revision", help="ModelScope: the revision to verify (default master)")
    c.add_argument("--endpoint", help="ModelScope: the hub URL (default: $MODELSCOPE_ENDPOINT)")
    return p


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


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def main(args) -> int:
    from ..hub import manage, settings
    if settings.which_hub(args.hub, "model") == "modelscope":
        return _cache_modelscope(args)
    cache_dir = settings.hub_cache(args.cache_dir)
    if args.cache_command == "ls":
        repos = manage.scan_cache(cache_dir)
        rows = [("REPO ID", "TYPE", "SIZE", "FILES", "REVISIONS", "LAST USED")]
        for r in repos:
            revisions = ", ".join(sorted(r.refs)) or ", ".join(c[:8] for c in r.commits) or "-"
            size = f"-> {r.alias_of}" if r.alias_of else _size(r.size)
            rows.append((r.repo_id, r.repo_type, size, str(r.files), revisions, _ago(r.last_used)))
        _print_table(rows)
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


def _cache_modelscope(args) -> int:
    from ..hub import modelscope
    root = modelscope.ms_cache(args.cache_dir)
    if args.cache_command == "ls":
        repos = modelscope.scan_cache(args.cache_dir)
        rows = [("REPO ID", "LAYOUT", "SIZE", "FILES", "REVISIONS", "LAST USED")]
        rows += [(r["repo_id"], r["layout"], _size(r["size"]), str(r["files"]), ", ".join(r["revisions"]) or "-",
                  _ago(r["last_used"])) for r in repos]
        _print_table(rows)
        print(f"\n{len(repos)} repo(s), {_size(sum(r['size'] for r in repos))} in {root}")
        return 0
    if args.cache_command == "rm":
        removed = modelscope.delete_cached(args.repo_id, args.revision, args.cache_dir)
        for path in removed:
            print(f"removed {path}")
        if not removed:
            print(f"error: '{args.repo_id}' is not in the ModelScope cache {root} (see `autoload cache ls "
                  "--hub modelscope`)", file=sys.stderr)
        return 0 if removed else 1
    checks = modelscope.verify_cached(args.repo_id, args.revision, args.cache_dir, args.endpoint)
    if not checks:
        print(f"error: '{args.repo_id}' is not in the ModelScope cache {root}", file=sys.stderr)
        return 1
    bad = [c for c in checks if c[1] == "corrupt"]
    for path, status, detail in checks:
        print(f"{status:9}  {path}" + (f"  ({detail})" if detail else ""))
    print(f"\n{len(checks)} file(s) checked, {len(bad)} bad")
    return 1 if bad else 0
