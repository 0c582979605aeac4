"""fill-mask: the most likely tokens for each mask token of a text, with their probabilities.

The speed comes from where the vocabulary projection runs. A masked LM's head maps every position to the
vocabulary: for T tokens that is T x (H x V) multiply-adds (bert-base-chinese: V = 21128, so about 16M per
position, a fifth of what one encoder layer stack costs per token), plus a softmax over V for every position.
Only the masked positions are read, so this pipeline runs the encoder (`model.bert`), gathers the hidden
states of the M masked positions, and applies the head (`model.cls.predictions`) to those M rows only:
(B, T, H) -> (M, H) -> (M, V).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from .base import Pipeline, backbone, first_output

logger = logging.getLogger("autoload")


def mlm_head(model) -> nn.Module | None:
    """The module that maps hidden states to vocabulary logits: BERT's `cls.predictions`, or an `lm_head`."""
    head = getattr(getattr(model, "cls", None), "predictions", None)
    if head is None:
        head = getattr(model, "lm_head", None)
    return head if isinstance(head, nn.Module) else None


class FillMaskPipeline(Pipeline):
    """`pipe("巴黎是[MASK]国的首都。", top_k=5)` -> `[{"score", "token", "token_str", "sequence"}, ...]`, best first.

    An input with several masks gives one such list per mask (each mask scored on its own, the other masks
    left in the text); a list of inputs gives one result per input. `targets=["法", "英"]` restricts the
    candidates to those tokens (a target missing from the vocabulary is replaced by its first token, with a
    warning), and `top_k` is then at most their number.
    """

    task = "fill-mask"
    auto_class = "AutoModelForMaskedLM"
    options = {"top_k": 5, "targets": None}

    def __init__(self, model, tokenizer, **kwargs):
        super().__init__(model, tokenizer, **kwargs)
        if tokenizer.mask_token_id is None:
            raise ValueError(f"The tokenizer of {model.name_or_path or type(model).__name__} has no mask token, "
                             "so fill-mask cannot mark the word to predict.")
        self._head = mlm_head(model)
        self._encoder = backbone(model)
        if self._encoder is model:
            self._head = None  # no separate encoder to call: run the whole model (and its head on every token)

    @classmethod
    def check_model(cls, model) -> None:
        if mlm_head(model) is None and not type(model).__name__.endswith(("ForMaskedLM", "ForPreTraining")):
            raise ValueError(f"{type(model).__name__} has no masked-language-model head, so it cannot do "
                             "fill-mask: load the checkpoint with AutoModelForMaskedLM (or pass its name).")

    def _prepare(self, options: dict) -> dict:
        top_k = options["top_k"]
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive int, not {top_k!r}.")
        targets = options["targets"]
        return {"top_k": top_k, "targets": None if targets is None else self._target_ids(targets)}

    def _target_ids(self, targets) -> torch.Tensor:
        if isinstance(targets, str):
            targets = [targets]
        vocab = self.tokenizer.get_vocab()
        ids = []
        for target in targets:
            index = vocab.get(target)
            if index is None:
                pieces = self.tokenizer(target, add_special_tokens=False)["input_ids"]
                if not pieces:
                    logger.warning("The target %r is not in the vocabulary and tokenizes to nothing: ignored.", target)
                    continue
                index = pieces[0]
                logger.warning("The target %r is not in the vocabulary: using its first token %r instead.", target,
                               self.tokenizer.convert_ids_to_tokens(index))
            ids.append(index)
        ids = list(dict.fromkeys(ids))
        if not ids:
            raise ValueError("targets= gave no usable token: pass tokens of the vocabulary.")
        return torch.tensor(ids)

    def _mask_logits(self, encoding, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits (M, V) at the M masked positions (rows[m], cols[m])."""
        if self._head is None:  # a model without a reachable head: full forward, then pick the rows
            return first_output(self.model(**self.model_inputs(encoding)))[rows, cols]  # (B, T, V) -> (M, V)
        hidden = first_output(self._encoder(**self.model_inputs(encoding, self._encoder)))  # (B, T, H)
        return self._head(hidden[rows, cols])  # (M, H) -> (M, V)

    def _run(self, batch: list[str], options: dict) -> list:
        tokenizer = self.tokenizer
        encoding = self.encode(batch)
        ids = encoding["input_ids"]  # (B, T)
        is_mask = ids == tokenizer.mask_token_id  # (B, T)
        counts = is_mask.sum(dim=1).tolist()  # masks per input
        for text, count in zip(batch, counts):
            if count == 0:
                raise ValueError(f"No mask token ({tokenizer.mask_token}) in the input {text!r}: write "
                                 f"{tokenizer.mask_token} where the token to predict goes.")
        rows, cols = is_mask.nonzero(as_tuple=True)  # (M,), (M,) in row-major order
        probs = self._mask_logits(encoding, rows, cols).float().softmax(dim=-1)  # (M, V)
        targets = options["targets"]
        if targets is not None:
            probs = probs[:, targets.to(probs.device)]  # (M, n_targets)
        scores, predictions = probs.topk(min(options["top_k"], probs.shape[-1]), dim=-1)  # (M, k)
        if targets is not None:
            predictions = targets[predictions.cpu()]
        scores, predictions = scores.tolist(), predictions.tolist()
        rows, cols, ids = rows.tolist(), cols.tolist(), ids.tolist()

        pad, token_strs = tokenizer.pad_token_id, {}
        results: list[list] = [[] for _ in batch]
        for m, (row, col) in enumerate(zip(rows, cols)):
            single_mask = counts[row] == 1
            candidates = []
            for score, token in zip(scores[m], predictions[m]):
                tokens = list(ids[row])
                tokens[col] = token
                tokens = [t for t in tokens if t != pad]  # drop the batch padding (as the reference drops pads)
                if token not in token_strs:
                    token_strs[token] = tokenizer.decode([token])
                # one mask: special tokens are dropped; several: kept, so the other masks stay visible
                sequence = tokenizer.decode(tokens, skip_special_tokens=single_mask)
                candidates.append({"score": score, "token": token, "token_str": token_strs[token],
                                   "sequence": sequence})
            results[row].append(candidates)
        return [masks[0] if len(masks) == 1 else masks for masks in results]

    def _finish(self, results: list, single: bool, options: dict):
        return results[0] if single or len(results) == 1 else results
