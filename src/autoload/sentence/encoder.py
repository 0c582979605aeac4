"""`SentenceTransformer`: sentence embeddings in the shape sentence-transformers users know, on autoload's models.

    from autoload import SentenceTransformer
    model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
    vectors = model.encode(["A man is eating food.", "A man rides a horse."], batch_size=32)   # (2, 384) numpy
    model.similarity(vectors, vectors)                                                        # (2, 2) cosine

The repo's own files decide the pipeline (modules.json, pooling, Dense, Normalize, prompts, similarity; see
modules.py). Batches are formed by real token count and run unpadded where the family supports it (runner.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..hub.source import FileSource
from .modules import SentenceSetup, check_similarity, pool, read_sentence_setup
from .runner import (batches, check_batch_size, forward_inputs, pad_batch, progress_bar, to_output,
                     tokenize_all)

PRECISIONS = ("float32",)


class SentenceTransformer(nn.Module):
    """A text encoder plus the repo's pooling, Dense and Normalize modules. It is an `nn.Module`: `.to("cuda")`,
    `.half()` and `.eval()` work as usual; `model.model` is the autoload backbone, `model.tokenizer` its tokenizer.

    prompts / default_prompt_name / similarity_fn_name / truncate_dim override the repo's values. The hub options
    (revision, token, cache_folder, local_files_only, endpoint, hub) and model_kwargs (dtype, attn_implementation,
    ...) go to the loaders."""

    def __init__(self, model_name_or_path: str | os.PathLike, *, device=None, prompts: dict | None = None,
                 default_prompt_name: str | None = None, similarity_fn_name: str | None = None,
                 truncate_dim: int | None = None, cache_folder=None, revision: str | None = None,
                 token=None, local_files_only: bool = False, trust_remote_code: bool = False,
                 model_kwargs: dict | None = None, endpoint: str | None = None, hub: str | None = None):
        super().__init__()
        from ..registry.auto import AutoModel, AutoTokenizer
        options = {k: v for k, v in (("revision", revision), ("token", token), ("cache_dir", cache_folder),
                                     ("local_files_only", local_files_only), ("endpoint", endpoint),
                                     ("hub", hub)) if v}
        source = FileSource(model_name_or_path, **options)
        self.setup: SentenceSetup = read_sentence_setup(source)
        where = _transformer_folder(source, self.setup.transformer_path, options)
        self.model = AutoModel.from_pretrained(where, trust_remote_code=trust_remote_code,
                                               **(options if where == source.name else {}), **(model_kwargs or {}))
        self.model.eval()
        self.tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=trust_remote_code,
                                                       **(options if where == source.name else {}))
        self.dense = nn.ModuleList(self.setup.dense)
        self.prompts = {**self.setup.prompts, **(prompts or {})}
        self.default_prompt_name = default_prompt_name or self.setup.default_prompt_name
        if self.default_prompt_name is not None and self.default_prompt_name not in self.prompts:
            raise ValueError(f"default_prompt_name {self.default_prompt_name!r} is not one of the prompts "
                             f"{sorted(self.prompts)}.")
        self.similarity_fn_name = check_similarity(similarity_fn_name or self.setup.similarity_fn_name or "cosine")
        self.truncate_dim = truncate_dim
        self.max_seq_length = self.setup.max_seq_length or _model_limit(self.model, self.tokenizer)
        if device is not None:
            self.to(device)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def get_embedding_dimension(self) -> int:
        """The length of the vectors `encode` returns (after Dense layers and truncate_dim)."""
        size = self.dense[-1][0].out_features if len(self.dense) else \
            self.model.config.hidden_size * len(self.setup.pooling)
        return min(size, self.truncate_dim) if self.truncate_dim else size

    get_sentence_embedding_dimension = get_embedding_dimension  # the name before sentence-transformers 6

    def encode(self, sentences, prompt_name: str | None = None, prompt: str | None = None, batch_size: int = 32,
               show_progress_bar: bool | None = None, output_value: str = "sentence_embedding",
               precision: str = "float32", convert_to_numpy: bool = True, convert_to_tensor: bool = False,
               device=None, normalize_embeddings: bool = False, truncate_dim: int | None = None, *,
               unpad: bool = True):
        """Embed a text or a list of texts. Returns a numpy array (N, D) by default, a tensor with
        convert_to_tensor=True, or a list of tensors with both False; one text gives one vector.

        prompt / prompt_name: text put before every input (prompt_name picks one of the repo's prompts; the
        repo's default prompt applies when neither is given). normalize_embeddings: L2-normalise after the
        repo's own modules. output_value="token_embeddings": the last hidden state of each text's real tokens
        ((T_i, H) each, always a list). truncate_dim: keep the first dimensions (Matryoshka models).
        unpad=False runs padded batches even where the model can run unpadded (same numbers, slower)."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r} is not supported: autoload returns float32 embeddings "
                             "(quantize them yourself, e.g. with sentence_transformers.quantization).")
        if output_value not in ("sentence_embedding", "token_embeddings"):
            raise ValueError(f"output_value must be 'sentence_embedding' or 'token_embeddings', not {output_value!r}.")
        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences)
        if not all(isinstance(text, str) for text in texts):
            raise TypeError("encode takes a str or a list of str.")
        batch_size = check_batch_size(batch_size)
        if device is not None:
            self.to(device)
        prefix = self._prompt(prompt_name, prompt)
        prompt_length = self._prompt_length(prefix) if prefix and not self.setup.include_prompt else 0
        features = tokenize_all(self.tokenizer, [prefix + text for text in texts], None, self.max_seq_length)
        lengths = [len(ids) for ids in features["input_ids"]]
        truncate = truncate_dim or self.truncate_dim
        results: list = [None] * len(texts)
        bar = progress_bar(len(texts), show_progress_bar, "encode")
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        try:
            with torch.inference_mode():
                for rows in batches(lengths, batch_size):
                    batch = pad_batch(features, rows, pad_id, self.device)
                    hidden = _first(self.model(**forward_inputs(self.model, batch, unpad)))  # (B, T, H)
                    mask = batch["attention_mask"]
                    if output_value == "token_embeddings":
                        vectors = [hidden[b, :lengths[i]].float() for b, i in enumerate(rows)]
                    else:
                        if prompt_length:  # prompt tokens (after [CLS]) do not count in the pooling
                            mask = mask.clone()
                            mask[:, :prompt_length] = 0
                        vectors = self._head(hidden, mask, truncate, normalize_embeddings)
                    for i, vector in zip(rows, vectors):
                        results[i] = vector.cpu() if convert_to_numpy and not convert_to_tensor else vector
                    if bar is not None:
                        bar.update(len(rows))
        finally:
            if bar is not None:
                bar.close()
        if output_value == "token_embeddings":
            return results[0] if single else results
        return to_output(results, convert_to_numpy, convert_to_tensor, single)

    def encode_query(self, sentences, **kwargs):
        """`encode` with the repo's "query" prompt, when it has one (and no prompt was given)."""
        return self.encode(sentences, **self._task_prompt("query", kwargs))

    def encode_document(self, sentences, **kwargs):
        """`encode` with the repo's "document" prompt (or "passage"/"corpus"), when it has one."""
        return self.encode(sentences, **self._task_prompt("document", kwargs))

    def similarity(self, embeddings1, embeddings2) -> torch.Tensor:
        """(N, M) scores between two sets of vectors with the model's similarity function (cosine by default;
        dot; negative euclidean or manhattan distance)."""
        a, b = _as_matrix(embeddings1), _as_matrix(embeddings2)
        if self.similarity_fn_name == "cosine":
            return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T  # (N, M)
        if self.similarity_fn_name == "dot":
            return a @ b.T  # (N, M)
        p = 2 if self.similarity_fn_name == "euclidean" else 1
        return -torch.cdist(a, b, p=p)  # (N, M)

    def forward(self, **batch) -> dict:
        """A tokenized batch (input_ids, attention_mask, ...) -> {"token_embeddings", "sentence_embedding"},
        differentiable (for fine-tuning)."""
        hidden = _first(self.model(**forward_inputs(self.model, batch, unpad=False)))  # (B, T, H)
        return {"token_embeddings": hidden,
                "sentence_embedding": self._head(hidden, batch["attention_mask"], self.truncate_dim, False)}

    # -- helpers -----------------------------------------------------------------------------------------------

    def _head(self, hidden, mask, truncate: int | None, normalize: bool) -> torch.Tensor:
        vectors = pool(hidden, mask, self.setup.pooling)  # (B, D)
        for layer in self.dense:
            vectors = layer(vectors)  # (B, D')
        if self.setup.normalize:
            vectors = F.normalize(vectors, p=2, dim=-1)
        if truncate:
            vectors = vectors[:, :truncate]  # (B, truncate)
        if normalize:
            vectors = F.normalize(vectors, p=2, dim=-1)  # unit length: dot product = cosine similarity
        return vectors

    def _prompt(self, prompt_name: str | None, prompt: str | None) -> str:
        if prompt is not None:
            return prompt
        name = prompt_name or self.default_prompt_name
        if name is None:
            return ""
        if name not in self.prompts:
            raise ValueError(f"Prompt name {name!r} is not one of this model's prompts: {sorted(self.prompts)}.")
        return self.prompts[name]

    def _prompt_length(self, prompt: str) -> int:
        """Tokens a prompt takes at the start of an input ([CLS] included, the closing [SEP] not)."""
        return len(self.tokenizer(prompt)["input_ids"]) - 1

    def _task_prompt(self, task: str, kwargs: dict) -> dict:
        if kwargs.get("prompt") is None and kwargs.get("prompt_name") is None:
            names = {"query": ("query",), "document": ("document", "passage", "corpus")}[task]
            found = next((name for name in names if name in self.prompts), None)
            if found is not None:
                kwargs["prompt_name"] = found
        return kwargs


def _transformer_folder(source: FileSource, path: str, options: dict) -> str:
    """Where the Transformer module's config, weights and tokenizer are: the repo itself, or its subfolder."""
    if not path:
        return source.name
    found = source.fetch([f"{path}/*"])
    config = found.get(f"{path}/config.json")
    if config is None:
        raise OSError(f"modules.json of {source.describe()} puts the Transformer in '{path}', which has no "
                      "config.json.")
    return str(Path(config).parent)


def _model_limit(model, tokenizer) -> int | None:
    limits = [n for n in (getattr(tokenizer, "model_max_length", None),
                          getattr(model.config, "max_position_embeddings", None)) if n and n < 1_000_000]
    return min(limits) if limits else None


def _first(output):
    value = getattr(output, "last_hidden_state", None)
    return value if value is not None else output[0]


def _as_matrix(values) -> torch.Tensor:
    if isinstance(values, (list, tuple)):
        values = torch.stack([torch.as_tensor(v) for v in values])
    values = torch.as_tensor(values).float()
    return values[None] if values.dim() == 1 else values
