"""Quantized inference: weight-only int4/int8 kernels vs float matmuls (and, to come, real GGUF/GPTQ models).

    python bench/quantized.py kernels [--quick] [--repeat 20] [--threads N] [--device cpu|cuda] [--lm-head]

`kernels`: one decode step at batch 1 through a Qwen2.5-0.5B-shaped stack of Linear layers (24 blocks of
q 896x896, k/v 128x896, o 896x896, gate/up 4864x896, down 896x4864; `--lm-head` adds the 151936x896 output
layer), each layer called once per step on a (1, in) activation. Variants: fp32 and bf16 `F.linear`, `Int8Linear`
(per-channel, `_weight_int8pack_mm`), `Int4Linear` with groups of 32/64/128/256 (`_weight_int4pack_mm*`), each
over fp32 and bf16 activations. Reported: ms per step (median of `--repeat` after 3 warm-ups), the weight bytes
read per step and the implied GB/s (memory-bound at batch 1: higher is better, the machine's bandwidth is the
ceiling). `--quick`: 2 blocks of 1/8 width, 3 repeats (a smoke run; numbers mean nothing).

`models`: the two real GGUF files (SmolLM2-135M-Instruct Q4_1, Qwen2.5-Coder-0.5B-Instruct Q4_K_M; pinned data
packages, see tests/gguf_data.py), each variant in its own process: transformers' gguf path (dequantized to
fp32) vs autoload's default load, `dtype=float32`, `dtype=bfloat16` and float32 + `quantize="int4"` (bf16 int4
matmuls): load time and batch-1 greedy decode tokens/s, with ratios to transformers and whether the generated
ids equal transformers'. When llama-cpp-python is installed (a source package: `pip install llama-cpp-python`
builds llama.cpp), llama.cpp runs the same file with the same thread count as the physical anchor.

    python bench/quantized.py models [--threads 2] [--new-tokens 32] [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

QWEN05 = dict(hidden=896, kv=128, intermediate=4864, layers=24, vocab=151936)


def stack_shapes(quick: bool, lm_head: bool) -> list[tuple[int, int]]:
    """(out, in) of every Linear a decode step runs through, in order."""
    s = {k: (v // 8 if quick and k != "layers" else v) for k, v in QWEN05.items()}
    layers = 2 if quick else s["layers"]
    h, kv, i = s["hidden"], s["kv"], s["intermediate"]
    block = [(h, h), (kv, h), (kv, h), (h, h), (i, h), (i, h), (h, i)]
    return block * layers + ([(s["vocab"], h)] if lm_head else [])


def build(variant: str, shapes, device: str) -> list[nn.Module]:
    from autoload.quant.linear import Int4Linear, Int8Linear, quantize_int4, quantize_int8
    g = torch.Generator().manual_seed(0)
    layers = []
    for out_features, in_features in shapes:
        w = torch.randn(out_features, in_features, generator=g) * 0.02
        if variant in ("fp32", "bf16"):
            layer = nn.Linear(in_features, out_features, bias=False)
            layer.weight.data = w.to(torch.float32 if variant == "fp32" else torch.bfloat16)
        elif variant == "int8":
            layer = Int8Linear.from_symmetric(*quantize_int8(w))
        else:
            group = int(variant.split("-g")[1])
            layer = Int4Linear.from_affine(*quantize_int4(w, group), group)
        layers.append(layer.to(device))
    return layers


def weight_bytes(layers) -> int:
    total = 0
    for layer in layers:
        if hasattr(layer, "pack"):
            layer.pack()
        total += sum(t.numel() * t.element_size() for t in layer.buffers()) + \
            sum(p.numel() * p.element_size() for p in layer.parameters())
    return total


def time_step(layers, shapes, dtype, device: str, repeat: int) -> float:
    """Median seconds of one pass over the stack at batch 1 (every layer gets a fresh (1, in) activation)."""
    xs = {k: torch.randn(1, k, device=device, dtype=dtype) for _, k in shapes}
    times = []
    with torch.inference_mode():
        for i in range(3 + repeat):
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            for layer, (_, k) in zip(layers, shapes):
                layer(xs[k])
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
    return statistics.median(times[3:])


def kernels(args) -> None:
    shapes = stack_shapes(args.quick, args.lm_head)
    repeat = 3 if args.quick else args.repeat
    params = sum(o * i for o, i in shapes)
    print(f"torch {torch.__version__} | {torch.get_num_threads()} threads | {args.device} | {len(shapes)} Linear "
          f"layers, {params / 1e6:.1f}M weights | batch 1, median of {repeat}")
    print(f"\n{'weights':10} {'activations':12} {'ms/step':>9} {'MB read':>9} {'GB/s':>7}")
    variants = ["fp32", "bf16", "int8", "int4-g32", "int4-g64", "int4-g128", "int4-g256"]
    for variant in variants:
        layers = build(variant, shapes, args.device)
        nbytes = weight_bytes(layers)
        acts = [torch.bfloat16] if variant == "bf16" else [torch.float32] if variant == "fp32" else \
            [torch.float32, torch.bfloat16]
        for dtype in acts:
            seconds = time_step(layers, shapes, dtype, args.device, repeat)
            print(f"{variant:10} {str(dtype).replace('torch.', ''):12} {seconds * 1e3:9.2f} {nbytes / 1e6:9.1f} "
                  f"{nbytes / seconds / 1e9:7.1f}")
        del layers


MODEL_CHILD = """
import json, statistics, sys, time, warnings, torch
warnings.simplefilter("ignore")
torch.set_num_threads({threads})
path, variant = {path!r}, {variant!r}
if variant == "transformers":
    import transformers as lib
    lib.logging.set_verbosity_error()
    kwargs = dict(dtype=torch.float32)
else:
    import autoload as lib
    from autoload.quant.quantize import set_compute_dtype
    kwargs = dict(default={{}}, fp32=dict(dtype=torch.float32), bf16=dict(dtype=torch.bfloat16),
                  int4=dict(dtype=torch.float32, quantize="int4"))[variant]
folder, name = path.rsplit("/", 1)
t = time.perf_counter()
model = lib.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, **kwargs).eval()
load = time.perf_counter() - t
if variant == "int4":
    set_compute_dtype(model, torch.bfloat16)  # torch's fast CPU int4 kernel is its bf16 one
ids = torch.tensor([[9707, 11, 1879, 0, 220, 109, 13, 576, 358]])
options = dict(max_new_tokens={new}, min_new_tokens={new}, do_sample=False)
with torch.inference_mode():
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=2, do_sample=False)
    times = []
    for _ in range({repeat}):
        t = time.perf_counter()
        out = model.generate(ids, attention_mask=torch.ones_like(ids), **options)
        times.append(time.perf_counter() - t)
print(json.dumps(dict(load=load, tokens_per_s={new} / statistics.median(times), ids=out[0, -{new}:].tolist())))
"""


LLAMA_CPP_CHILD = """
import json, statistics, time
import llama_cpp
path, threads, new, repeat = {path!r}, {threads}, {new}, {repeat}
t = time.perf_counter()
llm = llama_cpp.Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=256, verbose=False)
load = time.perf_counter() - t
prompt = [9707, 11, 1879, 0, 220, 109, 13, 576, 358]


def greedy(count):
    llm.reset()
    out = []
    for token in llm.generate(prompt, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
        out.append(int(token))
        if len(out) == count:
            return out


greedy(2)
times = []
for _ in range(repeat):
    t = time.perf_counter()
    ids = greedy(new)
    times.append(time.perf_counter() - t)
print(json.dumps(dict(load=load, tokens_per_s=new / statistics.median(times), ids=ids,
                      version=llama_cpp.__version__)))
"""


def models(args) -> None:
    """Load time and batch-1 decode tokens/s on the two real GGUF files, each variant in its own process:
    transformers' gguf path (dequantized to fp32) vs autoload's default load, dtype=float32, dtype=bfloat16,
    and float32 + quantize="int4" with bf16 int4 matmuls."""
    import json
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    sys.path[:0] = [str(root), str(root / "tests")]
    from bench.load import run
    from gguf_data import qwen_gguf, smollm2_gguf  # the pinned data packages, sha256-checked
    threads = args.threads or torch.get_num_threads()
    new = 8 if args.quick else args.new_tokens
    repeat = 1 if args.quick else 3
    for path in (smollm2_gguf(), qwen_gguf()):
        print(f"\n{path.name}: torch {torch.__version__}, {threads} threads, prompt 9, {new} new tokens (greedy), "
              f"median of {repeat}")
        print(f"{'variant':28} {'load s':>8} {'tokens/s':>9} {'load vs tf':>11} {'tok/s vs tf fp32':>17}  ids = tf")
        results = {}
        variants = ["transformers", "default", "fp32", "bf16", "int4"]
        if importlib.util.find_spec("llama_cpp") is not None:
            variants.append("llama.cpp")
        for variant in variants:
            child = LLAMA_CPP_CHILD if variant == "llama.cpp" else MODEL_CHILD
            results[variant] = json.loads(run(child.format(threads=threads, path=str(path), variant=variant,
                                                           new=new, repeat=repeat)))
            r, ref = results[variant], results["transformers"]
            label = {"transformers": "transformers (fp32)", "default": "autoload default",
                     "fp32": "autoload dtype=float32", "bf16": "autoload dtype=bfloat16",
                     "int4": "autoload quantize='int4'"}.get(variant, f"llama.cpp {r.get('version', '')}")
            print(f"{label:28} {r['load']:8.2f} {r['tokens_per_s']:9.1f} {ref['load'] / r['load']:10.1f}x "
                  f"{r['tokens_per_s'] / ref['tokens_per_s']:16.2f}x  {r['ids'] == ref['ids']}", flush=True)
        if "llama.cpp" not in results:
            print("llama.cpp: not measured (llama-cpp-python is not installed; `pip install llama-cpp-python` builds "
                  "it from source)")
        else:
            default, cpp = results["default"], results["llama.cpp"]
            print(f"autoload default vs llama.cpp: load {cpp['load'] / default['load']:.2f}x, "
                  f"tokens/s {default['tokens_per_s'] / cpp['tokens_per_s']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("section", choices=["kernels", "models"], nargs="?", default="kernels")
    parser.add_argument("--new-tokens", type=int, default=32, help="models: new tokens per call")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--lm-head", action="store_true", help="add the 151936 x 896 output layer")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.section == "kernels":
        kernels(args)
    else:
        models(args)


if __name__ == "__main__":
    main()
