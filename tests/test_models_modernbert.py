"""ModernBERT against the reference (transformers, test-only): tiny random models saved by the reference and loaded
through autoload's real loading path, compared output by output (fp32 atol 1e-4) for every head, with left, right
and no padding, at T=12 with a small local window (so the window matters) and different global / local RoPE
thetas; losses, eager attentions, hidden states, the unpadded path (against the padded reference at the real
tokens), gradients, gradient checkpointing, older config.json keys, Auto classes and the tokenizer.json tokenizer."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from torch.testing import assert_close

import autoload
import model_cases
from autoload.models import modernbert
from model_cases import assert_outputs_close, perturb_

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

B, T, VOCAB = 3, 12, 99
TINY = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=40, num_hidden_layers=3, num_attention_heads=4,
            max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1,
            sep_token_id=2, global_rope_theta=1000.0, local_rope_theta=50.0)
VARIANTS = {  # layers: (global, local, global) and (global, local, local)
    "every_2nd_global_window_4_cls": dict(global_attn_every_n_layers=2, local_attention=4),
    "every_3rd_global_window_6_mean_biases": dict(
        global_attn_every_n_layers=3, local_attention=6, classifier_pooling="mean", norm_bias=True,
        attention_bias=True, mlp_bias=True, classifier_bias=True, decoder_bias=False, hidden_size=24,
        num_attention_heads=2, hidden_activation="gelu_new", classifier_activation="silu"),
}
HEADS = ["ModernBertModel", "ModernBertForMaskedLM", "ModernBertForSequenceClassification",
         "ModernBertForTokenClassification", "ModernBertForQuestionAnswering", "ModernBertForMultipleChoice"]
PADS = [0, 3, 7]  # padding tokens per row: row 2's last queries see only padding in a window of 2 each side


def reference_config(**overrides):
    return transformers.ModernBertConfig(**{**TINY, **overrides})


def make_pair(folder, cls_name="ModernBertForMaskedLM", attn="sdpa", config=None, **overrides):
    config = config if config is not None else reference_config(**overrides)
    return model_cases.make_pair(folder, getattr(transformers, cls_name), getattr(modernbert, cls_name), config,
                                 attn=attn, prepare=perturb_)


def make_batch(cls_name, padding, choices=2):
    """input_ids and attention_mask, (B, T), or (B, C, T) for multiple choice."""
    if cls_name != "ModernBertForMultipleChoice":
        ids, mask = model_cases.padded_batch(B, T, padding, PADS, vocab=VOCAB, low=3)
        return {"input_ids": ids, "attention_mask": mask}
    ids, mask = model_cases.padded_batch(B * choices, T, padding, PADS * 2, vocab=VOCAB, low=3)
    return {"input_ids": ids.view(B, choices, T), "attention_mask": mask.view(B, choices, T)}


def labels_for(cls_name, inputs, num_labels=2):
    return model_cases.labels_for(cls_name, inputs["input_ids"], inputs["attention_mask"], num_labels)


def as_list(value):
    return value.tolist() if hasattr(value, "tolist") else value


def assert_all_close(got, expected, keep=None):
    """Outputs, hidden states and attentions close; with `keep` (B, T) bool, per-token tensors only there."""
    if keep is None:
        assert_outputs_close(got, expected)
    for name in ("hidden_states", "attentions"):
        assert (got.get(name) is None) == (expected.get(name) is None), name
        assert len(got.get(name) or ()) == len(expected.get(name) or ()), name
        for ours, ref in zip(got.get(name) or (), expected.get(name) or ()):
            if keep is not None and name == "hidden_states":
                ours, ref = ours[keep], ref[keep]
            elif keep is not None:  # weights between real tokens; padding columns carry no weight
                ours, ref = ours.transpose(1, 2)[keep], ref.transpose(1, 2)[keep]  # (real queries, nh, T)
            assert_close(ours, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("cls_name", HEADS)
def test_every_head_matches_the_reference(tmp_path, cls_name, variant):
    ref, ours = make_pair(tmp_path, cls_name, **VARIANTS[variant])
    for padding in ("right", "left", None):
        inputs = make_batch(cls_name, padding)
        labels = labels_for(cls_name, inputs)
        with torch.no_grad():
            expected = ref(**inputs, **labels, output_hidden_states=True)
            got = ours(**inputs, **labels, output_hidden_states=True)
        assert_all_close(got, expected)
        assert (got.get("loss") is None) == (cls_name == "ModernBertModel")
        assert len(got.hidden_states) == 4 and got.attentions is None


@pytest.mark.parametrize("cls_name", ["ModernBertModel", "ModernBertForSequenceClassification"])
def test_eager_attentions_match_the_reference(tmp_path, cls_name):
    ref, ours = make_pair(tmp_path, cls_name, attn="eager", **VARIANTS["every_2nd_global_window_4_cls"])
    inputs = make_batch(cls_name, "right")
    with torch.no_grad():
        expected = ref(**inputs, output_attentions=True, output_hidden_states=True)
        got = ours(**inputs, output_attentions=True, output_hidden_states=True)
    assert len(got.attentions) == 3 and got.attentions[0].shape == (B, 4, T, T)
    assert_all_close(got, expected)
    local = got.attentions[1][0, :, 0]  # layer 1 is local (window 2 each side): query 0 sees keys 0..2 only
    assert bool((local[:, 3:] == 0).all()) and bool((local[:, :3] > 0).all())
    with torch.no_grad():  # sdpa returns no weights, as the reference: an empty tuple
        ours.config._attn_implementation = "sdpa"
        assert ours(**inputs, output_attentions=True).attentions == ()


def test_the_window_and_the_thetas_matter(tmp_path):
    """The local window and the local theta each change the output, so the parity tests above exercise them."""
    _, ours = make_pair(tmp_path, "ModernBertModel", **VARIANTS["every_2nd_global_window_4_cls"])
    inputs = make_batch("ModernBertModel", None)
    with torch.no_grad():
        base = ours(**inputs).last_hidden_state
        ours.config.local_attention = 64
        wide = ours(**inputs).last_hidden_state
    assert (base - wide).abs().max() > 1e-3
    config = reference_config(**VARIANTS["every_2nd_global_window_4_cls"])
    config.rope_parameters["sliding_attention"]["rope_theta"] = 1000.0
    _, same_theta = make_pair(tmp_path / "same", "ModernBertModel", config=config)
    with torch.no_grad():
        assert (same_theta(**inputs).last_hidden_state - base).abs().max() > 1e-3


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_unpadded_path_matches_the_padded_reference(tmp_path, variant, attn):
    """config.unpad_inputs: the real tokens concatenated, one attention per row; equal to the padded reference at
    every real token (hidden states, per-token logits, eager weights), and for pooled heads where the pooled
    token is real. Padding positions come back as zeros."""
    ref, ours = make_pair(tmp_path, "ModernBertForTokenClassification", attn=attn, **VARIANTS[variant])
    ours.config.unpad_inputs = True
    for padding in ("right", "left"):
        inputs = make_batch("ModernBertModel", padding)
        keep = inputs["attention_mask"].bool()
        labels = labels_for("ModernBertForTokenClassification", inputs)
        with torch.no_grad():
            expected = ref(**inputs, **labels, output_hidden_states=True, output_attentions=attn == "eager")
            got = ours(**inputs, **labels, output_hidden_states=True, output_attentions=attn == "eager")
            backbone = ours.model(**inputs).last_hidden_state
        assert_all_close(got, expected, keep)
        assert_close(got.logits[keep], expected.logits[keep], atol=1e-4, rtol=1e-4)
        assert_close(got.loss, expected.loss, atol=1e-4, rtol=1e-4)  # padding labels are -100
        assert bool((backbone[~keep] == 0).all()) and bool((got.hidden_states[0][~keep] == 0).all())
    seq_ref, seq_ours = make_pair(tmp_path / "seq", "ModernBertForSequenceClassification", **VARIANTS[variant])
    seq_ours.config.unpad_inputs = True
    inputs = make_batch("ModernBertModel", "right")  # "cls" pools position 0: a real token with right padding
    with torch.no_grad():
        assert_close(seq_ours(**inputs).logits, seq_ref(**inputs).logits, atol=1e-4, rtol=1e-4)


def test_unpadded_path_with_masked_lm_sparse_prediction(tmp_path):
    config = reference_config(**VARIANTS["every_2nd_global_window_4_cls"], sparse_prediction=True)
    ref, ours = make_pair(tmp_path, "ModernBertForMaskedLM", config=config)
    inputs = make_batch("ModernBertForMaskedLM", "left")
    labels = labels_for("ModernBertForMaskedLM", inputs)
    with torch.no_grad():
        expected = ref(**inputs, **labels)
        got = ours(**inputs, **labels)
        ours.config.unpad_inputs = True
        unpadded = ours(**inputs, **labels)
    n = int((labels["labels"] != -100).sum())
    assert got.logits.shape == (n, VOCAB)  # only the labelled positions are scored
    assert_outputs_close(got, expected)
    assert_outputs_close(unpadded, expected)


@pytest.mark.parametrize("problem,num_labels", [("regression", 1), ("single", 4), ("multi", 3)])
def test_sequence_classification_losses(tmp_path, problem, num_labels):
    ref, ours = make_pair(tmp_path, "ModernBertForSequenceClassification", num_labels=num_labels,
                          **VARIANTS["every_3rd_global_window_6_mean_biases"])
    inputs = make_batch("ModernBertModel", "right")
    g = torch.Generator().manual_seed(3)
    labels = {"regression": torch.randn(B, generator=g), "single": torch.randint(0, num_labels, (B,), generator=g),
              "multi": torch.randint(0, 2, (B, num_labels), generator=g).float()}[problem]
    with torch.no_grad():
        assert_outputs_close(ours(**inputs, labels=labels), ref(**inputs, labels=labels))
    assert ours.config.problem_type == ref.config.problem_type


def test_return_dict_false_and_inputs_embeds(tmp_path):
    ref, ours = make_pair(tmp_path, "ModernBertForMaskedLM", **VARIANTS["every_2nd_global_window_4_cls"])
    inputs = make_batch("ModernBertForMaskedLM", "right")
    labels = labels_for("ModernBertForMaskedLM", inputs)
    with torch.no_grad():
        got = ours(**inputs, **labels, return_dict=False)
        expected = ref(**inputs, **labels, return_dict=False)
        assert len(got) == len(expected) == 2
        for a, b in zip(got, expected):
            assert_close(a, b, atol=1e-4, rtol=1e-4)
        embeds = ours.get_input_embeddings()(inputs["input_ids"])  # (B, T, H)
        from_embeds = ours.model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"])
        expected = ref.model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"])
    assert_close(from_embeds.last_hidden_state, expected.last_hidden_state, atol=1e-4, rtol=1e-4)
    assert ours.decoder.weight is ours.model.embeddings.tok_embeddings.weight


@pytest.mark.parametrize("checkpointing", [False, True])
def test_gradients_match_the_reference(tmp_path, checkpointing):
    ref, ours = make_pair(tmp_path, "ModernBertForSequenceClassification", **VARIANTS["every_2nd_global_window_4_cls"])
    inputs = make_batch("ModernBertModel", "left")
    labels = torch.tensor([0, 1, 1])
    for model in (ref, ours):
        model.train()
        if checkpointing:
            model.gradient_checkpointing_enable()
        model(**inputs, labels=labels).loss.backward()
    grads = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        assert_close(p.grad, grads[name].grad, atol=1e-4, rtol=1e-4, msg=lambda m: f"{name}: {m}")


def test_older_config_keys_and_auto_classes(tmp_path):
    """A config.json as the released checkpoints write it (global/local rope thetas, global_attn_every_n_layers,
    reference_compile, no layer_types or rope_parameters) loads the same in both libraries, through the Auto
    classes; the seeded construction equals the reference's."""
    config = reference_config(num_labels=3, initializer_cutoff_factor=3.0, **VARIANTS["every_2nd_global_window_4_cls"])
    torch.manual_seed(0)
    reference = transformers.ModernBertForSequenceClassification(config)
    torch.manual_seed(0)
    seeded = autoload.AutoModelForSequenceClassification.from_config(
        autoload.ModernBertConfig.from_dict(config.to_dict()))
    for name, value in seeded.state_dict().items():
        assert torch.equal(value, reference.state_dict()[name]), name
    perturb_(reference)
    reference.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    for key in ("layer_types", "rope_parameters"):
        del data[key]
    data.update(global_rope_theta=1000.0, local_rope_theta=50.0, global_attn_every_n_layers=2,
                reference_compile=True, position_embedding_type="absolute")
    (tmp_path / "config.json").write_text(json.dumps(data))
    loaded = autoload.AutoConfig.from_pretrained(tmp_path)
    assert loaded.layer_types == ["full_attention", "sliding_attention", "full_attention"]
    assert loaded.rope_parameters == {"full_attention": {"rope_type": "default", "rope_theta": 1000.0},
                                      "sliding_attention": {"rope_type": "default", "rope_theta": 50.0}}
    inputs = make_batch("ModernBertModel", "right")
    with torch.no_grad():
        for auto in ("AutoModel", "AutoModelForSequenceClassification"):
            ours = getattr(autoload, auto).from_pretrained(tmp_path)
            ref = getattr(transformers, auto).from_pretrained(tmp_path).eval()
            assert type(ours).__name__ == type(ref).__name__
            assert_outputs_close(ours(**inputs), ref(**inputs))


def test_tokenizer_json_through_auto_tokenizer(tmp_path):
    """ModernBERT repos ship tokenizer.json with tokenizer_class PreTrainedTokenizerFast: AutoTokenizer gives the
    reference's ids, masks and special tokens, and they run through the model."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(["hello modern bert world", "a longer sentence about encoders"] * 5,
                            trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=specials,
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()[:60]))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "cls_token": "[CLS]", "sep_token": "[SEP]",
        "pad_token": "[PAD]", "mask_token": "[MASK]", "unk_token": "[UNK]", "model_max_length": 8192,
        "model_input_names": ["input_ids", "attention_mask"], "clean_up_tokenization_spaces": True}))
    ref_model = transformers.ModernBertModel(reference_config(pad_token_id=3, vocab_size=VOCAB))
    ref_model.save_pretrained(tmp_path)
    ours = autoload.AutoTokenizer.from_pretrained(tmp_path)
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path)
    texts = ["hello modern world", "a longer sentence about bert encoders and the world"]
    for kwargs in ({}, {"padding": True, "return_tensors": "pt"}, {"padding": True, "padding_side": "left"}):
        got, expected = ours(texts, **kwargs), theirs(texts, **kwargs)
        assert list(got.keys()) == list(expected.keys()) == ["input_ids", "attention_mask"]
        for key in got:
            assert as_list(got[key]) == as_list(expected[key]), (key, kwargs)
    assert ours.pad_token_id == theirs.pad_token_id == 3 and ours.mask_token == "[MASK]"
    batch = ours(texts, padding=True, return_tensors="pt")
    model = autoload.AutoModel.from_pretrained(tmp_path)
    with torch.no_grad():
        assert_close(model(**batch).last_hidden_state, ref_model.eval()(**batch).last_hidden_state,
                     atol=1e-4, rtol=1e-4)


def test_bf16_and_trainer_loss_kwargs(tmp_path):
    """bf16 weights (RoPE applied in fp32, as the reference) stay close; num_items_in_batch divides the summed
    MLM loss as the reference's (Trainer's gradient accumulation)."""
    config = reference_config(**VARIANTS["every_2nd_global_window_4_cls"])
    ref, ours = model_cases.make_pair(tmp_path, transformers.ModernBertForMaskedLM, modernbert.ModernBertForMaskedLM,
                                      config, dtype=torch.bfloat16, prepare=perturb_)
    assert ours.dtype == torch.bfloat16 and ours.accepts_loss_kwargs
    inputs = make_batch("ModernBertForMaskedLM", "left")
    labels = labels_for("ModernBertForMaskedLM", inputs)
    with torch.no_grad():
        assert_outputs_close(ours(**inputs), ref(**inputs), atol=2e-2)
        n = torch.tensor(7)
        assert_close(ours(**inputs, **labels, num_items_in_batch=n).loss,
                     ref(**inputs, **labels, num_items_in_batch=n).loss, atol=2e-2, rtol=0)


def test_resize_token_embeddings_and_size_estimate(tmp_path):
    """A seeded resize gives the reference's weights (the decoder stays tied, its bias grows); the size estimate
    of the default config is ModernBERT-base's published 149M."""
    ref, ours = make_pair(tmp_path, "ModernBertForMaskedLM", **VARIANTS["every_2nd_global_window_4_cls"])
    for model in (ref, ours):
        torch.manual_seed(5)
        model.resize_token_embeddings(120)
    assert ours.decoder.weight is ours.model.embeddings.tok_embeddings.weight and ours.config.vocab_size == 120
    assert torch.equal(ours.decoder.bias, ref.decoder.bias)
    inputs = make_batch("ModernBertForMaskedLM", "right")
    with torch.no_grad():
        assert_outputs_close(ours(**inputs), ref(**inputs))
    estimate = sum(n for _, n in autoload.ModernBertConfig().parameter_estimate())
    assert abs(estimate / 149e6 - 1) < 0.02
