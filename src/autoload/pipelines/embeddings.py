"""feature-extraction (the encoder's hidden state of every token) and sentence-embeddings (one vector per text,
pooled and normalised the way the repo's sentence-transformers files say: see autoload.sentence.modules).

sentence-embeddings runs like `SentenceTransformer.encode`: everything tokenized at once, batches by real token
count, unpadded where the family supports it (autoload.sentence.runner).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..sentence.modules import SentenceSetup, check_mode, pool
from ..sentence.runner import batches, forward_inputs, pad_batch, tokenize_all
from .base import _UNSET, Pipeline, _check_batch_size, _progress_bar, backbone, first_output


class FeatureExtractionPipeline(Pipeline):
    """`pipe("text")` -> the last hidden state as nested lists of shape (1, T, H) (the reference's layout), one per
    input for a list. `return_tensors=True` gives (1, T, H) float tensors instead. T counts the input's own
    tokens: batch padding is removed. A head model passed in is run without its head (its encoder's states)."""

    task = "feature-extraction"
    auto_class = "AutoModel"
    options = {"return_tensors": False, "truncation": None}

    def _run(self, batch: list[str], options: dict) -> list:
        kwargs = {} if options["truncation"] is None else {"truncation": options["truncation"]}
        encoding = self.encode(batch, **kwargs)
        encoder = backbone(self.model)
        hidden = first_output(encoder(**self.model_inputs(encoding, encoder)))  # (B, T, H)
        keep = encoding["attention_mask"].bool() if "attention_mask" in encoding else None  # (B, T)
        results = []
        for i in range(hidden.shape[0]):
            states = (hidden[i] if keep is None else hidden[i][keep[i]])[None].cpu()  # (1, T_i, H)
            results.append(states if options["return_tensors"] else states.tolist())
        return results


class SentenceEmbeddingsPipeline(Pipeline):
    """`pipe(["a text", "another"])` -> a float32 tensor (B, D) of sentence embeddings (a (D,) tensor for one
    str), on the CPU, computed as the repo's sentence-transformers files say (pooling, Dense, Normalize).

    `normalize=None` follows the repo (its Normalize module); True/False forces L2 normalisation on or off.
    `pooling="mean"` (or "cls", "max", "mean_sqrt_len", "weightedmean", "lasttoken", or a list) overrides the
    repo's pooling. `prompt_name` picks one of the repo's prompts ("query", ...), `prompt` gives the text itself.
    Inputs are truncated to the repo's max_seq_length (else the model's maximum length). For the full
    sentence-transformers API (encode, similarity, ...) use `autoload.SentenceTransformer`.
    """

    task = "sentence-embeddings"
    auto_class = "AutoModel"
    options = {"normalize": None, "pooling": None, "prompt_name": None, "prompt": None}
    default_batch_size = 32

    def __init__(self, model, tokenizer, *, setup: SentenceSetup | None = None, **kwargs):
        super().__init__(model, tokenizer, **kwargs)
        self.setup = setup or SentenceSetup()
        self.dense = [layer.float().to(self.device) for layer in self.setup.dense]
        limits = [n for n in (self.setup.max_seq_length, getattr(model.config, "max_position_embeddings", None),
                              getattr(tokenizer, "model_max_length", None)) if n]
        self.max_length = self.setup.max_seq_length or (min(limits) if limits else None)

    def _prepare(self, options: dict) -> dict:
        pooling = options["pooling"]
        if pooling is None:
            modes = self.setup.pooling
        else:
            modes = [check_mode(m) for m in ([pooling] if isinstance(pooling, str) else pooling)]
        normalize = self.setup.normalize if options["normalize"] is None else bool(options["normalize"])
        prompt = options["prompt"]
        name = options["prompt_name"] or (None if prompt is not None else self.setup.default_prompt_name)
        if prompt is None and name is not None:
            if name not in self.setup.prompts:
                raise ValueError(f"Prompt name {name!r} is not one of this model's prompts: "
                                 f"{sorted(self.setup.prompts)}.")
            prompt = self.setup.prompts[name]
        return {"modes": modes, "normalize": normalize, "prompt": prompt or ""}

    def _predict(self, items: list, batch_size: int | None, progress, options: dict) -> list:
        """All inputs tokenized at once, batched by real token count, run unpadded where the model can."""
        if not items:
            raise ValueError(f"The {self.task} pipeline needs at least one input; got an empty list.")
        size = _check_batch_size(batch_size) if batch_size is not None else self.batch_size
        prompt = options["prompt"]
        prompt_length = len(self.tokenizer(prompt)["input_ids"]) - 1 if prompt and not self.setup.include_prompt \
            else 0
        features = tokenize_all(self.tokenizer, [prompt + item for item in items], None, self.max_length)
        lengths = [len(ids) for ids in features["input_ids"]]
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        encoder = backbone(self.model)
        results: list = [None] * len(items)
        bar = _progress_bar(len(items), self.progress if progress is _UNSET else progress, self.task)
        try:
            with torch.inference_mode():
                for rows in batches(lengths, size if pad_id is not None else 1):
                    batch = pad_batch(features, rows, pad_id, self.device)
                    hidden = first_output(encoder(**forward_inputs(encoder, batch, unpad=True)))  # (B, T, H)
                    mask = batch["attention_mask"].clone()
                    mask[:, :prompt_length] = 0  # prompt tokens after [CLS] left out when the repo says so
                    vectors = pool(hidden, mask, options["modes"])  # (B, D)
                    for layer in self.dense:
                        vectors = layer(vectors)  # (B, D')
                    if options["normalize"]:
                        vectors = F.normalize(vectors, p=2, dim=-1)  # unit length: dot product = cosine similarity
                    for i, vector in zip(rows, vectors.cpu()):
                        results[i] = vector
                    if bar is not None:
                        bar.update(len(rows))
        finally:
            if bar is not None:
                bar.close()
        return results

    def _finish(self, results: list, single: bool, options: dict):
        return results[0] if single else torch.stack(results)  # (D,) or (B, D)
