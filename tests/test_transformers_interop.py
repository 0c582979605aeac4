"""autoload models inside transformers itself: `transformers.pipeline("text-generation", model=ours)` and
`transformers.DynamicCache(config=ours.config)`, against the same calls on the reference model; and the
GenerationConfig / config methods transformers reads."""

from __future__ import annotations

import copy

import pytest
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers
from torch.testing import assert_close

import autoload.models.gpt2 as our_gpt2
import autoload.models.llama as our_llama
from autoload import AutoTokenizer
from autoload.generation import GenerationConfig
import model_cases

LLAMA = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64}
GPT2 = {"vocab_size": 64, "n_layer": 2, "n_head": 4, "n_embd": 32, "n_positions": 64, "bos_token_id": 1,
        "eos_token_id": 1}
CASES = {
    "llama": (transformers.LlamaForCausalLM, our_llama.LlamaForCausalLM, transformers.LlamaConfig, LLAMA),
    "mistral": (transformers.MistralForCausalLM, our_llama.MistralForCausalLM, transformers.MistralConfig,
                dict(LLAMA, sliding_window=16)),  # sliding cache layers, longer than the test's 7 tokens
    "gpt2": (transformers.GPT2LMHeadModel, our_gpt2.GPT2LMHeadModel, transformers.GPT2Config, GPT2),
}


@pytest.fixture(params=list(CASES))
def pair(request, tmp_path):
    ref_class, our_class, config_class, config = CASES[request.param]
    return model_cases.make_pair(tmp_path / "model", ref_class, our_class, config_class(**config))


def word_tokenizer():
    """A transformers fast tokenizer over the words w0..w63 (w0: unknown and padding, w1: end of sequence)."""
    backend = Tokenizer(models.WordLevel({f"w{i}": i for i in range(64)}, unk_token="w0"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="w0", pad_token="w0",
                                                eos_token="w1")


def test_transformers_text_generation_pipeline_runs_our_model(pair, tmp_path):
    ref, ours = pair
    tokenizer = word_tokenizer()
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    our_tokenizer = AutoTokenizer.from_pretrained(tmp_path / "tokenizer")
    prompts = ["w3 w4 w5", "w9 w17 w33 w2 w60"]
    for kwargs in ({"max_new_tokens": 6, "do_sample": False},
                   {"max_new_tokens": 4, "return_full_text": False, "do_sample": False},
                   {"generation_config": transformers.GenerationConfig(max_new_tokens=5, do_sample=False)}):
        expected = transformers.pipeline("text-generation", model=ref, tokenizer=tokenizer)(prompts, **kwargs)
        for ours_tokenizer in (tokenizer, our_tokenizer):
            got = transformers.pipeline("text-generation", model=ours, tokenizer=ours_tokenizer)(prompts, **kwargs)
            assert got == expected, (kwargs, type(ours_tokenizer))


def test_transformers_dynamic_cache_from_our_config(pair):
    ref, ours = pair
    ref_cache, our_cache = (transformers.DynamicCache(config=model.config) for model in (ref, ours))
    assert [type(layer) for layer in our_cache.layers] == [type(layer) for layer in ref_cache.layers]
    ids, mask = model_cases.padded_batch(2, 7, "left", [0, 2], 64)
    with torch.no_grad():
        for model, cache in ((ref, ref_cache), (ours, our_cache)):  # a prompt, then one token against the cache
            model(input_ids=ids[:, :6], attention_mask=mask[:, :6], past_key_values=cache, use_cache=True)
        last = [model(input_ids=ids[:, 6:], attention_mask=mask, past_key_values=cache, use_cache=True).logits
                for model, cache in ((ref, ref_cache), (ours, our_cache))]
    assert our_cache.get_seq_length() == ref_cache.get_seq_length() == 7
    assert_close(last[1], last[0], atol=1e-4, rtol=0)
    assert_close(last[1][:, -1], ours(input_ids=ids, attention_mask=mask).logits[:, -1].detach(), atol=1e-4, rtol=0)


def test_config_methods_transformers_reads(pair):
    ref, ours = pair
    assert ours.config.get_text_config() is ours.config
    assert ours.config.get_text_config(decoder=True) is ours.config
    assert len(ours.config.per_layer_config) == ref.config.num_hidden_layers
    assert "per_layer_config" not in ours.config.to_dict()


def test_generation_config_methods_like_the_reference():
    ours, ref = GenerationConfig(max_new_tokens=5, do_sample=True), transformers.GenerationConfig(max_new_tokens=5,
                                                                                                 do_sample=True)
    assert ours.to_diff_dict() == {k: v for k, v in ref.to_diff_dict().items() if k != "transformers_version"}
    assert GenerationConfig().to_diff_dict() == {}
    assert ours.update(top_k=3, not_an_option=1) == ref.update(top_k=3, not_an_option=1) == {"not_an_option": 1}
    assert ours.top_k == 3 and not hasattr(ours, "not_an_option")
    ours.update(defaults_only=True, top_k=7, top_p=0.5)
    assert (ours.top_k, ours.top_p) == (3, 0.5)
    ours.update(allow_custom_entries=True, my_entry="x")
    assert ours.to_dict()["my_entry"] == "x"
    twin = copy.deepcopy(ours)
    assert twin == ours and twin is not ours
    twin.update(top_k=4)
    assert twin != ours and ours.top_k == 3
    assert '"max_new_tokens": 5' in ours.to_json_string(use_diff=True)
    assert "top_k" not in ours.to_json_string(keys_to_pop=["top_k"])
    ours.validate()
    with pytest.raises(NotImplementedError, match="typical_p"):
        GenerationConfig(extra={"typical_p": 0.5}).validate(strict=True)


def test_transformers_pipeline_sampling_defaults_under_a_seed(pair):
    """The pipeline's own defaults (do_sample=True, temperature 0.7, ...) reach our generate: same seed, same text."""
    tokenizer = word_tokenizer()
    outputs = []
    for model in pair:
        torch.manual_seed(5)
        outputs.append(transformers.pipeline("text-generation", model=model, tokenizer=tokenizer)(
            ["w3 w4 w5", "w7 w8"], max_new_tokens=8))
    assert outputs[1] == outputs[0]


SLIDING = {
    "mistral": (transformers.MistralForCausalLM, our_llama.MistralForCausalLM, transformers.MistralConfig,
                dict(LLAMA, sliding_window=4)),
    "qwen2": (transformers.Qwen2ForCausalLM, our_llama.Qwen2ForCausalLM, transformers.Qwen2Config,
              dict(LLAMA, use_sliding_window=True, sliding_window=4,
                   layer_types=["full_attention", "sliding_attention"])),
}


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("name", list(SLIDING))
def test_transformers_dynamic_cache_shorter_than_the_sequence(name, attn, tmp_path):
    """transformers' sliding cache layers keep only the last window-1 keys: a 12-token prefill and 5 cached steps
    with a window of 4 give the reference's logits, and the logits of our own cache and of one uncached pass."""
    ref_class, our_class, config_class, config = SLIDING[name]
    ref, ours = model_cases.make_pair(tmp_path / "model", ref_class, our_class, config_class(**config),
                                      attn=attn)
    ref_cache, our_cache = (transformers.DynamicCache(config=model.config) for model in (ref, ours))
    kinds = [type(layer).__name__ for layer in our_cache.layers]
    assert kinds == [type(layer).__name__ for layer in ref_cache.layers]
    assert "DynamicSlidingWindowLayer" in kinds
    ids, mask = model_cases.padded_batch(2, 17, "left", [0, 2], 64)
    own_cache = None
    with torch.no_grad():
        for end in range(12, 18):  # the prefill (12 tokens), then one token at a time
            start = 0 if end == 12 else end - 1
            logits = [model(input_ids=ids[:, start:end], attention_mask=mask[:, :end], past_key_values=cache,
                            use_cache=True).logits for model, cache in ((ref, ref_cache), (ours, our_cache))]
            assert_close(logits[1], logits[0], atol=1e-4, rtol=0, msg=f"{name}, {attn}, {end} tokens")
            own = ours(input_ids=ids[:, start:end], attention_mask=mask[:, :end], past_key_values=own_cache,
                       use_cache=True)
            own_cache = own.past_key_values
            assert_close(logits[1], own.logits, atol=1e-4, rtol=0)
        full = ours(input_ids=ids, attention_mask=mask).logits
    assert our_cache.get_seq_length() == ref_cache.get_seq_length() == 17
    assert min(layer.keys.shape[-2] for layer in our_cache.layers) == 3  # the sliding layer dropped keys
    assert_close(logits[1][:, -1], full[:, -1], atol=1e-4, rtol=0)
