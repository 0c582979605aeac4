"""`PreTrainedModel`: the one base class of the built-in models (an `nn.Module`): weight init and tying, the
conveniences transformers users expect, and `from_pretrained` / `save_pretrained`, whose pipeline (meta-device
skeleton, checkpoint reading and assignment, load report, sharded saving) lives in `loading.py`.
"""

from __future__ import annotations

import os
from typing import ClassVar

import torch
from torch import nn

from .configuration import PretrainedConfig
from .loading import building, default_dtype, get_tensor, load_pretrained, save_model, set_tensor, to_dtype


class PreTrainedModel(nn.Module):
    """Base of every built-in model. Subclasses set `config_class`, `base_model_prefix`, optionally
    `_tied_weights_keys = {target: source}` and `_keys_to_ignore_on_load_unexpected` (regexes), build their
    modules with checkpoint key names, and call `self.post_init()` at the end of `__init__`."""

    config_class: ClassVar[type[PretrainedConfig]] = PretrainedConfig
    base_model_prefix: ClassVar[str] = ""
    main_input_name: ClassVar[str] = "input_ids"
    _tied_weights_keys: ClassVar[dict[str, str]] = {}
    _keys_to_ignore_on_load_unexpected: ClassVar[list[str]] = []
    _keys_to_ignore_on_load_missing: ClassVar[list[str]] = []

    def __init__(self, config: PretrainedConfig, *args, **kwargs):
        super().__init__()
        if not isinstance(config, PretrainedConfig):
            raise TypeError(f"{type(self).__name__} needs a PretrainedConfig, got {type(config).__name__}.")
        self.config = config
        self.name_or_path = config.name_or_path

    # -- initialisation ---------------------------------------------------------------------------
    def post_init(self) -> None:
        """Initialise weights (skipped while loading: the checkpoint provides them) and tie them."""
        if not building():  # this thread is not building a skeleton for from_pretrained
            self.apply(self._init_weights)
            self.tie_weights()

    def _init_weights(self, module: nn.Module) -> None:
        """The reference's default init: normal(0, initializer_range) for Linear and Embedding (padding row
        zeroed), ones/zeros for norms. Families override it where the reference differs."""
        std = getattr(self.config, "initializer_range", 0.02)
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(0.0, std)
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.data.normal_(0.0, std)
            if module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()
        elif "LayerNorm" in type(module).__name__ or "RMSNorm" in type(module).__name__:
            if getattr(module, "weight", None) is not None:
                module.weight.data.fill_(1.0)
            if getattr(module, "bias", None) is not None:
                module.bias.data.zero_()

    def tied_weights(self) -> dict[str, str]:
        """{target: source} pairs in force for this config (only with tie_word_embeddings)."""
        return dict(self._tied_weights_keys) if getattr(self.config, "tie_word_embeddings", False) else {}

    def tie_weights(self) -> None:
        for target, source in self.tied_weights().items():
            set_tensor(self, target, get_tensor(self, source))

    # -- conveniences -----------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(p.dtype for p in self.parameters() if p.is_floating_point())

    def num_parameters(self, only_trainable: bool = False) -> int:
        params = {id(p): p for p in self.parameters() if p.requires_grad or not only_trainable}
        return sum(p.numel() for p in params.values())

    def get_input_embeddings(self) -> nn.Module:
        base = getattr(self, self.base_model_prefix, self) if self.base_model_prefix else self
        if base is not self:
            return base.get_input_embeddings()
        raise NotImplementedError(f"{type(self).__name__} does not define get_input_embeddings().")

    @classmethod
    def can_generate(cls) -> bool:
        """False here: the heads that generate text inherit `autoload.generation.GenerationMixin` first, which
        adds generate / chat / stream_chat and answers True."""
        return False

    def set_input_embeddings(self, value: nn.Module) -> None:
        base = getattr(self, self.base_model_prefix, self) if self.base_model_prefix else self
        if base is not self:
            return base.set_input_embeddings(value)
        raise NotImplementedError(f"{type(self).__name__} does not define set_input_embeddings().")

    def get_output_embeddings(self) -> nn.Module | None:
        return None  # heads with an LM projection override this

    @classmethod
    def _from_config(cls, config: PretrainedConfig, dtype: torch.dtype | str | None = None, **kwargs):
        with default_dtype(to_dtype(dtype) if dtype else torch.get_default_dtype()):
            return cls(config, **kwargs)

    # -- loading ----------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path, *model_args, config: PretrainedConfig | None = None,
                        revision: str | None = None, dtype="auto", torch_dtype=None, device=None, device_map=None,
                        local_files_only: bool = False, token=None, cache_dir=None, endpoint: str | None = None,
                        trust_remote_code: bool | None = None, code_revision=None,
                        ignore_mismatched_sizes: bool = False, output_loading_info: bool = False,
                        use_safetensors: bool | None = None, weights_only: bool = True, state_dict=None,
                        attn_implementation: str | None = None, variant: str | None = None,
                        hub: str | None = None, check_size: bool = True, **kwargs):
        """Load a model from a folder or a hub repo id (the steps: see loading.py).

        dtype: "auto" (the checkpoint's), a torch.dtype or its name. device / device_map: "cpu", "cuda",
        "cuda:1", a torch.device, or device_map="auto" (the visible GPUs in order, then the CPU). Other keywords
        are config overrides (num_labels=3, ...); an unknown keyword is an error naming the closest valid one.
        check_size=False (or AUTOLOAD_SKIP_SIZE_CHECK=1) skips the parameter estimate that refuses a config far
        larger than this machine's memory or than the checkpoint on disk (`ModelTooLargeError`).
        """
        return load_pretrained(cls, name_or_path, model_args, config=config, revision=revision, dtype=dtype,
                               torch_dtype=torch_dtype, device=device, device_map=device_map,
                               local_files_only=local_files_only, token=token, cache_dir=cache_dir, endpoint=endpoint,
                               trust_remote_code=trust_remote_code, code_revision=code_revision,
                               ignore_mismatched_sizes=ignore_mismatched_sizes,
                               output_loading_info=output_loading_info, use_safetensors=use_safetensors,
                               weights_only=weights_only, state_dict=state_dict,
                               attn_implementation=attn_implementation, variant=variant, hub=hub,
                               check_size=check_size, kwargs=kwargs)

    def load_extras(self, source) -> None:
        """Called by from_pretrained once the weights are in, with the call's `FileSource`: a mixin reads the
        files it needs next to the weights (GenerationMixin: generation_config.json). Nothing here."""

    # -- saving -----------------------------------------------------------------------------------
    def save_pretrained(self, folder: str | os.PathLike, *, max_shard_size: int | str = "5GB",
                        safe_serialization: bool = True, state_dict: dict | None = None) -> None:
        """config.json plus model.safetensors (or shards and an index), tied copies written once."""
        save_model(self, folder, max_shard_size=max_shard_size, safe_serialization=safe_serialization,
                   state_dict=state_dict)
