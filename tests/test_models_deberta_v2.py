"""DeBERTa v2/v3 against the reference (transformers, test-only): tiny random models saved by the reference and
loaded through autoload's real loading path, compared for every head (fp32 atol 1e-4) with SDPA and eager, with
and without padding, at three variants: v3-like (log buckets with T > position_buckets, shared keys, LayerNorm'd
relative embeddings, no absolute positions), v2-like (conv layer, separate position projections, clamped
max_relative_positions) and embedding_size != hidden_size (p2c only); the defaults (absolute positions only) and
bf16. Losses, hidden states and attentions, both MLM layouts and resizing, the Auto classes, gradients, gradient
checkpointing, seeded init and saving back."""

from __future__ import annotations

import pytest
import torch
import transformers
from torch.testing import assert_close

import autoload
import model_cases
from autoload.models import deberta_v2
from model_cases import assert_outputs_close, perturb_

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

T = 12  # longer than the v3 variant's 8 buckets: distances past 4 go through the log buckets
TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=24, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
VARIANTS = {
    "v3": dict(relative_attention=True, position_buckets=8, max_relative_positions=-1, pos_att_type=["p2c", "c2p"],
               share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False, type_vocab_size=0),
    "v2_conv": dict(hidden_size=24, num_attention_heads=3, num_hidden_layers=3, relative_attention=True,
                    pos_att_type="p2c|c2p", share_att_key=False, conv_kernel_size=3, max_relative_positions=5,
                    type_vocab_size=2, hidden_act="gelu_new"),
    "embedding_size": dict(embedding_size=20, relative_attention=True, position_buckets=4, max_relative_positions=16,
                           pos_att_type=["p2c"], norm_rel_ebd="layer_norm", type_vocab_size=2, pooler_hidden_act="tanh",
                           cls_dropout=0.2),
}
HEADS = ["DebertaV2Model", "DebertaV2ForMaskedLM", "DebertaV2ForSequenceClassification",
         "DebertaV2ForTokenClassification", "DebertaV2ForQuestionAnswering", "DebertaV2ForMultipleChoice"]


def reference_config(variant: str = "v3", **overrides):
    return transformers.DebertaV2Config(**{**TINY, **VARIANTS[variant], **overrides})


def make_pair(folder, cls_name, variant="v3", **overrides):
    """The reference (eager: it has no other attention) perturbed and saved; autoload loads the folder."""
    return model_cases.make_pair(folder, getattr(transformers, cls_name), getattr(deberta_v2, cls_name),
                                 reference_config(variant, **overrides), attn="eager", reload=False,
                                 prepare=perturb_)


def make_batch(cls_name="DebertaV2Model", padding=True, token_types=True, B=3, seed=1):
    """Ids with right padding (row 1) and left padding (row 2), a mask, segment ids; (B, 2, T) for choices."""
    g = torch.Generator().manual_seed(seed)
    shape = (B, 2, T) if cls_name.endswith("MultipleChoice") else (B, T)
    ids = torch.randint(3, 99, shape, generator=g)
    mask = torch.ones(shape, dtype=torch.long)
    mask[1, ..., T - 4:] = 0
    mask[2, ..., :3] = 0
    inputs = {"input_ids": ids.masked_fill(mask == 0, 0)}
    if padding:
        inputs["attention_mask"] = mask
    if token_types:
        inputs["token_type_ids"] = (torch.arange(T) >= T // 2).long().expand(shape)
    return inputs


def labels_for(cls_name, inputs, num_labels=2, seed=2):
    ids = inputs["input_ids"]
    return model_cases.labels_for(cls_name, ids, (ids != 0).long(), num_labels, seed)


def both_attentions(ours, run):
    """run(model) for autoload with SDPA and with eager attention."""
    results = []
    for attn in ("sdpa", "eager"):
        ours.config._attn_implementation = attn
        results.append(run(ours))
    return results


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("cls_name", HEADS)
def test_every_head_matches_the_reference(tmp_path, cls_name, variant):
    ref, ours = make_pair(tmp_path, cls_name, variant)
    token_types = ref.config.type_vocab_size > 0
    for padding in (True, False):
        inputs = make_batch(cls_name, padding, token_types)
        labels = labels_for(cls_name, inputs) if padding else {}
        with torch.no_grad():
            expected = ref(**inputs, **labels, output_hidden_states=True)
            for got in both_attentions(ours, lambda m: m(**inputs, **labels, output_hidden_states=True)):
                assert_outputs_close(got, expected)
                assert (got.get("loss") is None) == (cls_name == "DebertaV2Model" or not padding)
                assert len(got.hidden_states) == len(expected.hidden_states) == ref.config.num_hidden_layers + 1
                for a, b in zip(got.hidden_states, expected.hidden_states):
                    assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_attentions_and_tuples_match_the_reference(tmp_path):
    """output_attentions returns the weights with either setting (the reference has only eager attention);
    return_dict=False gives the same tuple layout."""
    ref, ours = make_pair(tmp_path, "DebertaV2ForSequenceClassification", "v2_conv")
    inputs = make_batch()
    labels = labels_for("DebertaV2ForSequenceClassification", inputs)
    kwargs = dict(output_hidden_states=True, output_attentions=True, return_dict=False)
    with torch.no_grad():
        expected = ref(**inputs, **labels, **kwargs)
        for got in both_attentions(ours, lambda m: m(**inputs, **labels, **kwargs)):
            assert isinstance(got, tuple) and len(got) == len(expected) == 4
            assert_close(got[0], expected[0], atol=1e-4, rtol=1e-4)
            assert_close(got[1], expected[1], atol=1e-4, rtol=1e-4)
            assert len(got[3]) == len(expected[3]) == 3
            for a, b in zip(got[3], expected[3]):
                assert a.shape == (3, 3, T, T)
                assert_close(a, b, atol=1e-5, rtol=1e-4)
                assert a[2, :, 3:, :3].max() < 1e-6  # left-padded keys get no weight
        assert ours(**inputs).attentions is None
        ours.config.return_dict = False  # the config default is honoured
        assert isinstance(ours(**inputs), tuple)


@pytest.mark.parametrize("case", ["regression", "labels_with_negatives", "soft_labels", "multi_label", "single",
                                  "regression_set"])
def test_sequence_classification_losses(tmp_path, case):
    """problem_type None follows DeBERTa's own rule (rows with label < 0 skipped, soft labels, regression on
    num_labels 1) and stays None; a set problem_type uses the standard losses."""
    problem_type = {"multi_label": "multi_label_classification", "single": "single_label_classification",
                    "regression_set": "regression"}.get(case)
    num_labels = 1 if case.startswith("regression") else 3
    ref, ours = make_pair(tmp_path, "DebertaV2ForSequenceClassification", num_labels=num_labels,
                          problem_type=problem_type)
    g = torch.Generator().manual_seed(4)
    labels = {"regression": torch.randn(3, generator=g), "regression_set": torch.randn(3, generator=g),
              "labels_with_negatives": torch.tensor([2, -1, 0]), "single": torch.tensor([2, 1, 0]),
              "soft_labels": torch.softmax(torch.randn(3, 3, generator=g), -1),
              "multi_label": torch.randint(0, 2, (3, 3), generator=g).float()}[case]
    inputs = make_batch()
    with torch.no_grad():
        assert_outputs_close(ours(**inputs, labels=labels), ref(**inputs, labels=labels))
    assert ours.config.problem_type == ref.config.problem_type == problem_type
    if case == "labels_with_negatives":
        with torch.no_grad():
            none = ours(**inputs, labels=torch.tensor([-1, -1, -1])).loss
        assert none.item() == 0


def test_masked_lm_non_legacy_head(tmp_path):
    """legacy=False: `lm_predictions.lm_head` scores against the word embeddings (nothing tied)."""
    ref, ours = make_pair(tmp_path, "DebertaV2ForMaskedLM", legacy=False)
    assert {k for k in ours.state_dict() if "lm_predictions" in k} == \
        {f"lm_predictions.lm_head.{name}" for name in ("bias", "dense.weight", "dense.bias", "LayerNorm.weight",
                                                      "LayerNorm.bias")}
    assert not hasattr(ours, "cls") and ours.get_output_embeddings() is None
    inputs = make_batch(token_types=False)
    labels = labels_for("DebertaV2ForMaskedLM", inputs)
    with torch.no_grad():
        assert_outputs_close(ours(**inputs, **labels), ref(**inputs, **labels))
        before = ours(**inputs).logits
        ours.resize_token_embeddings(104)  # the bias follows the embeddings (the reference's head breaks here)
        after = ours(**inputs).logits
    assert after.shape == (3, T, 104) and ours.config.vocab_size == 104
    assert_close(after[..., :99], before, atol=1e-5, rtol=0)


def test_legacy_head_is_tied_and_v3_keys_load(tmp_path):
    """The legacy head's decoder is the word embeddings (a seeded resize matches the reference's); a file with the
    original v3 layout (`mask_predictions`, an unused position table) loads with those keys ignored."""
    ref, ours = make_pair(tmp_path, "DebertaV2ForMaskedLM")
    assert ours.cls.predictions.decoder.weight is ours.deberta.embeddings.word_embeddings.weight
    state = {k: v for k, v in ref.state_dict().items() if not k.startswith("cls.")}
    state["mask_predictions.dense.weight"] = torch.zeros(4, 4)
    state["deberta.embeddings.position_embeddings.weight"] = torch.zeros(24, 32)
    torch.save(state, tmp_path / "pytorch_model.bin")
    (tmp_path / "model.safetensors").unlink()
    expected = transformers.DebertaV2Model.from_pretrained(tmp_path)
    got = deberta_v2.DebertaV2Model.from_pretrained(tmp_path)
    inputs = make_batch(token_types=False)
    with torch.no_grad():
        assert_outputs_close(got(**inputs), expected(**inputs))
    for model in (ref, ours):  # a seeded resize draws the same new rows
        torch.manual_seed(3)
        model.resize_token_embeddings(104)
    with torch.no_grad():
        assert_outputs_close(ours(**inputs), ref(**inputs))


def test_auto_classes_and_saving_back(tmp_path):
    """AutoConfig / AutoModelFor* read the reference's folder; autoload's save_pretrained reads back in the
    reference with identical outputs."""
    ref, _ = make_pair(tmp_path, "DebertaV2ForTokenClassification", "v2_conv")
    config = autoload.AutoConfig.from_pretrained(tmp_path)
    assert type(config).__name__ == "DebertaV2Config" and config.pos_att_type == ["p2c", "c2p"]
    ours = autoload.AutoModelForTokenClassification.from_pretrained(tmp_path)
    assert type(ours) is deberta_v2.DebertaV2ForTokenClassification
    inputs = make_batch()
    with torch.no_grad():
        assert_outputs_close(ours(**inputs), ref(**inputs))
    ours.save_pretrained(tmp_path / "saved")
    back = transformers.DebertaV2ForTokenClassification.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        assert_close(back(**inputs).logits, ref(**inputs).logits, atol=0, rtol=0)
    assert type(autoload.AutoModel.from_pretrained(tmp_path)) is deberta_v2.DebertaV2Model


@pytest.mark.parametrize("checkpointing", [False, True])
def test_gradients_match_the_reference(tmp_path, checkpointing):
    ref, ours = make_pair(tmp_path, "DebertaV2ForMultipleChoice", "v2_conv")
    ref.train(), ours.train()
    if checkpointing:
        ours.gradient_checkpointing_enable()
    inputs = make_batch("DebertaV2ForMultipleChoice")
    labels = labels_for("DebertaV2ForMultipleChoice", inputs)
    ref(**inputs, **labels).loss.backward()
    ours(**inputs, **labels).loss.backward()
    expected = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        assert_close(p.grad, expected[name].grad, atol=1e-4, rtol=1e-4, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("variant", VARIANTS)
def test_seeded_construction_equals_the_reference(variant):
    config = reference_config(variant, legacy=variant != "v2_conv")
    ours_config = deberta_v2.DebertaV2Config.from_dict(config.to_dict())
    for cls_name in HEADS:
        torch.manual_seed(5)
        ref = getattr(transformers, cls_name)(config)
        torch.manual_seed(5)
        ours = getattr(deberta_v2, cls_name)(ours_config)
        expected = ref.state_dict()
        assert set(ours.state_dict()) == set(expected)
        for key, value in ours.state_dict().items():
            assert torch.equal(value, expected[key]), (cls_name, key)


def test_log_buckets_and_inputs_embeds(tmp_path):
    from transformers.models.deberta_v2.modeling_deberta_v2 import make_log_bucket_position
    rel = torch.arange(-300, 301)[None]
    assert torch.equal(deberta_v2.log_bucket(rel, 256, 512), make_log_bucket_position(rel, 256, 512).long())
    ref, ours = make_pair(tmp_path, "DebertaV2ForMaskedLM", "embedding_size")
    inputs = make_batch(token_types=False)
    embeds = ours.get_input_embeddings()(inputs.pop("input_ids"))  # (B, T, E)
    positions = torch.arange(T).flip(0)[None].expand(3, T)
    with torch.no_grad():
        assert_outputs_close(ours(inputs_embeds=embeds, position_ids=positions, **inputs),
                             ref(inputs_embeds=embeds, position_ids=positions, **inputs))
    with pytest.raises(ValueError, match="exactly one"):
        ours()


def test_absolute_positions_only_and_bf16(tmp_path):
    """The config defaults (no relative attention, absolute positions, no pos_att_type) match in fp32 with SDPA
    and eager; bf16 loads stay close to the reference's bf16."""
    config = transformers.DebertaV2Config(**TINY, type_vocab_size=2)
    ref, ours = model_cases.make_pair(tmp_path, transformers.DebertaV2ForMaskedLM, deberta_v2.DebertaV2ForMaskedLM,
                                      config, attn="eager", reload=False, prepare=perturb_)
    assert not hasattr(ours.deberta.encoder, "rel_embeddings")
    inputs = make_batch()
    with torch.no_grad():
        expected = ref(**inputs)
        for got in both_attentions(ours, lambda m: m(**inputs)):
            assert_outputs_close(got, expected)
    ref, ours = model_cases.make_pair(tmp_path / "bf16", transformers.DebertaV2ForMaskedLM,
                                      deberta_v2.DebertaV2ForMaskedLM, reference_config("v2_conv"), attn="eager",
                                      dtype=torch.bfloat16, prepare=perturb_)
    assert ours.dtype == torch.bfloat16
    with torch.no_grad():
        expected = ref(**inputs).logits.float()
        for got in both_attentions(ours, lambda m: m(**inputs).logits):
            assert got.dtype == torch.bfloat16
            assert_close(got.float(), expected, atol=2e-2 * expected.abs().max().item(), rtol=0)
    with pytest.raises(ValueError, match="2-D"):
        ours(inputs["input_ids"], attention_mask=inputs["attention_mask"][:, None, :])
