"""generate(return_dict_in_generate=True, output_attentions=True, output_hidden_states=True) against transformers'
GenerateDecoderOnlyOutput / GenerateBeamDecoderOnlyOutput on tiny random Llama and GPT-2 checkpoints, both loaded
with eager attention: per step, per layer, the same shapes (prompt length at the prefill, then 1) and values, for
greedy decoding, seeded sampling, beam search, left-padded batches, no cache; the flags taken from a passed
generation config and from the model config; the flags without return_dict_in_generate (accepted, ignored); and
the failure paths."""

from __future__ import annotations

import importlib
import warnings

import pytest
import torch
import transformers
from torch.testing import assert_close

from autoload.generation import GenerationConfig, generate
import model_cases
from test_generation import DECODER, FAMILIES, VOCAB, prompts

transformers.logging.set_verbosity_error()
FLAGS = dict(return_dict_in_generate=True, output_attentions=True, output_hidden_states=True)


def eager_pair(folder, family: str, **overrides):
    config_name, class_name, extra = FAMILIES[family]
    module = importlib.import_module(f"autoload.models.{'gpt2' if family == 'gpt2' else 'llama'}")
    values = {**({} if family == "gpt2" else DECODER), **extra, "vocab_size": VOCAB, **overrides}
    return model_cases.make_pair(folder, getattr(transformers, class_name), getattr(module, class_name),
                                 getattr(transformers, config_name)(**values), attn="eager", reload=True)


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def pair(request, tmp_path_factory):
    return eager_pair(tmp_path_factory.mktemp(request.param), request.param)


def run_both(ref, ours, ids, mask, seed=None, **kwargs):
    kwargs = {"max_new_tokens": 6, **kwargs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if seed is not None:
            torch.manual_seed(seed)
        theirs = ref.generate(ids, attention_mask=mask, **kwargs)
        if seed is not None:
            torch.manual_seed(seed)
        mine = generate(ours, ids, mask, **kwargs)
    return mine, theirs


def assert_steps_equal(mine, theirs, prompt_len: int, layers: int, cached: bool = True):
    """Same nesting (steps x layers), shapes and values (1e-4); the prefill step covers the prompt, later ones 1
    token (the whole sequence without a cache)."""
    assert torch.equal(mine.sequences, theirs.sequences)
    for name, per_step in (("attentions", layers), ("hidden_states", layers + 1)):
        a, b = getattr(mine, name), getattr(theirs, name)
        assert isinstance(a, tuple) and len(a) == len(b) > 1, name
        for step, (x, y) in enumerate(zip(a, b)):
            assert isinstance(x, tuple) and len(x) == len(y) == per_step, (name, step)
            for u, v in zip(x, y):
                assert u.shape == v.shape, (name, step, u.shape, v.shape)
                length = prompt_len + step if not cached and step else (prompt_len if step == 0 else 1)
                assert u.shape[-2 if name == "attentions" else 1] == length
                assert_close(u, v, atol=1e-4, rtol=0)


@pytest.mark.parametrize("options", [dict(), dict(do_sample=True, num_return_sequences=2, top_k=20),
                                     dict(use_cache=False), dict(num_beams=3, num_return_sequences=2)],
                         ids=["greedy", "sampling", "no-cache", "beams"])
def test_attentions_and_hidden_states_match_transformers(pair, options):
    ref, ours = pair
    ids, mask = prompts()  # three rows, left-padded by 0, 2 and 4
    mine, theirs = run_both(ref, ours, ids, mask, seed=3, **FLAGS, **options)
    assert type(mine).__name__ == type(theirs).__name__
    assert_steps_equal(mine, theirs, ids.shape[1], ref.config.num_hidden_layers, options.get("use_cache", True))


def test_one_flag_alone(pair):
    ref, ours = pair
    ids, mask = prompts(1)
    mine, theirs = run_both(ref, ours, ids, None, return_dict_in_generate=True, output_hidden_states=True)
    assert mine.attentions is None and theirs.attentions is None
    assert len(mine.hidden_states) == len(theirs.hidden_states)
    mine, theirs = run_both(ref, ours, ids, None, return_dict_in_generate=True, output_attentions=True,
                            output_scores=True)
    assert mine.hidden_states is None and theirs.hidden_states is None
    assert len(mine.attentions) == len(theirs.attentions) == len(mine.scores)


def test_flags_from_generation_config(pair):
    ref, ours = pair
    ids, mask = prompts()
    config = dict(max_new_tokens=4, **FLAGS)
    theirs = ref.generate(ids, attention_mask=mask, generation_config=transformers.GenerationConfig(**config))
    for passed in (GenerationConfig(**config), config, transformers.GenerationConfig(**config)):
        mine = generate(ours, ids, mask, generation_config=passed)
        assert_steps_equal(mine, theirs, ids.shape[1], ref.config.num_hidden_layers)
    # on the model's own generation config
    saved = ours.generation_config
    try:
        ours.generation_config = GenerationConfig(**config)
        assert_steps_equal(ours.generate(ids, attention_mask=mask), theirs, ids.shape[1],
                           ref.config.num_hidden_layers)
    finally:
        ours.generation_config = saved


def test_flags_from_model_config(tmp_path):
    """A model config with the output flags: the reference's generation config derived from it asks for them and
    returns a dict (`from_model_config`); so does autoload's."""
    ref, ours = eager_pair(tmp_path, "llama", output_attentions=True, output_hidden_states=True)
    ids, mask = prompts()
    mine, theirs = run_both(ref, ours, ids, mask)
    assert type(theirs).__name__ == type(mine).__name__ == "GenerateDecoderOnlyOutput"
    assert_steps_equal(mine, theirs, ids.shape[1], ref.config.num_hidden_layers)
    derived = GenerationConfig.from_model_config(ours.config)
    assert derived.output_attentions and derived.output_hidden_states and derived.return_dict_in_generate


def test_flags_without_return_dict_are_ignored(pair):
    ref, ours = pair
    ids, mask = prompts()
    flags = dict(output_attentions=True, output_hidden_states=True, return_dict_in_generate=False)
    mine, theirs = run_both(ref, ours, ids, mask, **flags)
    assert isinstance(mine, torch.Tensor) and torch.equal(mine, theirs)
    assert torch.equal(generate(ours, ids, mask, max_new_tokens=6, output_attentions=True), theirs)


def test_model_config_flags_do_not_leak_into_a_saved_generation_config():
    """The model config's default False flags are not generation options (nothing new is written)."""
    config = transformers.LlamaConfig(**DECODER, vocab_size=VOCAB)
    derived = GenerationConfig.from_model_config(config)
    assert "output_attentions" not in derived.to_dict() and not derived.return_dict_in_generate


def test_failure_paths(pair):
    _, ours = pair
    ids, mask = prompts(1)
    with pytest.raises(TypeError, match="output_attention'.*Did you mean 'output_attentions'"):
        generate(ours, ids, max_new_tokens=2, output_attention=True)
    with pytest.raises(ValueError, match="compile=True returns no attentions"):
        generate(ours, ids, max_new_tokens=2, compile=True, **FLAGS)


def test_max_new_tokens_zero_gives_empty_tuples(pair):
    _, ours = pair
    ids, _ = prompts(1)
    out = generate(ours, ids, max_new_tokens=0, **FLAGS)
    assert torch.equal(out.sequences, ids) and out.attentions == () and out.hidden_states == ()


@pytest.mark.parametrize("options", [dict(cache_implementation="static"),
                                     dict(num_beams=2, cache_implementation="static")], ids=["greedy", "beams"])
def test_static_cache(pair, options):
    """The reference's attentions span its whole static cache (max_length - 1 slots, zeros where nothing is written
    yet): so do ours. On a left-padded batch the prefill rows of the pad positions (attending nothing) differ in
    both implementations' garbage, so only the real positions are compared there."""
    ref, ours = pair
    ids, mask = prompts()
    mine, theirs = run_both(ref, ours, ids[:1], None, **FLAGS, **options)
    assert_steps_equal(mine, theirs, ids.shape[1], ref.config.num_hidden_layers)
    mine, theirs = run_both(ref, ours, ids, mask, **FLAGS, **options)
    assert torch.equal(mine.sequences, theirs.sequences)
    real = mask.bool().repeat_interleave(options.get("num_beams", 1), dim=0)  # (rows, T)
    for step, (a, b, ha, hb) in enumerate(zip(mine.attentions, theirs.attentions, mine.hidden_states,
                                              theirs.hidden_states)):
        for x, y in zip(a + ha, b + hb):
            assert x.shape == y.shape
            if step == 0:
                x, y = (x.transpose(1, 2)[real], y.transpose(1, 2)[real]) if x.dim() == 4 else (x[real], y[real])
            assert_close(x, y, atol=1e-4, rtol=0)
