"""Marian against the reference (transformers, test-only): tiny random checkpoints with a shared vocabulary and with
separate source / target vocabularies (decoder_vocab_size), loaded through autoload's real loading path. Logits and
losses with a padded encoder mask, the sinusoidal table (derived, never saved, ignored in old checkpoints), decoder
inputs_embeds scaling, cached step-by-step decoding, generation, gradient checkpointing, resizing (source and target
vocabularies, final_logits_bias), saving back to transformers, and the Auto classes."""

from __future__ import annotations

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file
from torch.testing import assert_close

import autoload
import model_cases
from autoload.models import marian
from autoload.nn.cache import EncoderDecoderCache
from model_cases import assert_outputs_close

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

VOCAB, TARGET, PAD, B, S, T = 60, 44, 40, 3, 9, 6
TINY = dict(vocab_size=VOCAB, d_model=18, encoder_layers=2, decoder_layers=2, encoder_attention_heads=3,
            decoder_attention_heads=2, encoder_ffn_dim=24, decoder_ffn_dim=20, max_position_embeddings=32,
            pad_token_id=PAD, decoder_start_token_id=PAD, eos_token_id=0, forced_eos_token_id=0,
            activation_function="swish", scale_embedding=True)
VARIANTS = {"shared": dict(share_encoder_decoder_embeddings=True),
            "separate": dict(share_encoder_decoder_embeddings=False, decoder_vocab_size=TARGET)}


def perturb_(model: torch.nn.Module, seed: int = 0, scale: float = 0.1) -> None:
    """Move the learned parameters (not the fixed sinusoidal tables) and final_logits_bias off their init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embed_positions" not in name:
                p.add_(torch.randn(p.shape, generator=g) * scale)
        if hasattr(model, "final_logits_bias"):
            model.final_logits_bias.normal_(generator=g)


def make_pair(folder, variant="shared", head="MarianMTModel", attn="sdpa", **overrides):
    config = transformers.MarianConfig(**{**TINY, **VARIANTS[variant], **overrides})
    return model_cases.make_pair(folder, getattr(transformers, head), getattr(marian, head), config, attn=attn,
                                 prepare=perturb_)


def batch(padding="right", seed=1):
    """Source ids (B, S) in 1..TARGET-1 ending with </s> 0, pads on `padding`'s side; target labels (B, T) with -100."""
    ids, mask = model_cases.padded_batch(B, S, padding, [0, 3, 5], vocab=TARGET - 1, low=1, pad_id=PAD, seed=seed)
    ids[torch.arange(B), mask.cumsum(1).argmax(1)] = 0
    labels = torch.randint(1, TARGET - 1, (B, T), generator=torch.Generator().manual_seed(seed + 1))
    labels[0, -2:] = -100
    return {"input_ids": ids, "attention_mask": mask}, labels


@pytest.mark.parametrize("variant", VARIANTS)
def test_logits_and_loss_match_the_reference(tmp_path, variant):
    ref, ours = make_pair(tmp_path, variant)
    assert ours.lm_head.out_features == (VOCAB if variant == "shared" else TARGET)
    for padding in ("right", "left", None):
        inputs, labels = batch(padding)
        with torch.no_grad():
            got, expected = ours(**inputs, labels=labels), ref(**inputs, labels=labels)
        assert_outputs_close(got, expected, keys=model_cases.TENSOR_KEYS + ("encoder_last_hidden_state",))
    with torch.no_grad():  # decoder inputs_embeds are scaled by sqrt(d_model) like ids; the encoder's are not
        embeds = ref.model.decoder.embed_tokens(labels.clamp(min=1))
        source = ref.model.encoder.embed_tokens(inputs["input_ids"])
        kwargs = dict(inputs_embeds=source, attention_mask=inputs["attention_mask"], decoder_inputs_embeds=embeds)
        assert_close(ours(**kwargs).logits, ref(**kwargs).logits, atol=1e-4, rtol=0)
    for model in (ours.model, marian.MarianModel.from_pretrained(tmp_path)):
        with torch.no_grad():
            got = model(**inputs, decoder_input_ids=labels.clamp(min=1))
            expected = ref.model(**inputs, decoder_input_ids=labels.clamp(min=1))
        assert_close(got.last_hidden_state, expected.last_hidden_state, atol=1e-4, rtol=0)


def test_sinusoidal_table_is_derived_not_saved(tmp_path):
    from transformers.models.marian.modeling_marian import MarianSinusoidalPositionalEmbedding
    for positions, dim in ((32, 18), (7, 5)):  # odd width: ceil(d/2) sin columns
        reference = MarianSinusoidalPositionalEmbedding(positions, dim).create_weight()
        assert_close(marian.sinusoidal_table(positions, dim), reference, atol=1e-7, rtol=0)
    ref, ours = make_pair(tmp_path, "separate")
    assert "model.encoder.embed_positions.weight" not in ours.state_dict()
    assert not any("embed_positions" in name for name, _ in ours.named_parameters())
    ours.save_pretrained(tmp_path / "ours")
    assert not any("embed_positions" in key for key in load_file(tmp_path / "ours" / "model.safetensors"))
    # an old checkpoint that carries the tables (as opus-mt's pytorch_model.bin): ignored, nothing reported
    state = load_file(tmp_path / "model.safetensors")
    for side in ("encoder", "decoder"):
        state[f"model.{side}.embed_positions.weight"] = marian.sinusoidal_table(32, 18)
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    old, info = marian.MarianMTModel.from_pretrained(tmp_path, output_loading_info=True)
    assert info["unexpected_keys"] == [] and info["missing_keys"] == []
    inputs, labels = batch()
    with torch.no_grad():
        assert_close(old(**inputs, labels=labels).logits, ref(**inputs, labels=labels).logits, atol=1e-4, rtol=0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_decoding_step_by_step_with_the_cache_and_generation(tmp_path, variant):
    ref, ours = make_pair(tmp_path, variant)
    inputs, labels = batch("right")
    decoder_ids = ours.prepare_decoder_input_ids_from_labels(labels)
    assert bool((decoder_ids[:, 0] == PAD).all())  # Marian starts from the pad id
    with torch.no_grad():
        full = ours(**inputs, decoder_input_ids=decoder_ids)
        encoder_outputs = ours.get_encoder()(**inputs)
        cache, steps = None, []
        for t in (0, 2, 3, 4, 5):
            new = decoder_ids[:, :2] if t == 0 else decoder_ids[:, t:t + 1]
            out = ours(encoder_outputs=encoder_outputs, attention_mask=inputs["attention_mask"],
                       decoder_input_ids=new, past_key_values=cache)
            cache = out.past_key_values
            steps.append(out.logits)
        assert_close(full.logits, ref(**inputs, decoder_input_ids=decoder_ids).logits, atol=1e-4, rtol=0)
    assert isinstance(cache, EncoderDecoderCache) and cache.get_seq_length() == T
    assert_close(torch.cat(steps, dim=1), full.logits, atol=1e-4, rtol=0)
    for kwargs in (dict(max_new_tokens=7), dict(max_new_tokens=6, num_beams=3, num_return_sequences=2)):
        with torch.no_grad():
            expected = ref.generate(**inputs, **kwargs, do_sample=False)
            got = ours.generate(**inputs, **kwargs, do_sample=False)
        assert torch.equal(got, expected), kwargs


def test_causal_lm_matches_the_reference(tmp_path):
    ref, ours = make_pair(tmp_path, "shared", head="MarianForCausalLM")  # (separate: the reference's loss breaks)
    ids = torch.randint(1, TARGET, (B, T), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert_outputs_close(ours(input_ids=ids, labels=ids), ref(input_ids=ids, labels=ids))


def test_gradient_checkpointing_gives_the_reference_gradients(tmp_path):
    ref, ours = make_pair(tmp_path, "separate", dropout=0.0)
    inputs, labels = batch("right")
    grads = []
    for model, checkpointing in ((ours, False), (ours, True), (ref, False)):
        model.zero_grad()
        model.train()
        if checkpointing:
            model.gradient_checkpointing_enable()
        model(**inputs, labels=labels).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert set(grads[0]) == set(grads[1]) and len(grads[0]) > 40
    for name, grad in grads[0].items():
        assert_close(grads[1][name], grad, atol=1e-6, rtol=0)
        assert_close(grad, grads[2][name], atol=1e-4, rtol=1e-4, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("variant", VARIANTS)
def test_resize_token_embeddings_equals_the_reference(tmp_path, variant):
    ref, ours = make_pair(tmp_path, variant)
    for model in (ref, ours):
        torch.manual_seed(3)
        model.resize_token_embeddings(VOCAB + 5)
        if variant == "separate":
            torch.manual_seed(4)
            model.resize_decoder_token_embeddings(TARGET + 3)
    for key in ("vocab_size", "decoder_vocab_size"):
        assert getattr(ours.config, key) == getattr(ref.config, key), key
    assert ours.final_logits_bias.shape == ref.final_logits_bias.shape
    assert_close(ours.final_logits_bias, ref.final_logits_bias, atol=0, rtol=0)
    for name in ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight", "lm_head.weight"):
        assert_close(ours.get_parameter(name), ref.get_parameter(name), atol=1e-6, rtol=0, msg=lambda m: f"{name} {m}")
    assert ours.lm_head.weight is ours.model.decoder.embed_tokens.weight
    inputs, labels = batch()
    inputs["input_ids"][0, 0] = VOCAB + 4
    with torch.no_grad():
        assert_outputs_close(ours(**inputs, labels=labels), ref(**inputs, labels=labels))
    if variant == "shared":
        with pytest.raises(ValueError, match="resize_token_embeddings"):
            ours.resize_decoder_token_embeddings(10)


@pytest.mark.parametrize("variant", VARIANTS)
def test_save_pretrained_loads_in_transformers(tmp_path, variant):
    ref, ours = make_pair(tmp_path / "ref", variant)
    ours.save_pretrained(tmp_path / "ours")
    back = transformers.MarianMTModel.from_pretrained(tmp_path / "ours").eval()
    inputs, labels = batch("left")
    with torch.no_grad():
        assert_outputs_close(back(**inputs, labels=labels), ours(**inputs, labels=labels), atol=1e-5)


def test_auto_classes_and_config(tmp_path):
    make_pair(tmp_path, "separate")
    model = autoload.AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    assert type(model) is marian.MarianMTModel and model.can_generate()
    assert type(autoload.AutoModel.from_pretrained(tmp_path)) is marian.MarianModel
    config = autoload.AutoConfig.from_pretrained(tmp_path)
    assert type(config) is autoload.MarianConfig and config.decoder_vocab_size == TARGET
    assert autoload.MarianConfig(vocab_size=10).decoder_vocab_size == 10
    ours, theirs = autoload.MarianConfig(), transformers.MarianConfig()
    for key, value in theirs.to_dict().items():
        if key not in ("transformers_version", "dtype", "architectures", "id2label", "label2id"):
            assert ours.to_dict().get(key) == value, key
