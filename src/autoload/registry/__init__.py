"""The registry: which config, tokenizer and model classes serve a model_type, and the Auto classes.

`import autoload.registry` is light; `auto` (the Auto classes) is imported on first use.
"""

from .table import AUTO_MODEL_CLASSES, MODEL_TYPES

__all__ = ["MODEL_TYPES", "AUTO_MODEL_CLASSES"]
