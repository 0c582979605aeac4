"""ALBERT against the reference (transformers, test-only): tiny random models saved by the reference and loaded
through autoload's real loading path, compared output by output (fp32 atol 1e-4) for every head at three shapes
(one group; 2 groups of 2 inner layers over 4 layers; 3 layers over 2 groups, an uneven split), with padding;
losses, eager attentions / hidden states (one per layer run), tuples, Auto classes, gradients, gradient
checkpointing, checkpoint keys both ways, seeded construction."""

from __future__ import annotations

import pytest
import torch
import transformers
from torch.testing import assert_close

import autoload
import model_cases
from autoload.models import albert
from autoload.models.configs import AlbertConfig
from model_cases import assert_outputs_close, perturb_

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

TINY = dict(vocab_size=99, embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=37, max_position_embeddings=40, type_vocab_size=2)
VARIANTS = {
    "one_group": {},
    "2_groups_of_2_over_4_layers": dict(num_hidden_layers=4, num_hidden_groups=2, inner_group_num=2),
    "3_layers_2_groups_relu": dict(num_hidden_layers=3, num_hidden_groups=2, hidden_act="relu", hidden_size=24,
                                   num_attention_heads=3, embedding_size=24),
}
HEADS = ["AlbertModel", "AlbertForPreTraining", "AlbertForMaskedLM", "AlbertForSequenceClassification",
         "AlbertForTokenClassification", "AlbertForQuestionAnswering", "AlbertForMultipleChoice"]
KEYS = model_cases.TENSOR_KEYS + ("sop_logits",)


def make_pair(folder, cls_name="AlbertForMaskedLM", attn="sdpa", seed=0, **overrides):
    config = transformers.AlbertConfig(**{**TINY, **overrides})
    return model_cases.make_pair(folder, getattr(transformers, cls_name), getattr(albert, cls_name), config,
                                 attn=attn, seed=seed, prepare=lambda model: perturb_(model, seed))


def make_batch(cls_name="AlbertModel", B=3, T=9, seed=1):
    """Ids with right padding (id 0) in rows 2 and 3, the mask, segment ids A then B; (B, 2, T) for multiple choice."""
    inputs = model_cases.encoder_batch(cls_name, True, B, T, 99, seed)
    inputs["token_type_ids"] = torch.zeros_like(inputs["input_ids"])
    inputs["token_type_ids"][..., T // 2:] = 1
    return inputs


def labels_for(cls_name, inputs, num_labels=2, seed=2):
    ids = inputs["input_ids"]
    task = "AlbertForMaskedLM" if cls_name == "AlbertForPreTraining" else cls_name  # the MLM labels, then SOP's
    labels = model_cases.labels_for(task, ids, (ids != 0).long(), num_labels, seed)
    if cls_name == "AlbertForPreTraining":
        labels["sentence_order_label"] = torch.tensor([0, 1, 1])[:ids.shape[0]]
    return labels


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("cls_name", HEADS)
def test_head_matches_reference_with_padding_and_labels(tmp_path, cls_name, variant):
    ref, ours = make_pair(tmp_path, cls_name, **VARIANTS[variant])
    inputs = make_batch(cls_name)
    model_cases.assert_head_close(ours, ref, inputs, labels_for(cls_name, inputs), keys=KEYS)


def test_padding_only_hides_the_padded_keys(tmp_path):
    """A padded row gives the same states on its tokens as the row alone, unpadded."""
    _, ours = make_pair(tmp_path, "AlbertModel", **VARIANTS["2_groups_of_2_over_4_layers"])
    inputs = make_batch()
    with torch.no_grad():
        batch = ours(**inputs).last_hidden_state
        alone = ours(input_ids=inputs["input_ids"][2:, :3], token_type_ids=inputs["token_type_ids"][2:, :3])
    assert_close(batch[2, :3], alone.last_hidden_state[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("problem,num_labels", [("regression", 1), ("multi_label_classification", 3),
                                                ("single_label_classification", 3)])
def test_sequence_classification_losses(tmp_path, problem, num_labels):
    ref, ours = make_pair(tmp_path, "AlbertForSequenceClassification", num_labels=num_labels)
    inputs = make_batch()
    g = torch.Generator().manual_seed(3)
    labels = {"regression": torch.randn(3, generator=g),
              "multi_label_classification": (torch.rand(3, 3, generator=g) > 0.5).float(),
              "single_label_classification": torch.tensor([0, 2, 1])}[problem]
    with torch.no_grad():
        got, expected = ours(**inputs, labels=labels), ref(**inputs, labels=labels)
    assert ours.config.problem_type == ref.config.problem_type == problem
    assert_close(got.loss, expected.loss, atol=1e-5, rtol=0)


def test_eager_attentions_and_hidden_states_per_layer_run(tmp_path):
    """2 groups of 2 layers over 4 steps: 8 layer runs, so 9 hidden states (the first after the E -> H mapping)
    and 8 attention maps, as the reference; weights of padded keys are zero."""
    ref, ours = make_pair(tmp_path, "AlbertForSequenceClassification", attn="eager",
                          **VARIANTS["2_groups_of_2_over_4_layers"])
    inputs = make_batch()
    with torch.no_grad():
        got = ours(**inputs, output_attentions=True, output_hidden_states=True)
        expected = ref(**inputs, output_attentions=True, output_hidden_states=True)
    assert len(got.hidden_states) == len(expected.hidden_states) == 9
    assert len(got.attentions) == len(expected.attentions) == 8
    for a, b in zip(got.hidden_states + got.attentions, expected.hidden_states + expected.attentions):
        assert_close(a, b, atol=1e-4, rtol=0)
    assert got.attentions[0].shape == (3, 4, 9, 9) and not got.attentions[3][2, :, :, 3:].any()
    tup, ref_tup = ours(**inputs, output_hidden_states=True, return_dict=False), \
        ref(**inputs, output_hidden_states=True, return_dict=False)
    assert len(tup) == len(ref_tup) == 2 and len(tup[1]) == 9
    assert_close(tup[0], ref_tup[0], atol=1e-4, rtol=0)


def test_model_tuple_and_pooler(tmp_path):
    ref, ours = make_pair(tmp_path, "AlbertModel")
    inputs = make_batch()
    with torch.no_grad():
        tup, ref_tup = ours(**inputs, return_dict=False), ref(**inputs, return_dict=False)
    assert len(tup) == len(ref_tup) == 2
    for a, b in zip(tup, ref_tup):
        assert_close(a, b, atol=1e-4, rtol=0)
    no_pool = albert.AlbertModel.from_pretrained(tmp_path, add_pooling_layer=False)
    assert no_pool.pooler is None and no_pool(**inputs).pooler_output is None


def test_auto_classes_load_the_folder(tmp_path):
    ref, _ = make_pair(tmp_path, "AlbertForPreTraining")
    assert isinstance(autoload.AutoConfig.from_pretrained(tmp_path), AlbertConfig)
    inputs = make_batch()
    for auto, name in [("AutoModel", "AlbertModel"), ("AutoModelForPreTraining", "AlbertForPreTraining"),
                       ("AutoModelForMaskedLM", "AlbertForMaskedLM")]:
        model = getattr(autoload, auto).from_pretrained(tmp_path)
        assert type(model).__name__ == name
    with torch.no_grad():
        assert_close(model(**inputs).logits, ref(**inputs).prediction_logits, atol=1e-4, rtol=0)


def test_checkpoint_keys_and_tied_decoder_both_ways(tmp_path):
    """Our save has the reference's keys (the tied decoder left out, as the reference does) and loads in it."""
    ref, ours = make_pair(tmp_path / "ref", "AlbertForMaskedLM", **VARIANTS["2_groups_of_2_over_4_layers"])
    assert ours.predictions.decoder.weight is ours.albert.embeddings.word_embeddings.weight
    assert ours.predictions.decoder.bias is ours.predictions.bias
    ours.save_pretrained(tmp_path / "ours")
    from safetensors.torch import load_file
    saved, ref_saved = load_file(tmp_path / "ours" / "model.safetensors"), \
        load_file(tmp_path / "ref" / "model.safetensors")
    assert sorted(saved) == sorted(ref_saved) and "predictions.decoder.weight" not in saved
    back = transformers.AlbertForMaskedLM.from_pretrained(tmp_path / "ours").eval()
    inputs = make_batch()
    with torch.no_grad():
        assert_close(back(**inputs).logits, ref(**inputs).logits, atol=1e-5, rtol=0)


def test_gradients_match_reference(tmp_path):
    ref, ours = make_pair(tmp_path, "AlbertForPreTraining", **VARIANTS["2_groups_of_2_over_4_layers"])
    inputs = make_batch()
    labels = labels_for("AlbertForPreTraining", inputs)
    ref.train(), ours.train()  # dropout probabilities are 0 by default (classifier dropout: sop head)
    ours.sop_classifier.dropout.p = ref.sop_classifier.dropout.p = 0.0
    ours(**inputs, **labels).loss.backward()
    ref(**inputs, **labels).loss.backward()
    ref_grads = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        assert_close(p.grad, ref_grads[name].grad, atol=1e-4, rtol=0, msg=lambda m: f"{name}: {m}")


def test_gradient_checkpointing_gives_equal_gradients(tmp_path):
    """The reference has no checkpointing for ALBERT; here each layer run is checkpointed (shared weights get
    the sum of their runs' gradients either way)."""
    _, ours = make_pair(tmp_path, "AlbertForTokenClassification", classifier_dropout_prob=0.0,
                        **VARIANTS["2_groups_of_2_over_4_layers"])
    inputs = make_batch()
    labels = labels_for("AlbertForTokenClassification", inputs)
    ours.train()
    grads = []
    for enable in (False, True):
        if enable:
            ours.gradient_checkpointing_enable()
        ours.zero_grad()
        ours(**inputs, **labels).loss.backward()
        grads.append({n: p.grad.clone() for n, p in ours.named_parameters()})
    assert ours.is_gradient_checkpointing
    for name, grad in grads[0].items():
        assert_close(grads[1][name], grad, atol=1e-6, rtol=0)


@pytest.mark.parametrize("cls_name", ["AlbertForMaskedLM", "AlbertForMultipleChoice"])
def test_seeded_construction_equals_the_reference(cls_name):
    config = transformers.AlbertConfig(**{**TINY, **VARIANTS["2_groups_of_2_over_4_layers"]})
    torch.manual_seed(4)
    ref = getattr(transformers, cls_name)(config)
    torch.manual_seed(4)
    ours = getattr(albert, cls_name)(AlbertConfig.from_dict(config.to_dict()))
    ref_state = ref.state_dict()
    for key, value in ours.state_dict().items():
        assert torch.equal(value, ref_state[key]), key


def test_parameter_estimate_counts_shared_layers_once():
    config = AlbertConfig(**{**TINY, **VARIANTS["2_groups_of_2_over_4_layers"]})
    model = albert.AlbertModel(config)
    estimate = sum(n for _, n in config.parameter_estimate())
    assert 0.9 < estimate / model.num_parameters() < 1.1


def test_untied_decoder_matches_reference(tmp_path):
    """tie_word_embeddings=False: decoder weight and bias are their own tensors, in both libraries."""
    ref, ours = make_pair(tmp_path, "AlbertForMaskedLM", tie_word_embeddings=False)
    assert ours.predictions.decoder.weight is not ours.albert.embeddings.word_embeddings.weight
    assert ours.predictions.decoder.bias is not ours.predictions.bias
    inputs = make_batch()
    with torch.no_grad():
        assert_close(ours(**inputs).logits, ref(**inputs).logits, atol=1e-4, rtol=0)


def test_inputs_embeds_and_position_ids(tmp_path):
    """inputs_embeds are of embedding_size (mapped to hidden_size inside), as the reference's."""
    ref, ours = make_pair(tmp_path, "AlbertModel", **VARIANTS["2_groups_of_2_over_4_layers"])
    inputs = make_batch()
    embeds = ours.get_input_embeddings()(inputs.pop("input_ids"))  # (B, T, E)
    positions = torch.arange(9).flip(0)[None].expand(3, 9)
    with torch.no_grad():
        got = ours(inputs_embeds=embeds, position_ids=positions, **inputs)
        expected = ref(inputs_embeds=embeds, position_ids=positions, **inputs)
    assert embeds.shape[-1] == 16 and got.last_hidden_state.shape[-1] == 32
    assert_outputs_close(got, expected)
