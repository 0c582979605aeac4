"""`autoload download REPO [FILES...]`: a repo (or some of its files) into the cache; prints the local paths."""

from __future__ import annotations

from .options import HUBS


def add_parser(sub):
    p = sub.add_parser("download", help="download a repo (or some of its files) into the cache")
    p.add_argument("repo_id")
    p.add_argument("files", nargs="*", help="files to download (default: the whole repo)")
    p.add_argument("--revision", default="main", help="branch, tag, refs/pr/N or full commit (default: main)")
    p.add_argument("--repo-type", default="model", choices=["model", "dataset", "space"])
    p.add_argument("--endpoint", help="hub URL (default: $HF_ENDPOINT or https://huggingface.co)")
    p.add_argument("--cache-dir", help="cache folder (default: $HF_HUB_CACHE or ~/.cache/huggingface/hub)")
    p.add_argument("--token", help="access token (default: $HF_TOKEN or the token file)")
    p.add_argument("--hub", choices=HUBS, help="default: $AUTOLOAD_HUB or huggingface")
    p.add_argument("--include", nargs="+", help="glob patterns of files to take (snapshot)")
    p.add_argument("--exclude", nargs="+", help="glob patterns of files to skip (snapshot)")
    p.add_argument("--local-files-only", action="store_true", help="only look in the cache")
    p.add_argument("--force", action="store_true", help="download again even if cached (files only)")
    p.add_argument("--max-workers", type=int, default=8)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(args) -> int:
    from ..hub.download import hub_download, snapshot_download
    common = dict(revision=args.revision, repo_type=args.repo_type, cache_dir=args.cache_dir,
                  endpoint=args.endpoint, token=args.token, local_files_only=args.local_files_only,
                  progress=False if args.quiet else None, hub=args.hub)
    if args.files:
        if args.include or args.exclude:
            raise ValueError("--include/--exclude apply to whole-repo downloads; name files or patterns, not both")
        for name in args.files:
            print(hub_download(args.repo_id, name, force_download=args.force, **common))
    else:
        print(snapshot_download(args.repo_id, allow_patterns=args.include, ignore_patterns=args.exclude,
                                max_workers=args.max_workers, **common))
    return 0
