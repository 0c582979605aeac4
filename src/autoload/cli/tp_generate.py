"""Tensor-parallel generation and chat under torchrun:

    torchrun --nproc-per-node 2 -m autoload.cli.tp_generate MODEL --prompt "The capital of France is"
    torchrun --nproc-per-node 2 -m autoload.cli.tp_generate MODEL --chat [--system "..."]

Every rank loads its slices of the model (`tp_plan="auto"`) and runs the same decoding loop (the logits are
gathered, so each rank picks the same token; every rank seeds the same, so sampling agrees too); rank 0 reads the
terminal and prints. On GPUs the process group is nccl and rank r uses cuda:LOCAL_RANK; on the CPU it is gloo.
"""

from __future__ import annotations

import argparse
import sys

from .options import add_model_hub_options, model_hub_kwargs


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="torchrun --nproc-per-node N -m autoload.cli.tp_generate",
                                description="Tensor-parallel generation or chat with a causal LM.")
    p.add_argument("model", help="repo id or folder")
    p.add_argument("--prompt", action="append", default=[], help="a prompt to continue (repeatable)")
    p.add_argument("--chat", action="store_true", help="chat in the terminal (rank 0 reads; /reset, /exit)")
    p.add_argument("--system", help="system prompt (chat)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding (prompts)")
    p.add_argument("--seed", type=int, default=0, help="the seed of every rank (sampling must agree)")
    p.add_argument("--tp-size", type=int, help="ranks per tensor-parallel group (default: all)")
    p.add_argument("--dtype", default="auto")
    add_model_hub_options(p)
    return p


def _broadcast(value, rank: int):
    import torch.distributed as dist
    box = [value if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.prompt and not args.chat:
        print("error: give --prompt TEXT (repeatable) or --chat", file=sys.stderr)
        return 2
    import torch
    import torch.distributed as dist

    from ..distributed.tensor_parallel import ensure_process_group, rank_device
    from ..registry.auto import AutoModelForCausalLM, AutoTokenizer
    ensure_process_group()
    rank = dist.get_rank()
    torch.manual_seed(args.seed)
    hub = model_hub_kwargs(args)
    tokenizer = AutoTokenizer.from_pretrained(args.model, **hub)
    model = AutoModelForCausalLM.from_pretrained(args.model, tp_plan="auto", tp_size=args.tp_size, dtype=args.dtype,
                                                 **hub)
    device = rank_device()
    for prompt in args.prompt:
        inputs = tokenizer(prompt, return_tensors="pt")
        ids = inputs["input_ids"].to(device)
        out = model.generate(ids, attention_mask=inputs["attention_mask"].to(device), do_sample=args.sample,
                             max_new_tokens=args.max_new_tokens)
        if rank == 0:
            print(prompt + tokenizer.decode(out[0, ids.shape[1]:].tolist(), skip_special_tokens=True), flush=True)
    if args.chat:
        _chat(model, tokenizer, args, rank)
    dist.barrier()
    dist.destroy_process_group()
    return 0


def _chat(model, tokenizer, args, rank: int) -> None:
    if rank == 0:
        print(f"Chatting with {args.model} over {model.tp_size} ranks. /reset clears the history, /exit quits.")
    history: list = []
    while True:
        query = None
        if rank == 0:
            try:
                query = input("user> ").strip()
            except EOFError:
                query = "/exit"
        query = _broadcast(query, rank)  # every rank runs the same turn
        if query in ("/exit", "/quit"):
            return
        if query == "/reset":
            history = []
            continue
        if not query:
            continue
        response, history = model.chat(tokenizer, query, history=history, system=args.system,
                                       max_new_tokens=args.max_new_tokens)
        if rank == 0:
            print(f"assistant> {response}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
