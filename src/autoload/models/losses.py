"""Losses shared by the model families (the reference's loss_utils semantics)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
