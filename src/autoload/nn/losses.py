"""Losses shared by the model families (the reference's loss_utils semantics)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100,
                  num_items_in_batch: int | torch.Tensor | None = None) -> torch.Tensor:
    """Cross entropy of logits (..., C) against labels (...): the mean over non-ignored targets, or their sum
    divided by `num_items_in_batch` (gradient accumulation)."""
    logits, labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
    if num_items_in_batch is None:
        return F.cross_entropy(logits, labels, ignore_index=ignore_index)
    return F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="sum") / num_items_in_batch


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor,
                   num_items_in_batch: int | torch.Tensor | None = None) -> torch.Tensor:
    """Next-token loss in fp32: logits[t] (B, T, V) against labels[t + 1] (B, T); -100 is ignored (an ignored
    label is appended and the first one dropped)."""
    shifted = F.pad(labels, (0, 1), value=-100)[..., 1:].to(logits.device)  # (B, T)
    return cross_entropy(logits.float(), shifted, num_items_in_batch=num_items_in_batch)


def qa_span_loss(start_logits: torch.Tensor, end_logits: torch.Tensor, start_positions: torch.Tensor,
                 end_positions: torch.Tensor) -> torch.Tensor:
    """Mean of the start and end cross entropies over (B, T) logits; positions outside the sequence are clamped
    to T and ignored."""
    t = start_logits.shape[1]
    starts = start_positions.reshape(-1).to(start_logits.device).clamp(0, t)  # (B,)
    ends = end_positions.reshape(-1).to(end_logits.device).clamp(0, t)  # (B,)
    start_loss = F.cross_entropy(start_logits, starts, ignore_index=t)
    return (start_loss + F.cross_entropy(end_logits, ends, ignore_index=t)) / 2


def sequence_classification_loss(config, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """MSE for regression (num_labels == 1), cross entropy for integer labels, BCE-with-logits otherwise.

    The chosen `problem_type` is stored in the config on first use, as the reference does."""
    n = config.num_labels
    if config.problem_type is None:
        if n == 1:
            config.problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    if config.problem_type == "regression":
        return F.mse_loss(logits.squeeze(), labels.squeeze()) if n == 1 else F.mse_loss(logits, labels)
    if config.problem_type == "single_label_classification":
        return F.cross_entropy(logits.view(-1, n), labels.view(-1))
    if config.problem_type == "multi_label_classification":
        return F.binary_cross_entropy_with_logits(logits, labels)
    raise ValueError(f"Unknown problem_type {config.problem_type!r}: use 'regression', "
                     "'single_label_classification' or 'multi_label_classification'.")


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int | None, decoder_start_token_id: int | None
                       ) -> torch.Tensor:
    """Seq2seq teacher forcing: (B, T) labels -> (B, T) decoder_input_ids = [start, labels[:-1]], with the
    ignored label -100 replaced by the pad id (the reference's shift_tokens_right / T5's _shift_right)."""
    if decoder_start_token_id is None:
        raise ValueError("config.decoder_start_token_id is not set: it is needed to build decoder_input_ids "
                         "from labels (pass decoder_input_ids, or set it in config.json).")
    if pad_token_id is None:
        raise ValueError("config.pad_token_id is not set: it is needed to replace -100 in labels when building "
                         "decoder_input_ids.")
    shifted = labels.new_full(labels.shape, decoder_start_token_id)
    shifted[..., 1:] = labels[..., :-1]
    return shifted.masked_fill(shifted == -100, pad_token_id)
