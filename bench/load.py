"""Import time, from_pretrained wall time and peak memory: autoload vs transformers, side by side.

    python bench/load.py [--repeat 3] [--quick]

Checkpoints (random weights, made once with transformers into .bench/checkpoints/):
- bert-base: BertForMaskedLM, 110M parameters, bert-base-chinese's shape (vocab 21128), fp32;
- llama-0.5b: LlamaForCausalLM shaped like Qwen2-0.5B (hidden 896, 24 layers, vocab 151936, tied), bf16.

Every measurement runs in a fresh process: import time is the process-level `import X` cost; load time is
`from_pretrained` after the import; peak RSS growth is the resident-set peak during the load minus the
resident set before it (both read from /proc/self/status: VmHWM/VmRSS). The ratio column is
transformers/autoload (above 1 = autoload faster / smaller).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench" / "checkpoints"

MODELS = {
    "bert-base": ("BertConfig", "BertForMaskedLM", "AutoModelForMaskedLM", "float32",
                  dict(vocab_size=21128, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                       intermediate_size=3072)),
    "llama-0.5b": ("LlamaConfig", "LlamaForCausalLM", "AutoModelForCausalLM", "bfloat16",
                   dict(vocab_size=151936, hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                        num_key_value_heads=2, intermediate_size=4864, tie_word_embeddings=True,
                        max_position_embeddings=4096)),
}
QUICK = {"bert-base": dict(num_hidden_layers=2), "llama-0.5b": dict(num_hidden_layers=2)}

MAKE = """
import sys, torch, transformers
torch.manual_seed(0)
config = getattr(transformers, {config!r})(**{kwargs!r})
model = getattr(transformers, {cls!r})(config).to(getattr(torch, {dtype!r}))
model.save_pretrained({path!r})
"""

CHILD = """
import json, sys, time
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
t0 = time.perf_counter()
if {lib!r} == "autoload":
    import autoload as lib
else:
    import transformers as lib
import torch
t1 = time.perf_counter()
rss_before = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current resident set
model = getattr(lib, {auto!r}).from_pretrained({path!r})
t2 = time.perf_counter()
print(json.dumps({{"import": t1 - t0, "load": t2 - t1, "peak_growth": status("VmHWM:") - rss_before,
                   "params": sum(p.numel() for p in model.parameters())}}))
"""

IMPORT = "import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"


def run(code: str) -> str:
    """Run `code` in a fresh Python (autoload from src/, offline, quiet, cwd = repo root); its last stdout line."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error",
               HF_HUB_DISABLE_PROGRESS_BARS="1", TOKENIZERS_PARALLELISM="false")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    lines = out.stdout.strip().splitlines()
    return lines[-1] if lines else ""


def checkpoint(name: str, quick: bool) -> tuple[Path, int]:
    config, cls, _, dtype, kwargs = MODELS[name]
    kwargs = {**kwargs, **(QUICK[name] if quick else {})}
    path = WORK / (name + ("-quick" if quick else ""))
    if not (path / "config.json").exists():
        print(f"making {path} with transformers ...", flush=True)
        run(MAKE.format(config=config, kwargs=kwargs, cls=cls, dtype=dtype, path=str(path)))
    size = sum(f.stat().st_size for f in path.glob("*.safetensors"))
    return path, size


def median(values):
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2-layer versions of the models, 1 repeat")
    args = parser.parse_args()
    repeat = 1 if args.quick else args.repeat
    import torch
    import transformers
    print(f"python {sys.version.split()[0]} | torch {torch.__version__} | transformers {transformers.__version__} | "
          f"{os.cpu_count()} CPUs | median of {repeat} fresh processes per cell")

    imports = {}
    for lib, stmt in (("autoload", "import autoload; from autoload import AutoModel, AutoTokenizer"),
                      ("transformers", "import transformers; from transformers import AutoModel, AutoTokenizer")):
        imports[lib] = median([float(run(IMPORT.format(stmt=stmt))) for _ in range(max(3, repeat))])
    print("\nimport (process-level, `from X import AutoModel, AutoTokenizer`):")
    print(f"  autoload {imports['autoload'] * 1000:8.1f} ms   transformers {imports['transformers'] * 1000:8.1f} ms"
          f"   ratio {imports['transformers'] / imports['autoload']:.1f}x")

    print(f"\n{'model':12} {'checkpoint':>11} {'library':13} {'load s':>8} {'peak RSS growth':>16} {'/ckpt':>6}")
    for name in MODELS:
        path, size = checkpoint(name, args.quick)
        auto = MODELS[name][2]
        results = {}
        for i in range(repeat):
            for lib in (("autoload", "transformers") if i % 2 == 0 else ("transformers", "autoload")):
                results.setdefault(lib, []).append(json.loads(run(CHILD.format(lib=lib, auto=auto, path=str(path)))))
        for lib in ("autoload", "transformers"):
            load = median([r["load"] for r in results[lib]])
            peak = median([r["peak_growth"] for r in results[lib]])
            print(f"{name:12} {size / 1e6:9.0f}MB {lib:13} {load:8.3f} {peak / 1e6:14.0f}MB {peak / size:6.2f}")
        a = median([r["load"] for r in results["autoload"]])
        t = median([r["load"] for r in results["transformers"]])
        pa = median([r["peak_growth"] for r in results["autoload"]])
        pt = median([r["peak_growth"] for r in results["transformers"]])
        print(f"{'':12} {'':11} {'ratio':13} {t / a:7.1f}x {pt / max(pa, 1):15.1f}x")


if __name__ == "__main__":
    main()
