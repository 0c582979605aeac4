"""Beam search (generate(num_beams > 1)) against transformers' beam search on tiny random checkpoints: ids,
`sequences_scores`, `beam_indices`, the per-step scores and logits, on left-padded batches, with length_penalty,
early_stopping True / False / "never", no_repeat_ngram_size, num_return_sequences, several EOS ids, the static
cache and no cache; `compute_transition_scores` both ways; the cache reordering; and the failure paths."""

from __future__ import annotations

import warnings

import pytest
import torch
import transformers
from torch.testing import assert_close
from transformers.generation import logits_process as ref_lp

from autoload.generation import GenerationConfig, TextStreamer, compute_transition_scores, generate
from autoload.generation.sampling import ban_repeated_ngrams
from autoload.nn.cache import DynamicCache, StaticCache
from test_generation import make_pair, prompts

transformers.logging.set_verbosity_error()

EOS = list(range(3, 98, 4))
OPTIONS = [
    dict(num_beams=3),
    dict(num_beams=4, num_return_sequences=3, length_penalty=0.5),
    dict(num_beams=3, early_stopping=True),
    dict(num_beams=3, early_stopping="never", length_penalty=2.0),
    dict(num_beams=3, early_stopping="never", length_penalty=-1.0),
    dict(num_beams=3, no_repeat_ngram_size=2),
    dict(num_beams=2, repetition_penalty=1.3, min_new_tokens=4),
    # a quarter of the vocabulary is EOS: hypotheses end at different steps, the -1 tails of beam_indices, and the
    # three stopping rules end the loop at different steps (llama: after 15, 22 and 25 of the 25 steps)
    dict(num_beams=3, max_new_tokens=25, eos_token_id=EOS, early_stopping=True),
    dict(num_beams=3, max_new_tokens=25, eos_token_id=EOS),
    dict(num_beams=3, max_new_tokens=25, eos_token_id=EOS, early_stopping="never"),
    dict(num_beams=2, cache_implementation="static"),
    dict(num_beams=2, use_cache=False),
]


@pytest.fixture(scope="module", params=["llama", "gpt2", "qwen3"])
def pair(request, tmp_path_factory):
    return make_pair(tmp_path_factory.mktemp(request.param), request.param)


def run_both(ref, ours, ids, mask, **kwargs):
    kwargs = {"max_new_tokens": 10, "return_dict_in_generate": True, "output_scores": True, "output_logits": True,
              **kwargs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = ref.generate(ids, attention_mask=mask, **kwargs)
        mine = generate(ours, ids, mask, **kwargs)
    return mine, theirs


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_beam_search_matches_transformers(pair, options):
    ref, ours = pair
    ids, mask = prompts()  # three rows, left-padded by 0, 2 and 4
    mine, theirs = run_both(ref, ours, ids, mask, **options)
    assert torch.equal(mine.sequences, theirs.sequences), (mine.sequences, theirs.sequences)
    assert torch.equal(mine.beam_indices, theirs.beam_indices)
    assert_close(mine.sequences_scores, theirs.sequences_scores, atol=1e-4, rtol=0)
    assert len(mine.scores) == len(theirs.scores) == len(mine.logits) == len(theirs.logits)
    for a, b in zip(mine.scores + mine.logits, theirs.scores + theirs.logits):
        finite = torch.isfinite(b)
        assert torch.equal(torch.isfinite(a), finite)
        assert_close(a[finite], b[finite], atol=1e-4, rtol=0)
    # the plain tensor output is the same sequences
    plain = generate(ours, ids, mask, **{"max_new_tokens": 10, **options})
    assert torch.equal(plain, theirs.sequences)


def test_single_prompt_without_mask(pair):
    ref, ours = pair
    ids = prompts(1)[0]
    mine, theirs = run_both(ref, ours, ids, None, num_beams=5, num_return_sequences=5, max_new_tokens=12)
    assert torch.equal(mine.sequences, theirs.sequences)
    assert_close(mine.sequences_scores, theirs.sequences_scores, atol=1e-4, rtol=0)


def test_chatglm_beam_search(tmp_path):
    from decoder_cases import batch
    from test_models_chatglm import make_pair as chatglm_pair
    ref, ours, _ = chatglm_pair(tmp_path, "base", 500.0)
    ids, mask = batch(t=7, padding="left")
    options = dict(max_new_tokens=8, num_beams=3, num_return_sequences=2, pad_token_id=0, length_penalty=0.7)
    mine, theirs = run_both(ref, ours, ids, mask, **options)
    assert torch.equal(mine.sequences, theirs.sequences)
    assert torch.equal(mine.beam_indices, theirs.beam_indices)
    assert_close(mine.sequences_scores, theirs.sequences_scores, atol=1e-4, rtol=0)


def test_compute_transition_scores(llama):
    ref, ours = llama
    ids, mask = prompts()
    eos = dict(eos_token_id=EOS, max_new_tokens=20)
    mine, theirs = run_both(ref, ours, ids, mask, num_beams=3, num_return_sequences=2, **eos)
    expected = ref.compute_transition_scores(theirs.sequences, theirs.scores, theirs.beam_indices)
    got = ours.compute_transition_scores(mine.sequences, mine.scores, mine.beam_indices)
    assert_close(got, expected, atol=1e-4, rtol=0)
    # the reference's definition: with length_penalty=1.0 the sum over tokens / length is sequences_scores
    lengths = (mine.beam_indices >= 0).sum(-1)
    assert_close(got.sum(-1) / lengths, mine.sequences_scores, atol=1e-4, rtol=0)
    normalized = compute_transition_scores(mine.sequences, mine.logits, mine.beam_indices, normalize_logits=True)
    assert_close(normalized, ref.compute_transition_scores(theirs.sequences, theirs.logits, theirs.beam_indices,
                                                           normalize_logits=True), atol=1e-4, rtol=0)
    # greedy: no beam indices; processed scores and raw logits
    mine, theirs = run_both(ref, ours, ids, mask, **eos)
    assert torch.equal(mine.sequences, theirs.sequences)
    for field, normalize in (("scores", False), ("logits", True)):
        assert_close(compute_transition_scores(mine.sequences, getattr(mine, field), normalize_logits=normalize),
                     ref.compute_transition_scores(theirs.sequences, getattr(theirs, field),
                                                   normalize_logits=normalize), atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return make_pair(tmp_path_factory.mktemp("llama-beam"), "llama")


@pytest.mark.parametrize("size", [1, 2, 3])
def test_no_repeat_ngram_greedy_and_processor(llama, size):
    ref, ours = llama
    ids, mask = prompts()
    mine, theirs = run_both(ref, ours, ids, mask, no_repeat_ngram_size=size, max_new_tokens=15)
    assert torch.equal(mine.sequences, theirs.sequences)
    seqs = torch.randint(0, 6, (4, 12), generator=torch.Generator().manual_seed(size))
    scores = torch.randn(4, 10)
    expected = ref_lp.NoRepeatNGramLogitsProcessor(size)(seqs, scores.clone())
    assert torch.equal(ban_repeated_ngrams(seqs, scores, size), expected)


def test_default_valued_keywords_are_accepted(llama):
    ref, ours = llama
    ids, mask = prompts()
    greedy = generate(ours, ids, mask, max_new_tokens=6)
    for extra in (dict(length_penalty=1.0), dict(early_stopping=False), dict(num_beams=1),
                  dict(no_repeat_ngram_size=0), dict(num_beams=1, early_stopping=True, length_penalty=2.0)):
        assert torch.equal(generate(ours, ids, mask, max_new_tokens=6, **extra), greedy)
    # a generation config (ours, a dict, the reference's) can ask for beams too
    for config in (GenerationConfig(num_beams=3, max_new_tokens=6), {"num_beams": 3, "max_new_tokens": 6},
                   transformers.GenerationConfig(num_beams=3, max_new_tokens=6)):
        assert torch.equal(generate(ours, ids, mask, generation_config=config),
                           ref.generate(ids, attention_mask=mask, num_beams=3, max_new_tokens=6))


def test_generation_config_file_num_beams(tmp_path):
    ref, ours = make_pair(tmp_path, "llama")
    transformers.GenerationConfig(num_beams=3, length_penalty=0.5, max_new_tokens=7, eos_token_id=98,
                                  pad_token_id=0).save_pretrained(tmp_path)
    from autoload import AutoModelForCausalLM
    ours = AutoModelForCausalLM.from_pretrained(tmp_path)
    ref = transformers.AutoModelForCausalLM.from_pretrained(tmp_path)
    ids, mask = prompts()
    assert ours.generation_config.num_beams == 3
    assert torch.equal(ours.generate(ids, attention_mask=mask), ref.generate(ids, attention_mask=mask))


def test_cache_reorder():
    g = torch.Generator().manual_seed(0)
    key, value = torch.randn(3, 2, 4, 5, generator=g), torch.randn(3, 2, 4, 5, generator=g)
    order = torch.tensor([2, 2, 0])
    dynamic = DynamicCache()
    dynamic.update(key, value, 0)
    dynamic.reorder(order)
    static = StaticCache(1, 3, 2, 5, 8, torch.float32, "cpu")
    static.update(key, value, 0)
    buffer = static.keys[0]
    static.reorder(order)
    assert static.keys[0] is buffer  # in place: a compiled step's buffers keep their identity
    for cache in (dynamic, static):
        assert torch.equal(cache.keys[0][:, :, :4], key[order]) and torch.equal(cache.values[0][:, :, :4], value[order])


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(num_beams=2, do_sample=True), NotImplementedError, "Beam sampling"),
    (dict(num_beams=2, num_return_sequences=3), ValueError, r"num_return_sequences \(3\) must be <= num_beams \(2\)"),
    (dict(num_beams=0), ValueError, "num_beams must be an integer >= 1"),
    (dict(num_beams=2.5), ValueError, "num_beams must be an integer >= 1"),
    (dict(num_beams=2, early_stopping="sometimes"), ValueError, "early_stopping must be True, False or 'never'"),
    (dict(num_beams=2, length_penalty="long"), ValueError, "length_penalty must be a number"),
    (dict(no_repeat_ngram_size=-1), ValueError, "no_repeat_ngram_size must be an integer >= 0"),
    (dict(num_beams=2, num_beam_groups=2), NotImplementedError, "num_beam_groups"),
    (dict(num_beam=2), TypeError, "Did you mean 'num_beams'"),
])
def test_beam_validation_errors(llama, kwargs, error, match):
    _, ours = llama
    with pytest.raises(error, match=match):
        generate(ours, prompts()[0], **{"max_new_tokens": 3, **kwargs})


def test_beam_search_refuses_streamer_and_past(llama):
    _, ours = llama
    ids, mask = prompts()

    class Tok:
        def decode(self, ids, **kwargs):
            return ""

    with pytest.raises(ValueError, match="streamer"):
        generate(ours, ids, mask, max_new_tokens=3, num_beams=2, streamer=TextStreamer(Tok()))
    first = generate(ours, ids, mask, max_new_tokens=2, return_dict_in_generate=True)
    with pytest.raises(ValueError, match="past_key_values"):
        generate(ours, first.sequences[:, -1:], max_new_tokens=2, num_beams=2, past_key_values=first.past_key_values)
