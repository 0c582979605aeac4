"""Gemma / Gemma 2 / Gemma 3 parity with transformers 5.x (the oracle) on tiny random checkpoints: 4-6 layers with a
window of 4 over sequences of 11 (sliding and global layers alternate; gemma3 5:1 shrunk to 2:1 with its two rope
bases and linear scaling on the global layers), (1 + w) norms moved off their zero init, soft-capping turned up
so that it bites. Logits with left padding, losses, hidden states, eager attentions, cached decoding, greedy and
beam generation, compiled decoding, save -> transformers, Auto classes and the gemma3 multimodal nesting."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from safetensors.torch import load_file

import autoload
from autoload.generation import generate
from autoload.models import gemma
from decoder_cases import cached_decode, close, close_bf16, full_forward
from model_cases import make_pair, padded_batch

transformers.logging.set_verbosity_error()
VOCAB = 99
BASE = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=37, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, head_dim=8, max_position_embeddings=64, pad_token_id=0, bos_token_id=1,
            eos_token_id=98, initializer_range=0.2)
FAMILIES = {  # model_type: (config name, class prefix, config overrides)
    "gemma": ("GemmaConfig", "Gemma", {}),
    "gemma2": ("Gemma2Config", "Gemma2", dict(sliding_window=4, query_pre_attn_scalar=16, attn_logit_softcapping=1.5,
                                              final_logit_softcapping=2.5)),
    "gemma3_text": ("Gemma3TextConfig", "Gemma3", dict(
        num_hidden_layers=6, sliding_window=4, sliding_window_pattern=3, query_pre_attn_scalar=16,
        final_logit_softcapping=2.5, rope_theta=5000.0, rope_local_base_freq=50.0,
        rope_scaling={"rope_type": "linear", "factor": 2.0})),
}
ATTN = {"gemma": ["sdpa", "eager"], "gemma2": ["eager"], "gemma3_text": ["sdpa", "eager"]}  # gemma2: eager only there


def config(model_type: str, **overrides):
    name, _, extra = FAMILIES[model_type]
    return getattr(transformers, name)(**{**BASE, **extra, **overrides})


def class_name(model_type: str, task: str) -> str:
    prefix = FAMILIES[model_type][1]
    if model_type == "gemma3_text" and task in ("Model", "ForSequenceClassification"):
        prefix = "Gemma3Text"
    return prefix + task


def off_zero(model) -> None:
    """The (1 + w) norms start at w = 0 (the identity): give them weights, so that the offset is exercised."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def pair(tmp_path, model_type: str, task: str = "ForCausalLM", attn: str = "eager", dtype=None, **overrides):
    name = class_name(model_type, task)
    return make_pair(tmp_path / f"{model_type}-{task}-{attn}", getattr(transformers, name), getattr(gemma, name),
                     config(model_type, **overrides), attn=attn, dtype=dtype, prepare=off_zero, reload=False)


@pytest.fixture(scope="module", params=list(FAMILIES))
def lm(request, tmp_path_factory):
    """(model_type, reference, ours): eager causal LMs."""
    return (request.param, *pair(tmp_path_factory.mktemp(request.param), request.param))


def batch(t: int = 11, padding: str | None = "left"):
    return padded_batch(3, t, padding, [0, 2, 5], VOCAB, low=2)


@pytest.mark.parametrize("model_type", list(FAMILIES))
def test_logits_with_left_padding(tmp_path, model_type):
    for attn in ATTN[model_type]:
        ref, ours = pair(tmp_path, model_type, attn=attn)
        for padding in ("left", None):
            ids, mask = batch(padding=padding)
            with torch.no_grad():
                close(ours(ids, attention_mask=mask).logits, ref(ids, attention_mask=mask).logits, mask=mask)
                close(ours(ids).logits, ref(ids).logits)


def test_the_gemma_parts(lm):
    model_type, ref, ours = lm
    layers = ours.model.layers
    assert ours.lm_head.weight is ours.model.embed_tokens.weight  # tied by default
    windows = [layer.self_attn.sliding_window for layer in layers]
    softcaps = {layer.self_attn.softcap for layer in layers}
    if model_type == "gemma":
        assert windows == [None] * 4 and softcaps == {None} and not hasattr(layers[0], "pre_feedforward_layernorm")
    elif model_type == "gemma2":
        assert windows == [4, None, 4, None] and softcaps == {1.5} and hasattr(layers[0], "post_feedforward_layernorm")
    else:  # 2 local : 1 global here (the released 5 : 1 is sliding_window_pattern 6), two rope bases
        assert windows == [4, 4, None, 4, 4, None] and softcaps == {None} and hasattr(layers[0].self_attn, "q_norm")
        for kind in ("sliding_attention", "full_attention"):
            torch.testing.assert_close(ours.model.rotary_emb[kind].inv_freq,
                                       getattr(ref.model.rotary_emb, f"{kind}_inv_freq"), atol=0, rtol=0)
    ids, _ = batch(padding=None)
    emb = ours.model.embed_tokens(ids)
    torch.testing.assert_close(emb, ref.model.embed_tokens(ids), atol=0, rtol=0)  # times sqrt(hidden), as theirs
    close(emb, torch.nn.functional.embedding(ids, ours.model.embed_tokens.weight) * 32 ** 0.5)


def test_losses_hidden_states_and_eager_attentions(lm):
    _, ref, ours = lm
    ids, mask = batch(padding="left")
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        r = ref(ids, attention_mask=mask, labels=labels, output_hidden_states=True, output_attentions=True)
        o = ours(ids, attention_mask=mask, labels=labels, output_hidden_states=True, output_attentions=True)
        close(o.loss, r.loss, atol=1e-5)
        n = torch.tensor(13)
        close(ours(ids, labels=labels, num_items_in_batch=n).loss, ref(ids, labels=labels, num_items_in_batch=n).loss)
    assert len(o.hidden_states) == len(r.hidden_states) and len(o.attentions) == len(r.attentions) > 0
    for a, b in zip(o.hidden_states, r.hidden_states):
        close(a, b, mask=mask)
    for a, b in zip(o.attentions, r.attentions):  # (B, nh, T, K): zeros outside each layer's window, as theirs
        close(a, b)
    emb = ours.model.embed_tokens(ids)
    with torch.no_grad():  # inputs_embeds are used as given (not scaled again)
        close(ours(inputs_embeds=emb, attention_mask=mask).logits, ref(inputs_embeds=emb, attention_mask=mask).logits,
              mask=mask)


def test_cached_decode_equals_full_forward(lm):
    _, ref, ours = lm
    ids, mask = batch(padding="left")
    expected = full_forward(ref, ids, mask)
    close(full_forward(ours, ids, mask), expected, mask=mask)
    for prefill in (1, 6):  # steps before, across and past the window of 4
        close(cached_decode(ours, ids, mask, prefill), expected, mask=mask)


def test_greedy_and_beam_generation_equal_the_reference(lm):
    _, ref, ours = lm
    ids, mask = batch(t=7, padding="left")
    for options in (dict(max_new_tokens=12), dict(max_new_tokens=8, num_beams=3, num_return_sequences=2)):
        theirs = ref.generate(ids, attention_mask=mask, do_sample=False, **options)
        assert torch.equal(generate(ours, ids, mask, **options), theirs), options
    static = generate(ours, ids, mask, max_new_tokens=12, cache_implementation="static")
    assert torch.equal(static, ref.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=12))


@pytest.mark.slow
def test_compiled_greedy_equals_eager(tmp_path):
    """compile=True on gemma2 (a sliding layer, a global one, both soft-caps): the fixed-shape step's full-cache
    mask is cut to the window from the cache's write index."""
    _, ours = pair(tmp_path, "gemma2", num_hidden_layers=2)
    ids, mask = batch(t=7, padding="left")
    options = dict(attention_mask=mask, max_new_tokens=10, eos_token_id=None)
    assert torch.equal(generate(ours, ids, compile=True, **options), generate(ours, ids, **options))


def test_save_reloads_in_transformers_and_auto_classes(tmp_path, lm):
    model_type, ref, ours = lm
    ours.save_pretrained(tmp_path / "saved")
    theirs = getattr(transformers, class_name(model_type, "ForCausalLM")).from_pretrained(tmp_path / "saved").eval()
    ids, mask = batch()
    with torch.no_grad():
        close(theirs(ids, attention_mask=mask).logits, ref(ids, attention_mask=mask).logits, mask=mask)
    auto = autoload.AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    base = autoload.AutoModel.from_pretrained(tmp_path / "saved")
    assert type(auto) is type(ours) and type(base).__name__ == class_name(model_type, "Model")
    assert type(autoload.AutoConfig.from_pretrained(tmp_path / "saved")).__name__ == FAMILIES[model_type][0]
    with torch.no_grad():
        close(base(ids, attention_mask=mask).last_hidden_state, ref.model(ids, attention_mask=mask).last_hidden_state,
              mask=mask)


@pytest.mark.parametrize("model_type", list(FAMILIES))
def test_classification_heads(tmp_path, model_type):
    tasks = ["ForSequenceClassification"] + (["ForTokenClassification"] if model_type != "gemma3_text" else [])
    ids, mask = batch()
    for task in tasks:
        ref, ours = pair(tmp_path, model_type, task, num_labels=3, classifier_dropout=0.0)
        labels = torch.tensor([0, 2, 1]) if task == "ForSequenceClassification" else ids % 3
        with torch.no_grad():
            r, o = ref(ids, attention_mask=mask, labels=labels), ours(ids, attention_mask=mask, labels=labels)
        close(o.logits, r.logits) if task == "ForSequenceClassification" else close(o.logits, r.logits, mask=mask)
        close(o.loss, r.loss, atol=1e-5)
        assert type(getattr(autoload, f"AutoModel{task}").from_pretrained(
            tmp_path / f"{model_type}-{task}-eager")).__name__ == class_name(model_type, task)


def test_bf16_gemma(tmp_path):
    """bf16: sqrt(hidden) rounded to bf16 and the (1 + w) norm in fp32, as the reference: the same bits."""
    ref, ours = pair(tmp_path, "gemma", dtype=torch.bfloat16)
    assert ours.dtype == torch.bfloat16
    ids, mask = batch()
    with torch.no_grad():
        o, r = ours(ids, attention_mask=mask).logits, ref(ids, attention_mask=mask).logits
    close_bf16(o, r)
    torch.testing.assert_close(o, r, atol=0, rtol=0)


# -- gemma3: the multimodal config nesting text_config ------------------------------------------------------------

@pytest.fixture(scope="module")
def multimodal(tmp_path_factory):
    """(folder, reference Gemma3ForConditionalGeneration): a tiny gemma3 checkpoint with a SigLIP vision tower."""
    text = config("gemma3_text", tie_word_embeddings=True)
    vision = transformers.SiglipVisionConfig(hidden_size=16, intermediate_size=20, num_hidden_layers=1,
                                             num_attention_heads=2, image_size=28, patch_size=14)
    cfg = transformers.Gemma3Config(text_config=text.to_dict(), vision_config=vision.to_dict(), mm_tokens_per_image=4)
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    ref = transformers.Gemma3ForConditionalGeneration(cfg)
    off_zero(ref)
    folder = tmp_path_factory.mktemp("gemma3") / "mm"
    ref.save_pretrained(folder)
    return folder, ref.eval()


def test_gemma3_causal_lm_is_the_language_model_of_text_config(tmp_path, multimodal):
    folder, ref = multimodal
    keys = load_file(folder / "model.safetensors")
    assert any(k.startswith("language_model.model.") for k in keys) and any(k.startswith("vision_tower.") for k in keys)
    cfg = autoload.AutoConfig.from_pretrained(folder)
    assert type(cfg).__name__ == "Gemma3Config" and type(cfg.text_config).__name__ == "Gemma3TextConfig"
    ours, info = autoload.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager",
                                                               output_loading_info=True)
    assert type(ours) is gemma.Gemma3ForConditionalGeneration and ours.config.model_type == "gemma3_text"
    assert info["missing_keys"] == info["unexpected_keys"] == []  # the vision tower and projector: left out
    ids, mask = batch()
    with torch.no_grad():
        close(ours(ids, attention_mask=mask).logits, ref(ids, attention_mask=mask).logits, mask=mask)
    assert torch.equal(generate(ours, ids, mask, max_new_tokens=8),
                       ref.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=8))
    with pytest.raises(NotImplementedError, match="language model only"):
        ours(ids, pixel_values=torch.zeros(1, 3, 28, 28))
    # the text classes read the multimodal checkpoint too, and what is saved is a gemma3_text checkpoint
    direct = gemma.Gemma3ForCausalLM.from_pretrained(folder, attn_implementation="eager")
    ours.save_pretrained(tmp_path / "text")
    assert json.loads((tmp_path / "text" / "config.json").read_text())["model_type"] == "gemma3_text"
    theirs = transformers.Gemma3ForCausalLM.from_pretrained(tmp_path / "text").eval()
    base = autoload.AutoModel.from_pretrained(folder)
    assert type(base) is gemma.Gemma3Model
    with torch.no_grad():
        capped = torch.tanh(ref(ids, attention_mask=mask).logits / 2.5) * 2.5
        close(direct(ids, attention_mask=mask).logits, capped, mask=mask)
        # (the text classes apply final_logit_softcapping, which the reference's multimodal class leaves unused)
        close(theirs(ids, attention_mask=mask).logits, direct(ids, attention_mask=mask).logits, mask=mask)
        close(base(ids, attention_mask=mask).last_hidden_state,
              ref.model(ids, attention_mask=mask).last_hidden_state, mask=mask)


def test_gemma3_in_memory_key_layout_and_sequence_classification(tmp_path, multimodal):
    """A state dict under the reference's in-memory names (model.language_model.*) loads as well; gemma3's
    sequence-classification head takes num_labels on the outer config."""
    _, ref = multimodal
    state = {k: v for k, v in ref.state_dict().items()}
    assert any(k.startswith("model.language_model.") for k in state)
    ours = gemma.Gemma3ForConditionalGeneration.from_pretrained(multimodal[0], state_dict=state,
                                                                attn_implementation="eager")
    ids, mask = batch()
    with torch.no_grad():
        close(ours(ids, attention_mask=mask).logits, ref(ids, attention_mask=mask).logits, mask=mask)
    head = autoload.AutoModelForSequenceClassification.from_pretrained(multimodal[0], num_labels=3)
    assert type(head) is gemma.Gemma3ForSequenceClassification and head.score.out_features == 3


def test_gemma3_legacy_config_keys(tmp_path):
    """Released gemma-3 config.json files carry rope_theta, rope_local_base_freq, rope_scaling and
    sliding_window_pattern instead of rope_parameters and layer_types: read as the reference reads them."""
    ref, _ = pair(tmp_path, "gemma3_text")
    folder = tmp_path / "gemma3_text-ForCausalLM-eager"
    data = json.loads((folder / "config.json").read_text())
    for key in ("rope_parameters", "layer_types", "_sliding_window_pattern"):
        data.pop(key, None)
    data.update(rope_theta=5000.0, rope_local_base_freq=50.0, rope_scaling={"rope_type": "linear", "factor": 2.0},
                sliding_window_pattern=3)
    (folder / "config.json").write_text(json.dumps(data))
    theirs = transformers.Gemma3ForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    ours = gemma.Gemma3ForCausalLM.from_pretrained(folder, attn_implementation="eager")
    assert ours.config.layer_types == theirs.config.layer_types
    assert ours.config.rope_parameters == theirs.config.rope_parameters
    ids, mask = batch()
    with torch.no_grad():
        close(ours(ids, attention_mask=mask).logits, ref(ids, attention_mask=mask).logits, mask=mask)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_bidirectional_gemma3_embedding_model(tmp_path, attn):
    """EmbeddingGemma: gemma3_text with use_bidirectional_attention (no causal mask; the sliding layers see
    |q - k| < window // 2 + 1, the window stored halved and saved back whole, as the reference)."""
    ref, ours = pair(tmp_path, "gemma3_text", "Model", attn=attn, use_bidirectional_attention=True, sliding_window=6)
    assert ours.config.sliding_window == ref.config.sliding_window == 4
    assert ours.config.to_dict()["sliding_window"] == ref.config.to_dict()["sliding_window"] == 6
    for padding in ("left", "right", None):
        ids, mask = batch(padding=padding)
        with torch.no_grad():
            close(ours(ids, attention_mask=mask).last_hidden_state, ref(ids, attention_mask=mask).last_hidden_state,
                  mask=mask)
    with pytest.raises(NotImplementedError, match="use_bidirectional_attention"):
        gemma.Gemma2Model(autoload.Gemma2Config(**{**BASE, "use_bidirectional_attention": True}))


@pytest.mark.parametrize("checkpointing", [False, True])
def test_gradients_equal_the_reference(tmp_path, checkpointing):
    """Training: the same gradients as the reference through soft-caps, windows and (1 + w) norms, with and
    without gradient checkpointing."""
    ref, ours = pair(tmp_path, "gemma2", tie_word_embeddings=False)
    ref.train(), ours.train()
    if checkpointing:
        ours.gradient_checkpointing_enable()
    ids, mask = batch(padding="right")
    labels = ids.masked_fill(mask == 0, -100)
    ref(ids, attention_mask=mask, labels=labels).loss.backward()
    ours(ids, attention_mask=mask, labels=labels).loss.backward()
    theirs = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        close(p.grad, theirs[name].grad, atol=1e-5)


def test_hybrid_cache_implementation_of_the_released_repos(tmp_path, lm):
    """Gemma 2/3 repos ship generation_config.json with cache_implementation "hybrid": generate() runs (the
    reference unsets it too) and gives the reference's ids."""
    model_type, ref, _ = lm
    folder = tmp_path / "hybrid"
    ref.save_pretrained(folder)
    data = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**data, "cache_implementation": "hybrid"}))
    ours = autoload.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager")
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    ids, mask = batch(t=7)
    expected = theirs.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False)
    assert torch.equal(ours.generate(ids, attention_mask=mask, max_new_tokens=6), expected)
    (folder / "generation_config.json").unlink()  # gemma-2's config.json carries it too
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "cache_implementation": "hybrid"}))
    ours = autoload.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager")
    assert torch.equal(ours.generate(ids, attention_mask=mask, max_new_tokens=6, pad_token_id=0), expected)
