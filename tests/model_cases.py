"""Helpers shared by the model parity tests: a random reference model (transformers, the oracle) saved to a folder
and loaded back by both libraries, padded batches (an encoder's too), labels for the common heads, and output
comparisons that look both ways (a field set on one side only is a failure)."""

from __future__ import annotations

import torch
from torch.testing import assert_close

TENSOR_KEYS = ("loss", "last_hidden_state", "pooler_output", "logits", "prediction_logits", "seq_relationship_logits",
               "start_logits", "end_logits")


def perturb_(model: torch.nn.Module, seed: int = 0, scale: float = 0.1) -> None:
    """Move every parameter (tied ones once) off its init, so LayerNorm 1/0 and zero biases are tested too."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


def make_pair(folder, reference_class, our_class, config, *, attn: str = "sdpa", dtype=None, seed: int = 0,
              prepare=None, reload: bool = True, **save_kw):
    """(reference, ours): `reference_class(config)` built under `seed` (then `prepare(model)`, e.g. to move its
    weights off their init), saved to `folder`; with `reload` the reference is loaded back from the folder (with
    `dtype`), and autoload's `our_class` loads the same folder. Both come back in eval mode."""
    config._attn_implementation = attn
    torch.manual_seed(seed)
    ref = reference_class(config)
    if prepare is not None:
        prepare(ref)
    ref.save_pretrained(folder, **save_kw)
    kwargs = {"attn_implementation": attn, **({} if dtype is None else {"dtype": dtype})}
    if reload or dtype is not None:
        ref = reference_class.from_pretrained(folder, **kwargs)
    ours = our_class.from_pretrained(folder, **kwargs)
    assert type(ours) is our_class and not ours.training
    return ref.eval(), ours


def padded_batch(b: int, t: int, padding: str | None, pads: list[int], vocab: int, low: int = 1, pad_id: int = 0,
                 seed: int = 1):
    """(input_ids (B, T), attention_mask (B, T)): random ids in low..vocab-1; row i has pads[i] padding tokens
    (id `pad_id`, mask 0) on the `padding` side ("left" / "right"; None: no padding, a mask of ones)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(low, vocab, (b, t), generator=g)
    mask = torch.ones(b, t, dtype=torch.long)
    for row, n in enumerate(pads[:b] if padding else []):
        if n and padding == "left":
            mask[row, :n] = 0
        elif n:
            mask[row, t - n:] = 0
    return ids.masked_fill(mask == 0, pad_id), mask


def labels_for(task: str, ids: torch.Tensor, mask: torch.Tensor | None, num_labels: int = 2, seed: int = 2,
               problem: str = "single") -> dict:
    """Labels for a head by its class-name suffix: next-token labels (padding ignored), masked-LM labels (about a
    third of the real tokens, at least one), one class per row (or, by `problem`, a regression target or
    multi-label 0/1 rows), one per token (padding ignored), answer spans (a start past the sequence, clamped and
    ignored; ends (B, 1)), or the right choice of (B, C, T) inputs."""
    g = torch.Generator().manual_seed(seed)
    b, t = ids.shape[0], ids.shape[-1]
    pad = torch.zeros_like(ids, dtype=torch.bool) if mask is None else mask == 0
    if task.endswith(("ForCausalLM", "LMHeadModel")):
        return {"labels": ids.masked_fill(pad, -100)}
    if task.endswith("ForMaskedLM"):
        labels = ids.masked_fill((torch.rand(ids.shape, generator=g) >= 0.35) | pad, -100)
        labels[0, 0] = 5
        return {"labels": labels}
    if task.endswith("ForSequenceClassification"):
        if problem == "regression":
            return {"labels": torch.randn(b, generator=g)}
        if problem == "multi":
            return {"labels": torch.randint(0, 2, (b, num_labels), generator=g).float()}
        return {"labels": torch.randint(0, num_labels, (b,), generator=g)}
    if task.endswith("ForTokenClassification"):
        return {"labels": torch.randint(0, num_labels, (b, t), generator=g).masked_fill(pad, -100)}
    if task.endswith("ForQuestionAnswering"):
        return {"start_positions": torch.tensor([1, t + 3, 2][:b]), "end_positions": torch.tensor([[4], [5], [t]][:b])}
    if task.endswith("ForMultipleChoice"):
        return {"labels": torch.tensor([1, 0, 1][:b])}
    return {}


def encoder_batch(cls_name: str, padding: bool = True, b: int = 3, t: int = 9, vocab: int = 99, seed: int = 1) -> dict:
    """An encoder's inputs: random ids in 3..vocab-1, right padding (id 0) of 3 and 6 tokens in rows 2 and 3, and
    (with `padding`) the attention mask; a (B, 2, T) layout for a multiple-choice head."""
    g = torch.Generator().manual_seed(seed)
    shape = (b, 2, t) if cls_name.endswith("ForMultipleChoice") else (b, t)
    ids = torch.randint(3, vocab, shape, generator=g)
    mask = torch.ones(shape, dtype=torch.long)
    mask[1, ..., t - 3:] = 0
    mask[2, ..., t - 6:] = 0
    inputs = {"input_ids": ids.masked_fill(mask == 0, 0)}
    if padding:
        inputs["attention_mask"] = mask
    return inputs


def assert_head_close(ours, ref, inputs: dict, labels: dict, keys=TENSOR_KEYS):
    """A head's outputs on `inputs` close to the reference's; when it takes labels, with `labels` too: close, a
    finite loss, and the problem_type the reference picked."""
    with torch.no_grad():
        assert_outputs_close(ours(**inputs), ref(**inputs), keys=keys)
        if labels:
            got = ours(**inputs, **labels)
            assert_outputs_close(got, ref(**inputs, **labels), keys=keys)
            assert got.loss is not None and torch.isfinite(got.loss)
            assert ours.config.problem_type == ref.config.problem_type


def assert_outputs_close(ours, ref, atol=1e-4, rtol=0.0, keys=TENSOR_KEYS):
    """Every tensor field of `keys` set in either output is set in both and close (fp32 atol 1e-4 by default)."""
    for key in keys:
        assert (ours.get(key) is None) == (ref.get(key) is None), f"{key}: set on one side only"
        if ref.get(key) is not None:
            assert_close(ours[key], ref[key], atol=atol, rtol=rtol, msg=lambda m: f"{key}: {m}")
