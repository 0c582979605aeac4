"""`autoload.pipeline(task, model, ...)`: a model and its tokenizer behind one call, for the common text tasks.

    fill = autoload.pipeline("fill-mask", "google-bert/bert-base-chinese")
    fill("巴黎是[MASK]国的首都。", top_k=5)

One module per task (fill_mask, embeddings, text_classification, token_classification, text_generation,
zero_shot, text_ranking, text2text) on a shared base (base.py: options, batching, progress bar, inference mode). Importing this package
imports no torch; the task's module is imported when a pipeline is built.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re

# task -> "module:Class" (relative to this package)
TASKS: dict[str, str] = {
    "fill-mask": "fill_mask:FillMaskPipeline",
    "feature-extraction": "embeddings:FeatureExtractionPipeline",
    "sentence-embeddings": "embeddings:SentenceEmbeddingsPipeline",
    "text-classification": "text_classification:TextClassificationPipeline",
    "token-classification": "token_classification:TokenClassificationPipeline",
    "text-generation": "text_generation:TextGenerationPipeline",
    "zero-shot-classification": "zero_shot:ZeroShotClassificationPipeline",
    "text-ranking": "text_ranking:TextRankingPipeline",
    "text2text-generation": "text2text:Text2TextGenerationPipeline",
    "summarization": "text2text:SummarizationPipeline",
    "translation": "text2text:TranslationPipeline",  # also "translation_xx_to_yy"
}
ALIASES: dict[str, str] = {"sentiment-analysis": "text-classification", "ner": "token-classification"}
HUB_OPTIONS = ("revision", "token", "cache_dir", "local_files_only", "endpoint")


def pipeline_class(task: str) -> type:
    """The pipeline class of a task name or alias; an unknown name is an error listing the supported ones."""
    name = ALIASES.get(task, task) if isinstance(task, str) else task
    if isinstance(name, str) and re.fullmatch(r"translation_[A-Za-z_-]+_to_[A-Za-z_-]+", name):
        name = "translation"
    target = TASKS.get(name)
    if target is None:
        known = sorted([*TASKS, *ALIASES])
        close = difflib.get_close_matches(str(task), known, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"Unknown task {task!r}.{hint} Supported tasks: {', '.join(known)}.")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), attr)


def pipeline(task: str, model=None, tokenizer=None, *, device=None, dtype=None, torch_dtype=None, device_map=None,
             batch_size: int | None = None, progress: bool | None = None, trust_remote_code: bool | None = None,
             model_kwargs: dict | None = None, revision: str | None = None, token=None, cache_dir=None,
             local_files_only: bool = False, endpoint: str | None = None, hub: str | None = None, **task_options):
    """Build the pipeline of `task` ("fill-mask", "feature-extraction", "sentence-embeddings",
    "text-classification" / "sentiment-analysis", "token-classification" / "ner", "text-generation",
    "zero-shot-classification", "text-ranking", "text2text-generation", "summarization", "translation" /
    "translation_xx_to_yy").

    model: a hub repo id, a folder, or a loaded model (then `tokenizer` is loaded from the model's
    `name_or_path` unless given). tokenizer: a loaded tokenizer, a repo id or a folder (default: the model's).
    device ("cpu", "cuda", "cuda:1", an int with -1 = CPU) and dtype (a torch.dtype or its name) apply when
    loading, or move a loaded model; torch_dtype is the reference's older name of dtype. device_map ("auto",
    "cpu", ...) goes to `from_pretrained` (not with device). None of these reach generate(). batch_size: how many
    inputs of a list share one forward pass. progress: a bar for lists (None: for more than 32 inputs).
    model_kwargs go to `from_pretrained`; the hub options (revision, token, ...) apply to the model and the
    tokenizer. Other keywords are the task's options (e.g. top_k=3), used as defaults of every call; a call can
    override them.
    """
    cls = pipeline_class(task)
    cls.check_options(task_options)
    if torch_dtype is not None:
        if dtype is not None and dtype != torch_dtype:
            raise ValueError(f"dtype={dtype!r} and torch_dtype={torch_dtype!r} disagree: pass one (torch_dtype is the "
                             "older name of dtype).")
        dtype = torch_dtype
    if device_map is not None and device is not None:
        raise ValueError("Pass device or device_map, not both: device_map places the model when it is loaded.")
    if model is None:
        raise ValueError(f"pipeline({task!r}) needs model=...: a repo id, a folder or a loaded model (autoload "
                         "picks no default model).")
    hub = {k: v for k, v in (("revision", revision), ("token", token), ("cache_dir", cache_dir),
                             ("local_files_only", local_files_only), ("endpoint", endpoint), ("hub", hub)) if v}
    if device is not None and isinstance(device, int) and not isinstance(device, bool) and device < 0:
        device = "cpu"
    name = os.fspath(model) if isinstance(model, (str, os.PathLike)) else None
    if name is not None:
        model = _load_model(cls, name, device, dtype, device_map, trust_remote_code, hub, model_kwargs or {})
    else:
        if model_kwargs or device_map is not None:
            raise ValueError("model_kwargs and device_map apply when the model is loaded by name; this model is "
                             "already loaded.")
        if device is not None or dtype is not None:
            from ..loading import to_dtype
            model = model.to(device=device, dtype=None if dtype is None else to_dtype(dtype))
    cls.check_model(model)

    if tokenizer is None or isinstance(tokenizer, (str, os.PathLike)):
        source = os.fspath(tokenizer) if tokenizer is not None else name or getattr(model, "name_or_path", "")
        if not source:
            raise ValueError(f"No tokenizer: the loaded {type(model).__name__} does not say where it came from "
                             "(name_or_path is empty). Pass tokenizer=... (a tokenizer, repo id or folder).")
        from ..registry.auto import AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code, **hub)

    extra = {}
    if cls.task == "sentence-embeddings":
        extra["setup"] = _sentence_setup(name or getattr(model, "name_or_path", ""), hub)
    if cls.task in ("text2text-generation", "summarization", "translation"):
        extra["task"] = task  # "translation_en_to_fr" picks the model's task_specific_params and languages
    return cls(model, tokenizer, batch_size=batch_size, progress=progress, **extra, **task_options)


def _load_model(cls, name: str, device, dtype, device_map, trust_remote_code, hub: dict, model_kwargs: dict):
    from ..registry import auto
    auto_class = getattr(auto, cls.auto_class)
    kwargs = {**model_kwargs, **hub}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if device_map is not None:
        kwargs["device_map"] = device_map
    if device is not None:
        kwargs["device"] = device
    try:
        return auto_class.from_pretrained(name, trust_remote_code=trust_remote_code, **kwargs)
    except ValueError as err:
        if f"has no {cls.auto_class}" in str(err):
            raise ValueError(f"'{name}' cannot do {cls.task}: it needs a {cls.auto_class} model. {err}") from None
        raise


def _sentence_setup(name: str, hub: dict):
    """The repo's sentence-transformers setup, or plain mean pooling when it has none (or cannot be read)."""
    from ..hub.errors import HubError
    from ..hub.source import FileSource
    from ..sentence.modules import SentenceSetup, read_sentence_setup
    if not name:
        return SentenceSetup()
    try:
        source = FileSource(name, **hub)
        return read_sentence_setup(source)
    except (OSError, HubError) as err:
        import logging
        logging.getLogger("autoload").warning("sentence-embeddings: could not read the sentence-transformers files "
                                              "of %s (%s); using mean pooling without normalisation.", name, err)
        return SentenceSetup()


__all__ = ["ALIASES", "TASKS", "pipeline", "pipeline_class"]
