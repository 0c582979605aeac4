"""feature-extraction (the encoder's hidden state of every token) and sentence-embeddings (one vector per text,
pooled and normalised the way the repo's sentence-transformers files say).

A sentence-transformers repo describes its stack in `modules.json`: the Transformer (the model itself), then
`Pooling` (its `1_Pooling/config.json` picks cls / mean / max / mean_sqrt_len / weightedmean / lasttoken),
optionally `Dense` layers, and `Normalize` (L2 normalisation). With no modules.json the pooling is the mean over
the real tokens and nothing is normalised, as sentence-transformers does for a plain model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import RepoFileError
from ..jsonfiles import read_json
from .base import Pipeline, backbone, first_output

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len", "weightedmean", "lasttoken")  # sentence-transformers' order


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


@dataclass
class SentenceSetup:
    """What a repo's sentence-transformers files ask for after the Transformer module."""

    pooling: list[str] = field(default_factory=lambda: ["mean"])
    dense: list[nn.Module] = field(default_factory=list)
    normalize: bool = False
    max_seq_length: int | None = None
    found: bool = False  # whether modules.json was there


def read_sentence_setup(source) -> SentenceSetup:
    """Read modules.json, the Pooling config, Dense layers and sentence_bert_config.json from a `FileSource`."""
    modules_path = source.get("modules.json")
    if modules_path is None:
        return SentenceSetup()
    setup = SentenceSetup(pooling=[], found=True)
    modules = read_json(modules_path, expect=list)
    if not all(isinstance(module, dict) for module in modules):
        raise RepoFileError(f"{modules_path} should list module objects with 'type' and 'path' keys. Fix or "
                            "re-download the file.")
    for module in sorted(modules, key=lambda m: m.get("idx", 0)):
        kind, path = module.get("type", "").rsplit(".", 1)[-1], module.get("path", "").strip("/")
        prefix = f"{path}/" if path else ""
        if kind == "Transformer":
            config = _read_json(source, f"{prefix}sentence_bert_config.json") or {}
            setup.max_seq_length = config.get("max_seq_length")
        elif kind == "Pooling":
            setup.pooling = pooling_modes(_read_json(source, f"{prefix}config.json") or {})
        elif kind == "Dense":
            setup.dense.append(_dense_layer(source, prefix))
        elif kind == "Normalize":
            setup.normalize = True
        else:
            raise ValueError(f"modules.json of {source.describe()} has a '{module.get('type')}' module, which "
                             "sentence-embeddings does not implement (it runs Transformer, Pooling, Dense and "
                             "Normalize).")
    if not setup.pooling:
        setup.pooling = ["mean"]
    return setup


def pooling_modes(config: dict) -> list[str]:
    """A Pooling config.json -> the modes it turns on, in sentence-transformers' concatenation order."""
    if isinstance(config.get("pooling_mode"), str):  # the constructor's shorthand, in some configs
        return [_check_mode(config["pooling_mode"])]
    return [mode for mode in POOLING_MODES if config.get(f"pooling_mode_{mode}" + (
        "_token" if mode == "cls" else "" if mode == "lasttoken" else "_tokens"))]


def _check_mode(mode: str) -> str:
    mode = {"mean_tokens": "mean", "max_tokens": "max", "cls_token": "cls"}.get(mode, mode)
    if mode not in POOLING_MODES:
        raise ValueError(f"Unknown pooling mode {mode!r}: use one of {', '.join(POOLING_MODES)}.")
    return mode


def _read_json(source, name: str) -> dict | None:
    path = source.get(name)
    if path is None:
        return None
    return read_json(path, expect=dict)


def _dense_layer(source, prefix: str) -> nn.Module:
    """A sentence-transformers Dense module: activation(linear(x)), weights under `linear.`."""
    config = _read_json(source, f"{prefix}config.json") or {}
    linear = nn.Linear(config["in_features"], config["out_features"], bias=config.get("bias", True))
    weights = source.get(f"{prefix}model.safetensors")
    if weights is not None:
        from safetensors.torch import load_file
        state = load_file(weights)
    else:
        state = torch.load(source.require(f"{prefix}pytorch_model.bin"), map_location="cpu", weights_only=True)
    linear.load_state_dict({key.removeprefix("linear."): value for key, value in state.items()})
    name = config.get("activation_function", "torch.nn.modules.linear.Identity").rsplit(".", 1)[-1]
    activation = getattr(nn, name, None)
    if activation is None:
        raise ValueError(f"Dense activation {config.get('activation_function')!r} is not a torch.nn module.")
    return nn.Sequential(linear, activation()).eval()


def pool(hidden: torch.Tensor, mask: torch.Tensor, modes: list[str]) -> torch.Tensor:
    """Token states (B, T, H) and attention mask (B, T) -> sentence vectors (B, len(modes) * H)."""
    hidden = hidden.float()
    weights = mask.to(hidden.dtype)[..., None]  # (B, T, 1), 1 = real token
    count = weights.sum(dim=1).clamp(min=1e-9)  # (B, 1) tokens per text
    positions = torch.arange(mask.shape[1], device=mask.device)  # (T,)
    vectors = []
    for mode in modes:
        if mode == "cls":
            vectors.append(hidden[:, 0])  # (B, H)
        elif mode == "max":  # padding can never be the maximum
            vectors.append(hidden.masked_fill(weights == 0, -1e9).amax(dim=1))  # (B, H)
        elif mode == "mean":
            vectors.append((hidden * weights).sum(dim=1) / count)  # (B, H)
        elif mode == "mean_sqrt_len":  # sum / sqrt(n): keeps some of the length information
            vectors.append((hidden * weights).sum(dim=1) / count.sqrt())  # (B, H)
        elif mode == "weightedmean":  # token i weighs i + 1: later tokens count more
            w = weights * (positions + 1).to(hidden.dtype)[None, :, None]  # (B, T, 1)
            vectors.append((hidden * w).sum(dim=1) / w.sum(dim=1).clamp(min=1e-9))  # (B, H)
        elif mode == "lasttoken":  # the last real token, with left or right padding
            last = (mask.long() * positions).argmax(dim=1)  # (B,)
            vectors.append(hidden[torch.arange(hidden.shape[0], device=hidden.device), last])  # (B, H)
    return torch.cat(vectors, dim=-1)  # (B, len(modes) * H)


class SentenceEmbeddingsPipeline(Pipeline):
    """`pipe(["a text", "another"])` -> a float32 tensor (B, D) of sentence embeddings (a (D,) tensor for one
    str), on the CPU, computed as the repo's sentence-transformers files say (pooling, Dense, Normalize).

    `normalize=None` follows the repo (its Normalize module); True/False forces L2 normalisation on or off.
    `pooling="mean"` (or "cls", "max", "mean_sqrt_len", "weightedmean", "lasttoken", or a list) overrides the
    repo's pooling. Inputs are truncated to the repo's max_seq_length (else the model's maximum length).
    """

    task = "sentence-embeddings"
    auto_class = "AutoModel"
    options = {"normalize": None, "pooling": None}

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
            modes = [_check_mode(m) for m in ([pooling] if isinstance(pooling, str) else pooling)]
        normalize = self.setup.normalize if options["normalize"] is None else bool(options["normalize"])
        return {"modes": modes, "normalize": normalize}

    def _run(self, batch: list[str], options: dict) -> list:
        kwargs = {"truncation": True, "max_length": self.max_length} if self.max_length else {}
        encoding = self.encode(batch, **kwargs)
        encoder = backbone(self.model)
        hidden = first_output(encoder(**self.model_inputs(encoding, encoder)))  # (B, T, H)
        mask = encoding["attention_mask"] if "attention_mask" in encoding else torch.ones(hidden.shape[:2])
        vectors = pool(hidden, mask.to(hidden.device), options["modes"])  # (B, D)
        for layer in self.dense:
            vectors = layer(vectors)  # (B, D')
        if options["normalize"]:
            vectors = F.normalize(vectors, p=2, dim=-1)  # unit length: dot product = cosine similarity
        return list(vectors.cpu())

    def _finish(self, results: list, single: bool, options: dict):
        return results[0] if single else torch.stack(results)  # (D,) or (B, D)
