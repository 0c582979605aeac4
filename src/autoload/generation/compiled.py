"""`generate(compile=True)`: gpt-fast's compiled decoding on a StaticCache, with its state on the model.

Two objects:
- `CompiledDecoder`, held by the model (`model._compiled_decoder`, made on first use): the torch.compile'd
  one-token step and the identities of the weights its graphs froze. Its graphs belong to a private copy of the
  step's code object, so dropping them (`invalidate`, or the model being freed) touches no other compiled
  function in the process: nothing calls `torch._dynamo.reset()`.
- `CompiledSteps`, one per `generate` call: the fixed-shape loop around that step (the boolean key mask over the
  whole cache, the cache index handed over as a tensor).

The model is used by duck typing only: its backbone (under `base_model_prefix`) opts in with
`supports_compiled_decode = True` once its forward reads no cache length when given a 4-D mask and position ids,
and, if some layers have a sliding window, with `compiled_sliding_window = True` once it cuts that mask to each
window itself (the query's cache index is `cache.write_positions`).
"""

from __future__ import annotations

import logging
import types
import weakref

import torch

logger = logging.getLogger("autoload")

CACHE_MULTIPLE = 256  # compile=True sizes the static cache in steps of this many positions

# inductor's freezing (the weights become constants, prepacked for its CPU micro-GEMMs), switched on only around
# the step's calls: dynamo reads the flag while it traces (parameters become frozen constants), so it cannot be a
# compile option; no autotune tables printed
STEP_INDUCTOR_CONFIG = {"freezing": True, "autotune_num_choices_displayed": 0,
                        "max_autotune_report_choices_stats": False}


def compiled_decoder(model) -> CompiledDecoder:
    """The model's own CompiledDecoder, created on first use."""
    decoder = model.__dict__.get("_compiled_decoder")
    if decoder is None:
        decoder = CompiledDecoder()
        model.__dict__["_compiled_decoder"] = decoder  # a plain attribute: not a submodule, not in the state dict
    return decoder


class CompiledDecoder:
    """The compiled decode step of one model. `step(model, fn)` returns `torch.compile(fn)` built on a private
    copy of `fn`'s code, compiled again (after `invalidate`) when the model's parameters were replaced or changed
    in place since the graphs froze them (tensor identities and version counters are compared): a graph never
    outlives the weights it froze. Each (batch, cache length) compiles once; past
    torch._dynamo.config.recompile_limit (8) graphs the step runs eagerly. Copying the model (deepcopy, pickle)
    gives the copy an empty decoder."""

    def __init__(self):
        self._step = None  # torch.compile wrapper of this decoder's own copy of the step function
        self._weights: list[tuple[int, int]] | None = None  # (id, version) of each parameter the graphs froze
        self._release = None  # weakref.finalize dropping the copy's graphs (and their frozen weights)

    def step(self, model, fn):
        """The compiled `fn(model, ...)` for this model's current weights."""
        weights = [(id(p), p._version) for p in model.parameters()]
        if self._step is not None and weights != self._weights:
            logger.info("generate(compile=True): the model's weights changed since the last compile; dropping "
                        "its compiled graphs (their frozen weights) and compiling again.")
            self.invalidate()
        if self._step is None:
            own = _own_copy(fn)
            self._step = torch.compile(own, mode="max-autotune-no-cudagraphs", dynamic=False, fullgraph=False)
            self._release = weakref.finalize(self, _drop_graphs, own.__code__)
            self._weights = weights
        return self._step

    def invalidate(self) -> None:
        """Drop this model's compiled graphs; every other compiled function in the process keeps its own."""
        if self._release is not None:
            self._release()
        self._step = self._weights = self._release = None

    def __deepcopy__(self, memo) -> CompiledDecoder:
        return CompiledDecoder()

    def __reduce__(self):
        return CompiledDecoder, ()


def _own_copy(fn: types.FunctionType) -> types.FunctionType:
    """`fn` with a code object of its own: dynamo keeps compiled graphs per code object, so graphs compiled
    through the copy can be dropped without touching anyone else's."""
    return types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)


def _drop_graphs(code: types.CodeType) -> None:
    from torch._dynamo.eval_frame import remove_from_cache
    remove_from_cache(code)


class CompiledSteps:
    """One generate call's compiled decoding: each step writes the new keys/values at index `cache.length`,
    handed to the graph as a (1,) LongTensor rather than a Python int, and attends over the whole max_len
    buffers through a boolean (B, 1, 1, max_len) mask — True for the keys already written and not padding — so
    every step has the same shapes and the graph compiles once per (batch, max_len)."""

    def __init__(self, model, cache, mask, filled: int, fn, extra: tuple = ()):
        static = getattr(cache, "self_attention_cache", cache)  # an encoder-decoder's: its decoder's own cache
        if not (hasattr(static, "write_positions") and hasattr(static, "max_cache_len")):
            raise ValueError("compile=True needs a StaticCache (cache_implementation='static').")
        seq2seq = getattr(model.config, "is_encoder_decoder", False)
        backbone = model.get_decoder() if seq2seq else getattr(model, getattr(model, "base_model_prefix", ""), None)
        if not getattr(backbone, "supports_compiled_decode", False):  # its forward must not read the cache length
            raise NotImplementedError(f"compile=True supports the Llama-family decoders, ChatGLM, T5, BART and "
                                      f"Marian, not {type(model).__name__}.")
        layers = getattr(backbone, "layers", ())  # the Llama-family backbones: layers[i].self_attn
        # sliding layers need a backbone that cuts the full-cache mask to their window (Gemma's: from the cache's
        # write index, a tensor)
        if not getattr(backbone, "compiled_sliding_window", False) and any(
                getattr(layer.self_attn, "sliding_window", None) is not None for layer in layers):
            raise NotImplementedError("compile=True does not support sliding-window attention in "
                                      f"{type(backbone).__name__} yet.")
        self.model, self.cache, self.static, self.extra = model, cache, static, extra
        self.step = compiled_decoder(model).step(model, fn)
        batch, device = static.keys[0].shape[0], static.keys[0].device
        self.keys_ok = torch.zeros(batch, static.max_cache_len, dtype=torch.bool, device=device)  # (B, max_len)
        self.keys_ok[:, :filled] = True if mask is None else mask.bool()

    def reorder(self, beam_idx: torch.Tensor) -> None:
        """Beam search: the key mask's rows follow the beams, as the cache's do (same shape: no recompile)."""
        self.keys_ok = self.keys_ok.index_select(0, beam_idx.to(self.keys_ok.device))

    def __call__(self, tokens: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """(B, 1) tokens at (B, 1) positions -> (B, V) fp32 logits; the cache grows by one."""
        import torch._inductor.config as inductor_config  # here: importing inductor costs about a second
        static, index = self.static, self.static.length
        if index >= static.max_cache_len:
            raise ValueError(f"StaticCache holds {static.max_cache_len} positions; {index + 1} were asked for.")
        self.keys_ok[:, index] = True
        mask = self.keys_ok[:, None, None, :]  # (B, 1, 1, max_len), boolean: SDPA and eager attention take it
        static.write_positions = torch.tensor([index], device=tokens.device)
        # fresh (B, 1) tensors: views into the growing sequences change strides, and strides are guarded on
        tokens, position_ids = tokens.clone(), position_ids.clone(memory_format=torch.contiguous_format)
        try:
            with inductor_config.patch(STEP_INDUCTOR_CONFIG):
                logits = self.step(self.model, tokens, mask, position_ids, self.cache, *self.extra)
        finally:
            static.write_positions = None
        static.length = index + 1
        return logits
