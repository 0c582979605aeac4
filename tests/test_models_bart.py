"""BART and mBART against the reference (transformers, test-only): tiny random checkpoints saved by the reference and
loaded through autoload's real loading path. Every head with a padded encoder mask (right and left), losses with -100
labels, hidden states / attentions (eager), step-by-step decoding with the cache against the full forward, the
<eos>-pooled sequence classifier (bart-large-mnli), mBART's label shift, gradient checkpointing, resizing (with
final_logits_bias), saving back to transformers, generation, and the Auto classes."""

from __future__ import annotations

import pytest
import torch
import transformers
from torch.testing import assert_close

import autoload
import model_cases
from autoload.models import bart
from autoload.nn.cache import EncoderDecoderCache
from model_cases import assert_outputs_close

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

PREFIX = {"bart": "Bart", "mbart": "MBart"}
VOCAB, B, S, T = 60, 3, 9, 6
TINY = dict(vocab_size=VOCAB, d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
            decoder_attention_heads=4, encoder_ffn_dim=24, decoder_ffn_dim=20, max_position_embeddings=32)
VARIANTS = {"bart": dict(activation_function="gelu", num_labels=3),
            "mbart": dict(activation_function="relu", scale_embedding=True, num_labels=2)}
HEADS = ["Model", "ForConditionalGeneration", "ForSequenceClassification", "ForQuestionAnswering", "ForCausalLM"]
KEYS = model_cases.TENSOR_KEYS + ("encoder_last_hidden_state",)


def perturb_(model: torch.nn.Module, seed: int = 0, scale: float = 0.1) -> None:
    """Move every parameter (and final_logits_bias) off its init, so LayerNorm 1/0 and zero biases are tested too."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
        if hasattr(model, "final_logits_bias"):
            model.final_logits_bias.normal_(generator=g)


def make_pair(folder, model_type="bart", head="ForConditionalGeneration", attn="sdpa", **overrides):
    name = PREFIX[model_type] + head
    config = transformers.AutoConfig.for_model(model_type, **{**TINY, **VARIANTS[model_type], **overrides})
    return model_cases.make_pair(folder, getattr(transformers, name), getattr(bart, name), config, attn=attn,
                                 prepare=perturb_)


def batch(padding="right", seed=1):
    """Encoder input_ids (B, S) ending (before padding) with <eos> 2, pads 1 on `padding`'s side (rows with 0, 3, 5
    pads), the mask; decoder labels (B, T) with -100 in places."""
    ids, mask = model_cases.padded_batch(B, S, padding, [0, 3, 5], vocab=VOCAB, low=4, pad_id=1, seed=seed)
    last = mask.cumsum(1).argmax(1)  # (B,) index of each row's last real token
    ids[torch.arange(B), last] = 2
    g = torch.Generator().manual_seed(seed + 1)
    labels = torch.randint(4, VOCAB, (B, T), generator=g)
    labels[0, -2:] = -100
    labels[2, 0] = -100
    return {"input_ids": ids, "attention_mask": mask}, labels


def head_args(head, labels):
    if head == "ForConditionalGeneration":
        return {"labels": labels}
    if head == "ForSequenceClassification":
        return {"labels": torch.tensor([0, 2, 1]) % 2}
    if head == "ForQuestionAnswering":
        return {"start_positions": torch.tensor([1, S + 3, 2]), "end_positions": torch.tensor([[4], [5], [S]])}
    return {}


@pytest.mark.parametrize("model_type", PREFIX)
@pytest.mark.parametrize("head", HEADS)
def test_every_head_matches_the_reference(tmp_path, model_type, head):
    ref, ours = make_pair(tmp_path, model_type, head)
    for padding in ("right", "left", None):
        inputs, labels = batch(padding)
        if head == "ForCausalLM":  # the decoder alone: labels are not shifted
            inputs = {**inputs, "labels": inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)}
        with torch.no_grad():
            got, expected = ours(**inputs, **head_args(head, labels)), ref(**inputs, **head_args(head, labels))
        assert_outputs_close(got, expected, keys=KEYS)
        if head in ("ForConditionalGeneration", "ForSequenceClassification", "ForQuestionAnswering"):
            assert got.loss is not None and got.past_key_values is None  # labels turn the cache off
    if head == "ForSequenceClassification":  # its <eos> mask indexes the decoder states: same length only
        return
    with torch.no_grad():  # decoder inputs given, the decoder's own padding mask
        inputs, labels = batch("right")
        dec = {} if head == "ForCausalLM" else {"decoder_input_ids": labels.clamp(min=4),
                                                "decoder_attention_mask": (labels != -100).long()}
        if head == "ForCausalLM":
            inputs["attention_mask"][2, 0] = 1
        assert_outputs_close(ours(**inputs, **dec), ref(**inputs, **dec), keys=KEYS)


@pytest.mark.parametrize("model_type", PREFIX)
def test_hidden_states_attentions_and_tuples(tmp_path, model_type):
    ref, ours = make_pair(tmp_path, model_type, attn="eager")
    inputs, labels = batch("left")
    flags = dict(output_hidden_states=True, output_attentions=True)
    with torch.no_grad():
        got, expected = ours(**inputs, labels=labels, **flags), ref(**inputs, labels=labels, **flags)
    for key in ("encoder_hidden_states", "decoder_hidden_states", "encoder_attentions", "decoder_attentions",
                "cross_attentions"):
        assert len(got[key]) == len(expected[key]) > 0, key
        for a, b in zip(got[key], expected[key]):
            assert_close(a, b, atol=1e-4, rtol=0, msg=lambda m: f"{key}: {m}")
    with torch.no_grad():
        tupled = ours(**inputs, labels=labels, return_dict=False)
    assert_close(tupled[0], got.loss) and assert_close(tupled[1], got.logits)


@pytest.mark.parametrize("model_type", PREFIX)
def test_decoding_step_by_step_with_the_cache_equals_the_full_forward(tmp_path, model_type):
    ref, ours = make_pair(tmp_path, model_type)
    inputs, labels = batch("right")
    decoder_ids = ours.prepare_decoder_input_ids_from_labels(labels)  # (B, T)
    with torch.no_grad():
        full = ours(**inputs, decoder_input_ids=decoder_ids)
        expected = ref(**inputs, decoder_input_ids=decoder_ids).logits
        encoder_outputs = ours.get_encoder()(**inputs)
        cache, steps = None, []
        for t in (0, 2, 3, 4, 5):  # prefill 2 tokens, then one at a time
            new = decoder_ids[:, :2] if t == 0 else decoder_ids[:, t:t + 1]
            out = ours(encoder_outputs=encoder_outputs, attention_mask=inputs["attention_mask"],
                       decoder_input_ids=new, past_key_values=cache)
            cache = out.past_key_values
            steps.append(out.logits)
    assert isinstance(cache, EncoderDecoderCache) and cache.get_seq_length() == T
    assert all(cache.is_updated.values()) and len(cache.is_updated) == TINY["decoder_layers"]
    assert_close(full.logits, expected, atol=1e-4, rtol=0)
    assert_close(torch.cat(steps, dim=1), full.logits, atol=1e-4, rtol=0)
    assert full.past_key_values.get_seq_length() == T  # use_cache defaults to config.use_cache
    with torch.no_grad():  # the encoder output as a tuple
        tupled = ours(encoder_outputs=(encoder_outputs.last_hidden_state,), attention_mask=inputs["attention_mask"],
                      decoder_input_ids=decoder_ids, use_cache=False)
    assert_close(tupled.logits, full.logits, atol=1e-6, rtol=0)
    assert tupled.past_key_values is None


@pytest.mark.parametrize("model_type", PREFIX)
def test_generation_matches_the_reference(tmp_path, model_type):
    ref, ours = make_pair(tmp_path, model_type, forced_bos_token_id=None)
    inputs, _ = batch("right")
    for kwargs in (dict(max_new_tokens=7), dict(max_new_tokens=6, num_beams=3),
                   dict(max_new_tokens=5, decoder_start_token_id=2, forced_bos_token_id=7)):
        with torch.no_grad():
            expected = ref.generate(**inputs, **kwargs, do_sample=False)
            got = ours.generate(**inputs, **kwargs, do_sample=False)
        assert torch.equal(got, expected), kwargs


@pytest.mark.parametrize("model_type", PREFIX)
def test_causal_lm_generation_matches_the_reference(tmp_path, model_type):
    ref, ours = make_pair(tmp_path, model_type, "ForCausalLM")
    assert ours.config.is_decoder and not ours.config.is_encoder_decoder  # set by the class, as the reference
    ids = torch.randint(4, VOCAB, (2, 5), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(ours.generate(ids, max_new_tokens=8, do_sample=False),
                           ref.generate(ids, max_new_tokens=8, do_sample=False))


def test_sequence_classification_pools_the_last_eos(tmp_path):
    ref, ours = make_pair(tmp_path, "bart", "ForSequenceClassification")
    assert ours.config.num_labels == 3 and autoload.BartConfig().num_labels == 3  # MNLI's three classes
    inputs, _ = batch("right")
    inputs["input_ids"][:, 1] = 2  # two <eos> per row: the last one is pooled
    for labels in (torch.tensor([0, 2, 1]), torch.tensor([[0.2, 1.0, 0.0]] * B)):
        with torch.no_grad():
            assert_outputs_close(ours(**inputs, labels=labels), ref(**inputs, labels=labels))
        ours.config.problem_type = ref.config.problem_type = None
    inputs["input_ids"][0, 3] = 2
    with pytest.raises(ValueError, match="same number of <eos>"):
        ours(**inputs)
    with pytest.raises(ValueError, match="at least one <eos>"):
        ours(input_ids=torch.full((2, 4), 5), attention_mask=torch.ones(2, 4, dtype=torch.long))


def test_mbart_wraps_the_language_code_and_bart_prepends_the_start_token():
    from transformers.models.bart.modeling_bart import shift_tokens_right as bart_shift
    from transformers.models.mbart.modeling_mbart import shift_tokens_right as mbart_shift
    labels = torch.tensor([[5, 6, 7, 2, 25], [8, 2, 26, -100, -100], [9, 10, 11, 12, 2]])
    assert torch.equal(bart.mbart_shift_tokens_right(labels, 1), mbart_shift(labels, 1))
    config = bart.MBartConfig(**TINY)
    model = bart.MBartForConditionalGeneration(config)
    assert torch.equal(model.prepare_decoder_input_ids_from_labels(labels), mbart_shift(labels, 1))
    model = bart.BartForConditionalGeneration(bart.BartConfig(**TINY))
    assert torch.equal(model.prepare_decoder_input_ids_from_labels(labels), bart_shift(labels, 1, 2))


@pytest.mark.parametrize("model_type", PREFIX)
def test_gradient_checkpointing_gives_the_reference_gradients(tmp_path, model_type):
    ref, ours = make_pair(tmp_path, model_type, dropout=0.0)
    inputs, labels = batch("right")
    grads = []
    for model, checkpointing in ((ours, False), (ours, True), (ref, False)):
        model.zero_grad()
        model.train()
        if checkpointing:
            model.gradient_checkpointing_enable()
        model(**inputs, labels=labels).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert ours.is_gradient_checkpointing
    assert set(grads[0]) == set(grads[1]) and len(grads[0]) > 40
    for name, grad in grads[0].items():
        assert_close(grads[1][name], grad, atol=1e-6, rtol=0)
        assert_close(grad, grads[2][name], atol=1e-4, rtol=1e-4, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("model_type", PREFIX)
@pytest.mark.parametrize("new_size", [VOCAB + 7, VOCAB - 4])
def test_resize_token_embeddings_equals_the_reference(tmp_path, model_type, new_size):
    ref, ours = make_pair(tmp_path, model_type)
    for model in (ref, ours):
        torch.manual_seed(3)
        model.resize_token_embeddings(new_size)
    assert ours.config.vocab_size == ref.config.vocab_size == new_size
    assert ours.final_logits_bias.shape == ref.final_logits_bias.shape == (1, new_size)
    assert "final_logits_bias" in dict(ours.named_buffers())
    assert_close(ours.final_logits_bias, ref.final_logits_bias, atol=0, rtol=0)
    assert_close(ours.model.shared.weight, ref.model.shared.weight, atol=1e-6, rtol=0)
    assert ours.lm_head.weight is ours.model.shared.weight is ours.model.encoder.embed_tokens.weight
    inputs, labels = batch("right")
    inputs["input_ids"][0, 0] = new_size - 1
    with torch.no_grad():
        assert_outputs_close(ours(**inputs, labels=labels.clamp(max=new_size - 1)),
                             ref(**inputs, labels=labels.clamp(max=new_size - 1)))
    ours.save_pretrained(tmp_path / "resized")
    back = type(ref).from_pretrained(tmp_path / "resized").eval()
    assert_close(back.final_logits_bias, ours.final_logits_bias, atol=0, rtol=0)


@pytest.mark.parametrize("model_type", PREFIX)
def test_save_pretrained_loads_in_transformers_and_untied_embeddings(tmp_path, model_type):
    ref, ours = make_pair(tmp_path / "ref", model_type)
    ours.save_pretrained(tmp_path / "ours")
    back = type(ref).from_pretrained(tmp_path / "ours").eval()
    inputs, labels = batch("left")
    with torch.no_grad():
        assert_outputs_close(back(**inputs, labels=labels), ours(**inputs, labels=labels), atol=1e-5)
    # tie_word_embeddings=False: lm_head and the stacks' embeddings are separate tensors, saved and loaded as such
    ref, ours = make_pair(tmp_path / "untied", model_type, tie_word_embeddings=False)
    assert ours.lm_head.weight is not ours.model.shared.weight
    with torch.no_grad():
        assert_outputs_close(ours(**inputs, labels=labels), ref(**inputs, labels=labels))


def test_auto_classes_pick_the_classes(tmp_path):
    for model_type in PREFIX:
        make_pair(tmp_path / model_type, model_type)
        auto = autoload.AutoModelForSeq2SeqLM.from_pretrained(tmp_path / model_type)
        assert type(auto) is getattr(bart, PREFIX[model_type] + "ForConditionalGeneration")
        bare = autoload.AutoModel.from_pretrained(tmp_path / model_type)
        assert type(bare) is getattr(bart, PREFIX[model_type] + "Model")
        assert auto.can_generate() and auto.config.is_encoder_decoder
    config = autoload.AutoConfig.from_pretrained(tmp_path / "mbart")
    assert type(config) is autoload.MBartConfig and config.decoder_start_token_id is None
    assert config.hidden_size == TINY["d_model"] and config.num_hidden_layers == TINY["encoder_layers"]
    for ours, theirs in ((autoload.BartConfig(), transformers.BartConfig()),
                         (autoload.MBartConfig(), transformers.MBartConfig())):
        for key, value in theirs.to_dict().items():
            if key not in ("transformers_version", "dtype", "architectures", "id2label", "label2id"):
                assert ours.to_dict().get(key) == value, key
