"""The Auto classes: given a folder or repo id, pick the config, tokenizer or model class and build it.

Resolution order (the reference's): an explicit argument; `auto_map` remote code when trusted; for tokenizers,
`tokenizer_class` in tokenizer_config.json, then in config.json; then the config's `model_type` in the
registry table. Classes registered with `register()` are consulted before the built-in table.
"""

from __future__ import annotations

import difflib
import importlib
import logging

from ..configuration import CONFIG_NAME, PretrainedConfig, read_config_dict
from . import remote
from ..hub.source import FileSource, split_hub_options
from .table import AUTO_MODEL_CLASSES, MODEL_TYPES, TOKENIZERS_REPLACING_REMOTE_CODE

logger = logging.getLogger("autoload")


def import_string(reference: str):
    """'package.module:Class' -> the class (imported now)."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


def _unknown_model_type(model_type: str, where: str) -> ValueError:
    supported = sorted(set(MODEL_TYPES) | set(AutoConfig._registered))
    close = difflib.get_close_matches(model_type, supported, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return ValueError(f"Unknown model_type '{model_type}' in {where}.{hint} Supported: {', '.join(supported)}. "
                      "For another architecture, register it (AutoConfig.register / AutoModel...register) or load "
                      "the repo's own code with trust_remote_code=True if it has an auto_map.")


class AutoConfig:
    """`AutoConfig.from_pretrained(name_or_path, **overrides)` -> the config class of its model_type."""

    _registered: dict[str, type] = {}

    def __init__(self):
        raise TypeError("AutoConfig is not instantiated: use AutoConfig.from_pretrained(...) or .for_model(...).")

    @classmethod
    def config_class(cls, model_type: str, where: str = "the registry") -> type:
        if model_type in cls._registered:
            return cls._registered[model_type]
        entry = MODEL_TYPES.get(model_type)
        if entry is None:
            raise _unknown_model_type(model_type, where)
        return import_string(entry["config"])

    @classmethod
    def for_model(cls, model_type: str, **kwargs) -> PretrainedConfig:
        return cls.config_class(model_type)(**kwargs)

    @classmethod
    def register(cls, model_type: str, config_class: type, exist_ok: bool = False) -> None:
        """Map a model_type to a config class. Built-in types are replaced only with exist_ok=True."""
        if getattr(config_class, "model_type", model_type) != model_type:
            raise ValueError(f"{config_class.__name__}.model_type is '{config_class.model_type}', not "
                             f"'{model_type}': they must agree.")
        if model_type in MODEL_TYPES and not exist_ok:
            raise ValueError(f"'{model_type}' is a built-in model type; pass exist_ok=True to replace its config.")
        cls._registered[model_type] = config_class

    @classmethod
    def from_pretrained(cls, name_or_path, *, trust_remote_code: bool | None = None, code_revision=None,
                        return_unused_kwargs: bool = False, native: bool = True, **kwargs):
        hub = split_hub_options(kwargs)
        source = kwargs.pop("_source", None) or FileSource(name_or_path, **hub)
        config, unused = load_config(source, trust_remote_code=trust_remote_code, code_revision=code_revision,
                                     native=native, **kwargs)
        return (config, unused) if return_unused_kwargs else config


def read_source_config(source: FileSource) -> tuple[dict, str]:
    path = source.get(CONFIG_NAME)
    if path is None:
        raise OSError(f"{source.describe()} has no {CONFIG_NAME}, so its architecture is unknown. Point at the "
                      "model's folder or repo (the one with config.json), or pass config=... explicitly.")
    return read_config_dict(path), path


def load_config(source: FileSource, *, trust_remote_code=None, code_revision=None, native: bool = True,
                gguf_file: str | None = None, **kwargs):
    """(config, unused kwargs) for a source: remote AutoConfig code when trusted, else the registered class.

    For model types whose row says `replaces_remote_code` (the repo's code is the architecture autoload
    implements, e.g. chatglm), the built-in class is used even when the code is trusted, unless `native=False`
    or the built-in class cannot run this config (`unsupported_reason`). With `gguf_file`, the config comes
    from that GGUF file's metadata (quant/gguf.py)."""
    if gguf_file is not None:
        from ..quant.gguf import config_dict, config_from_gguf, open_gguf
        gf = open_gguf(source, gguf_file)
        config_class = AutoConfig.config_class(config_dict(gf)["model_type"], where=gf.path)
        return config_from_gguf(gf, config_class, **kwargs)
    data, path = read_source_config(source)
    data.setdefault("_name_or_path", source.name)
    auto_map = data.get("auto_map") or {}
    reference = auto_map.get("AutoConfig")
    # the no-trust error lists every file the repo's auto_map would run, not only the config's
    every = [r for v in auto_map.values() for r in (v if isinstance(v, list) else [v]) if isinstance(r, str)]
    model_type = data.get("model_type")
    has_builtin = model_type in MODEL_TYPES or model_type in AutoConfig._registered
    if reference and replaces_remote_code(model_type, native):
        config_class = AutoConfig.config_class(model_type, where=path)
        reason = _unsupported(config_class, data)
        if reason is None:
            logger.info("%s: its auto_map names the repo's own code (%s); autoload's built-in '%s' implementation "
                        "is used instead, with or without trust_remote_code. Pass native=False (with "
                        "trust_remote_code=True) to run the repo's code.", source.describe(), reference, model_type)
            return config_class.from_dict(data, return_unused_kwargs=True, **kwargs)
        if not trust_remote_code:
            raise ValueError(f"{source.describe()}: {reason} Pass trust_remote_code=True to run the repo's own code "
                             "instead (read it first; code written for old transformers versions may not run).")
        logger.info("%s: %s Running the repo's own code (trust_remote_code=True).", source.describe(), reason)
        config_class = remote.get_class(reference, source, code_revision=code_revision)
    elif reference and remote.resolve_trust(trust_remote_code, source=source, references=[reference, *every],
                                            has_builtin=has_builtin):
        config_class = remote.get_class(reference, source, code_revision=code_revision)
    elif model_type:
        config_class = AutoConfig.config_class(model_type, where=path)
        reason = _unsupported(config_class, data)
        if reason is not None:
            raise ValueError(f"{source.describe()}: {reason}")
    else:
        raise ValueError(f"{path} has no 'model_type' key, so autoload cannot tell the architecture. Add "
                         f"\"model_type\": \"...\" (one of {', '.join(sorted(MODEL_TYPES))}) to config.json, or "
                         "load it with the architecture's config class directly.")
    return config_class.from_dict(data, return_unused_kwargs=True, **kwargs)


def replaces_remote_code(model_type, native: bool = True) -> bool:
    """Whether autoload's class for `model_type` is used instead of a repo's own code even when it is trusted."""
    return native is not False and bool(MODEL_TYPES.get(model_type, {}).get("replaces_remote_code"))


def _unsupported(config_class, data: dict) -> str | None:
    check = getattr(config_class, "unsupported_reason", None)
    return check(data) if check is not None else None


class _AutoModel:
    """Base of the AutoModel* classes; each subclass is one task of the registry table."""

    _registered: dict[type, type]

    def __init__(self):
        raise TypeError(f"{type(self).__name__} is not instantiated: use .from_pretrained(...) or .from_config(...).")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._registered = {}

    @classmethod
    def register(cls, config_class: type, model_class: type, exist_ok: bool = False) -> None:
        """Map a config class to a model class for this task. A built-in architecture's existing entry is
        replaced only with exist_ok=True, as in the reference."""
        declared = getattr(model_class, "config_class", None)
        if declared is not None and declared is not config_class:
            raise ValueError(f"{model_class.__name__}.config_class is {declared.__name__}, not "
                             f"{config_class.__name__}: they must agree.")
        model_type = getattr(config_class, "model_type", None)
        builtin = model_type in MODEL_TYPES and cls.__name__ in MODEL_TYPES[model_type]["tasks"]
        if builtin and not exist_ok and config_class.__module__.startswith("autoload."):
            raise ValueError(f"{cls.__name__} already maps '{model_type}' to a built-in class; pass exist_ok=True "
                             "to replace it.")
        cls._registered[config_class] = model_class

    @classmethod
    def model_class(cls, config: PretrainedConfig, source: FileSource | None = None,
                    trust_remote_code: bool | None = None, code_revision=None, native: bool = True) -> type:
        model_type = config.model_type
        registered = next((m for c, m in cls._registered.items() if type(config) is c), None)
        entry = MODEL_TYPES.get(model_type, {})
        builtin = entry.get("tasks", {}).get(cls.__name__)
        reference = (getattr(config, "auto_map", None) or {}).get(cls.__name__)
        # a built-in config (load_config chose the native class) gets the native model; a remote one, remote code
        native_config = type(config).__module__.startswith("autoload.")
        if builtin is not None and native_config and replaces_remote_code(model_type, native):
            reference = None
        if reference and source is not None and registered is None and remote.resolve_trust(
                trust_remote_code, source=source, references=[reference], has_builtin=builtin is not None):
            return remote.get_class(reference, source, code_revision=code_revision)
        if registered is not None:
            return registered
        if builtin is not None:
            return import_string(builtin)
        if not entry and model_type not in AutoConfig._registered:
            raise _unknown_model_type(model_type, f"the config of {source.describe() if source else 'the model'}")
        fitting = [name for name in AUTO_MODEL_CLASSES if name in entry.get("tasks", {})]
        fitting += [auto.__name__ for auto in _AutoModel.__subclasses__()
                    if any(type(config) is c for c in auto._registered) and auto.__name__ not in fitting]
        raise ValueError(f"'{model_type}' has no {cls.__name__} ({type(config).__name__} has no such head). "
                         f"Auto classes that fit it: {', '.join(fitting) or 'none'}.")

    @classmethod
    def from_config(cls, config: PretrainedConfig, **kwargs):
        """A model with fresh (random) weights for a config."""
        model_class = cls.model_class(config, trust_remote_code=kwargs.pop("trust_remote_code", None))
        build = getattr(model_class, "_from_config", None)
        return build(config, **kwargs) if build else model_class(config, **kwargs)

    @classmethod
    def from_pretrained(cls, name_or_path, *model_args, config=None, trust_remote_code: bool | None = None,
                        code_revision=None, native: bool = True, **kwargs):
        """Load a model: its config (keyword overrides such as num_labels=3 applied), the class for this task,
        then that class's own from_pretrained with the same commit. `native=False` (with trust_remote_code=True)
        runs a repo's own code even where autoload has a built-in replacement for it (chatglm)."""
        from ..loading import with_subfolder  # here: loading imports torch, AutoConfig must not
        name_or_path = with_subfolder(name_or_path, kwargs.pop("subfolder", None))
        hub = split_hub_options(kwargs)
        source = FileSource(name_or_path, **hub)
        gguf = {"gguf_file": kwargs.pop("gguf_file")} if kwargs.get("gguf_file") else {}
        if not isinstance(config, PretrainedConfig):
            config, kwargs = load_config(source, trust_remote_code=trust_remote_code, code_revision=code_revision,
                                         native=native, **gguf, **kwargs)
        model_class = cls.model_class(config, source, trust_remote_code, code_revision, native)
        if source.commit:
            hub["revision"] = source.commit  # same commit for the weights; cached files cost no request
        return model_class.from_pretrained(name_or_path, *model_args, config=config, **gguf, **hub, **kwargs)


_AUTO_MODELS = {name: type(name, (_AutoModel,), {"__doc__": f"{name}.from_pretrained(name_or_path, **kwargs): "
                                                           "the model class for this task."})
                for name in AUTO_MODEL_CLASSES}
AutoModel = _AUTO_MODELS["AutoModel"]
AutoModelForPreTraining = _AUTO_MODELS["AutoModelForPreTraining"]
AutoModelForMaskedLM = _AUTO_MODELS["AutoModelForMaskedLM"]
AutoModelForCausalLM = _AUTO_MODELS["AutoModelForCausalLM"]
AutoModelForSequenceClassification = _AUTO_MODELS["AutoModelForSequenceClassification"]
AutoModelForTokenClassification = _AUTO_MODELS["AutoModelForTokenClassification"]
AutoModelForQuestionAnswering = _AUTO_MODELS["AutoModelForQuestionAnswering"]
AutoModelForMultipleChoice = _AUTO_MODELS["AutoModelForMultipleChoice"]
AutoModelForNextSentencePrediction = _AUTO_MODELS["AutoModelForNextSentencePrediction"]
AutoModelForTextEncoding = _AUTO_MODELS["AutoModelForTextEncoding"]
AutoModelForSeq2SeqLM = _AUTO_MODELS["AutoModelForSeq2SeqLM"]

TOKENIZER_FILES_FOR_RESOLUTION = ["tokenizer_config.json", CONFIG_NAME]


class AutoTokenizer:
    """`AutoTokenizer.from_pretrained(name_or_path)`: only tokenizer files are downloaded, never weights."""

    _registered: dict[type, type] = {}

    def __init__(self):
        raise TypeError("AutoTokenizer is not instantiated: use AutoTokenizer.from_pretrained(...).")

    @classmethod
    def register(cls, config_class: type, tokenizer_class: type | None = None, slow_tokenizer_class=None,
                 fast_tokenizer_class=None, exist_ok: bool = False) -> None:
        """Map a config class to a tokenizer class (the slow/fast keywords are accepted for compatibility)."""
        chosen = fast_tokenizer_class or tokenizer_class or slow_tokenizer_class
        if chosen is None:
            raise ValueError("AutoTokenizer.register needs a tokenizer class.")
        if config_class in cls._registered and not exist_ok:
            raise ValueError(f"{config_class.__name__} already has a registered tokenizer; pass exist_ok=True.")
        cls._registered[config_class] = chosen

    @classmethod
    def tokenizer_class(cls, name: str | None):
        """A `tokenizer_class` name -> class; a trailing 'Fast' is ignored; unknown names -> generic backend."""
        from ..tokenization import TOKENIZER_CLASSES
        generic = TOKENIZER_CLASSES["TokenizersBackend"]
        if not name:
            return import_string(generic)
        for registered in cls._registered.values():
            if registered.__name__ in (name, name.removesuffix("Fast")):
                return registered
        reference = TOKENIZER_CLASSES.get(name) or TOKENIZER_CLASSES.get(name.removesuffix("Fast"))
        if reference is None:
            logger.info("Tokenizer class '%s' is not built in; using the generic tokenizers backend "
                        "(tokenizer.json as it is).", name)
        return import_string(reference or generic)

    @classmethod
    def from_pretrained(cls, name_or_path, *inputs, config=None, tokenizer_type: str | None = None,
                        trust_remote_code: bool | None = None, code_revision=None, use_fast=None,
                        native: bool = True, **kwargs):
        hub = split_hub_options(kwargs)
        source = FileSource(name_or_path, **hub)
        if kwargs.get("gguf_file"):  # the vocabulary, merges, special tokens and chat template of a GGUF file
            from ..tokenization.gguf import tokenizer_from_gguf
            return tokenizer_from_gguf(source, kwargs.pop("gguf_file"), **kwargs)
        from ..tokenization.loading import TOKENIZER_FILE_PATTERNS
        # one fetch for the class decision and the tokenizer's own files: the later fetch is then free
        found = source.fetch([*TOKENIZER_FILES_FOR_RESOLUTION, *TOKENIZER_FILE_PATTERNS])
        tokenizer_config = read_config_dict(found["tokenizer_config.json"]) if "tokenizer_config.json" in found \
            else {}
        model_config = config
        if model_config is None and CONFIG_NAME in found:
            try:
                model_config, _ = load_config(source, trust_remote_code=trust_remote_code, code_revision=code_revision,
                                              native=native)
            except (ValueError, OSError) as err:  # a tokenizer-only repo, or an odd config: the tokenizer still loads
                if isinstance(err, remote.UntrustedCodeError) and not (
                        tokenizer_config.get("tokenizer_class") or tokenizer_config.get("auto_map")):
                    raise  # the tokenizer depends on code the user has not trusted: say that
                logger.info("Tokenizer of %s: ignoring its config.json (%s)", source.describe(), err)
        tokenizer_class = cls._pick(source, tokenizer_config, model_config, tokenizer_type, trust_remote_code,
                                    code_revision, native)
        from_source = getattr(tokenizer_class, "from_source", None)
        if from_source is None:  # a class of the user's or of remote code with only from_pretrained
            if source.commit:
                hub["revision"] = source.commit
            return tokenizer_class.from_pretrained(name_or_path, *inputs, **hub, **kwargs)
        if inputs:
            raise TypeError(f"{tokenizer_class.__name__} takes no positional options; pass them by keyword.")
        return from_source(source, **kwargs)

    @classmethod
    def _pick(cls, source, tokenizer_config: dict, model_config, tokenizer_type, trust_remote_code, code_revision,
              native: bool = True):
        if tokenizer_type is not None:
            if tokenizer_type not in MODEL_TYPES:
                raise _unknown_model_type(tokenizer_type, "tokenizer_type=")
            return cls.tokenizer_class(MODEL_TYPES[tokenizer_type]["tokenizer"])
        auto_map = tokenizer_config.get("auto_map") or {}
        reference = auto_map.get("AutoTokenizer") if isinstance(auto_map, dict) else auto_map
        if reference is None and model_config is not None:
            reference = (getattr(model_config, "auto_map", None) or {}).get("AutoTokenizer")
        if isinstance(reference, (list, tuple)):  # [slow, fast]: v5 prefers the fast one
            reference = reference[1] if len(reference) > 1 and reference[1] else reference[0]
        declared = tokenizer_config.get("tokenizer_class") or getattr(model_config, "tokenizer_class", None)
        model_type = getattr(model_config, "model_type", None)
        if declared and MODEL_TYPES.get(model_type, {}).get("declared_tokenizer_ignored"):
            declared = None  # the repos name a class their files do not fit (phi3: LlamaTokenizer): the row's class
        has_builtin = declared is not None or model_type in MODEL_TYPES
        if reference and declared and native is not False and \
                declared.removesuffix("Fast") in TOKENIZERS_REPLACING_REMOTE_CODE and \
                str(reference).rpartition(".")[2].removesuffix("Fast") == declared.removesuffix("Fast"):
            logger.info("%s: its auto_map names the repo's tokenizer code (%s); autoload's built-in %s is used "
                        "instead. Pass native=False (with trust_remote_code=True) to run the repo's code.",
                        source.describe(), reference, declared)
            return cls.tokenizer_class(declared)
        if reference and remote.resolve_trust(trust_remote_code, source=source, references=[reference],
                                              has_builtin=has_builtin):
            return remote.get_class(reference, source, code_revision=code_revision)
        if model_config is not None and type(model_config) in cls._registered:
            return cls._registered[type(model_config)]
        if declared:
            return cls.tokenizer_class(declared)
        if model_type in MODEL_TYPES:
            return cls.tokenizer_class(MODEL_TYPES[model_type]["tokenizer"])
        return cls.tokenizer_class(None)


__all__ = ["AutoConfig", "AutoTokenizer", *AUTO_MODEL_CLASSES, "import_string", "load_config"]
