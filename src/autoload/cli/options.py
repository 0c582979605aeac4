"""Options shared by the subcommands that load a model (`run`, `chat`)."""

from __future__ import annotations

import argparse

HUBS = ["huggingface", "modelscope"]


def add_model_hub_options(p: argparse.ArgumentParser) -> None:
    """--revision, --endpoint, --cache-dir, --token, --local-files-only, --trust-remote-code, --hub."""
    p.add_argument("--revision")
    p.add_argument("--endpoint", help="hub URL (default: $HF_ENDPOINT or https://huggingface.co)")
    p.add_argument("--cache-dir")
    p.add_argument("--token")
    p.add_argument("--local-files-only", action="store_true")
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--hub", choices=HUBS, help="default: $AUTOLOAD_HUB or huggingface")


def model_hub_kwargs(args) -> dict:
    """The from_pretrained keyword arguments of the options above."""
    return dict(revision=args.revision, endpoint=args.endpoint, cache_dir=args.cache_dir, token=args.token,
                local_files_only=args.local_files_only, trust_remote_code=args.trust_remote_code or None,
                hub=args.hub)
