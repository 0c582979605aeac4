"""`PreTrainedModel`: the one base class of the built-in models (an `nn.Module`): weight init and tying, the
conveniences transformers users expect, and `from_pretrained` / `save_pretrained`, whose pipeline (meta-device
skeleton, checkpoint reading and assignment, load report, sharded saving) lives in `loading.py`.
"""

from __future__ import annotations

import functools
import os
from typing import Callable, ClassVar

import torch
import torch.utils.checkpoint
from torch import nn

from .configuration import PretrainedConfig
from .hub.push import push_to_hub as _push_to_hub
from .loading import building, default_dtype, get_tensor, load_pretrained, save_model, set_tensor, to_dtype


def _init_once(module: nn.Module, init) -> None:
    """`init` on every submodule not yet initialised, children before parents, as the reference's
    `initialize_weights` does: a backbone built (and initialised by its own post_init) inside a head is skipped
    by the head's post_init, so a seeded head consumes the RNG exactly as the reference's does. A nested
    PreTrainedModel brings its own `_init_weights`."""
    for child in module.children():
        _init_once(child, child._init_weights if isinstance(child, PreTrainedModel) else init)
    if not getattr(module, "_is_initialized", False):
        init(module)
        module._is_initialized = True


def set_seed(seed: int, deterministic: bool = False) -> None:
    """Seed python's `random`, numpy (when installed) and torch (every device), as transformers.set_seed;
    deterministic=True also asks torch for deterministic algorithms."""
    import random
    random.seed(seed)
    try:
        import numpy as np
    except ImportError:
        pass
    else:
        np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)


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
    _keys_to_ignore_on_save: ClassVar[list[str] | None] = None  # state-dict keys save_pretrained leaves out
    _no_split_modules: ClassVar[list[str]] = []  # blocks device_map="auto" keeps on one device (names, as the reference)
    supports_gradient_checkpointing: ClassVar[bool] = False  # families whose layer loop goes through run_layer
    gradient_checkpointing: bool = False  # set per backbone by gradient_checkpointing_enable()

    def __init__(self, config: PretrainedConfig, *args, **kwargs):
        super().__init__()
        if not isinstance(config, PretrainedConfig):
            raise TypeError(f"{type(self).__name__} needs a PretrainedConfig, got {type(config).__name__}.")
        self.config = config
        self.name_or_path = config.name_or_path
        # the reference's name for the kind of loss, from the class name (None for a backbone). Trainer reads it:
        # for a causal LM it counts the label tokens shifted by one (num_items_in_batch)
        self.loss_type = next((kind for kind in ("ForCausalLM", "ForMaskedLM", "ForQuestionAnswering",
                                                 "ForSequenceClassification", "ForTokenClassification",
                                                 "ForConditionalGeneration") if kind in type(self).__name__), None)

    # -- initialisation ---------------------------------------------------------------------------
    def post_init(self) -> None:
        """Initialise weights (skipped while loading: the checkpoint provides them) and tie them."""
        if not building():  # this thread is not building a skeleton for from_pretrained
            _init_once(self, self._init_weights)
            self.tie_weights()

    def _init_weights(self, module: nn.Module) -> None:
        """The reference's default init: normal(0, std) for Linear and Embedding (padding row zeroed), ones/zeros
        for norms; std is the config's initializer_range (0.02 when unset), else its init_std, else its
        initializer_factor (T5), else 0.02, as the reference picks it. Families override it where the reference
        differs; a resize with mean_resizing=False draws its new rows here."""
        c, std = self.config, 0.02
        if hasattr(c, "initializer_range"):
            std = c.initializer_range or 0.02
        elif hasattr(c, "init_std"):
            std = c.init_std
        elif hasattr(c, "initializer_factor"):
            std = c.initializer_factor
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

    def state_dict(self, *args, **kwargs):
        """torch's state dict (every key, tied ones included, as the reference's), except that an entry which is
        the very same memory as an earlier one (a tied embedding) comes as a copy, unless keep_vars=True:
        transformers.Trainer saves a model class it does not know with safetensors' save_file, which refuses
        shared tensors. Only the outermost call copies (a parent module's traversal gets torch's entries)."""
        state = super().state_dict(*args, **kwargs)
        if args or kwargs.get("keep_vars") or kwargs.get("prefix") or kwargs.get("destination") is not None:
            return state
        seen = set()
        for key, tensor in state.items():
            try:
                if tensor.device.type == "meta" or tensor.numel() == 0:
                    continue
                where = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
                         tensor.stride())
            except (RuntimeError, NotImplementedError):  # a tensor subclass without plain storage
                continue
            if where in seen:
                state[key] = tensor.clone()
            seen.add(where)
        return state

    # -- conveniences -----------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(p.dtype for p in self.parameters() if p.is_floating_point())

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
    def _from_config(cls, config: PretrainedConfig, dtype: torch.dtype | str | None = None, torch_dtype=None,
                     attn_implementation: str | None = None, **kwargs):
        """`AutoModel*.from_config`: fresh weights in `dtype` (else the legacy `torch_dtype`, else the config's own
        dtype, as the reference), attention as asked (sdpa or eager)."""
        dtype = to_dtype(dtype or torch_dtype or config.dtype or torch.get_default_dtype())
        config.dtype = dtype
        if attn_implementation is not None:
            if attn_implementation != "eager" and config.output_attentions:
                raise ValueError("output_attentions=True needs attn_implementation='eager' (the reference refuses "
                                 f"{attn_implementation!r} too).")
            config._attn_implementation = "eager" if attn_implementation == "eager" else "sdpa"
        with default_dtype(dtype):
            return cls(config, **kwargs)

    @property
    def base_model(self) -> nn.Module:
        """The backbone under `base_model_prefix` (the model itself for a bare backbone)."""
        return getattr(self, self.base_model_prefix, self)

    def get_decoder(self) -> nn.Module:
        """The decoder stack, as the reference looks it up: a `decoder`-like attribute, else the backbone's."""
        for name in ("language_model", "text_model", "decoder", "text_decoder"):
            if hasattr(self, name):
                return getattr(self, name)
        base = self.base_model
        return base.get_decoder() if base is not self and hasattr(base, "get_decoder") else self

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """Parameters counted once (tied ones too); optionally only the trainable ones, or without the weights of
        the nn.Embedding modules (as the reference)."""
        skip = {f"{name}.weight" for name, m in self.named_modules() if isinstance(m, nn.Embedding)} \
            if exclude_embeddings else set()
        return sum(p.numel() for name, p in self.named_parameters()
                   if name not in skip and (p.requires_grad or not only_trainable))

    def get_memory_footprint(self, return_buffers: bool = True) -> int:
        """Bytes held by the parameters (and the buffers)."""
        mem = sum(p.nelement() * p.element_size() for p in self.parameters())
        return mem + (sum(b.nelement() * b.element_size() for b in self.buffers()) if return_buffers else 0)

    # -- training ---------------------------------------------------------------------------------
    @property
    def is_gradient_checkpointing(self) -> bool:
        return any(getattr(m, "gradient_checkpointing", False) for m in self.modules())

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None,
                                      every_n_layers: int = 1, offload: bool = False) -> None:
        """Recompute each block's activations in the backward pass instead of keeping them (while training):
        every backbone's layer loop calls its blocks through `torch.utils.checkpoint.checkpoint(**kwargs)`
        (default use_reentrant=False, as the reference). The input embeddings' output is made to require grad,
        so that frozen embeddings (PEFT) still let gradients reach the checkpointed blocks."""
        if not self.supports_gradient_checkpointing:
            raise ValueError(f"{type(self).__name__} does not support gradient checkpointing.")
        if every_n_layers != 1 or offload:
            raise NotImplementedError("gradient checkpointing checkpoints every layer here: every_n_layers=1 and "
                                      "offload=False only.")
        kwargs = {"use_reentrant": False} if gradient_checkpointing_kwargs is None else gradient_checkpointing_kwargs
        self._set_gradient_checkpointing(True, functools.partial(torch.utils.checkpoint.checkpoint, **kwargs))
        if self.main_input_name == "input_ids":
            self.enable_input_require_grads()

    def gradient_checkpointing_disable(self) -> None:
        """Back to keeping activations. The input-embedding hook stays (as the reference: PEFT may rely on it);
        `disable_input_require_grads()` removes it."""
        if self.supports_gradient_checkpointing:
            self._set_gradient_checkpointing(False, None)

    def activation_checkpointing_enable(self, activation_checkpointing_kwargs: dict | None = None,
                                        every_n_layers: int = 1, offload: bool = False) -> None:
        """The reference's newer name of `gradient_checkpointing_enable` (what Trainer calls)."""
        self.gradient_checkpointing_enable(activation_checkpointing_kwargs, every_n_layers, offload)

    def activation_checkpointing_disable(self) -> None:
        self.gradient_checkpointing_disable()

    @property
    def is_activation_checkpointing(self) -> bool:
        """The reference's newer name of `is_gradient_checkpointing`."""
        return self.is_gradient_checkpointing

    def _set_gradient_checkpointing(self, enable: bool, func: Callable | None) -> None:
        for module in self.modules():
            if isinstance(module, PreTrainedModel):
                module.gradient_checkpointing = enable
                module._gradient_checkpointing_func = func

    def checkpointing(self) -> bool:
        """Whether this forward runs its blocks under gradient checkpointing (enabled, training, grad on). A
        backbone then keeps no KV cache (use_cache=False, as the reference): recomputing a block would write the
        cache twice."""
        return self.gradient_checkpointing and self.training and torch.is_grad_enabled()

    def run_layer(self, layer: nn.Module, *args):
        """Call one block of the layer loop; under gradient checkpointing while training with grad enabled,
        through torch.utils.checkpoint (the block's inputs are kept, its activations recomputed in backward)."""
        if self.checkpointing():
            return self._gradient_checkpointing_func(layer.__call__, *args)
        return layer(*args)

    def enable_input_require_grads(self) -> None:
        """A forward hook on each input-embedding module that marks its output as requiring grad (the reference's
        way to train adapters, or checkpointed blocks, over frozen embeddings)."""
        hooks, seen = [], set()
        for module in self.modules():
            if not isinstance(module, PreTrainedModel):
                continue
            try:
                embeddings = module.get_input_embeddings()
            except NotImplementedError:
                continue
            if embeddings is None or id(embeddings) in seen:
                continue
            seen.add(id(embeddings))
            hooks.append(embeddings.register_forward_hook(lambda _m, _i, output: output.requires_grad_(True)))
        self._require_grads_hooks = hooks
        if hooks:
            self._require_grads_hook = hooks[0]  # the reference's older single-hook attribute

    def disable_input_require_grads(self) -> None:
        for hook in getattr(self, "_require_grads_hooks", None) or []:
            hook.remove()
        self._require_grads_hooks = []
        if hasattr(self, "_require_grads_hook"):
            del self._require_grads_hook

    # -- resizing the vocabulary ------------------------------------------------------------------
    def resize_token_embeddings(self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None,
                                mean_resizing: bool = True) -> nn.Embedding:
        """Resize the input embeddings (and an untied output layer) to `new_num_tokens` rows, rounded up to a
        multiple of `pad_to_multiple_of`; config.vocab_size follows. New rows are drawn from a normal with the old
        rows' mean and 1e-9 x their covariance (mean_resizing, the reference's default), else the family's init.
        The random draws are the reference's, in its order, so a seeded resize gives the same weights."""
        old = self.get_input_embeddings()
        embeddings = self._resized_embedding(old, new_num_tokens, pad_to_multiple_of, mean_resizing)
        if new_num_tokens is None and pad_to_multiple_of is None:
            return embeddings
        n = embeddings.weight.shape[0]
        head = self.get_output_embeddings()
        if head is not None:
            if isinstance(head, nn.Embedding):
                new_head = self._resized_embedding(head, n, None, mean_resizing)
            else:
                new_head = self._resized_lm_head(head, n, mean_resizing)
            new_head.requires_grad_(head.weight.requires_grad)
            self.set_output_embeddings(new_head)
        self.config.vocab_size = n
        if hasattr(self, "vocab_size"):
            self.vocab_size = n
        self.tie_weights()
        for target in self.tied_weights():  # a tied layer's own bias follows its weight's rows (0-padded or cut)
            layer = self.get_submodule(target.rpartition(".")[0])
            if getattr(layer, "bias", None) is not None and hasattr(layer, "weight"):
                layer.bias.data = nn.functional.pad(layer.bias.data, (0, n - layer.bias.shape[0]), "constant", 0)
        return embeddings

    def set_output_embeddings(self, value: nn.Module) -> None:
        """Put `value` where get_output_embeddings() found the output layer."""
        old = self.get_output_embeddings()
        name = next((n for n, m in self.named_modules() if m is old and n), None)
        if name is None:
            raise NotImplementedError(f"{type(self).__name__} has no output embeddings to replace.")
        parent, _, attr = name.rpartition(".")
        setattr(self.get_submodule(parent) if parent else self, attr, value)

    def _resized_embedding(self, old: nn.Embedding, n: int | None, multiple: int | None, mean_resizing: bool):
        """The reference's `_get_resized_embeddings`: the old module keeps its identity, its weight data is
        replaced (a tied output layer shares the Parameter and follows)."""
        if multiple is not None:
            if not isinstance(multiple, int):
                raise ValueError(f"pad_to_multiple_of must be an int, got {multiple!r}.")
            n = ((old.weight.shape[0] if n is None else n) + multiple - 1) // multiple * multiple
        if n is None:
            return old
        old_n, dim = old.weight.shape
        if old_n == n:
            old.num_embeddings = n
            return old
        if not isinstance(old, nn.Embedding):
            raise TypeError(f"Input embeddings are a {type(old).__name__}, not an nn.Embedding: cannot resize.")
        new = nn.Embedding(n, dim, device=old.weight.device, dtype=old.weight.dtype)
        if n > old_n:
            if mean_resizing:
                _init_added_rows_with_mean(old.weight.data, new.weight.data, n - old_n)
            else:
                self._init_weights(new)
        keep = min(old_n, n)
        new.weight.data[:keep] = old.weight.data[:keep]
        old.weight.data = new.weight.data
        old.num_embeddings = n
        if old.padding_idx is not None and n - 1 < old.padding_idx:
            old.padding_idx = None
        return old

    def _resized_lm_head(self, old: nn.Linear, n: int, mean_resizing: bool) -> nn.Linear:
        """The reference's `_get_resized_lm_head` (not transposed): a new Linear with the first rows copied."""
        old_n, dim = old.weight.shape
        if old_n == n:
            old.out_features = n  # tied weights already resized
            return old
        if not isinstance(old, nn.Linear):
            raise TypeError(f"Output embeddings are a {type(old).__name__}, not an nn.Linear: cannot resize.")
        new = nn.Linear(dim, n, bias=old.bias is not None, device=old.weight.device, dtype=old.weight.dtype)
        if n > old_n:
            if mean_resizing:
                _init_added_rows_with_mean(old.weight.data, new.weight.data, n - old_n)
                if old.bias is not None:
                    mean = torch.mean(old.bias.data, axis=0, dtype=torch.float32)
                    std = torch.std(old.bias.data, axis=0).to(torch.float32)
                    new.bias.data[-(n - old_n):].normal_(mean=mean, std=1e-9 * std)
            else:
                self._init_weights(new)
        keep = min(old_n, n)
        new.weight.data[:keep] = old.weight.data[:keep]
        if old.bias is not None:
            new.bias.data[:keep] = old.bias.data[:keep]
        return new

    # -- loading ----------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path, *model_args, config: PretrainedConfig | None = None,
                        revision: str | None = None, dtype="auto", torch_dtype=None, device=None, device_map=None,
                        local_files_only: bool = False, token=None, cache_dir=None, endpoint: str | None = None,
                        trust_remote_code: bool | None = None, code_revision=None,
                        ignore_mismatched_sizes: bool = False, output_loading_info: bool = False,
                        use_safetensors: bool | None = None, weights_only: bool = True, state_dict=None,
                        attn_implementation: str | None = None, variant: str | None = None,
                        hub: str | None = None, check_size: bool = True, tp_plan: str | dict | None = None,
                        tp_size: int | None = None, gguf_file: str | None = None, quantize: str | None = None,
                        quantize_group_size: int | None = None, **kwargs):
        """Load a model from a folder or a hub repo id (the steps: see loading.py).

        dtype: "auto" (the checkpoint's), a torch.dtype or its name. device / device_map: "cpu", "cuda",
        "cuda:1", a torch.device, or device_map="auto" (the visible GPUs in order, then the CPU). Other keywords
        are config overrides (num_labels=3, ...); an unknown keyword is an error naming the closest valid one.
        check_size=False (or AUTOLOAD_SKIP_SIZE_CHECK=1) skips the parameter estimate that refuses a config far
        larger than this machine's memory or than the checkpoint on disk (`ModelTooLargeError`).
        tp_plan="auto" (under torchrun or an initialised process group): tensor parallel over `tp_size` ranks
        (default: all), each rank reading only its slices of the checkpoint (see autoload/distributed/).
        gguf_file="model.Q4_K_M.gguf": config and weights from that GGUF file of the folder or repo (docs/gguf.md).
        quantize="int4" | "int8": weight-only quantization of the Linear layers at load (int4: groups of
        `quantize_group_size`, default 128); GPTQ/AWQ checkpoints (config.json `quantization_config`) load
        quantized by themselves (docs/quantization.md).
        """
        return load_pretrained(cls, name_or_path, model_args, config=config, revision=revision, dtype=dtype,
                               torch_dtype=torch_dtype, device=device, device_map=device_map,
                               local_files_only=local_files_only, token=token, cache_dir=cache_dir, endpoint=endpoint,
                               trust_remote_code=trust_remote_code, code_revision=code_revision,
                               ignore_mismatched_sizes=ignore_mismatched_sizes,
                               output_loading_info=output_loading_info, use_safetensors=use_safetensors,
                               weights_only=weights_only, state_dict=state_dict,
                               attn_implementation=attn_implementation, variant=variant, hub=hub,
                               check_size=check_size, kwargs=kwargs, tp_plan=tp_plan, tp_size=tp_size,
                               gguf_file=gguf_file, quantize=quantize, quantize_group_size=quantize_group_size,
                               load_weights=_tensor_parallel(tp_plan, tp_size))

    def load_extras(self, source) -> None:
        """Called by from_pretrained once the weights are in, with the call's `FileSource`: a mixin reads the
        files it needs next to the weights (GenerationMixin: generation_config.json). Nothing here."""

    # -- saving -----------------------------------------------------------------------------------
    push_to_hub = _push_to_hub  # save_pretrained into a temp folder, then one upload commit (hub/push.py)

    def save_pretrained(self, save_directory: str | os.PathLike, is_main_process: bool = True,
                        state_dict: dict | None = None, save_function: Callable = torch.save,
                        max_shard_size: int | str = "5GB", safe_serialization: bool = True) -> None:
        """config.json (+ generation_config.json for a generative model) plus model.safetensors (or shards and an
        index), tied copies written once, `_keys_to_ignore_on_save` left out. As the reference: `state_dict`
        replaces the model's own (accelerate's gathered one), only the main process writes (`is_main_process`),
        and `save_function` writes each pickled shard when safe_serialization=False (accelerate.save)."""
        if not is_main_process:
            return
        if state_dict is not None and self._keys_to_ignore_on_save:
            state_dict = {k: v for k, v in state_dict.items() if k not in self._keys_to_ignore_on_save}
        elif self._keys_to_ignore_on_save:
            state_dict = {k: v for k, v in self.state_dict().items() if k not in self._keys_to_ignore_on_save}
        save_model(self, save_directory, max_shard_size=max_shard_size, safe_serialization=safe_serialization,
                   state_dict=state_dict, save_function=save_function)


def _tensor_parallel(tp_plan, tp_size):
    """from_pretrained's weight loader for tp_plan (None: the ordinary one)."""
    if tp_plan is None:
        if tp_size is not None:
            raise ValueError("tp_size=... needs tp_plan='auto' (or a plan dict).")
        return None
    from .distributed.tensor_parallel import load_sharded
    return functools.partial(load_sharded, tp_plan=tp_plan, tp_size=tp_size)


def _init_added_rows_with_mean(old: torch.Tensor, new: torch.Tensor, added: int) -> None:
    """New rows ~ N(mean of the old rows, 1e-9 x their covariance), or the mean itself when that covariance is not
    positive definite (the reference's formula and random draws)."""
    weight = old.to(torch.float32)  # (V, C)
    mean = weight.mean(dim=0)  # (C,)
    centered = weight - mean
    covariance = centered.T @ centered / weight.shape[0]  # (C, C)
    if torch.distributions.constraints.positive_definite.check(1e-9 * covariance).all():
        dist = torch.distributions.multivariate_normal.MultivariateNormal(mean, covariance_matrix=1e-9 * covariance)
        new[-added:, :] = dist.sample(sample_shape=(added,)).to(old.dtype)
    else:
        new[-added:, :] = mean[None, :].repeat(added, 1).to(old.dtype)
