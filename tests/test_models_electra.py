"""ELECTRA against the reference (transformers, test-only): tiny random models saved by the reference and loaded
through autoload's real loading path, compared output by output (fp32 atol 1e-4) for every head, with and without
padding, with embedding_size != hidden_size (embeddings_project) and equal; losses (the discriminator's masked BCE
too), hidden states / eager attentions, the causal generator with its KV cache and greedy generate, the Auto
classes and ElectraTokenizer, gradients and gradient checkpointing."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from torch.testing import assert_close

import autoload
import model_cases
from autoload.models import electra
from autoload.models.configs import ElectraConfig
from model_cases import assert_outputs_close, perturb_

transformers.logging.set_verbosity_error()

TINY = dict(vocab_size=99, embedding_size=16, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
            intermediate_size=37, max_position_embeddings=40, type_vocab_size=2)
VARIANTS = {
    "projected_16_to_24": {},
    "unprojected_relu_1_layer_mean_summary": dict(embedding_size=16, hidden_size=16, num_attention_heads=2,
                                                  num_hidden_layers=1, hidden_act="relu", summary_type="mean",
                                                  classifier_dropout=0.3),
}
HEADS = ["ElectraModel", "ElectraForPreTraining", "ElectraForMaskedLM", "ElectraForCausalLM",
         "ElectraForSequenceClassification", "ElectraForTokenClassification", "ElectraForQuestionAnswering",
         "ElectraForMultipleChoice"]


def make_pair(folder, cls_name="ElectraForMaskedLM", attn="sdpa", seed=0, **overrides):
    config = transformers.ElectraConfig(**{**TINY, **overrides})
    config.is_decoder = config.is_decoder or cls_name == "ElectraForCausalLM"
    return model_cases.make_pair(folder, getattr(transformers, cls_name), getattr(electra, cls_name), config,
                                 attn=attn, seed=seed, prepare=lambda model: perturb_(model, seed))


def make_batch(cls_name="ElectraModel", padding=True, token_types=True, B=3, T=9, vocab=99, seed=1):
    """ids with right padding (id 0) in rows 2 and 3, the mask, segments A then B; multiple choice (B, 2, T)."""
    inputs = model_cases.encoder_batch(cls_name, padding, B, T, vocab, seed)
    if token_types:
        types = torch.zeros_like(inputs["input_ids"])
        types[..., T // 2:] = 1
        inputs["token_type_ids"] = types
    return inputs


def labels_for(cls_name, inputs, num_labels=2, problem="single", seed=2):
    ids = inputs["input_ids"]
    if cls_name == "ElectraForPreTraining":  # 1 = replaced token
        return {"labels": torch.randint(0, 2, ids.shape, generator=torch.Generator().manual_seed(seed))}
    return model_cases.labels_for(cls_name, ids, (ids != 0).long(), num_labels, seed, problem)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("cls_name", HEADS)
def test_every_head_matches_the_reference(tmp_path, cls_name, variant):
    ref, ours = make_pair(tmp_path, cls_name, **VARIANTS[variant])
    assert hasattr(ours.base_model, "embeddings_project") == (variant == "projected_16_to_24")
    for padding, token_types in ((False, False), (True, True)):
        inputs = make_batch(cls_name, padding, token_types)
        model_cases.assert_head_close(ours, ref, inputs, labels_for(cls_name, inputs))


def test_discriminator_loss_counts_only_real_tokens(tmp_path):
    _, ours = make_pair(tmp_path, "ElectraForPreTraining")
    inputs = make_batch()
    labels = labels_for("ElectraForPreTraining", inputs)["labels"]
    with torch.no_grad():
        out = ours(**inputs, labels=labels)
    real = inputs["attention_mask"].bool()
    manual = torch.nn.functional.binary_cross_entropy_with_logits(out.logits[real], labels[real].float())
    assert_close(out.loss, manual)
    assert out.logits.shape == (3, 9)


@pytest.mark.parametrize("problem,num_labels", [("regression", 1), ("single", 4), ("multi", 4)])
def test_sequence_classification_problem_types(tmp_path, problem, num_labels):
    ref, ours = make_pair(tmp_path, "ElectraForSequenceClassification", num_labels=num_labels)
    inputs = make_batch()
    labels = labels_for("ElectraForSequenceClassification", inputs, num_labels, problem)
    model_cases.assert_head_close(ours, ref, inputs, labels)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_hidden_states_and_attentions_match_the_reference(tmp_path, attn):
    ref, ours = make_pair(tmp_path, "ElectraModel", attn=attn, num_hidden_layers=3)
    inputs = make_batch()
    with torch.no_grad():
        expected = ref(**inputs, output_hidden_states=True, output_attentions=True)
        got = ours(**inputs, output_hidden_states=True, output_attentions=True)
    assert len(got.hidden_states) == len(expected.hidden_states) == 4
    for a, b in zip(got.hidden_states, expected.hidden_states):
        assert a.shape == (3, 9, 24)  # the first one after embeddings_project
        assert_close(a, b, atol=1e-4, rtol=0)
    assert len(got.attentions) == len(expected.attentions) == (3 if attn == "eager" else 0)
    assert got.cross_attentions == () == expected.cross_attentions
    for a, b in zip(got.attentions, expected.attentions):
        assert a.shape == (3, 3, 9, 9)
        assert_close(a, b, atol=1e-5, rtol=0)
        assert a[2, :, :, 3:].max() < 1e-6  # padded keys get no weight


def test_return_dict_false_and_inputs_embeds(tmp_path):
    ref, ours = make_pair(tmp_path, "ElectraForSequenceClassification", attn="eager")
    inputs = make_batch()
    labels = labels_for("ElectraForSequenceClassification", inputs)
    with torch.no_grad():
        expected = ref(**inputs, **labels, output_hidden_states=True, output_attentions=True, return_dict=False)
        got = ours(**inputs, **labels, output_hidden_states=True, output_attentions=True, return_dict=False)
        assert isinstance(got, tuple) and len(got) == len(expected) == 4
        for a, b in zip(got[:2], expected[:2]):
            assert_close(a, b, atol=1e-4, rtol=0)
        ids = inputs.pop("input_ids")
        embeds = ours.get_input_embeddings()(ids)  # (B, T, E): before the projection
        assert embeds.shape == (3, 9, 16)
        assert_outputs_close(ours(inputs_embeds=embeds, **inputs), ref(inputs_embeds=embeds, **inputs))


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_causal_lm_cached_decoding_and_greedy_generate(tmp_path, attn):
    ref, ours = make_pair(tmp_path, "ElectraForCausalLM", attn=attn)
    inputs = make_batch(token_types=False)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    with torch.no_grad():
        full = ours(ids[:1]).logits  # (1, T, V)
        out = ours(ids[:1, :4])
        steps, cache = [out.logits], out.past_key_values
        for t in range(4, 9):
            out = ours(ids[:1, t:t + 1], past_key_values=cache, use_cache=True)
            steps.append(out.logits)
            assert out.past_key_values is cache and cache.get_seq_length() == t + 1
        assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)
        assert_close(full, ref(ids[:1]).logits, atol=1e-4, rtol=0)
        labels = labels_for("ElectraForCausalLM", inputs)["labels"]
        got, expected = ours(ids, attention_mask=mask, labels=labels), ref(ids, attention_mask=mask, labels=labels)
        assert_close(got.loss, expected.loss, atol=1e-5, rtol=0)
        assert got.past_key_values is None
        assert ours(ids, logits_to_keep=1).logits.shape == (3, 1, 99)
        prompt = ids[:, :5]
        left_mask = torch.ones_like(prompt)
        left_mask[1, :2] = 0  # a left-padded row
        prompt = prompt.masked_fill(left_mask == 0, 0)
        kwargs = dict(attention_mask=left_mask, max_new_tokens=6, do_sample=False, pad_token_id=0)
        expected_ids = ref.generate(prompt, **kwargs)
        got_ids = ours.generate(prompt, **kwargs)
    assert torch.equal(got_ids, expected_ids)
    assert got_ids.shape == (3, 11)


def test_auto_classes_and_tokenizer_load_the_folder(tmp_path):
    ref, _ = make_pair(tmp_path, "ElectraForMaskedLM")
    config = autoload.AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, ElectraConfig) and config.embedding_size == 16 and config.hidden_size == 24
    model = autoload.AutoModelForMaskedLM.from_pretrained(tmp_path)
    assert type(model) is electra.ElectraForMaskedLM
    assert model.generator_lm_head.weight is model.electra.embeddings.word_embeddings.weight
    assert model.get_output_embeddings() is model.generator_lm_head
    inputs = make_batch()
    with torch.no_grad():
        assert_outputs_close(model(**inputs), ref(**inputs))
    assert type(autoload.AutoModel.from_pretrained(tmp_path)) is electra.ElectraModel
    assert type(autoload.AutoModelForPreTraining.from_pretrained(tmp_path)) is electra.ElectraForPreTraining
    # ElectraTokenizer is BERT's WordPiece tokenizer, in the reference as here
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "brown", "fox", "jump", "##s", "."]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "ElectraTokenizer",
                                                                 "do_lower_case": True}))
    ours_tok = autoload.AutoTokenizer.from_pretrained(tmp_path)
    ref_tok = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert autoload.ElectraTokenizer is autoload.BertTokenizer and type(ours_tok) is autoload.ElectraTokenizer
    text = ["The quick brown fox jumps.", "the fox"]
    assert ours_tok(text, padding=True)["input_ids"] == ref_tok(text, padding=True)["input_ids"]


def test_gradients_match_the_reference_and_under_checkpointing(tmp_path):
    ref, ours = make_pair(tmp_path, "ElectraForPreTraining", hidden_dropout_prob=0.0,
                          attention_probs_dropout_prob=0.0)
    inputs = make_batch()
    labels = labels_for("ElectraForPreTraining", inputs)
    grads = []
    for model, checkpointing in ((ref, False), (ours, False), (ours, True)):
        model.train()
        model.zero_grad()
        if checkpointing:
            model.gradient_checkpointing_enable()
        model(**inputs, **labels).loss.backward()
        grads.append({name: p.grad.clone() for name, p in model.named_parameters()})
    assert ours.is_gradient_checkpointing
    assert set(grads[1]) == set(grads[0])
    for name, grad in grads[1].items():
        assert_close(grad, grads[0][name], atol=1e-4, rtol=1e-4, msg=lambda m: f"{name}: {m}")
        assert_close(grads[2][name], grad, atol=1e-6, rtol=0)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_cross_attention_matches_the_reference(tmp_path, attn):
    ref, ours = make_pair(tmp_path, "ElectraForCausalLM", attn=attn, add_cross_attention=True)
    inputs = make_batch(token_types=False)
    g = torch.Generator().manual_seed(3)
    encoder_states = torch.randn(3, 5, 24, generator=g)
    encoder_mask = torch.ones(3, 5, dtype=torch.long)
    encoder_mask[1, 3:] = 0
    kwargs = dict(encoder_hidden_states=encoder_states, encoder_attention_mask=encoder_mask, use_cache=False,
                  output_attentions=True)
    with torch.no_grad():
        expected, got = ref(**inputs, **kwargs), ours(**inputs, **kwargs)
    assert_outputs_close(got, expected)
    assert len(got.cross_attentions) == len(expected.cross_attentions) == (2 if attn == "eager" else 0)
    for a, b in zip(got.cross_attentions, expected.cross_attentions):
        assert_close(a, b, atol=1e-5, rtol=0)


def test_resize_token_embeddings_keeps_the_generator_head_tied():
    torch.manual_seed(0)
    model = electra.ElectraForMaskedLM(ElectraConfig(**TINY))
    model.resize_token_embeddings(120)
    head, embeddings = model.generator_lm_head, model.electra.embeddings.word_embeddings
    assert head.weight is embeddings.weight and embeddings.weight.shape == (120, 16)
    assert head.bias.shape == (120,) and model.config.vocab_size == 120
    assert model(torch.tensor([[5, 110, 7]])).logits.shape == (1, 3, 120)
