"""`autoload chat MODEL`: chat with a causal LM in the terminal, replies streamed (/reset, /exit)."""

from __future__ import annotations

import json

from .options import add_model_hub_options, model_hub_kwargs


def add_parser(sub):
    p = sub.add_parser("chat", help="chat with a causal LM in the terminal (/reset, /exit)")
    p.add_argument("model", help="repo id or folder of a model with a chat template")
    p.add_argument("--system", help="system prompt")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--device")
    p.add_argument("--dtype")
    add_model_hub_options(p)
    return p


def main(args) -> int:
    from ..registry.auto import AutoModelForCausalLM, AutoTokenizer
    hub = model_hub_kwargs(args)
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
