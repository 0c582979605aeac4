"""autoload: load pretrained models by name, leaner and faster than the Auto* classes you know.

Public names are exported lazily (PEP 562): `import autoload` imports neither torch nor transformers
nor requests; each name's module is imported the first time the name is used.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "hub_download": "autoload.hub.download",
    "snapshot_download": "autoload.hub.download",
    "HubServer": "autoload.server",
    "PretrainedConfig": "autoload.configuration",
    "PreTrainedModel": "autoload.modeling",
    "pipeline": "autoload.pipelines",
    "GenerationConfig": "autoload.generation",
    "TextStreamer": "autoload.generation",
    "TextIteratorStreamer": "autoload.generation",
    "AutoConfig": "autoload.registry.auto",
    "AutoTokenizer": "autoload.registry.auto",
    **{name: "autoload.registry.auto" for name in (
        "AutoModel", "AutoModelForPreTraining", "AutoModelForMaskedLM", "AutoModelForCausalLM",
        "AutoModelForSequenceClassification", "AutoModelForTokenClassification", "AutoModelForQuestionAnswering",
        "AutoModelForMultipleChoice", "AutoModelForNextSentencePrediction", "AutoModelForTextEncoding")},
    **{name: "autoload.errors" for name in (
        "RepoFileError", "ConfigError", "ConfigTypeError", "ModelTooLargeError", "ChatTemplateError")},
    **{name: "autoload.hub.errors" for name in (
        "HubError", "HubHTTPError", "RepositoryNotFoundError", "GatedRepoError", "RevisionNotFoundError",
        "EntryNotFoundError", "LocalEntryNotFoundError", "OfflineModeError", "IncompleteSnapshotError",
        "IntegrityError", "UnsafePathError", "InvalidRepoIdError", "InvalidRevisionError",
        "MalformedResponseError", "RetryLimitError", "CacheLockTimeoutError")},
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'autoload' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
