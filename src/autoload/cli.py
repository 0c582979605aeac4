"""The `autoload` command: download, cache ls/rm/verify, serve, demo.

Exit codes: 0 success; 1 the operation failed (the message says why and what to do); 2 bad usage;
130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time


def _add_hub_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--revision", default="main", help="branch, tag, refs/pr/N or full commit (default: main)")
    p.add_argument("--repo-type", default="model", choices=["model", "dataset", "space"])
    p.add_argument("--endpoint", help="hub URL (default: $HF_ENDPOINT or https://huggingface.co)")
    p.add_argument("--cache-dir", help="cache folder (default: $HF_HUB_CACHE or ~/.cache/huggingface/hub)")
    p.add_argument("--token", help="access token (default: $HF_TOKEN or the token file)")
    p.add_argument("--hub", choices=["huggingface", "modelscope"], help="default: $AUTOLOAD_HUB or huggingface")


def _add_model_hub_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--revision")
    p.add_argument("--endpoint", help="hub URL (default: $HF_ENDPOINT or https://huggingface.co)")
    p.add_argument("--cache-dir")
    p.add_argument("--token")
    p.add_argument("--local-files-only", action="store_true")
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--hub", choices=["huggingface", "modelscope"], help="default: $AUTOLOAD_HUB or huggingface")


def _model_hub_kwargs(args) -> dict:
    return dict(revision=args.revision, endpoint=args.endpoint, cache_dir=args.cache_dir, token=args.token,
                local_files_only=args.local_files_only, trust_remote_code=args.trust_remote_code or None,
                hub=args.hub)


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
    hub_choice = dict(choices=["huggingface", "modelscope"], help="default: $AUTOLOAD_HUB or huggingface")
    p = cache.add_parser("ls", help="list cached repos with sizes, revisions and last use")
    p.add_argument("--cache-dir")
    p.add_argument("--hub", **hub_choice)
    p = cache.add_parser("rm", help="delete a cached repo, or one revision of it")
    p.add_argument("repo_id")
    p.add_argument("--revision", help="delete only this revision (branch, tag or commit)")
    p.add_argument("--repo-type", default="model", choices=["model", "dataset", "space"])
    p.add_argument("--cache-dir")
    p.add_argument("--hub", **hub_choice)
    p = cache.add_parser("verify", help="re-hash a cached repo's files against their recorded etags "
                                        "(ModelScope: against the hub's listing)")
    p.add_argument("repo_id")
    p.add_argument("--repo-type", default="model", choices=["model", "dataset", "space"])
    p.add_argument("--cache-dir")
    p.add_argument("--hub", **hub_choice)
    p.add_argument("--revision", help="ModelScope: the revision to verify (default master)")
    p.add_argument("--endpoint", help="ModelScope: the hub URL (default: $MODELSCOPE_ENDPOINT)")

    p = sub.add_parser("serve", help="serve a folder of repos (or an HF cache) over the Hugging Face protocol")
    p.add_argument("root", help="folder of ORG/NAME repo folders, or a huggingface_hub cache folder")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--token", action="append", dest="tokens", help="accepted token (repeatable); default: no auth")
    p.add_argument("--follow-symlinks-outside", action="store_true",
                   help="serve files that symlinks in ROOT point to outside it (default: treated as absent)")
    p.add_argument("--public-url", help="base URL clients reach the server at, for absolute links (default: its own)")

    p = sub.add_parser("run", help="run a pipeline on inputs and print the results")
    p.add_argument("task", help="fill-mask, feature-extraction, sentence-embeddings, text-classification, "
                                "token-classification, text-generation")
    p.add_argument("model", help="repo id or folder")
    p.add_argument("inputs", nargs="+", help="input texts")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--top-k", type=int, help="candidates per mask / labels per text")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--device")
    p.add_argument("--dtype")
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="another task option (value parsed as JSON when possible), repeatable")
    _add_model_hub_options(p)

    p = sub.add_parser("chat", help="chat with a causal LM in the terminal (/reset, /exit)")
    p.add_argument("model", help="repo id or folder of a model with a chat template")
    p.add_argument("--system", help="system prompt")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--device")
    p.add_argument("--dtype")
    _add_model_hub_options(p)

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
    except (HubError, OSError, ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def cmd_download(args) -> int:
    from .hub.download import hub_download, snapshot_download
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


def cmd_cache(args) -> int:
    from .hub import manage, settings
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
    from .hub import modelscope
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


def cmd_serve(args) -> int:
    from .hub.server import HubServer
    srv = HubServer(args.root, host=args.host, port=args.port, tokens=args.tokens,
                    follow_symlinks_outside=args.follow_symlinks_outside, public_url=args.public_url)
    print(f"Serving {args.root} at {srv.url} (Ctrl-C to stop). Point clients at it with HF_ENDPOINT={srv.url}")
    try:
        srv.serve_forever()
    finally:
        srv.stop()
    return 0


def _option(text: str) -> tuple[str, object]:
    import json
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"-o {text!r}: write options as KEY=VALUE, e.g. -o aggregation_strategy=simple")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def cmd_run(args) -> int:
    from .pipelines import pipeline
    from .pipelines.output import describe, to_json
    options = dict(_option(text) for text in args.option)
    if args.top_k is not None:
        options["top_k"] = args.top_k
    pipe = pipeline(args.task, model=args.model, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
                    **_model_hub_kwargs(args))
    single = len(args.inputs) == 1
    results = pipe(args.inputs[0] if single else args.inputs, **options)
    if args.json:
        print(to_json(results))
        return 0
    for text, result in zip(args.inputs, [results] if single else results):
        print(text)
        print(describe(pipe.task, result))
    return 0


def cmd_chat(args) -> int:
    from .registry.auto import AutoModelForCausalLM, AutoTokenizer
    hub = _model_hub_kwargs(args)
    tokenizer = AutoTokenizer.from_pretrained(args.model, **hub)
    model = AutoModelForCausalLM.from_pretrained(args.model, device=args.device, dtype=args.dtype or "auto", **hub)
    print(f"Chatting with {args.model}. /reset clears the history, /exit (or Ctrl-D) quits.")
    history: list = []
    while True:
        try:
            query = input("user> ").strip()
        except EOFError:
            print()
            return 0
        if query in ("/exit", "/quit"):
            return 0
        if query == "/reset":
            history = []
            print("(history cleared)")
            continue
        if not query:
            continue
        print("assistant> ", end="", flush=True)
        shown = ""
        for response, history in model.stream_chat(tokenizer, query, history=history, system=args.system,
                                                   max_new_tokens=args.max_new_tokens):
            if not isinstance(response, str):  # a ChatGLM3 / GLM-4 tool call: {"name", "parameters"}
                response = json.dumps(response, ensure_ascii=False)
            print(response[len(shown):] if response.startswith(shown) else "\n" + response, end="", flush=True)
            shown = response
        print()


def cmd_demo(args) -> int:
    from .demo import run
    return run(cache_dir=args.cache_dir)


COMMANDS = {"download": cmd_download, "cache": cmd_cache, "serve": cmd_serve, "run": cmd_run, "chat": cmd_chat,
            "demo": cmd_demo}

if __name__ == "__main__":
    sys.exit(main())
