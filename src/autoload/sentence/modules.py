"""What a sentence-transformers repo asks for around its Transformer, read from its files, and the pooling.

A sentence-transformers repo describes its stack in `modules.json`: the Transformer (the model itself, at the
repo's top level or in a folder such as `0_Transformer`), then `Pooling` (its `1_Pooling/config.json` picks
cls / mean / max / mean_sqrt_len / weightedmean / lasttoken, and whether prompt tokens count), optionally
`Dense` layers, and `Normalize` (L2 normalisation). `config_sentence_transformers.json` holds the prompts
("query: ", ...), the default prompt and the similarity function. With no modules.json the pooling is the mean
over the real tokens and nothing is normalised, as sentence-transformers does for a plain model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import RepoFileError
from ..jsonfiles import read_json

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len", "weightedmean", "lasttoken")  # sentence-transformers' order
SIMILARITY_FUNCTIONS = ("cosine", "dot", "euclidean", "manhattan")


@dataclass
class SentenceSetup:
    """What a repo's sentence-transformers files ask for around the Transformer module."""

    pooling: list[str] = field(default_factory=lambda: ["mean"])
    include_prompt: bool = True  # False: prompt tokens are left out of the pooling (instruction models)
    dense: list[nn.Module] = field(default_factory=list)
    normalize: bool = False
    max_seq_length: int | None = None
    transformer_path: str = ""  # the Transformer module's folder in the repo ("" = top level)
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    similarity_fn_name: str | None = None
    found: bool = False  # whether modules.json was there


def read_sentence_setup(source) -> SentenceSetup:
    """Read modules.json, the Pooling config, Dense layers, sentence_bert_config.json and
    config_sentence_transformers.json from a `FileSource`."""
    setup = SentenceSetup()
    _read_prompts(source, setup)
    modules_path = source.get("modules.json")
    if modules_path is None:
        return setup
    setup.pooling, setup.found = [], True
    modules = read_json(modules_path, expect=list)
    if not all(isinstance(module, dict) for module in modules):
        raise RepoFileError(f"{modules_path} should list module objects with 'type' and 'path' keys. Fix or "
                            "re-download the file.")
    for module in sorted(modules, key=lambda m: m.get("idx", 0) if isinstance(m.get("idx", 0), int) else 0):
        kind, path = str(module.get("type", "")).rsplit(".", 1)[-1], str(module.get("path", "")).strip("/")
        if ".." in path.split("/") or path.startswith(("/", "\\")):
            raise RepoFileError(f"{modules_path}: module path {path!r} leaves the repo. Fix or re-download the file.")
        prefix = f"{path}/" if path else ""
        if kind == "Transformer":
            setup.transformer_path = path
            config = _read_json(source, f"{prefix}sentence_bert_config.json") or {}
            setup.max_seq_length = _positive_int(config.get("max_seq_length"), "max_seq_length", modules_path)
        elif kind == "Pooling":
            config = _read_json(source, f"{prefix}config.json") or {}
            setup.pooling = pooling_modes(config)
            setup.include_prompt = bool(config.get("include_prompt", True))
        elif kind == "Dense":
            setup.dense.append(_dense_layer(source, prefix))
        elif kind == "Normalize":
            setup.normalize = True
        else:
            raise ValueError(f"modules.json of {source.describe()} has a '{module.get('type')}' module, which "
                             "autoload does not implement (it runs Transformer, Pooling, Dense and Normalize).")
    if not setup.pooling:
        setup.pooling = ["mean"]
    return setup


def _read_prompts(source, setup: SentenceSetup) -> None:
    config = _read_json(source, "config_sentence_transformers.json") or {}
    prompts = config.get("prompts") or {}
    if not isinstance(prompts, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in prompts.items()):
        raise RepoFileError(f"config_sentence_transformers.json of {source.describe()}: 'prompts' should map names "
                            "to strings. Fix or re-download the file.")
    setup.prompts = prompts
    setup.default_prompt_name = config.get("default_prompt_name") or None
    if setup.default_prompt_name is not None and setup.default_prompt_name not in prompts:
        raise RepoFileError(f"config_sentence_transformers.json of {source.describe()}: default_prompt_name "
                            f"{setup.default_prompt_name!r} is not one of its prompts {sorted(prompts)}.")
    name = config.get("similarity_fn_name")
    setup.similarity_fn_name = check_similarity(name) if name else None


def check_similarity(name: str) -> str:
    if name not in SIMILARITY_FUNCTIONS:
        raise ValueError(f"Unknown similarity function {name!r}: use one of {', '.join(SIMILARITY_FUNCTIONS)}.")
    return name


def pooling_modes(config: dict) -> list[str]:
    """A Pooling config.json -> the modes it turns on, in sentence-transformers' concatenation order."""
    if isinstance(config.get("pooling_mode"), str):  # the constructor's shorthand, in some configs
        return [check_mode(config["pooling_mode"])]
    return [mode for mode in POOLING_MODES if config.get(f"pooling_mode_{mode}" + (
        "_token" if mode == "cls" else "" if mode == "lasttoken" else "_tokens"))]


def check_mode(mode: str) -> str:
    mode = {"mean_tokens": "mean", "max_tokens": "max", "cls_token": "cls"}.get(mode, mode)
    if mode not in POOLING_MODES:
        raise ValueError(f"Unknown pooling mode {mode!r}: use one of {', '.join(POOLING_MODES)}.")
    return mode


def _positive_int(value, key: str, where) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RepoFileError(f"{where}: {key} should be a positive int, not {value!r}. Fix or re-download the file.")
    return value


def _read_json(source, name: str) -> dict | None:
    path = source.get(name)
    if path is None:
        return None
    return read_json(path, expect=dict)


def _dense_layer(source, prefix: str) -> nn.Module:
    """A sentence-transformers Dense module: activation(linear(x)), weights under `linear.`."""
    config = _read_json(source, f"{prefix}config.json") or {}
    sizes = [_positive_int(config.get(k), k, f"{prefix}config.json") for k in ("in_features", "out_features")]
    if None in sizes:
        raise RepoFileError(f"{prefix}config.json of {source.describe()} needs in_features and out_features.")
    linear = nn.Linear(*sizes, bias=config.get("bias", True))
    weights = source.get(f"{prefix}model.safetensors")
    if weights is not None:
        from safetensors.torch import load_file
        state = load_file(weights)
    else:
        state = torch.load(source.require(f"{prefix}pytorch_model.bin"), map_location="cpu", weights_only=True)
    linear.load_state_dict({key.removeprefix("linear."): value for key, value in state.items()})
    name = config.get("activation_function", "torch.nn.modules.linear.Identity").rsplit(".", 1)[-1]
    return nn.Sequential(linear, torch_activation(name, f"{prefix}config.json")).eval()


def torch_activation(name: str, where: str) -> nn.Module:
    """A torch.nn activation module by class name (never an arbitrary import path)."""
    activation = getattr(nn, name, None)
    if not (isinstance(activation, type) and issubclass(activation, nn.Module)):
        raise ValueError(f"{where}: activation {name!r} is not a torch.nn module.")
    return activation()


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
