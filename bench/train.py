"""Training step throughput and peak memory: autoload vs transformers, with and without gradient checkpointing.

    python bench/train.py [--repeat 3] [--rounds 2] [--batch 4] [--seq 128] [--quick]

Checkpoints (random weights, fp32, made once with transformers into .bench/checkpoints/):
- llama-120m: LlamaForCausalLM, hidden 768, 12 layers, 12 heads, intermediate 2048, vocab 32000 (bench/generate.py's);
- bert-base: BertForMaskedLM, bert-base-chinese's shape (bench/load.py's).

A training step is forward (labels = the inputs: causal-LM / masked-LM loss) + backward + AdamW (lr 1e-4) +
zero_grad, on a batch of random token ids, in train mode. Each library and setting runs in its own fresh process:
one warm-up step (it allocates AdamW's state), then `--repeat` timed steps; the median is reported as tokens/s.
The two libraries' processes alternate for `--rounds` rounds and each keeps its fastest round (the 2-vCPU box here
is shared and noisy; its peak memory is that round's).
Peak memory is the growth of the process's resident set during the timed steps over the resident set after the
warm-up (/proc/self/status VmHWM after a reset, minus VmRSS): activations and gradients, not the weights or the
optimizer state, which both libraries hold alike. Gradient checkpointing is `model.gradient_checkpointing_enable()`
(autoload: "n/a" if the model lacks it). Ratios: throughput = transformers time / autoload time (above 1 = autoload
faster); memory = transformers peak / autoload peak (above 1 = autoload smaller). The losses of the first step
are compared (same weights, same batch, same seed before the step; dropout draws may differ in order).
--quick: 2-layer models, batch 2 x 64, 2 timed steps.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# the shared child runner (and checkpoint helpers) come from bench/load.py, imported as the package `bench`
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.generate import MAKE as MAKE_LLAMA, SHAPE as LLAMA_SHAPE  # noqa: E402
from bench.load import WORK, checkpoint, run  # noqa: E402

CHILD = """
import json, statistics, time, warnings, torch
warnings.simplefilter("ignore")
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
if {lib!r} == "autoload":
    import autoload as lib
else:
    import transformers as lib
    lib.logging.set_verbosity_error()
model = getattr(lib, {auto!r}).from_pretrained({path!r}, dtype=torch.float32)
if {checkpointing!r}:
    if not hasattr(model, "gradient_checkpointing_enable"):
        print(json.dumps(None)); raise SystemExit
    model.gradient_checkpointing_enable()
model.train()
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
ids = torch.randint(5, model.config.vocab_size, ({batch}, {seq}), generator=torch.Generator().manual_seed(0))
mask = torch.ones_like(ids)
def step():
    loss = model(input_ids=ids, attention_mask=mask, labels=ids).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()
torch.manual_seed(0)
first_loss = step()  # warm-up: allocates AdamW's state
rss_before = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current resident set
times = []
for _ in range({repeat}):
    t = time.perf_counter()
    step()
    times.append(time.perf_counter() - t)
print(json.dumps({{"median": statistics.median(times), "peak_growth": status("VmHWM:") - rss_before,
                   "loss": first_loss, "threads": torch.get_num_threads()}}))
"""

# the checkpoints, in the order they run
MODELS = ("llama-120m", "bert-base")


def llama_checkpoint(quick: bool) -> Path:
    shape = {**LLAMA_SHAPE, **(dict(num_hidden_layers=2) if quick else {})}
    path = WORK / ("llama-120m" + ("-quick" if quick else ""))
    if not (path / "config.json").exists():
        print(f"making {path} with transformers ...", flush=True)
        run(MAKE_LLAMA.format(shape=shape, path=str(path)))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="2-layer models, batch 2 x 64, 2 timed steps")
    args = parser.parse_args()
    batch, seq, repeat = (2, 64, 2) if args.quick else (args.batch, args.seq, args.repeat)
    import torch
    print(f"torch {torch.__version__} | {os.cpu_count()} CPUs | batch {batch} x {seq} tokens, fp32, AdamW, "
          f"median of {repeat} steps, best of {args.rounds} rounds{' | --quick: 2-layer models' if args.quick else ''}")
    print(f"\n{'model':11} {'ckpt':5} {'library':13} {'s/step':>8} {'tokens/s':>9} {'peak MiB':>9} {'loss':>9}")
    for name in MODELS:
        if name == "llama-120m":
            path, auto = llama_checkpoint(args.quick), "AutoModelForCausalLM"
        else:
            path, auto = checkpoint(name, args.quick)[0], "AutoModelForMaskedLM"
        for checkpointing in (False, True):
            results = {"transformers": None, "autoload": None}
            for _ in range(args.rounds):
                for lib in results:
                    r = json.loads(run(CHILD.format(lib=lib, auto=auto, path=str(path), batch=batch, seq=seq,
                                                    repeat=repeat, checkpointing=checkpointing)))
                    if r is not None and (results[lib] is None or r["median"] < results[lib]["median"]):
                        results[lib] = r
            for lib in results:
                r, gc = results[lib], "on" if checkpointing else "off"
                if r is None:
                    print(f"{name:11} {gc:5} {lib:13} {'n/a':>8} {'n/a':>9} {'n/a':>9} {'n/a':>9}")
                    continue
                print(f"{name:11} {gc:5} {lib:13} {r['median']:8.3f} {batch * seq / r['median']:9.0f} "
                      f"{r['peak_growth'] / 2**20:9.1f} {r['loss']:9.4f}")
            ours, ref = results["autoload"], results["transformers"]
            if ours is None:
                print(f"{'':11} {'':5} {'ratio':13} n/a (autoload has no gradient_checkpointing_enable)")
                continue
            memory = ref["peak_growth"] / ours["peak_growth"] if ours["peak_growth"] > 0 else float("nan")
            print(f"{'':11} {'':5} {'ratio':13} {ref['median'] / ours['median']:7.2f}x throughput, {memory:.2f}x "
                  f"memory (|loss difference| {abs(ours['loss'] - ref['loss']):.1e})")


if __name__ == "__main__":
    main()
