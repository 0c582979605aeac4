"""Llama, Mistral, Qwen2 and Qwen3 with every head, against transformers 5.24: outputs and losses with padding,
sliding windows, Qwen3's q/k norms, cached decoding, bf16, prefixes and the Auto classes."""

from __future__ import annotations

import pytest
import torch
import transformers

import autoload
from decoder_cases import (PREFIX, TASKS, batch, cached_decode, close, close_bf16, full_forward, make_pair,
                           our_class, reference_class, tiny_config)
from model_cases import labels_for

FAMILIES = list(PREFIX)


def _outputs(out, task: str):
    if task == "Model":
        return [out.last_hidden_state]
    if task == "ForQuestionAnswering":
        return [out.start_logits, out.end_logits]
    return [out.logits]


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_and_head(tmp_path, family, task):
    ref, ours, _ = make_pair(tmp_path, family, task)
    assert type(ours).__name__ == f"{PREFIX[family]}{task}" and not ours.training
    for padding in ("left", "right", None):
        ids, mask = batch(padding=padding)
        extra = labels_for(task, ids, mask, seed=5)
        with torch.no_grad():
            r, o = ref(ids, attention_mask=mask, **extra), ours(ids, attention_mask=mask, **extra)
        for a, b in zip(_outputs(o, task), _outputs(r, task)):
            close(a, b)
        if extra:
            close(o.loss, r.loss, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_family_structure(tmp_path, family):
    _, ours, folder = make_pair(tmp_path, family, "ForCausalLM")
    attn = ours.model.layers[0].self_attn
    qkv_bias = family == "qwen2"
    assert (attn.q_proj.bias is not None, attn.k_proj.bias is not None, attn.v_proj.bias is not None) == \
           (qkv_bias,) * 3
    assert attn.o_proj.bias is None
    assert hasattr(attn, "q_norm") == hasattr(attn, "k_norm") == (family == "qwen3")
    reference_keys = set(transformers.AutoModelForCausalLM.from_pretrained(folder).state_dict())
    assert set(ours.state_dict()) == reference_keys


def test_qwen3_head_dim_and_biases(tmp_path):
    cfg = tiny_config("qwen3", head_dim=24, attention_bias=True, num_attention_heads=3, num_key_value_heads=1)
    ref, ours, _ = make_pair(tmp_path, "qwen3", "ForCausalLM", cfg)
    assert ours.model.layers[0].self_attn.q_norm.weight.shape == (24,)
    assert ours.model.layers[0].self_attn.o_proj.bias is not None
    for padding in ("left", None):
        ids, mask = batch(padding=padding)
        with torch.no_grad():
            close(ours(ids, attention_mask=mask).logits, ref(ids, attention_mask=mask).logits)
    close(cached_decode(ours, ids, mask, 2), full_forward(ref, ids, mask), mask=mask)


SLIDING = {
    "mistral": {"sliding_window": 3},
    "qwen2": {"use_sliding_window": True, "sliding_window": 3, "max_window_layers": 1},
    "qwen3": {"use_sliding_window": True, "sliding_window": 4, "max_window_layers": 0},
}


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("family", list(SLIDING))
def test_sliding_window(tmp_path, family, attn):
    cfg = tiny_config(family, **SLIDING[family])
    ref, ours, _ = make_pair(tmp_path, family, "ForCausalLM", cfg, attn=attn)
    windows = [layer.self_attn.sliding_window for layer in ours.model.layers]
    if family != "mistral":  # Mistral's reference attention reads config.sliding_window directly
        assert windows == [ref.model.layers[i].self_attn.sliding_window for i in range(2)]
    assert windows == {"mistral": [3, 3], "qwen2": [None, 3], "qwen3": [4, 4]}[family]
    for t, padding in ((10, "left"), (10, "right"), (10, None), (3, None), (2, "left")):
        ids, mask = batch(t=t, padding=padding)
        with torch.no_grad():
            r = ref(ids, attention_mask=mask, output_attentions=attn == "eager")
            o = ours(ids, attention_mask=mask, output_attentions=attn == "eager")
            close(o.logits, r.logits)
            for a, b in zip(o.attentions or (), r.attentions or ()):
                close(a, b)
            close(ours(ids).logits, ref(ids).logits)
    # decoding far past the window: cached steps equal the reference's full forward
    ids, mask = batch(t=11, padding="left")
    expected = full_forward(ref, ids, mask)
    close(cached_decode(ours, ids, mask, 1), expected, mask=mask)
    close(cached_decode(ours, ids, mask, 6), expected, mask=mask)


def test_mistral_window_unset_is_full_attention(tmp_path):
    ref, ours, _ = make_pair(tmp_path, "mistral", "ForCausalLM", tiny_config("mistral", sliding_window=None))
    assert all(layer.self_attn.sliding_window is None for layer in ours.model.layers)
    ids, mask = batch(t=12)
    with torch.no_grad():
        close(ours(ids, attention_mask=mask).logits, ref(ids, attention_mask=mask).logits)


def test_qwen2_window_ignored_without_use_sliding_window(tmp_path):
    cfg = tiny_config("qwen2", use_sliding_window=False, sliding_window=2, max_window_layers=0)
    ref, ours, _ = make_pair(tmp_path, "qwen2", "ForCausalLM", cfg)
    assert all(layer.self_attn.sliding_window is None for layer in ours.model.layers)
    ids, mask = batch(t=8)
    with torch.no_grad():
        close(ours(ids, attention_mask=mask).logits, ref(ids, attention_mask=mask).logits)


@pytest.mark.parametrize("family", FAMILIES)
def test_cached_decode_every_family(tmp_path, family):
    ref, ours, _ = make_pair(tmp_path, family, "ForCausalLM", tiny_config(family, num_key_value_heads=1))
    ids, mask = batch(t=8, padding="left")
    close(cached_decode(ours, ids, mask, 3), full_forward(ref, ids, mask), mask=mask)


@pytest.mark.parametrize("family", FAMILIES)
def test_bf16_every_family(tmp_path, family):
    ref, ours, _ = make_pair(tmp_path, family, "ForCausalLM", dtype=torch.bfloat16)
    assert ours.dtype == torch.bfloat16
    ids, mask = batch()
    with torch.no_grad():
        close_bf16(ours(ids, attention_mask=mask).logits, ref(ids, attention_mask=mask).logits)


def test_packed_sequences_without_mask_or_cache(tmp_path):
    """position_ids that restart mark packed sequences; each attends only within itself (the reference's rule)."""
    ref, ours, _ = make_pair(tmp_path, "llama", "ForCausalLM")
    ids, _ = batch(b=2, t=8, padding=None)
    positions = torch.tensor([[0, 1, 2, 0, 1, 2, 3, 0], [0, 1, 2, 3, 4, 5, 6, 7]])
    with torch.no_grad():
        o = ours(ids, position_ids=positions, use_cache=False).logits
        close(o, ref(ids, position_ids=positions, use_cache=False).logits)
        close(o[:1, 3:7], ours(ids[:1, 3:7], use_cache=False).logits)


@pytest.mark.parametrize("family", ["llama", "mistral"])
def test_sequence_classification_pooling_and_losses(tmp_path, family):
    ref, ours, folder = make_pair(tmp_path, family, "ForSequenceClassification")
    ids, mask = batch(padding="right")
    with torch.no_grad():
        close(ours(ids).logits, ref(ids).logits)  # pooled at the last non-pad token even without a mask
        emb = ours.model.embed_tokens(ids[:1])
        close(ours(inputs_embeds=emb).logits, ref(inputs_embeds=emb).logits)  # no ids: the last position
    for num_labels, labels in ((1, torch.randn(3)), (3, torch.rand(3, 3)), (3, torch.tensor([0, 2, 1]))):
        cls = reference_class(family, "ForSequenceClassification")
        torch.manual_seed(0)
        r = cls.from_pretrained(folder, num_labels=num_labels, ignore_mismatched_sizes=True).eval()
        o = our_class(family, "ForSequenceClassification").from_pretrained(folder, num_labels=num_labels,
                                                                            ignore_mismatched_sizes=True)
        o.score.weight.data.copy_(r.score.weight.data)
        with torch.no_grad():
            close(o(ids, attention_mask=mask, labels=labels).loss, r(ids, attention_mask=mask, labels=labels).loss)
        assert o.config.problem_type == r.config.problem_type
    ours.config.pad_token_id = None
    with pytest.raises(ValueError, match="Cannot handle batch sizes > 1 if no padding token is defined"):
        ours(ids)
    ref.config.pad_token_id = None
    with torch.no_grad():
        close(ours(ids[:1]).logits, ref(ids[:1]).logits)


@pytest.mark.parametrize("family", FAMILIES)
def test_question_answering_prefix(tmp_path, family):
    """Llama/Qwen2/Qwen3 QA heads keep the backbone under `transformer`, Mistral's under `model`."""
    ref, ours, folder = make_pair(tmp_path, family, "ForQuestionAnswering")
    prefix = "model" if family == "mistral" else "transformer"
    assert ours.base_model_prefix == ref.base_model_prefix == prefix
    assert set(ours.state_dict()) == set(ref.state_dict())
    assert ours.get_input_embeddings() is getattr(ours, prefix).embed_tokens
    # a causal-LM checkpoint into the QA head: what loads and what is missing match the reference
    _, _, lm_folder = make_pair(tmp_path, family, "ForCausalLM")
    r, r_info = reference_class(family, "ForQuestionAnswering").from_pretrained(lm_folder, output_loading_info=True)
    o, o_info = our_class(family, "ForQuestionAnswering").from_pretrained(lm_folder, output_loading_info=True)
    assert set(o_info["missing_keys"]) == set(r_info["missing_keys"])
    assert set(o_info["unexpected_keys"]) == set(r_info["unexpected_keys"])
    if family == "mistral":
        ids, mask = batch()
        o.qa_outputs.load_state_dict(r.qa_outputs.state_dict())
        with torch.no_grad():
            close(o(ids, attention_mask=mask).start_logits, r.eval()(ids, attention_mask=mask).start_logits)


@pytest.mark.parametrize("family", FAMILIES)
def test_base_checkpoint_into_heads_and_back(tmp_path, family):
    ref, base, folder = make_pair(tmp_path, family, "Model")
    ids, mask = batch()
    with torch.no_grad():
        expected = ref(ids, attention_mask=mask).last_hidden_state
    lm, info = our_class(family, "ForCausalLM").from_pretrained(folder, output_loading_info=True)
    assert info["missing_keys"] == ["lm_head.weight"] and not info["unexpected_keys"]
    with torch.no_grad():
        close(lm(ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1], expected)
    token, info = autoload.AutoModelForTokenClassification.from_pretrained(folder, num_labels=5,
                                                                          output_loading_info=True)
    assert sorted(info["missing_keys"]) == ["score.bias", "score.weight"]
    assert token(ids).logits.shape == (3, 9, 5)


@pytest.mark.parametrize("family", FAMILIES)
def test_auto_resolution(tmp_path, family):
    for task in TASKS:
        ref, _, folder = make_pair(tmp_path, family, task)
        auto = getattr(autoload, "AutoModel" if task == "Model" else f"AutoModel{task}")
        ours = auto.from_pretrained(folder)
        assert type(ours) is our_class(family, task)
        ids, mask = batch()
        with torch.no_grad():
            got, want = ours(ids, attention_mask=mask), ref(ids, attention_mask=mask)
        for a, b in zip(_outputs(got, task), _outputs(want, task)):
            close(a, b)


@pytest.mark.parametrize("family", FAMILIES)
def test_training_and_save_round_trip(tmp_path, family):
    _, ours, _ = make_pair(tmp_path, family, "ForCausalLM", tiny_config(family, tie_word_embeddings=True))
    ours.train()
    ids, mask = batch(padding="left")
    optimizer = torch.optim.SGD(ours.parameters(), lr=0.5)
    losses = []
    for _ in range(3):
        loss = ours(ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
        optimizer.zero_grad()
        loss.backward()
        assert ours.model.embed_tokens.weight.grad.abs().sum() > 0
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    ours.eval().save_pretrained(tmp_path / "saved")
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "saved").eval()
    assert back.lm_head.weight.data_ptr() == back.model.embed_tokens.weight.data_ptr()
    with torch.no_grad():
        close(back(ids, attention_mask=mask).logits, ours(ids, attention_mask=mask).logits, atol=0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("family", FAMILIES)
def test_cuda_parity_and_decode(tmp_path, family, dtype):
    cfg = tiny_config(family, **SLIDING.get(family, {}))
    _, _, folder = make_pair(tmp_path, family, "ForCausalLM", cfg)
    ref = reference_class(family, "ForCausalLM").from_pretrained(folder, dtype=dtype).to("cuda").eval()
    ours = our_class(family, "ForCausalLM").from_pretrained(folder, dtype=dtype, device_map="cuda")
    assert ours.device.type == "cuda" and ours.dtype == dtype
    assert ours.model.rotary_emb.inv_freq.dtype == torch.float32
    ids, mask = (t.cuda() for t in batch(t=10, padding="left"))
    want = full_forward(ref, ids, mask)
    tol = 1e-4 if dtype == torch.float32 else 2e-2 * max(want.float().abs().max().item(), 1.0)
    close(full_forward(ours, ids, mask).float(), want.float(), atol=tol, mask=mask)
    close(cached_decode(ours, ids, mask, 4).float(), want.float(), atol=tol, mask=mask)
