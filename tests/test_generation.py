"""generate() against transformers' generate on tiny random checkpoints saved by transformers and loaded by
autoload: greedy ids (single prompt, left-padded batches, several EOS ids, min_new_tokens, repetition
penalty, static cache), cached decoding vs the full forward, the logits processors vs the reference's classes,
seeded sampling, option priority and defaults, num_return_sequences, and every validation error."""

from __future__ import annotations

import importlib
import logging
import warnings

import pytest
import torch
import transformers
from transformers.generation import logits_process as ref_lp

from autoload import AutoModelForCausalLM
from autoload.generation import GenerationConfig, LogitsRules, generate, logits_to_probs, warp
from autoload.generation.sampling import seen_tokens
from autoload.registry import MODEL_TYPES
import model_cases

transformers.logging.set_verbosity_error()
VOCAB, PAD = 99, 0
FAMILIES = {
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=1,
                                                    eos_token_id=98, pad_token_id=PAD)),
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(sliding_window=None)),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(head_dim=16)),
}
DECODER = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
               max_position_embeddings=64, pad_token_id=PAD, bos_token_id=1, eos_token_id=98, initializer_range=0.2)


def make_pair(folder, family: str, **overrides):
    """(reference, ours): a random transformers model saved to `folder` and autoload's load of it."""
    config_name, class_name, extra = FAMILIES[family]
    ours_module = importlib.import_module(f"autoload.models.{MODEL_TYPES[family].get('family', family)}")
    values = {**({} if family == "gpt2" else DECODER), **extra, "vocab_size": VOCAB, **overrides}
    return model_cases.make_pair(folder, getattr(transformers, class_name), getattr(ours_module, class_name),
                                 getattr(transformers, config_name)(**values), reload=False)


@pytest.fixture(scope="module", params=list(FAMILIES))
def pair(request, tmp_path_factory):
    return make_pair(tmp_path_factory.mktemp(request.param), request.param)


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    return make_pair(tmp_path_factory.mktemp("gpt2"), "gpt2")


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return make_pair(tmp_path_factory.mktemp("llama"), "llama")


def prompts(b: int = 3, t: int = 7, seed: int = 1):
    """Random ids in 2..97 (never the EOS 98), row i left-padded with 2*i pads."""
    ids = torch.randint(2, VOCAB - 1, (b, t), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones_like(ids)
    for i in range(b):
        mask[i, :2 * i] = 0
    return ids.masked_fill(mask == 0, PAD), mask


def both(ref, ours, ids, mask=None, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = ref.generate(ids, attention_mask=mask, **kwargs)
        mine = generate(ours, ids, mask, **kwargs)
    return mine, theirs


def assert_same(ref, ours, ids, mask=None, **kwargs):
    mine, theirs = both(ref, ours, ids, mask, **kwargs)
    assert torch.equal(mine, theirs), (kwargs, mine, theirs)
    return mine


# -- greedy parity ------------------------------------------------------------------------------------------

def test_greedy_matches_reference(pair):
    ref, ours = pair
    ids, mask = prompts()
    assert_same(ref, ours, ids[:1], max_new_tokens=12)  # one prompt, no mask
    assert_same(ref, ours, ids[:1], torch.ones_like(ids[:1]), max_new_tokens=12)
    out = assert_same(ref, ours, ids, mask, max_new_tokens=12)  # left-padded batch
    assert out.shape == (3, 19)
    assert_same(ref, ours, ids, mask, max_new_tokens=12, repetition_penalty=1.5)
    assert_same(ref, ours, ids, mask, max_new_tokens=12, repetition_penalty=0.7)
    static = assert_same(ref, ours, ids, mask, max_new_tokens=12, cache_implementation="static")
    assert torch.equal(static, out)
    assert torch.equal(generate(ours, ids, mask, max_new_tokens=12, use_cache=False), out)


def rows_stop_at_eos(out, prompt_len, eos, pad):
    """Every row: after its first EOS only `pad`; returns how many rows hit an EOS."""
    hits = 0
    for row in out[:, prompt_len:].tolist():
        ends = [i for i, t in enumerate(row) if t in eos]
        if ends:
            hits += 1
            assert set(row[ends[0] + 1:]) <= {pad}, row
    return hits


def test_eos_ids_padding_and_min_new_tokens(pair):
    ref, ours = pair
    ids, mask = prompts()
    free = generate(ours, ids, mask, max_new_tokens=12, eos_token_id=[])  # [] = no EOS at all
    # EOS ids the model really produces: row 0's 3rd new token and row 2's 5th
    eos = [int(free[0, 9]), int(free[2, 11])]
    out = assert_same(ref, ours, ids, mask, max_new_tokens=12, eos_token_id=eos)
    assert rows_stop_at_eos(out, 7, eos, PAD) >= 2  # finished rows are filled with the pad id
    out = assert_same(ref, ours, ids, mask, max_new_tokens=12, eos_token_id=eos, pad_token_id=None)
    assert_same(ref, ours, ids, mask, max_new_tokens=12, eos_token_id=eos[0])
    out = assert_same(ref, ours, ids, mask, max_new_tokens=12, eos_token_id=eos, min_new_tokens=6)
    assert not any(t in eos for t in out[:, 7:13].flatten().tolist())
    assert_same(ref, ours, ids, mask, max_new_tokens=12, eos_token_id=eos, min_length=11)
    # every row finished early: the output is shorter than max_new_tokens
    first = [int(free[i, 7 + i]) for i in range(3)]
    out = assert_same(ref, ours, ids, mask, max_new_tokens=12, eos_token_id=first)
    assert out.shape[1] < 19


def test_cached_decode_equals_full_forward(pair):
    _, ours = pair
    ids, mask = prompts()
    for cache in ("dynamic", "static"):
        out = generate(ours, ids, mask, max_new_tokens=6, return_dict_in_generate=True, output_scores=True,
                       cache_implementation=cache)
        assert len(out.scores) == 6 and out.sequences.shape == (3, 13)
        for step, scores in enumerate(out.scores):
            seq = out.sequences[:, :7 + step]
            full = torch.cat([mask, torch.ones(3, step, dtype=torch.long)], dim=-1)
            logits = ours(seq, attention_mask=full, position_ids=(full.cumsum(-1) - 1).clamp(min=0),
                          use_cache=False).logits[:, -1]
            torch.testing.assert_close(scores, logits.float(), atol=1e-4, rtol=0)


def test_return_dict_and_scores_match_reference(llama):
    ref, ours = llama
    ids, mask = prompts()
    kwargs = dict(max_new_tokens=4, return_dict_in_generate=True, output_scores=True, repetition_penalty=1.2)
    mine, theirs = both(ref, ours, ids, mask, **kwargs)
    assert torch.equal(mine.sequences, theirs.sequences) and mine["sequences"] is mine.sequences
    for a, b in zip(mine.scores, theirs.scores, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    assert mine.past_key_values.get_seq_length() == 10  # the last token is never fed back


def test_max_new_tokens_zero_and_bos_start(llama):
    _, ours = llama
    ids, mask = prompts()
    assert torch.equal(generate(ours, ids, mask, max_new_tokens=0), ids)
    out = generate(ours, max_new_tokens=3)  # no prompt: start from BOS
    assert out.shape == (1, 4) and out[0, 0] == 1


# -- logits processors ----------------------------------------------------------------------------------------

def reference_warp(scores, temperature=1.0, top_k=0, top_p=1.0, min_p=None):
    for processor in ([ref_lp.TemperatureLogitsWarper(temperature)] if temperature != 1.0 else []) + \
            ([ref_lp.TopKLogitsWarper(top_k)] if top_k else []) + \
            ([ref_lp.TopPLogitsWarper(top_p)] if top_p < 1.0 else []) + \
            ([ref_lp.MinPLogitsWarper(min_p)] if min_p is not None else []):
        scores = processor(None, scores)
    return scores


@pytest.mark.parametrize("options", [dict(temperature=0.7), dict(top_k=5), dict(top_k=1), dict(top_p=0.9),
                                     dict(top_p=0.3), dict(min_p=0.1), dict(temperature=1.3, top_k=20, top_p=0.8),
                                     dict(temperature=0.5, top_k=50, top_p=0.95, min_p=0.05), dict(top_p=1e-6)])
def test_warpers_match_reference(options):
    scores = torch.randn(4, 60, generator=torch.Generator().manual_seed(3)) * 3
    mine, theirs = warp(scores.clone(), **options), reference_warp(scores.clone(), **options)
    assert torch.equal(torch.isinf(mine), torch.isinf(theirs))
    torch.testing.assert_close(mine, theirs, atol=0, rtol=0)
    torch.testing.assert_close(logits_to_probs(scores, **options), torch.softmax(theirs, -1))


def test_repetition_penalty_and_min_length_match_reference():
    g = torch.Generator().manual_seed(4)
    scores = torch.randn(3, 40, generator=g) * 2
    ids = torch.randint(0, 40, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    mask[2, :5] = 0
    first = (mask != 0).int().argmax(dim=1)
    theirs = ref_lp.RepetitionPenaltyLogitsProcessor(1.7, prompt_ignore_length=first)(ids, scores.clone())
    mine = LogitsRules(repetition_penalty=1.7).process(scores.clone(), seen_tokens(ids, 40, mask), 9)
    torch.testing.assert_close(mine, theirs, atol=0, rtol=0)
    eos = torch.tensor([3, 7])
    theirs = ref_lp.MinLengthLogitsProcessor(10, eos)(ids, scores.clone())
    torch.testing.assert_close(LogitsRules(eos=eos, min_length=10).process(scores.clone(), None, 9), theirs)
    assert torch.equal(LogitsRules(eos=eos, min_length=9).process(scores, None, 9), scores)


# -- sampling ----------------------------------------------------------------------------------------------------

def test_seeded_sampling_reproduces(llama):
    _, ours = llama
    ids, mask = prompts()
    kwargs = dict(max_new_tokens=10, do_sample=True, temperature=1.5, top_k=0)
    a = generate(ours, ids, mask, seed=7, **kwargs)
    assert torch.equal(a, generate(ours, ids, mask, seed=7, **kwargs))
    assert torch.equal(a, generate(ours, ids, mask, generator=torch.Generator().manual_seed(7), **kwargs))
    assert not torch.equal(a, generate(ours, ids, mask, seed=8, **kwargs))
    greedy = generate(ours, ids, mask, max_new_tokens=10)
    assert torch.equal(generate(ours, ids, mask, max_new_tokens=10, do_sample=True, top_k=1, seed=3), greedy)


def test_sampling_with_global_seed_matches_reference(gpt2):
    """Both draw with torch.multinomial from the global generator: the same seed gives the same tokens."""
    ref, ours = gpt2
    ids, mask = prompts()
    for kwargs in (dict(do_sample=True), dict(do_sample=True, temperature=0.8, top_p=0.9, num_return_sequences=2)):
        torch.manual_seed(11)
        theirs = ref.generate(ids, attention_mask=mask, max_new_tokens=8, **kwargs)
        torch.manual_seed(11)
        mine = generate(ours, ids, mask, max_new_tokens=8, **kwargs)
        assert torch.equal(mine, theirs), kwargs


def test_num_return_sequences(llama):
    _, ours = llama
    ids, mask = prompts()
    out = generate(ours, ids, mask, max_new_tokens=5, do_sample=True, num_return_sequences=3, seed=0)
    assert out.shape == (9, 12)
    assert torch.equal(out[:, :7], ids.repeat_interleave(3, dim=0))


def test_default_top_k_50_when_sampling(llama):
    """The parity trap: do_sample with only a temperature still applies top_k=50 (top_k=0 disables it)."""
    _, ours = llama
    ids, mask = prompts()
    out = generate(ours, ids, mask, max_new_tokens=1, do_sample=True, temperature=0.9, seed=0,
                   return_dict_in_generate=True, output_scores=True)
    assert (torch.isfinite(out.scores[0]).sum(-1) == 50).all()
    out = generate(ours, ids, mask, max_new_tokens=1, do_sample=True, temperature=0.9, top_k=0, seed=0,
                   return_dict_in_generate=True, output_scores=True)
    assert torch.isfinite(out.scores[0]).all()


# -- options: priority, defaults, files ----------------------------------------------------------------------------

def test_option_priority(llama, tmp_path):
    _, ours = llama
    ids = prompts()[0][:1]
    saved = ours.generation_config
    try:
        ours.generation_config = GenerationConfig(max_new_tokens=3, eos_token_id=None)
        assert generate(ours, ids).shape[1] == 7 + 3  # the model's file
        assert generate(ours, ids, generation_config={"max_new_tokens": 5}).shape[1] == 7 + 5  # a passed config
        assert generate(ours, ids, generation_config=GenerationConfig(max_new_tokens=5),
                        max_new_tokens=2).shape[1] == 7 + 2  # the call wins
        theirs = transformers.GenerationConfig(max_new_tokens=4)
        assert generate(ours, ids, generation_config=theirs).shape[1] == 7 + 4  # a transformers object
        ours.generation_config = GenerationConfig(max_length=10)  # max_length counts the prompt
        assert generate(ours, ids).shape[1] == 10
        ours.generation_config = GenerationConfig()
        with pytest.warns(UserWarning, match="default `max_length`"):
            assert generate(ours, ids).shape[1] == 7 + 20  # nothing anywhere: 20 new tokens
        with pytest.warns(UserWarning, match="default `max_length`"):  # ... within max_position_embeddings
            assert generate(ours, torch.randint(2, 90, (1, 50))).shape[1] == 64
    finally:
        ours.generation_config = saved


def test_generation_config_files(tmp_path, llama):
    ref, _ = llama
    config = GenerationConfig(do_sample=True, temperature=0.6, top_p=0.9, eos_token_id=[2, 5],
                              extra={"custom_key": 1})
    config.save_pretrained(tmp_path)
    back = GenerationConfig.from_pretrained(tmp_path)
    assert back == config
    theirs = transformers.GenerationConfig.from_pretrained(tmp_path)  # the reference reads our file
    assert (theirs.temperature, theirs.top_p, theirs.eos_token_id) == (0.6, 0.9, [2, 5])

    from autoload.hub.source import FileSource
    assert GenerationConfig.from_source(FileSource(str(tmp_path))).temperature == 0.6
    empty = tmp_path / "none"
    empty.mkdir()
    fallback = GenerationConfig.from_source(FileSource(str(empty)), ref.config)  # the model config's ids
    assert (fallback.bos_token_id, fallback.eos_token_id, fallback.pad_token_id) == (1, 98, PAD)


def test_unsupported_file_options_warn_and_call_options_fail(caplog):
    with caplog.at_level(logging.WARNING, logger="autoload"):
        config = GenerationConfig.from_dict({"epsilon_cutoff": 0.001, "num_return_sequences": 1, "typical_p": 1.0})
    assert "epsilon_cutoff=0.001" in caplog.text and "typical_p" not in caplog.text
    assert config.extra["epsilon_cutoff"] == 0.001
    with pytest.raises(NotImplementedError, match="epsilon_cutoff"):
        GenerationConfig.coerce(transformers.GenerationConfig(epsilon_cutoff=0.001))
    with pytest.raises(TypeError, match="unknown option"):
        GenerationConfig.coerce({"max_new_token": 3})


# -- errors and warnings ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, match", [
    (dict(max_new_tokens=-1), ValueError, "max_new_tokens must be >= 0"),
    (dict(max_new_tokens=3, min_new_tokens=5), ValueError, r"min_new_tokens \(5\) is larger than max_new_tokens"),
    (dict(do_sample=True, top_p=0.0), ValueError, r"top_p must be in \(0, 1\]"),
    (dict(do_sample=True, top_p=1.5), ValueError, r"top_p must be in \(0, 1\]"),
    (dict(do_sample=True, top_k=-1), ValueError, "top_k must be an integer >= 0"),
    (dict(do_sample=True, min_p=2.0), ValueError, r"min_p must be in \[0, 1\]"),
    (dict(do_sample=True, temperature=0.0), ValueError, "temperature must be > 0 when sampling"),
    (dict(do_sample=True, temperature=-1.0), ValueError, "temperature must be > 0 when sampling"),
    (dict(repetition_penalty=0.0), ValueError, "repetition_penalty must be > 0"),
    (dict(num_return_sequences=2), ValueError, "needs do_sample=True"),
    (dict(cache_implementation="paged"), ValueError, "cache_implementation must be one of"),
    (dict(max_new_tokens=None, max_length=5), ValueError, "Input length of input_ids is 7, but `max_length` is set to 5"),
    (dict(max_new_token=5), TypeError, "Did you mean 'max_new_tokens'"),
    (dict(num_beams=4, do_sample=True), NotImplementedError, "num_beams"),
    (dict(stop_strings=["x"]), ValueError, "stop_strings needs the tokenizer"),
    (dict(seed=1, generator=torch.Generator()), ValueError, "seed or generator"),
])
def test_validation_errors(llama, kwargs, error, match):
    _, ours = llama
    with pytest.raises(error, match=match):
        generate(ours, prompts()[0], **{"max_new_tokens": 3, **kwargs})


def test_prompt_longer_than_positions(llama, gpt2):
    for _, ours in (llama, gpt2):
        with pytest.raises(ValueError, match="prompt has 70 tokens.*at most 64 positions"):
            generate(ours, torch.randint(2, 90, (1, 70)), max_new_tokens=2)
    with pytest.raises(ValueError, match="learned position embeddings"):  # GPT-2 cannot go past n_positions
        generate(gpt2[1], torch.randint(2, 90, (1, 60)), max_new_tokens=8)


def test_padding_warnings(llama, caplog):
    _, ours = llama
    ids, mask = prompts()
    right = mask.flip(-1)
    with caplog.at_level(logging.WARNING, logger="autoload"):
        generate(ours, ids.flip(-1), right, max_new_tokens=2)
    assert "right-padding was detected" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="autoload"):
        generate(ours, ids, max_new_tokens=2, pad_token_id=None)  # batched, no mask, no pad id
    assert "attention mask and the pad token id were not set" in caplog.text
    with pytest.warns(UserWarning, match="do_sample is not set to True"):
        generate(ours, ids, mask, max_new_tokens=2, temperature=0.5)


def test_mask_inferred_from_pad_like_reference(llama):
    ref, ours = llama
    ids, _ = prompts()
    assert_same(ref, ours, ids, None, max_new_tokens=6)  # pad 0 present and not an EOS id: mask = ids != pad


@pytest.mark.parametrize("family, options", [("mistral", dict(sliding_window=5)),
                                             ("qwen2", dict(use_sliding_window=True, sliding_window=5,
                                                            max_window_layers=1))])
def test_sliding_window_generation(tmp_path, family, options):
    ref, ours = make_pair(tmp_path, family, **options)
    ids, mask = prompts()
    out = assert_same(ref, ours, ids, mask, max_new_tokens=10)
    assert torch.equal(generate(ours, ids, mask, max_new_tokens=10, cache_implementation="static"), out)


def test_from_pretrained_reads_generation_config(tmp_path):
    """from_pretrained reads generation_config.json for a model that generates; save_pretrained writes it back."""
    make_pair(tmp_path, "llama")
    GenerationConfig(max_new_tokens=3, repetition_penalty=1.2, eos_token_id=[5, 6]).save_pretrained(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert isinstance(model.generation_config, GenerationConfig)
    assert model.generation_config.max_new_tokens == 3 and model.generation_config.eos_token_id == [5, 6]
    assert generate(model, prompts()[0][:1]).shape[1] == 7 + 3
    model.save_pretrained(tmp_path / "saved")
    assert GenerationConfig.from_pretrained(tmp_path / "saved").repetition_penalty == 1.2
