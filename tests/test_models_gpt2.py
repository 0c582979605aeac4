"""GPT-2 against the reference (transformers, test-only): tiny random models saved by the reference, loaded through
autoload's real loading path, compared output by output (fp32 atol 1e-4), plus caching, saving and loading."""

from __future__ import annotations

import logging

import pytest
import torch
import transformers
from safetensors.torch import save_file
from torch.testing import assert_close

import autoload
import model_cases
from autoload.models import gpt2
from autoload.models.configs import GPT2Config
from autoload.nn.cache import DynamicCache, StaticCache
from model_cases import assert_outputs_close, labels_for


@pytest.fixture(autouse=True)
def quiet_reference():
    """The reference's warnings (token ids outside the tiny vocab, ...) and bars off, restored afterwards."""
    level, bars = transformers.logging.get_verbosity(), transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    yield
    transformers.logging.set_verbosity(level)
    if bars:
        transformers.utils.logging.enable_progress_bar()


TINY = dict(vocab_size=99, n_positions=32, n_embd=32, n_layer=2, n_head=4, pad_token_id=0, bos_token_id=1,
            eos_token_id=2)
VARIANTS = {
    "default": {},
    "n_inner_layer_scaled": dict(n_inner=40, scale_attn_by_inverse_layer_idx=True),
    "odd_heads_gelu": dict(n_embd=30, n_head=5, n_layer=3, activation_function="gelu"),
    "eager": dict(attn="eager", scale_attn_by_inverse_layer_idx=True),
    "eager_upcast_unscaled": dict(attn="eager", reorder_and_upcast_attn=True, scale_attn_weights=False),
}
CLASSES = ["GPT2Model", "GPT2LMHeadModel", "GPT2ForSequenceClassification", "GPT2ForTokenClassification",
           "GPT2ForQuestionAnswering"]


def make_pair(folder, cls_name="GPT2LMHeadModel", attn="sdpa", dtype=torch.float32, seed=0, **overrides):
    """A reference model saved to `folder`, then loaded back by the reference and by autoload."""
    return model_cases.make_pair(folder, getattr(transformers, cls_name), getattr(gpt2, cls_name),
                                 transformers.GPT2Config(**{**TINY, **overrides}), attn=attn, dtype=dtype, seed=seed)


def make_batch(padding="none", B=3, T=8, vocab=99, seed=1):
    """Token ids (pad id 0 at padded places) and a mask (None without padding); rows of lengths T, T-3, T-5."""
    ids, mask = model_cases.padded_batch(B, T, None if padding == "none" else padding, [0, 3, 5], vocab, low=3,
                                         seed=seed)
    return ids, (None if padding == "none" else mask)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("cls_name", CLASSES)
def test_parity_with_the_reference(tmp_path, cls_name, variant):
    overrides = dict(VARIANTS[variant])
    ref, ours = make_pair(tmp_path, cls_name, attn=overrides.pop("attn", "sdpa"), **overrides)
    with torch.no_grad():
        for padding in ("none", "right", "left"):
            ids, mask = make_batch(padding)
            assert_outputs_close(ours(ids, attention_mask=mask), ref(ids, attention_mask=mask))
            labels = labels_for(cls_name, ids, mask)
            if labels:
                got, want = ours(ids, attention_mask=mask, **labels), ref(ids, attention_mask=mask, **labels)
                assert_outputs_close(got, want)  # both ways: a loss on one side only fails


@pytest.mark.parametrize("num_labels,kind", [(1, "regression"), (3, "multi_label")])
def test_sequence_classification_losses(tmp_path, num_labels, kind):
    ref, ours = make_pair(tmp_path, "GPT2ForSequenceClassification", num_labels=num_labels)
    ids, mask = make_batch("right")
    labels = torch.randn(3) if kind == "regression" else torch.randint(0, 2, (3, num_labels)).float()
    with torch.no_grad():
        got, want = ours(ids, attention_mask=mask, labels=labels), ref(ids, attention_mask=mask, labels=labels)
    assert_outputs_close(got, want)
    assert ours.config.problem_type == ref.config.problem_type


def test_sequence_classification_pooling_without_pad_token(tmp_path):
    ref, ours = make_pair(tmp_path, "GPT2ForSequenceClassification", pad_token_id=None)
    ids, _ = make_batch()
    for model in (ours, ref):
        with pytest.raises(ValueError, match="no padding token"):
            model(ids)
    with torch.no_grad():  # batch size 1: the last token, as the reference
        assert_outputs_close(ours(ids[:1]), ref(ids[:1]))
        embeds = ref.transformer.wte(ids[:1])
        assert_outputs_close(ours(inputs_embeds=embeds), ref(inputs_embeds=embeds))


def test_token_type_ids_and_inputs_embeds(tmp_path):
    ref, ours = make_pair(tmp_path, "GPT2LMHeadModel")
    ids, mask = make_batch("right")
    types = torch.randint(0, 3, ids.shape)
    with torch.no_grad():
        assert_outputs_close(ours(ids, attention_mask=mask, token_type_ids=types),
                             ref(ids, attention_mask=mask, token_type_ids=types))
        embeds = ref.transformer.wte(ids)
        assert_outputs_close(ours(inputs_embeds=embeds, attention_mask=mask),
                             ref(inputs_embeds=embeds, attention_mask=mask))
        assert_close(ours(ids, logits_to_keep=1).logits, ref(ids).logits[:, -1:], atol=1e-4, rtol=0)


def _decode_steps(model, ids, mask, positions, cache, prefill=3, chunk=2):
    """Prefill, then a chunk of `chunk` tokens, then one token at a time; yields (slice, logits) per call."""
    T = ids.shape[1]
    cuts = [0, prefill, prefill + chunk, *range(prefill + chunk + 1, T + 1)]
    for start, end in zip(cuts, cuts[1:]):
        kwargs = {"attention_mask": None if mask is None else mask[:, :end],
                  "position_ids": None if positions is None else positions[:, start:end]}
        out = model(ids[:, start:end], past_key_values=cache, use_cache=True, **kwargs)
        assert out.past_key_values is cache and cache.get_seq_length() == end
        yield slice(start, end), out.logits


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("cache_kind", ["dynamic", "static"])
@pytest.mark.parametrize("padding", ["none", "left"])
def test_cached_decode_equals_full_forward(tmp_path, padding, cache_kind, attn):
    ref, ours = make_pair(tmp_path, "GPT2LMHeadModel", attn=attn)
    ids, mask = make_batch(padding, T=10)
    # generation's position ids under left padding: count real tokens, pads clamped to 0
    positions = None if mask is None else (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        full = ours(ids, attention_mask=mask, position_ids=positions).logits                # (B, T, V)
        assert_close(full, ref(ids, attention_mask=mask, position_ids=positions).logits, atol=1e-4, rtol=0)
        if cache_kind == "dynamic":
            cache = DynamicCache()
        else:
            cfg = ours.config
            cache = StaticCache(cfg.n_layer, ids.shape[0], cfg.n_head, cfg.n_embd // cfg.n_head, 16,
                                torch.float32, "cpu")
        # padded query rows attend to nothing: their (unused) outputs depend on the attention path, skip them
        valid = torch.ones(ids.shape, dtype=torch.bool) if mask is None else mask.bool()
        for where, logits in _decode_steps(ours, ids, mask, positions, cache):
            assert_close(logits[valid[:, where]], full[:, where][valid[:, where]], atol=1e-4, rtol=0)


def test_cache_defaults_and_alias(tmp_path):
    _, ours = make_pair(tmp_path, "GPT2LMHeadModel")
    ids, _ = make_batch()
    with torch.no_grad():
        full = ours(ids, use_cache=False)
        assert full.past_key_values is None
        first = ours(ids[:, :5])  # config.use_cache is true: a DynamicCache comes back
        assert isinstance(first.past_key_values, DynamicCache) and first.past_key_values.get_seq_length() == 5
        step = ours(ids[:, 5:6], cache=first.past_key_values)
        assert_close(step.logits[:, 0], full.logits[:, 5], atol=1e-4, rtol=0)
        with pytest.raises(ValueError, match="not both"):
            ours(ids[:, 6:7], past_key_values=DynamicCache(), cache=DynamicCache())
        assert isinstance(ours(ids, return_dict=False)[0], torch.Tensor)


def test_bf16_close_to_the_reference(tmp_path):
    ref, ours = make_pair(tmp_path, "GPT2LMHeadModel", dtype=torch.bfloat16)
    assert ours.dtype == torch.bfloat16 and ours.transformer.h[0].attn.c_attn.weight.dtype == torch.bfloat16
    ids, mask = make_batch("left")
    with torch.no_grad():
        got, want = ours(ids, attention_mask=mask, labels=ids).logits, ref(ids, attention_mask=mask).logits
    assert got.dtype == torch.bfloat16
    scale = want.float().abs().max().item()
    assert_close(got.float(), want.float(), atol=2e-2 * scale, rtol=0)


def test_bf16_reorder_and_upcast_attn(tmp_path):
    """Eager attention with reorder_and_upcast_attn: scores and softmax in fp32, probabilities cast to bf16 (the
    bf16 softmax would be off by ~1e-3)."""
    ref, ours = make_pair(tmp_path, "GPT2LMHeadModel", attn="eager", dtype=torch.bfloat16, n_embd=64,
                          reorder_and_upcast_attn=True)
    ids, mask = make_batch("left")
    with torch.no_grad():
        got = ours(ids, attention_mask=mask, output_attentions=True)
        want = ref(ids, attention_mask=mask, output_attentions=True)
    for a, b in zip(got.attentions, want.attentions, strict=True):
        assert_close(a.float(), b.float(), atol=2e-4, rtol=0)
    assert_close(got.logits.float(), want.logits.float(), atol=1e-3, rtol=0)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_hidden_states_and_attentions(tmp_path, attn):
    ref, ours = make_pair(tmp_path, "GPT2LMHeadModel", attn=attn)
    ids, mask = make_batch("left")
    kwargs = dict(attention_mask=mask, output_hidden_states=True, output_attentions=True)
    with torch.no_grad():
        got, want = ours(ids, **kwargs), ref(ids, **kwargs)
        base = ours.transformer(ids, **kwargs)
    assert len(got.hidden_states) == len(want.hidden_states) == ours.config.n_layer + 1
    for a, b in zip(got.hidden_states, want.hidden_states):
        assert_close(a, b, atol=1e-4, rtol=0)
    assert_close(base.hidden_states[-1], base.last_hidden_state)  # the last one is after ln_f
    assert len(got.attentions) == len(want.attentions) == (0 if attn == "sdpa" else ours.config.n_layer)
    for a, b in zip(got.attentions, want.attentions):
        assert a.shape == (3, 4, 8, 8)
        assert_close(a, b, atol=1e-5, rtol=0)
    # tuple form: the same fields in the same places (the reference adds an empty cross_attentions at the end)
    tup, ref_tup = ours(ids, return_dict=False, **kwargs), ref(ids, return_dict=False, **kwargs)
    assert_close(tup[0], ref_tup[0], atol=1e-4, rtol=0)
    assert [len(t) for t in tup[2:4]] == [len(t) for t in ref_tup[2:4]]


def test_direct_construction_init_and_training_step():
    torch.manual_seed(0)
    model = gpt2.GPT2LMHeadModel(GPT2Config(**{**TINY, "n_embd": 64, "n_layer": 2}))
    block = model.transformer.h[0]
    assert model.lm_head.weight is model.transformer.wte.weight
    assert isinstance(block.attn.c_attn, torch.nn.Linear) and block.attn.c_attn.weight.shape == (192, 64)  # (out, in)
    assert model.state_dict()["transformer.h.0.attn.c_attn.weight"].shape == (64, 192)  # [in, out], the checkpoint's
    clone = gpt2.GPT2LMHeadModel(GPT2Config(**{**TINY, "n_embd": 64, "n_layer": 2}))
    clone.load_state_dict(model.state_dict())  # torch's own loading takes the [in, out] layout back
    assert torch.equal(clone.transformer.h[0].attn.c_attn.weight, block.attn.c_attn.weight)
    assert 0.018 < block.attn.c_attn.weight.std() < 0.022
    assert 0.008 < block.mlp.c_proj.weight.std() < 0.012  # 0.02 / sqrt(2 * n_layer)
    assert not block.attn.c_proj.bias.any() and bool((block.ln_1.weight == 1).all())
    model.train()
    ids, _ = make_batch(T=12)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(6):
        loss = model(ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        if step == 0:
            assert model.transformer.wte.weight.grad.abs().sum() > 0
            assert model.transformer.wpe.weight.grad.abs().sum() > 0
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1, losses


@pytest.mark.parametrize("cls_name", ["GPT2LMHeadModel", "GPT2ForSequenceClassification"])
def test_save_pretrained_round_trips_through_the_reference(tmp_path, cls_name):
    torch.manual_seed(0)
    ours = getattr(gpt2, cls_name)(GPT2Config(**TINY, num_labels=3)).eval()
    ours.save_pretrained(tmp_path)
    ref, info = getattr(transformers, cls_name).from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info.values()), info
    ids, mask = make_batch("right")
    with torch.no_grad():
        assert_outputs_close(ours(ids, attention_mask=mask), ref.eval()(ids, attention_mask=mask))
    again = getattr(gpt2, cls_name).from_pretrained(tmp_path)
    assert_close(again.state_dict(), ours.state_dict(), atol=0, rtol=0)


def test_auto_classes_resolve_gpt2(tmp_path):
    ref, _ = make_pair(tmp_path, "GPT2LMHeadModel")
    lm = autoload.AutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(lm) is gpt2.GPT2LMHeadModel
    assert type(autoload.AutoModelForPreTraining.from_pretrained(tmp_path)) is gpt2.GPT2LMHeadModel
    base, info = autoload.AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert type(base) is gpt2.GPT2Model and not any(info.values())  # the head checkpoint's prefix is stripped
    ids, mask = make_batch("right")
    with torch.no_grad():
        assert_outputs_close(base(ids, attention_mask=mask), ref.transformer(ids, attention_mask=mask))
    for auto, cls_name, head in [(autoload.AutoModelForSequenceClassification, "GPT2ForSequenceClassification",
                                  ["score.weight"]),
                                 (autoload.AutoModelForTokenClassification, "GPT2ForTokenClassification",
                                  ["classifier.weight", "classifier.bias"]),
                                 (autoload.AutoModelForQuestionAnswering, "GPT2ForQuestionAnswering",
                                  ["qa_outputs.weight", "qa_outputs.bias"])]:
        model, info = auto.from_pretrained(tmp_path, output_loading_info=True)
        assert type(model).__name__ == cls_name
        assert sorted(info["missing_keys"]) == sorted(head) and not info["unexpected_keys"]


def test_head_checkpoint_into_base_and_base_into_head(tmp_path, caplog):
    ref_head, _ = make_pair(tmp_path / "head", "GPT2ForSequenceClassification")
    base, info = gpt2.GPT2Model.from_pretrained(tmp_path / "head", output_loading_info=True)
    assert info["unexpected_keys"] == ["score.weight"] and not info["missing_keys"]
    ref_base, _ = make_pair(tmp_path / "base", "GPT2Model", seed=3)
    with caplog.at_level(logging.WARNING, logger="autoload"):
        head, info = gpt2.GPT2ForSequenceClassification.from_pretrained(tmp_path / "base", output_loading_info=True)
    assert info["missing_keys"] == ["score.weight"] and not info["unexpected_keys"]
    assert "score.weight" in caplog.text
    ids, mask = make_batch("right")
    with torch.no_grad():
        assert_close(base(ids, attention_mask=mask).last_hidden_state,
                     ref_head.transformer(ids, attention_mask=mask).last_hidden_state, atol=1e-4, rtol=0)
        assert_close(head.transformer(ids, attention_mask=mask).last_hidden_state,
                     ref_base(ids, attention_mask=mask).last_hidden_state, atol=1e-4, rtol=0)


def test_original_hub_checkpoint_layout(tmp_path, caplog):
    """openai-community/gpt2 style: keys without `transformer.`, causal-mask buffers `attn.bias`/`masked_bias`."""
    cfg = transformers.GPT2Config(**TINY, architectures=["GPT2LMHeadModel"])
    torch.manual_seed(0)
    state = {k: v.contiguous() for k, v in transformers.GPT2Model(cfg).state_dict().items()}
    assert "h.0.attn.c_attn.weight" in state and "wte.weight" in state
    n = cfg.n_positions
    for i in range(cfg.n_layer):
        state[f"h.{i}.attn.bias"] = torch.tril(torch.ones(n, n, dtype=torch.uint8)).view(1, 1, n, n)
        state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    cfg.save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING, logger="autoload"):
        model, info = gpt2.GPT2LMHeadModel.from_pretrained(tmp_path, output_loading_info=True)
        auto = autoload.AutoModelForCausalLM.from_pretrained(tmp_path)
    assert not any(info.values()), info
    assert not caplog.records, caplog.text
    assert model.lm_head.weight is model.transformer.wte.weight
    assert auto.lm_head.weight is auto.transformer.wte.weight
    ref = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    ids, mask = make_batch("left")
    with torch.no_grad():
        assert_outputs_close(model(ids, attention_mask=mask, labels=ids), ref(ids, attention_mask=mask, labels=ids))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_parity_and_decode(tmp_path, dtype):
    make_pair(tmp_path, "GPT2LMHeadModel")
    ref = transformers.GPT2LMHeadModel.from_pretrained(tmp_path, dtype=dtype).to("cuda").eval()
    ours = gpt2.GPT2LMHeadModel.from_pretrained(tmp_path, dtype=dtype, device_map="cuda")
    assert ours.device.type == "cuda" and ours.dtype == dtype
    ids, mask = (t.cuda() for t in make_batch("left", T=10))
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        full = ours(ids, attention_mask=mask, position_ids=positions).logits
        want = ref(ids, attention_mask=mask, position_ids=positions).logits
        scale = want.float().abs().max().item()
        tol = 1e-4 if dtype == torch.float32 else 2e-2 * scale
        valid = mask.bool()
        assert_close(full[valid].float(), want[valid].float(), atol=tol, rtol=0)
        for where, logits in _decode_steps(ours, ids, mask, positions, DynamicCache()):
            assert_close(logits[valid[:, where]].float(), full[:, where][valid[:, where]].float(), atol=tol, rtol=0)
