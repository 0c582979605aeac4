"""generate() on encoder-decoders against transformers' generate, on tiny random checkpoints of each family
(T5 v1.0 and v1.1, mT5, BART, mBART, Marian) saved by transformers and loaded by autoload: greedy, seeded
sampling and beam-4 ids on padded source batches; forced BOS / EOS; decoder_input_ids; encoder_outputs passed in;
the dict outputs (scores, beam scores, encoder / decoder / cross attentions); the encoder runs once; labels and the
loss; and forced tokens on a decoder-only model."""

from __future__ import annotations

import importlib
import warnings

import pytest
import torch
import transformers

from autoload import AutoModelForSeq2SeqLM
from autoload.generation import generate
from autoload.registry import MODEL_TYPES
import model_cases

transformers.logging.set_verbosity_error()
VOCAB = 99
SMALL = dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
             encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=64, init_std=0.2)
T5 = dict(d_model=32, d_kv=8, d_ff=37, num_layers=2, num_decoder_layers=2, num_heads=4, initializer_factor=4.0,
          relative_attention_num_buckets=8, relative_attention_max_distance=16, decoder_start_token_id=0)
# family -> (transformers config, transformers class, our class, config values, pad id)
FAMILIES = {
    "t5": ("T5Config", "T5ForConditionalGeneration", T5, 0),
    "t5-v1_1": ("T5Config", "T5ForConditionalGeneration",
                dict(T5, feed_forward_proj="gated-gelu", tie_word_embeddings=False), 0),
    "mt5": ("MT5Config", "MT5ForConditionalGeneration", T5, 0),
    "bart": ("BartConfig", "BartForConditionalGeneration", SMALL, 1),
    "mbart": ("MBartConfig", "MBartForConditionalGeneration", dict(SMALL, scale_embedding=True), 1),
    "marian": ("MarianConfig", "MarianMTModel", dict(SMALL, decoder_start_token_id=VOCAB - 1, pad_token_id=VOCAB - 1,
                                                     eos_token_id=0, forced_eos_token_id=0), VOCAB - 1),
}


def make_pair(folder, family: str, **overrides):
    config_name, class_name, values, _ = FAMILIES[family]
    model_type = family.split("-")[0]
    ours_module = importlib.import_module(f"autoload.models.{MODEL_TYPES[model_type].get('family', model_type)}")
    config = getattr(transformers, config_name)(**{**values, "vocab_size": VOCAB, **overrides})
    return model_cases.make_pair(folder, getattr(transformers, class_name), getattr(ours_module, class_name),
                                 config, reload=False)


@pytest.fixture(scope="module", params=list(FAMILIES))
def pair(request, tmp_path_factory):
    return request.param, *make_pair(tmp_path_factory.mktemp(request.param), request.param)


@pytest.fixture(scope="module")
def bart(tmp_path_factory):
    return make_pair(tmp_path_factory.mktemp("bart"), "bart")


def sources(family: str, b: int = 3, t: int = 9, seed: int = 1):
    """Random source ids (never the EOS / pad ids), row i right-padded with 2*i pads, EOS before the padding."""
    pad = FAMILIES[family][3]
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB - 2, (b, t), generator=g)
    mask = torch.ones_like(ids)
    for i in range(b):
        if 2 * i:
            mask[i, t - 2 * i:] = 0
    return ids.masked_fill(mask == 0, pad), mask


def both(ref, ours, ids, mask, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = ref.generate(ids, attention_mask=mask, **kwargs)
        mine = generate(ours, ids, mask, **kwargs)
    return mine, theirs


def assert_same(ref, ours, ids, mask, **kwargs):
    mine, theirs = both(ref, ours, ids, mask, **kwargs)
    assert torch.equal(mine, theirs), (kwargs, mine, theirs)
    return mine


def test_greedy_and_beam_match_reference(pair):
    family, ref, ours = pair
    ids, mask = sources(family)
    out = assert_same(ref, ours, ids, mask, max_new_tokens=10)
    start = ours.generation_config.decoder_start_token_id
    start = ours.generation_config.bos_token_id if start is None else start
    assert out.shape[1] <= 11 and bool((out[:, 0] == start).all())
    assert_same(ref, ours, ids[:1], None, max_new_tokens=10)
    assert_same(ref, ours, ids, mask, max_new_tokens=10, repetition_penalty=1.5, no_repeat_ngram_size=2)
    assert_same(ref, ours, ids, mask, max_new_tokens=10, min_new_tokens=6)
    assert_same(ref, ours, ids, mask, max_new_tokens=8, num_beams=4)
    assert_same(ref, ours, ids, mask, max_new_tokens=8, num_beams=4, num_return_sequences=2, length_penalty=2.0,
                early_stopping=True)
    assert torch.equal(generate(ours, ids, mask, max_new_tokens=10, use_cache=False), out)


def test_seeded_sampling_matches_reference(pair):
    family, ref, ours = pair
    ids, mask = sources(family)
    for kwargs in (dict(do_sample=True), dict(do_sample=True, temperature=0.8, top_p=0.9, num_return_sequences=2)):
        torch.manual_seed(11)
        theirs = ref.generate(ids, attention_mask=mask, max_new_tokens=8, **kwargs)
        torch.manual_seed(11)
        mine = generate(ours, ids, mask, max_new_tokens=8, **kwargs)
        assert torch.equal(mine, theirs), (family, kwargs)


def test_forced_tokens_and_decoder_start(bart):
    ref, ours = bart
    ids, mask = sources("bart")
    for kwargs in (dict(forced_bos_token_id=7), dict(forced_eos_token_id=[5, 6]), dict(forced_bos_token_id=7,
                                                                                     num_beams=3),
                   dict(decoder_start_token_id=4), dict(decoder_input_ids=torch.tensor([[2, 9, 10]] * 3)),
                   dict(decoder_input_ids=torch.tensor([[9, 10]] * 3))):
        out = assert_same(ref, ours, ids, mask, max_new_tokens=6, **kwargs)
        if "forced_bos_token_id" in kwargs:
            assert bool((out[:, 1] == 7).all())
    assert bool((generate(ours, ids, mask, max_new_tokens=6, forced_eos_token_id=5, min_new_tokens=6)[:, -1] == 5)
                .all())


def test_encoder_runs_once_and_encoder_outputs(bart):
    ref, ours = bart
    ids, mask = sources("bart")
    calls = []
    hook = ours.get_encoder().register_forward_hook(lambda *a: calls.append(1))
    try:
        out = generate(ours, ids, mask, max_new_tokens=8, num_beams=2)
    finally:
        hook.remove()
    assert len(calls) == 1
    with torch.no_grad():
        encoded = ours.get_encoder()(input_ids=ids, attention_mask=mask, return_dict=True)
    assert torch.equal(generate(ours, attention_mask=mask, encoder_outputs=encoded, max_new_tokens=8, num_beams=2), out)
    assert torch.equal(generate(ours, attention_mask=mask, encoder_outputs=(encoded.last_hidden_state,),
                                max_new_tokens=8, num_beams=2), out)


def test_dict_outputs_match_reference(bart):
    ref, ours = bart
    ref.config._attn_implementation = "eager"
    ours.config._attn_implementation = "eager"
    ids, mask = sources("bart")
    try:
        for beams in (1, 3):
            kwargs = dict(max_new_tokens=5, num_beams=beams, return_dict_in_generate=True, output_scores=True,
                          output_attentions=True, output_hidden_states=True)
            mine, theirs = both(ref, ours, ids, mask, **kwargs)
            assert type(mine).__name__ == type(theirs).__name__
            assert torch.equal(mine.sequences, theirs.sequences)
            for name in ("scores", "encoder_attentions", "encoder_hidden_states"):
                torch.testing.assert_close(torch.stack(getattr(mine, name)), torch.stack(getattr(theirs, name)),
                                           atol=1e-4, rtol=1e-4)
            for name in ("decoder_attentions", "cross_attentions", "decoder_hidden_states"):
                for step_mine, step_theirs in zip(getattr(mine, name), getattr(theirs, name), strict=True):
                    torch.testing.assert_close(torch.stack(step_mine), torch.stack(step_theirs), atol=1e-4, rtol=1e-4)
            if beams > 1:
                torch.testing.assert_close(mine.sequences_scores, theirs.sequences_scores, atol=1e-4, rtol=1e-4)
                assert torch.equal(mine.beam_indices, theirs.beam_indices)
    finally:
        ref.config._attn_implementation = "sdpa"
        ours.config._attn_implementation = "sdpa"


def test_static_cache_matches_reference(pair):
    """cache_implementation="static": the decoder's self-attention keys in a preallocated cache (what
    compile=True decodes on); greedy and beam ids equal the reference's dynamic-cache ones."""
    family, ref, ours = pair
    ids, mask = sources(family)
    for beams in (1, 3):
        options = dict(max_new_tokens=7, num_beams=beams)
        mine = generate(ours, ids, mask, cache_implementation="static", return_dict_in_generate=True, **options)
        assert type(mine.past_key_values.self_attention_cache).__name__ == "StaticCache"
        with torch.no_grad():
            theirs = ref.generate(input_ids=ids, attention_mask=mask, **options)
        assert torch.equal(mine.sequences, theirs)


def test_auto_class_and_errors(bart, tmp_path):
    ref, ours = bart
    ref.save_pretrained(tmp_path)
    model = AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    assert type(model) is type(ours) and model.can_generate()
    ids, mask = sources("bart")
    with pytest.raises(ValueError, match="past_key_values are for decoder-only"):
        generate(model, ids, mask, max_new_tokens=3, past_key_values=object())
    model.generation_config.decoder_start_token_id = None
    model.generation_config.bos_token_id = None
    with pytest.raises(ValueError, match="decoder_start_token_id"):
        generate(model, ids, mask, max_new_tokens=3)
    with pytest.raises(ValueError, match="decoder_input_ids must be"):
        generate(ours, ids, mask, max_new_tokens=3, decoder_input_ids=torch.ones(2, 2, dtype=torch.long))


def test_forced_eos_on_a_decoder_only_model(tmp_path):
    config = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, pad_token_id=0, eos_token_id=98)
    from autoload.models.llama import LlamaForCausalLM
    ref, ours = model_cases.make_pair(tmp_path, transformers.LlamaForCausalLM, LlamaForCausalLM, config, reload=False)
    ids = torch.randint(3, 90, (2, 5), generator=torch.Generator().manual_seed(0))
    out = assert_same(ref, ours, ids, None, max_new_tokens=6, forced_eos_token_id=4)
    assert bool((out[:, -1] == 4).all())
    assert_same(ref, ours, ids, None, max_new_tokens=6, forced_eos_token_id=4, num_beams=2)


def test_bad_words_match_reference(bart, tmp_path):
    """bad_words_ids (opus-mt's generation_config bans <pad>): one-token and multi-token sequences, greedy, beams
    and seeded sampling, on an encoder-decoder and a decoder-only model; a lone EOS is never banned."""
    ref, ours = bart
    ids, mask = sources("bart")
    free = generate(ours, ids, mask, max_new_tokens=8)
    common = free[:, 1:3].flatten().tolist()  # tokens the unconstrained decoding picks
    banned = [[common[0]], [common[1], common[2]], [FAMILIES["bart"][3]], [ref.config.eos_token_id]]
    for kwargs in (dict(), dict(num_beams=3), dict(do_sample=True, top_k=20)):
        torch.manual_seed(3)
        theirs = ref.generate(ids, attention_mask=mask, max_new_tokens=8, bad_words_ids=banned, **kwargs)
        torch.manual_seed(3)
        mine = generate(ours, ids, mask, max_new_tokens=8, bad_words_ids=banned, **kwargs)
        assert torch.equal(mine, theirs), kwargs
        assert not bool((mine[:, 1:] == common[0]).any())
    config = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, pad_token_id=0, eos_token_id=98)
    from autoload.models.llama import LlamaForCausalLM
    ref, ours = model_cases.make_pair(tmp_path, transformers.LlamaForCausalLM, LlamaForCausalLM, config, reload=False)
    prompt = torch.randint(3, 90, (2, 5), generator=torch.Generator().manual_seed(0))
    free = generate(ours, prompt, None, max_new_tokens=6)
    banned = [[int(free[0, 5])], [int(free[1, 5]), int(free[1, 6])]]
    assert_same(ref, ours, prompt, None, max_new_tokens=6, bad_words_ids=banned)
    assert_same(ref, ours, prompt, None, max_new_tokens=6, bad_words_ids=banned, num_beams=2)
    for bad in ([], [[]], [[-1]], [["a"]], 5):
        with pytest.raises(ValueError, match="bad_words_ids"):
            generate(ours, prompt, None, max_new_tokens=2, bad_words_ids=bad)
    with pytest.raises(ValueError, match="beyond the vocabulary"):
        generate(ours, prompt, None, max_new_tokens=2, bad_words_ids=[[VOCAB + 5]])
