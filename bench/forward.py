"""Forward throughput at batch 8 x 128 tokens: autoload vs transformers on the same checkpoints.

    python bench/forward.py [--repeat 5] [--quick]

Uses the checkpoints bench/load.py makes (.bench/checkpoints/), both loaded in fp32. Each library runs in its
own fresh process: 2 warm-up passes, then `--repeat` timed passes under torch.inference_mode(); the median is
reported as tokens/s, and the ratio is autoload/transformers (above 1 = autoload faster). Outputs of the two
libraries are compared on the same input (max abs difference of the logits).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# the shared child runner (and checkpoint helpers) come from bench/load.py, imported as the package `bench`
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.load import MODELS, ROOT, checkpoint, run  # noqa: E402

CHILD = """
import json, statistics, time, torch
torch.manual_seed(0)
if {lib!r} == "autoload":
    import autoload as lib
else:
    import transformers as lib
model = getattr(lib, {auto!r}).from_pretrained({path!r}, dtype=torch.float32)
vocab = model.config.vocab_size
ids = torch.randint(5, vocab, (8, 128), generator=torch.Generator().manual_seed(0))
mask = torch.ones_like(ids)
times = []
with torch.inference_mode():
    for i in range(2 + {repeat}):
        t = time.perf_counter()
        logits = model(input_ids=ids, attention_mask=mask).logits
        times.append(time.perf_counter() - t)
torch.save(logits[:, -4:].clone(), {out!r})
print(json.dumps({{"median": statistics.median(times[2:]), "threads": torch.get_num_threads()}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2-layer models, 2 passes")
    args = parser.parse_args()
    repeat = 2 if args.quick else args.repeat
    import torch
    print(f"torch {torch.__version__} | {os.cpu_count()} CPUs | batch 8 x 128 tokens, fp32, median of {repeat}")
    print(f"\n{'model':12} {'library':13} {'s/pass':>8} {'tokens/s':>10}")
    for name in MODELS:
        path, _ = checkpoint(name, args.quick)
        auto = MODELS[name][2]
        results, logits = {}, {}
        for lib in ("transformers", "autoload"):
            out = ROOT / ".bench" / f"logits-{lib}.pt"
            results[lib] = json.loads(run(CHILD.format(lib=lib, auto=auto, path=str(path), repeat=repeat,
                                                       out=str(out))))
            logits[lib] = torch.load(out)
            print(f"{name:12} {lib:13} {results[lib]['median']:8.3f} {8 * 128 / results[lib]['median']:10.0f}")
        diff = (logits["autoload"] - logits["transformers"]).abs().max().item()
        ratio = results["transformers"]["median"] / results["autoload"]["median"]
        print(f"{'':12} {'ratio':13} {ratio:7.2f}x   (max |logits difference| {diff:.2e})")


if __name__ == "__main__":
    main()
