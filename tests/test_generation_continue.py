"""generate() options used by chat front ends: the caller's logits processors run where the reference runs them
(after the penalties, before the sampling warpers), explicit position_ids, and continuing from a returned cache
(`past_key_values`) gives the same tokens as generating from the whole conversation."""

from __future__ import annotations

import torch
import transformers

from autoload.generation import generate
from test_generation import make_pair, prompts


def test_custom_processor_runs_before_the_warpers_like_reference(tmp_path):
    ref, ours = make_pair(tmp_path, "gpt2")
    ids, mask = prompts()

    def boost(input_ids, scores):  # a bias that temperature must then divide: order matters
        scores = scores.clone()
        scores[:, 5] += 3.0
        return scores

    kwargs = dict(max_new_tokens=8, do_sample=True, temperature=0.5, top_k=4)
    torch.manual_seed(3)
    theirs = ref.generate(ids, attention_mask=mask, logits_processor=transformers.LogitsProcessorList([boost]),
                          **kwargs)
    torch.manual_seed(3)
    mine = generate(ours, ids, mask, logits_processor=[boost], **kwargs)
    assert torch.equal(mine, theirs)


def test_explicit_position_ids_equal_the_derived_ones(tmp_path):
    _, ours = make_pair(tmp_path, "llama")
    ids, mask = prompts()
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    expected = generate(ours, ids, mask, max_new_tokens=6)
    assert torch.equal(generate(ours, ids, mask, position_ids=positions, max_new_tokens=6), expected)
    encoding = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}  # a tokenizer output, whole
    assert torch.equal(generate(ours, encoding, max_new_tokens=6), expected)
    # they are really used (a constant shift would not show: rotary attention only sees relative positions)
    shifted = generate(ours, ids, mask, position_ids=positions * 2, max_new_tokens=6)
    assert not torch.equal(shifted, expected)


def test_continue_from_past_key_values(tmp_path):
    _, ours = make_pair(tmp_path, "qwen2")
    ids = prompts(b=1)[0]
    first = generate(ours, ids, max_new_tokens=5, return_dict_in_generate=True)
    follow_up = torch.tensor([[7, 8, 9]])
    # the cache holds everything but the last generated token: feed that token first, then the new prompt
    new_input = torch.cat([first.sequences[:, -1:], follow_up], dim=-1)
    continued = generate(ours, new_input, past_key_values=first.past_key_values, max_new_tokens=6)
    whole = generate(ours, torch.cat([first.sequences, follow_up], dim=-1), max_new_tokens=6)
    assert continued.shape == (1, 4 + 6)
    assert torch.equal(continued, whole[:, first.sequences.shape[1] - 1:])
    # max_length counts the cached tokens too
    cache = generate(ours, ids, max_new_tokens=5, return_dict_in_generate=True).past_key_values
    total = cache.get_seq_length() + new_input.shape[1] + 2
    assert generate(ours, new_input, past_key_values=cache, max_length=total).shape == (1, 4 + 2)
