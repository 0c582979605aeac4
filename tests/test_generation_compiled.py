"""generate(compile=True): the torch.compile'd fixed-shape decode step on the static cache gives the same greedy
ids as eager decoding, for one prompt and a left-padded batch, and compiles once per (batch, max_length); its
compiled state is the model's own (changed weights compile again without touching other compiled functions)."""

from __future__ import annotations

import copy
import gc
import shutil
import weakref

import pytest
import torch

from autoload.generation import generate
from test_generation import make_pair

# the first compile takes tens of seconds on a small CPU box; inductor needs a C++ compiler on CPU
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not torch.cuda.is_available() and shutil.which("g++") is None,
                                 reason="torch.compile on CPU needs a C++ compiler (g++)")]


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return make_pair(tmp_path_factory.mktemp("llama"), "llama")[1]


def _prompts():
    ids = torch.randint(3, 97, (3, 7), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    mask[2, :5] = 0
    return ids.masked_fill(mask == 0, 0), mask


@pytest.mark.parametrize("batch", [1, 3])
def test_compiled_greedy_matches_eager(llama, batch):
    ids, mask = _prompts()
    ids, mask = ids[:batch], mask[:batch] if batch > 1 else None
    options = dict(attention_mask=mask, max_new_tokens=12, eos_token_id=None)
    eager = generate(llama, ids, **options)
    out = generate(llama, ids, compile=True, return_dict_in_generate=True, **options)
    assert torch.equal(out.sequences, eager)
    assert out.past_key_values.get_seq_length() == ids.shape[1] + 11  # the last token is not fed back
    assert out.past_key_values.write_positions is None  # the returned cache is back in its eager mode
    assert torch.equal(generate(llama, ids, compile=True, **options), eager)  # a second call reuses the graph


def test_compile_rejects_a_dynamic_cache(llama):
    with pytest.raises(ValueError, match="static KV cache"):
        generate(llama, torch.tensor([[5, 6]]), max_new_tokens=2, compile=True, cache_implementation="dynamic")


def test_compile_rejects_other_families(tmp_path):
    _, gpt2 = make_pair(tmp_path, "gpt2")
    with pytest.raises(NotImplementedError, match="Llama-family decoders, ChatGLM, T5, BART and Marian"):
        generate(gpt2, torch.tensor([[5, 6]]), max_new_tokens=2, compile=True)


def test_compiled_beam_search_matches_eager(llama):
    ids, mask = _prompts()
    options = dict(attention_mask=mask, max_new_tokens=8, num_beams=3, num_return_sequences=2, eos_token_id=5)
    assert torch.equal(generate(llama, ids, compile=True, **options), generate(llama, ids, **options))


def test_compiled_sampling_matches_eager_with_the_same_seed(llama):
    ids, mask = _prompts()
    options = dict(attention_mask=mask, max_new_tokens=10, eos_token_id=None, do_sample=True, temperature=0.9,
                   top_k=20, top_p=0.95)
    assert torch.equal(generate(llama, ids, compile=True, seed=5, **options), generate(llama, ids, seed=5, **options))


def test_changed_weights_are_never_served_from_a_stale_graph(tmp_path):
    """Freezing bakes the weights into the graph: changing them in place, or loading another model object,
    must compile again rather than decode with the old numbers."""
    _, model = make_pair(tmp_path / "a", "llama")
    ids = torch.tensor([[5, 17, 3, 44]])
    options = dict(max_new_tokens=8, eos_token_id=None)
    before = generate(model, ids, compile=True, **options)
    with torch.no_grad():
        model.lm_head.weight[7] += 5.0  # token 7 now wins most steps
    after_eager = generate(model, ids, **options)
    assert not torch.equal(after_eager, before)
    assert torch.equal(generate(model, ids, compile=True, **options), after_eager)
    _, other = make_pair(tmp_path / "b", "llama", initializer_range=0.5)  # same shapes, other weights
    assert torch.equal(generate(other, ids, compile=True, **options), generate(other, ids, **options))


def test_compiled_state_is_the_models_own(tmp_path):
    """The compiled graphs belong to the model: when its weights change, autoload drops that model's graphs
    only. A user's own torch.compile'd function keeps its graph (no torch._dynamo.reset()): it is not compiled
    again; a copy of the model starts with no compiled state, and the model is freed with its graphs."""
    compiles = []

    def counting_backend(graph, example_inputs):
        compiles.append(graph)
        return graph.forward

    users_fn = torch.compile(lambda x: torch.sin(x) * 2 + 1, backend=counting_backend)
    x = torch.randn(5)
    expected = users_fn(x)
    assert len(compiles) == 1
    _, model = make_pair(tmp_path, "llama")
    ids = torch.tensor([[5, 17, 3, 44]])
    options = dict(max_new_tokens=8, eos_token_id=None)
    before = generate(model, ids, compile=True, **options)
    decoder = model._compiled_decoder
    with torch.no_grad():
        model.lm_head.weight[7] += 5.0  # autoload must compile again for the new weights
    after = generate(model, ids, compile=True, **options)
    assert torch.equal(after, generate(model, ids, **options)) and not torch.equal(after, before)
    assert model._compiled_decoder is decoder  # the same per-model state, holding fresh graphs
    torch.testing.assert_close(users_fn(x), expected)
    assert len(compiles) == 1  # the user's graph survived autoload's invalidation
    assert copy.deepcopy(model)._compiled_decoder._step is None
    freed = weakref.ref(model)
    del model, decoder
    gc.collect()
    assert freed() is None  # the graphs do not keep the model (and their frozen copies) alive


def test_compiled_chatglm_matches_eager():
    from autoload.models.chatglm import ChatGLMForConditionalGeneration
    from autoload.models.configs import ChatGLMConfig
    torch.manual_seed(0)
    config = ChatGLMConfig(num_layers=2, padded_vocab_size=99, hidden_size=32, ffn_hidden_size=48, kv_channels=8,
                           num_attention_heads=4, multi_query_attention=True, multi_query_group_num=2,
                           add_qkv_bias=True, seq_length=512, rope_ratio=3.0, rope_ratio_meaning="base")
    model = ChatGLMForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.transformer.output_layer.weight.mul_(20)  # init-scale logits are flat: ties would be fragile
    ids, mask = _prompts()
    options = dict(attention_mask=mask, max_new_tokens=10, eos_token_id=None)
    assert torch.equal(generate(model, ids, compile=True, **options), generate(model, ids, **options))


@pytest.mark.parametrize("family", ["t5-v1_1", "bart", "marian"])
def test_compiled_seq2seq_matches_eager(tmp_path, family):
    """Encoder-decoders: the encoder and the first decoder step run eagerly (filling the cross-attention keys);
    each later decoder step is one compiled graph over the static self-attention cache. Greedy ids equal eager
    ones (and transformers'), with a padded source batch; a second call reuses the graph; beam search (the compiled
    step's key mask reordered with the cache) gives the reference's beams."""
    from test_generation_seq2seq import make_pair as seq2seq_pair, sources
    # T5 at its usual init scale: the suite's 4x scale makes near-certain tokens whose exact ties rounding may break
    ref, ours = seq2seq_pair(tmp_path, family, **({"initializer_factor": 1.0} if family.startswith("t5") else {}))
    ids, mask = sources(family)
    options = dict(max_new_tokens=9, min_new_tokens=9)
    eager = generate(ours, ids, mask, **options)
    with torch.no_grad():
        assert torch.equal(eager, ref.generate(input_ids=ids, attention_mask=mask, **options))
    out = generate(ours, ids, mask, compile=True, return_dict_in_generate=True, **options)
    assert torch.equal(out.sequences, eager)
    assert out.past_key_values.self_attention_cache.write_positions is None
    assert torch.equal(generate(ours, ids, mask, compile=True, **options), eager)
    assert torch.equal(generate(ours, ids[:1], compile=True, **options), generate(ours, ids[:1], **options))
    beams = dict(options, num_beams=3, num_return_sequences=2)
    with torch.no_grad():
        reference = ref.generate(input_ids=ids, attention_mask=mask, **beams)
    assert torch.equal(generate(ours, ids, mask, compile=True, **beams), reference)
