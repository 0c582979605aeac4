"""Helpers of the decoder parity tests (Llama, Mistral, Qwen2, Qwen3): tiny reference configs, a reference
model saved to a folder and loaded back by autoload, inputs with left/right padding, and comparisons."""

from __future__ import annotations

import importlib

import torch
import transformers

import model_cases

PREFIX = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3"}
TASKS = ("Model", "ForCausalLM", "ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering")
VOCAB = 99
PAD = 0


def tiny_config(family: str, **overrides):
    """A transformers config small enough for CPU tests (2 layers, hidden 32, vocab 99)."""
    values = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, pad_token_id=PAD,
                  rms_norm_eps=1e-6, initializer_range=0.2)
    if family == "mistral":
        values["sliding_window"] = None
    if family == "qwen3":
        values["head_dim"] = 16
    values.update(overrides)
    return getattr(transformers, f"{PREFIX[family]}Config")(**values)


def reference_class(family: str, task: str):
    return getattr(transformers, f"{PREFIX[family]}{task}")


def our_class(family: str, task: str):
    return getattr(importlib.import_module("autoload.models.llama"), f"{PREFIX[family]}{task}")  # the family's file


def make_pair(tmp_path, family: str, task: str, config=None, seed: int = 0, dtype=None, attn="sdpa", **save_kw):
    """(reference, ours, folder): a randomly initialised reference model saved to tmp_path, and autoload's load."""
    folder = tmp_path / f"{family}-{task}-{seed}"
    ref, ours = model_cases.make_pair(folder, reference_class(family, task), our_class(family, task),
                                      config if config is not None else tiny_config(family), attn=attn, dtype=dtype,
                                      seed=seed, reload=False, **save_kw)
    return ref, ours, folder


def batch(b: int = 3, t: int = 9, padding: str | None = "left", seed: int = 1):
    """(input_ids, attention_mask): random ids in 1..VOCAB-1; row i has min(2i, t-2) pad tokens on the given side."""
    return model_cases.padded_batch(b, t, padding, [min(2 * i, t - 2) for i in range(b)], VOCAB, seed=seed)


def close(ours, ref, atol=1e-4, mask=None):
    """Compare two tensors (optionally only at positions where mask (B, T) is 1)."""
    if mask is not None:
        keep = mask.bool()
        ours, ref = ours[keep], ref[keep]
    torch.testing.assert_close(ours, ref, atol=atol, rtol=0)


def close_bf16(ours, ref):
    scale = ref.float().abs().max().item()
    torch.testing.assert_close(ours.float(), ref.float(), atol=2e-2 * max(scale, 1.0), rtol=0)


@torch.no_grad()
def cached_decode(model, ids, mask, prefill: int, cache=None):
    """Prefill `prefill` tokens, then one token at a time with the cache; positions follow left padding
    (cumsum(mask) - 1). Returns the per-step logits stacked as (B, T, V)."""
    positions = mask.cumsum(-1) - 1
    out = model(ids[:, :prefill], attention_mask=mask[:, :prefill], position_ids=positions[:, :prefill],
                use_cache=True, past_key_values=cache)
    cache = out.past_key_values
    logits = [out.logits]
    for t in range(prefill, ids.shape[1]):
        out = model(ids[:, t:t + 1], attention_mask=mask[:, :t + 1], position_ids=positions[:, t:t + 1],
                    past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        logits.append(out.logits)
    return torch.cat(logits, dim=1)


@torch.no_grad()
def full_forward(model, ids, mask):
    return model(ids, attention_mask=mask, position_ids=mask.cumsum(-1) - 1, use_cache=False).logits
