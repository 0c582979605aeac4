"""Tensor parallel over N ranks vs one process: load time per rank, peak RSS per rank, tokens/s.

    python bench/distributed.py --quick          # a tiny model, one run: a smoke check
    python bench/distributed.py [--ranks 2] [--new-tokens 64] [--repeat 3] [--dtype float32]

The checkpoint (random weights, a Llama of about 0.4B parameters: hidden 1024, 16 layers, vocab 32000, untied;
`--quick`: 2 layers, hidden 256) is made once with autoload into .bench/checkpoints/. Each run is a fresh set of
processes: one `python` for the single process, `torchrun --nproc-per-node N` (through `python -m
torch.distributed.run`) for tensor parallel, gloo on the CPU, nccl with one GPU per rank when CUDA is visible.
Every process measures for itself and writes JSON:
- load: `from_pretrained` wall time (tp_plan="auto" on the ranks: the mesh, the plan, the slices), after torch
  and autoload are imported and, on the ranks, after the process group is up and torch's DTensor modules are
  imported (with torch._dynamo, which DTensor pulls in: about 50 MB of RSS and 1-3 s, paid once per
  process, left out of both figures);
- peak RSS growth: VmHWM after the load and the decode minus VmRSS before the load (/proc/self/status);
- tokens/s: greedy decoding of `--new-tokens` tokens after a 16-token prompt (batch 1), after one warm-up call;
  the median of `--repeat` calls.
The table shows the median over ranks of each figure (and the largest rank's RSS).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench" / "checkpoints"
FULL = dict(vocab_size=32000, hidden_size=1024, intermediate_size=4096, num_hidden_layers=16, num_attention_heads=16,
            num_key_value_heads=8, tie_word_embeddings=False, max_position_embeddings=2048)
QUICK = dict(FULL, hidden_size=256, intermediate_size=512, num_hidden_layers=2, vocab_size=4096)


def make_checkpoint(quick: bool) -> Path:
    path = WORK / ("tp-llama-quick" if quick else "tp-llama-0.4b")
    if (path / "model.safetensors").exists() or (path / "model.safetensors.index.json").exists():
        return path
    import torch

    from autoload.models.configs import LlamaConfig
    from autoload.models.llama import LlamaForCausalLM
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**(QUICK if quick else FULL))).save_pretrained(path)
    return path


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def child(args) -> None:
    """One process (or one rank): load, decode, write its JSON to args.out/rank{r}.json."""
    import time

    import torch

    import autoload
    tp = args.mode == "tp"
    if tp:  # the process group and torch's DTensor modules are set up before anything is measured
        import torch._dynamo  # noqa: F401 - DTensor's first distribute_tensor imports it (seconds, ~50 MB)
        import torch.distributed.tensor.parallel  # noqa: F401

        from autoload.distributed.tensor_parallel import ensure_process_group
        ensure_process_group()
    rss_before = _status("VmRSS:")
    t0 = time.perf_counter()
    if tp:
        model = autoload.AutoModelForCausalLM.from_pretrained(args.model, tp_plan="auto", dtype=args.dtype)
        from autoload.distributed.tensor_parallel import rank_device
        device = rank_device()
    else:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model = autoload.AutoModelForCausalLM.from_pretrained(args.model, dtype=args.dtype, device=device)
    load = time.perf_counter() - t0
    torch.manual_seed(0)
    ids = torch.randint(3, 1000, (1, 16), device=device)
    kw = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False)
    model.generate(ids, **kw)  # warm-up
    speeds = []
    for _ in range(args.repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = model.generate(ids, **kw)
        if device.type == "cuda":
            torch.cuda.synchronize()
        speeds.append((out.shape[1] - ids.shape[1]) / (time.perf_counter() - t0))
    rank = int(os.environ.get("RANK", 0))
    result = {"load_s": load, "rss_growth": _status("VmHWM:") - rss_before, "tokens_s": statistics.median(speeds),
              "ids": out[0].tolist()}
    Path(args.out, f"rank{rank}.json").write_text(json.dumps(result))
    if tp:
        import torch.distributed as dist
        dist.destroy_process_group()


def run(mode: str, ranks: int, model: Path, args) -> list[dict]:
    with tempfile.TemporaryDirectory() as out:
        common = [str(Path(__file__).resolve()), "--child", mode, "--model", str(model), "--out", out,
                  "--new-tokens", str(args.new_tokens), "--repeat", str(args.repeat), "--dtype", args.dtype]
        if mode == "tp":
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks), "--master-port",
                   str(args.port), *common]
        else:
            cmd = [sys.executable, *common]
        env = dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // ranks)))
        subprocess.run(cmd, check=True, env=env, cwd=ROOT)
        return [json.loads(Path(out, f"rank{r}.json").read_text()) for r in range(ranks)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a tiny model and one timed call")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--port", type=int, default=29611)
    p.add_argument("--child", choices=["one", "tp"], dest="mode", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    if args.mode:
        child(args)
        return
    if args.quick:
        args.new_tokens, args.repeat = min(args.new_tokens, 8), 1
    model = make_checkpoint(args.quick)
    size = sum(f.stat().st_size for f in model.glob("*.safetensors"))
    print(f"checkpoint {model.name}: {size / 1e6:.1f} MB; {args.new_tokens} new tokens, {args.dtype}")
    one = run("one", 1, model, args)
    tp = run("tp", args.ranks, model, args)
    same = all(r["ids"] == one[0]["ids"] for r in tp)
    print(f"{'':24}{'load s':>10}{'peak RSS MB':>14}{'max RSS MB':>12}{'tokens/s':>10}")
    for label, rows in (("1 process", one), (f"tensor parallel x{args.ranks}", tp)):
        med = {k: statistics.median(r[k] for r in rows) for k in ("load_s", "rss_growth", "tokens_s")}
        print(f"{label:24}{med['load_s']:>10.2f}{med['rss_growth'] / 1e6:>14.1f}"
              f"{max(r['rss_growth'] for r in rows) / 1e6:>12.1f}{med['tokens_s']:>10.1f}")
    print(f"greedy ids equal to one process on every rank: {same}")


if __name__ == "__main__":
    main()
