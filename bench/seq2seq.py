"""Seq2seq speed: autoload vs transformers on a t5-small shape and a bart-base shape (random weights, fp32).

    python bench/seq2seq.py [--repeat 3] [--new-tokens 32] [--source 64] [--rounds 2] [--quick]
                            [--device cpu|cuda] [--dtype float32|bfloat16|float16] [--compile]

The checkpoints are made once with transformers into .bench/checkpoints/ (t5-small: d_model 512, 6+6 layers,
8 heads, d_ff 2048, vocab 32128; bart-base: d_model 768, 6+6 layers, 12 heads, ffn 3072, vocab 50265). Each library
runs in its own fresh process: load time (from_pretrained, the median of --repeat loads), then for greedy and
beam-4 decoding at batch 1 and 8, one warm-up call and --repeat timed calls of generate(max_new_tokens=N) on an
S-token source with EOS stopping off (every row makes exactly N tokens, min_new_tokens=N); the median is
reported as new tokens/s (per returned sequence). The processes alternate for --rounds rounds; each case keeps
its better round (the 2-vCPU box is noisy). Ratios are transformers time / autoload time (above 1 = autoload
faster). The generated ids of both libraries are compared. --compile adds a third process, autoload's
generate(compile=True) (the decoder step compiled over a static self-attention cache), reported against
transformers' eager generate and autoload's eager one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.load import ROOT, run  # noqa: E402

SHAPES = {
    "t5-small": ("T5Config", "T5ForConditionalGeneration",
                 dict(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_decoder_layers=6,
                      num_heads=8, feed_forward_proj="relu", tie_word_embeddings=True, decoder_start_token_id=0)),
    "bart-base": ("BartConfig", "BartForConditionalGeneration",
                  dict(vocab_size=50265, d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
                       decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072,
                       max_position_embeddings=1024, forced_eos_token_id=None)),
}

MAKE = """
import torch, transformers
torch.manual_seed(0)
config = transformers.{config}(**{shape!r})
transformers.{cls}(config).save_pretrained({path!r})
"""

CHILD = """
import json, statistics, time, warnings, torch
warnings.simplefilter("ignore")
if {lib!r} in ("autoload", "autoload-compiled"):
    import autoload as lib
else:
    import transformers as lib
    lib.logging.set_verbosity_error()
loads = []
for _ in range({repeat}):
    t = time.perf_counter()
    model = lib.AutoModelForSeq2SeqLM.from_pretrained({path!r}, dtype=torch.{dtype})
    loads.append(time.perf_counter() - t)
model.eval().to({device!r})
vocab = model.config.vocab_size
sources = torch.randint(5, vocab, (8, {source}), generator=torch.Generator().manual_seed(0)).to({device!r})
sync = torch.cuda.synchronize if {device!r}.startswith("cuda") else (lambda: None)
common = dict(eos_token_id=None, forced_eos_token_id=None, max_new_tokens={new}, min_new_tokens={new})
modes = {{"greedy": dict(num_beams=1), "beam-4": dict(num_beams=4, early_stopping=False)}}
if {lib!r} == "autoload-compiled":  # the same cases through generate(compile=True)
    modes = {{mode: dict(options, compile=True) for mode, options in modes.items()}}

def timed(ids, options, runs):
    times, out = [], None
    for i in range(1 + runs):
        sync()
        t = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), **common, **options)
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:]), times[0], out

results = {{}}
for mode, options in modes.items():
    for batch in (1, 8):
        seconds, warmup, out = timed(sources[:batch], options, {repeat})
        results[f"{{mode}} b{{batch}}"] = dict(seconds=seconds, tokens_per_s=batch * {new} / seconds, warmup=warmup)
        torch.save(out.cpu(), {out!r}.replace(".pt", f"-{{mode}}-b{{batch}}.pt"))
print(json.dumps({{"results": results, "load": statistics.median(loads), "threads": torch.get_num_threads()}}))
"""


def checkpoint(name: str, quick: bool) -> Path:
    config, cls, shape = SHAPES[name]
    path = ROOT / ".bench" / "checkpoints" / (name + ("-quick" if quick else ""))
    if not (path / "config.json").exists():
        if quick:
            shape = dict(shape, **{k: 2 for k in ("num_layers", "num_decoder_layers", "encoder_layers",
                                                  "decoder_layers") if k in shape})
        print(f"making {path} with transformers ...", flush=True)
        run(MAKE.format(config=config, cls=cls, shape=shape, path=str(path)))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--source", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="fresh processes per library, alternating")
    parser.add_argument("--models", default="t5-small,bart-base")
    parser.add_argument("--quick", action="store_true", help="2+2-layer models, 1 timed run, 8 new tokens")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--compile", action="store_true",
                        help="a third process: autoload's generate(compile=True), greedy and beams")
    args = parser.parse_args()
    repeat, new, rounds = (1, 8, 1) if args.quick else (args.repeat, args.new_tokens, args.rounds)
    import torch
    libs = ("transformers", "autoload") + (("autoload-compiled",) if args.compile else ())
    for name in args.models.split(","):
        path = checkpoint(name, args.quick)
        results, loads, outputs = {lib: {} for lib in libs}, {lib: [] for lib in libs}, {}
        for _ in range(rounds):
            for lib in libs:
                out = ROOT / ".bench" / f"seq2seq-{name}-{lib}.pt"
                data = json.loads(run(CHILD.format(lib=lib, path=str(path), source=args.source, new=new,
                                                   repeat=repeat, out=str(out), device=args.device,
                                                   dtype=args.dtype)))
                loads[lib].append(data["load"])
                for case, r in data["results"].items():
                    best = results[lib].get(case)
                    results[lib][case] = r if best is None or r["seconds"] < best["seconds"] else best
                    if best is not None:  # the warm-up that compiles is the first round's
                        results[lib][case]["warmup"] = best["warmup"]
                outputs[lib] = {case: torch.load(str(out).replace(".pt", f"-{case.replace(' ', '-')}.pt"))
                                for case in data["results"]}
        print(f"\n{name}: torch {torch.__version__} | {os.cpu_count()} CPUs, {data['threads']} threads | "
              f"{args.device} {args.dtype} | source {args.source}, {new} new tokens, median of {repeat} calls, "
              f"best of {rounds} rounds")
        t_load, a_load = min(loads["transformers"]), min(loads["autoload"])
        print(f"load (from_pretrained)  transformers {t_load:.3f} s  autoload {a_load:.3f} s  "
              f"ratio {t_load / a_load:.2f}x")
        print(f"{'case':10} {'transformers tok/s':>19} {'autoload tok/s':>15} {'ratio':>7}  ids equal")
        for case in results["autoload"]:
            a, t = results["autoload"][case], results["transformers"][case]
            same = torch.equal(outputs["autoload"][case], outputs["transformers"][case])
            print(f"{case:10} {t['tokens_per_s']:19.1f} {a['tokens_per_s']:15.1f} {t['seconds'] / a['seconds']:6.2f}x"
                  f"  {same}")
        if args.compile:
            print("autoload generate(compile=True); warm-up = first call of round 1 (compiles, or loads inductor's "
                  "disk cache)")
            print(f"{'case':10} {'tokens/s':>9} {'warm-up s':>10} {'vs transformers':>16} {'vs eager':>9}  ids equal")
            for case, r in results["autoload-compiled"].items():
                eager, ref = results["autoload"][case], results["transformers"][case]
                same = torch.equal(outputs["autoload-compiled"][case], outputs["autoload"][case])
                print(f"{case:10} {r['tokens_per_s']:9.1f} {r['warmup']:10.1f} {ref['seconds'] / r['seconds']:15.2f}x "
                      f"{eager['seconds'] / r['seconds']:8.2f}x  {same}")


if __name__ == "__main__":
    main()
