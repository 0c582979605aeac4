"""Typed errors for files that come from a model repo (configs, tokenizer files, chat templates).

Every byte of a repo is untrusted: these errors say which file or key was refused, why, and what to do. The hub
client's own errors live in `autoload.hub.errors`. No imports here, so any module may raise these cheaply.
"""

from __future__ import annotations


class RepoFileError(OSError, ValueError):
    """A repo file (config.json, tokenizer.json, ...) cannot be used: not valid JSON, nested too deeply, too
    large, or of the wrong shape. An `OSError` like transformers' "not a valid JSON file", and a `ValueError`."""

    def __str__(self) -> str:  # OSError would format errno/filename when given several arguments
        return str(self.args[0]) if self.args else ""


class ConfigError(ValueError):
    """A config value autoload refuses to build a model from (a size that is not a positive int within bounds)."""


class ConfigTypeError(ConfigError, TypeError):
    """A config field holds the wrong kind of value (a float, bool or string where an int belongs, ...)."""


class ModelTooLargeError(ConfigError):
    """The parameter estimate of a config does not fit this machine, or disagrees wildly with the checkpoint."""


class ChatTemplateError(ValueError):
    """A chat template hit a render limit (time, output size, loop iterations, a string or list too large)."""
