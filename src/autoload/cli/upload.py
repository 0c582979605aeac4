"""`autoload upload REPO PATH [PATH_IN_REPO]`: a folder (or one file) to a hub repo in one commit, creating the repo
when it does not exist; prints the commit URL (docs/publishing.md)."""

from __future__ import annotations

import os

from .options import HUBS


def add_parser(sub):
    p = sub.add_parser("upload", help="upload a folder (or a file) to a hub repo in one commit")
    p.add_argument("repo_id")
    p.add_argument("path", help="local folder or file")
    p.add_argument("path_in_repo", nargs="?", default=None,
                   help="where it goes in the repo (default: the root for a folder, the file's name for a file)")
    p.add_argument("--repo-type", default="model", choices=["model", "dataset"])
    p.add_argument("--revision", help="branch to commit to (created from main when missing; default: main)")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    p.add_argument("--private", action="store_true", help="create the repo private (when it does not exist)")
    p.add_argument("--include", nargs="+", help="glob patterns of files to upload (folder)")
    p.add_argument("--exclude", nargs="+", help="glob patterns of files to skip (folder)")
    p.add_argument("--delete", nargs="+", help="glob patterns of remote files to delete when not uploaded (folder)")
    p.add_argument("--commit-message")
    p.add_argument("--commit-description")
    p.add_argument("--endpoint", help="hub URL (default: $HF_ENDPOINT or https://huggingface.co)")
    p.add_argument("--token", help="write token (default: $HF_TOKEN or the token file)")
    p.add_argument("--hub", choices=HUBS, help="default: $AUTOLOAD_HUB or huggingface (modelscope: models only)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(args) -> int:
    from ..hub import upload
    common = dict(repo_type=args.repo_type, token=args.token, endpoint=args.endpoint, hub=args.hub)
    url = upload.create_repo(args.repo_id, private=args.private or None, exist_ok=True, **common)
    options = dict(revision=args.revision, create_pr=args.create_pr, commit_message=args.commit_message,
                   commit_description=args.commit_description, progress=False if args.quiet else None, **common)
    if os.path.isfile(args.path):
        if args.include or args.exclude or args.delete:
            raise ValueError("--include/--exclude/--delete apply to folder uploads")
        info = upload.upload_file(args.path, args.path_in_repo or os.path.basename(args.path), url.repo_id, **options)
    else:
        info = upload.upload_folder(url.repo_id, args.path, path_in_repo=args.path_in_repo or "",
                                    allow_patterns=args.include, ignore_patterns=args.exclude,
                                    delete_patterns=args.delete, **options)
    print(info.pr_url or info.commit_url)
    return 0
