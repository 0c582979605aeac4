"""Tiny GGUF files for the tests, written with the `gguf` package's own writer and tensor-name map.

`write_model_gguf` converts a tiny random transformers model the way llama.cpp's converter does (gguf's
name map, q/k rows permuted for llama, gemma norms stored as 1 + w) and adds a tokenizer: a byte-level BPE
vocabulary ("gpt2") or a SentencePiece-style one ("llama"). Both autoload and transformers then read the
same file, so their configs, tokenizers and logits can be compared.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import torch
from gguf.quants import quantize

Q = gguf.GGMLQuantizationType
BYTE_LEVEL_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def byte_level_vocab():
    """(tokens, merges, types): GPT-2's 256 byte characters, a few merges, three control tokens and <think>."""
    from autoload.tokenization.tiktoken_ranks import bytes_to_unicode
    chars = list(bytes_to_unicode().values())
    merges = ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "ä ½"]
    tokens = chars + [m.replace(" ", "") for m in merges] + BYTE_LEVEL_SPECIALS + ["<think>"]
    types = [1] * (len(tokens) - 4) + [3, 3, 3, 4]
    return tokens, merges, types


def sentencepiece_vocab():
    """(tokens, scores, types): <unk> <s> </s>, 256 byte-fallback tokens, pieces with scores, no merges."""
    pieces = ["▁", "e", "h", "l", "o", "w", "r", "d", "i", "ll", "▁h", "he", "▁he", "▁hell", "▁hello", "▁w",
              "or", "▁wor", "▁world", "▁hi", "ld", "  "]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)] + pieces
    scores = [0.0] * 259 + [-float(i) for i in range(len(pieces))]
    types = [2, 3, 3] + [6] * 256 + [1] * len(pieces)
    return tokens, scores, types


def _arch_enum(arch: str):
    return next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's converter: HF rotary halves -> interleaved pairs, per head."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path: Path, arch: str, metadata: dict, tensors: dict, tokenizer: str = "gpt2",
               add_bos: bool | None = None) -> Path:
    """tensors: {gguf name: (float32 array, ggml type)} (or (uint8 bytes, type) for pre-made blocks)."""
    writer = gguf.GGUFWriter(str(path), arch)
    for key, value in metadata.items():
        if isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        else:
            writer.add_string(key, value)
    if tokenizer == "gpt2":
        tokens, merges, types = byte_level_vocab()
        writer.add_tokenizer_model("gpt2")
        writer.add_string("tokenizer.ggml.pre", "qwen2" if arch == "qwen2" else "smollm")
        writer.add_token_list(tokens)
        writer.add_token_merges(merges)
        writer.add_token_types(types)
        specials = {"bos": tokens.index("<|im_start|>"), "eos": tokens.index("<|im_end|>"),
                    "padding": tokens.index("<|endoftext|>")}
    else:
        tokens, scores, types = sentencepiece_vocab()
        writer.add_tokenizer_model("llama")
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
        specials = {"bos": 1, "eos": 2, "unknown": 0}
    for name, token_id in specials.items():
        writer.add_uint32(f"tokenizer.ggml.{name}_token_id", token_id)
    if add_bos is not None:
        writer.add_bool("tokenizer.ggml.add_bos_token", add_bos)
    writer.add_string("tokenizer.chat_template", CHAT_TEMPLATE)
    for name, (array, qtype) in tensors.items():
        if array.dtype == np.uint8:
            writer.add_tensor(name, array, raw_dtype=qtype)
        elif qtype == Q.F32:
            writer.add_tensor(name, np.ascontiguousarray(array, dtype=np.float32))
        else:
            writer.add_tensor(name, quantize(array.astype(np.float32), qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def vocab_size(tokenizer: str) -> int:
    return len(byte_level_vocab()[0] if tokenizer == "gpt2" else sentencepiece_vocab()[0])


def write_model_gguf(path: Path, arch: str, model, *, linear_type=Q.F32, embed_type=Q.F32,
                     tokenizer: str = "gpt2", name: str = "tiny") -> Path:
    """A transformers model (tiny, random) as a GGUF file of `arch`, its 2-D weights stored as `linear_type`."""
    cfg = model.config
    meta = {"general.name": name, f"{arch}.context_length": cfg.max_position_embeddings,
            f"{arch}.block_count": cfg.num_hidden_layers, f"{arch}.feed_forward_length": cfg.intermediate_size,
            f"{arch}.embedding_length": cfg.hidden_size, f"{arch}.attention.head_count": cfg.num_attention_heads,
            f"{arch}.attention.head_count_kv": cfg.num_key_value_heads,
            f"{arch}.attention.layer_norm_rms_epsilon": float(cfg.rms_norm_eps),
            f"{arch}.rope.freq_base": float(cfg.rope_parameters.get("rope_theta")
                                           or cfg.rope_parameters["full_attention"]["rope_theta"])}
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    if arch == "llama":
        meta[f"{arch}.rope.dimension_count"] = head_dim
    if arch in ("gemma2", "gemma3", "qwen3"):
        meta[f"{arch}.attention.key_length"] = head_dim
        meta[f"{arch}.attention.value_length"] = head_dim
    if arch in ("gemma2", "gemma3"):
        meta[f"{arch}.attention.sliding_window"] = cfg.sliding_window
    names = gguf.get_tensor_name_map(_arch_enum(arch), cfg.num_hidden_layers)
    tensors = {}
    for key, value in model.state_dict().items():
        if key == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        stem, _, suffix = key.rpartition(".")
        target = names.get_name(stem)
        assert target is not None, key
        w = value.detach().float().numpy()
        if arch == "llama" and target.endswith(("attn_q", "attn_k")):
            w = _permute(w, cfg.num_attention_heads if target.endswith("attn_q") else cfg.num_key_value_heads)
        if arch in ("gemma2", "gemma3") and target.endswith("norm"):
            w = w + 1.0
        qtype = Q.F32 if w.ndim == 1 else (embed_type if target == "token_embd" else linear_type)
        tensors[f"{target}.{suffix}"] = (w, qtype)
    return write_gguf(path, arch, meta, tensors, tokenizer)


def random_blocks(type_name: str, rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """Random blocks of a ggml type with finite, small fp16 scale fields (gguf cannot quantize k-quants)."""
    qtype = Q[type_name]
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (rows * cols // block, size), dtype=np.uint8)
    halves = {"Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}.get(type_name, (0,))
    if type_name == "Q4_1":
        halves = (0, 2)
    for start in halves:
        values = (rng.standard_normal(len(data)) * 0.01).astype(np.float16)
        data[:, start:start + 2] = values.view(np.uint8).reshape(-1, 2)
    return data.reshape(rows, -1)


def to_tensor(blocks: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(blocks))
