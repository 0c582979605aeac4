"""DistilBERT against the reference (transformers, test-only): tiny random models saved by the reference and loaded
through autoload's real loading path, compared output by output (fp32 atol 1e-4) for every head, with and without
padding; losses, hidden states / eager attentions, sinusoidal position embeddings, seeded init, the Auto classes,
gradients and gradient checkpointing."""

from __future__ import annotations

import pytest
import torch
import transformers
from torch.testing import assert_close

import autoload
import model_cases
from autoload.models import distilbert
from autoload.models.configs import DistilBertConfig
from model_cases import assert_outputs_close, perturb_

transformers.logging.set_verbosity_error()

TINY = dict(vocab_size=99, dim=24, n_layers=2, n_heads=3, hidden_dim=37, max_position_embeddings=40)
VARIANTS = {
    "gelu_2_layers": {},
    "relu_1_layer_sinusoidal": dict(dim=16, n_heads=2, n_layers=1, activation="relu", sinusoidal_pos_embds=True),
}
HEADS = ["DistilBertModel", "DistilBertForMaskedLM", "DistilBertForSequenceClassification",
         "DistilBertForTokenClassification", "DistilBertForQuestionAnswering", "DistilBertForMultipleChoice"]


def make_pair(folder, cls_name="DistilBertForMaskedLM", attn="sdpa", seed=0, **overrides):
    config = transformers.DistilBertConfig(**{**TINY, **overrides})
    return model_cases.make_pair(folder, getattr(transformers, cls_name), getattr(distilbert, cls_name), config,
                                 attn=attn, seed=seed, prepare=lambda model: perturb_(model, seed))


def make_batch(cls_name="DistilBertModel", padding=True, B=3, T=9, vocab=99, seed=1):
    """input_ids with right padding (id 0) in rows 2 and 3 and its mask; multiple choice gets (B, 2, T)."""
    return model_cases.encoder_batch(cls_name, padding, B, T, vocab, seed)


def labels_for(cls_name, inputs, num_labels=2, problem="single", seed=2):
    ids = inputs["input_ids"]
    return model_cases.labels_for(cls_name, ids, (ids != 0).long(), num_labels, seed, problem)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("cls_name", HEADS)
def test_every_head_matches_the_reference(tmp_path, cls_name, variant):
    ref, ours = make_pair(tmp_path, cls_name, **VARIANTS[variant])
    for padding in (False, True):
        inputs = make_batch(cls_name, padding)
        model_cases.assert_head_close(ours, ref, inputs, labels_for(cls_name, inputs))


@pytest.mark.parametrize("problem,num_labels", [("regression", 1), ("single", 4), ("multi", 4)])
def test_sequence_classification_problem_types(tmp_path, problem, num_labels):
    ref, ours = make_pair(tmp_path, "DistilBertForSequenceClassification", num_labels=num_labels)
    inputs = make_batch()
    labels = labels_for("DistilBertForSequenceClassification", inputs, num_labels, problem)
    model_cases.assert_head_close(ours, ref, inputs, labels)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_hidden_states_and_attentions_match_the_reference(tmp_path, attn):
    ref, ours = make_pair(tmp_path, "DistilBertModel", attn=attn, n_layers=3)
    inputs = make_batch()
    with torch.no_grad():
        expected = ref(**inputs, output_hidden_states=True, output_attentions=True)
        got = ours(**inputs, output_hidden_states=True, output_attentions=True)
    assert len(got.hidden_states) == len(expected.hidden_states) == 4
    for a, b in zip(got.hidden_states, expected.hidden_states):
        assert_close(a, b, atol=1e-4, rtol=0)
    expected_attentions = expected.attentions or ()  # sdpa: the reference returns none
    assert len(got.attentions) == len(expected_attentions) == (3 if attn == "eager" else 0)
    for a, b in zip(got.attentions, expected_attentions):
        assert a.shape == (3, 3, 9, 9)
        assert_close(a, b, atol=1e-5, rtol=0)
        assert a[2, :, :, 3:].max() < 1e-6  # padded keys get no weight


def test_return_dict_false_and_inputs_embeds(tmp_path):
    ref, ours = make_pair(tmp_path, "DistilBertForSequenceClassification", attn="eager")
    inputs = make_batch()
    labels = labels_for("DistilBertForSequenceClassification", inputs)
    with torch.no_grad():
        expected = ref(**inputs, **labels, output_hidden_states=True, output_attentions=True, return_dict=False)
        got = ours(**inputs, **labels, output_hidden_states=True, output_attentions=True, return_dict=False)
        assert isinstance(got, tuple) and len(got) == len(expected) == 4
        for a, b in zip(got[:2], expected[:2]):
            assert_close(a, b, atol=1e-4, rtol=0)
        embeds = ours.get_input_embeddings()(inputs["input_ids"])
        mask = inputs["attention_mask"]
        assert_outputs_close(ours(inputs_embeds=embeds, attention_mask=mask), ref(inputs_embeds=embeds,
                                                                                   attention_mask=mask))
    with pytest.raises(ValueError, match="exactly one"):
        ours(inputs["input_ids"], inputs_embeds=embeds)


@pytest.mark.parametrize("seed", [0, 5])
def test_seeded_init_equals_the_reference_with_sinusoidal_positions(seed):
    config = transformers.DistilBertConfig(**TINY, sinusoidal_pos_embds=True)
    for cls_name in HEADS:
        torch.manual_seed(seed)
        ref = getattr(transformers, cls_name)(config)
        torch.manual_seed(seed)
        ours = getattr(distilbert, cls_name)(DistilBertConfig.from_dict(config.to_dict()))
        ref_state, our_state = ref.state_dict(), ours.state_dict()
        assert set(our_state) == set(ref_state)
        for key, value in our_state.items():
            assert torch.equal(value, ref_state[key]), (cls_name, key)
    positions = ours.distilbert.embeddings.position_embeddings.weight
    assert_close(positions[3, 0::2], torch.sin(torch.tensor(3.0) / 10000 ** (torch.arange(0, 24, 2) / 24)))
    assert_close(positions[:, 1], torch.cos(torch.arange(40.0)))


def test_auto_classes_load_the_folder_and_tie_the_projector(tmp_path):
    ref, _ = make_pair(tmp_path, "DistilBertForMaskedLM")
    config = autoload.AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, DistilBertConfig) and config.hidden_size == 24 and config.num_hidden_layers == 2
    model = autoload.AutoModelForMaskedLM.from_pretrained(tmp_path)
    assert type(model) is distilbert.DistilBertForMaskedLM
    assert model.vocab_projector.weight is model.distilbert.embeddings.word_embeddings.weight
    base = autoload.AutoModel.from_pretrained(tmp_path)
    assert type(base) is distilbert.DistilBertModel
    inputs = make_batch()
    with torch.no_grad():
        assert_outputs_close(model(**inputs), ref(**inputs))
        assert_close(base(**inputs).last_hidden_state, ref.distilbert(**inputs).last_hidden_state, atol=1e-4, rtol=0)


def test_gradients_match_the_reference_and_under_checkpointing(tmp_path):
    ref, ours = make_pair(tmp_path, "DistilBertForTokenClassification", dropout=0.0, attention_dropout=0.0)
    inputs = make_batch()
    labels = labels_for("DistilBertForTokenClassification", inputs)
    grads = []
    for model, checkpointing in ((ref, False), (ours, False), (ours, True)):
        model.train()
        model.zero_grad()
        if checkpointing:
            model.gradient_checkpointing_enable()
        model(**inputs, **labels).loss.backward()
        grads.append({name: p.grad.clone() for name, p in model.named_parameters()})
    assert ours.is_gradient_checkpointing
    for name, grad in grads[1].items():
        assert_close(grad, grads[0][name], atol=1e-4, rtol=1e-4, msg=lambda m: f"{name}: {m}")
        assert_close(grads[2][name], grad, atol=1e-6, rtol=0)
