"""The `autoload` command: a dispatcher over one module per subcommand (`autoload.cli.<name>`), each with its
`add_parser(subparsers)` and `main(args)`. Heavy imports (torch, requests) happen inside `main`.

Exit codes: 0 success; 1 the operation failed (the message says why and what to do); 2 bad usage;
130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMANDS = ("download", "upload", "cache", "serve", "run", "chat")  # module names under autoload.cli, in --help order


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand; each sets `args.main` to its module's `main`."""
    parser = argparse.ArgumentParser(prog="autoload", description="Load pretrained models by name.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (retries, resumes)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        command = importlib.import_module(f"{__name__}.{name}")
        command.add_parser(sub).set_defaults(main=command.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run `autoload ARGS` and return its exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    from ..hub.errors import HubError
    try:
        return args.main(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (HubError, OSError, ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
