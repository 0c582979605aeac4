"""MPNet against the reference (transformers, test-only): tiny random models saved by the reference and loaded through
autoload's real loading path, compared output by output (fp32 atol 1e-4) for every head, with left, right and no
padding, SDPA and eager; the relative position buckets (small bucket counts and distances too, and a sequence longer
than max_distance), losses, hidden states / attentions, tuples, gradients, gradient checkpointing, seeded init, the
Auto classes and saving. Then the real sentence-transformers/all-mpnet-base-v2 (the `mpnet_dir` fixture): hidden
states against transformers, sentence embeddings against sentence_transformers."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from torch.testing import assert_close
from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

import autoload
from autoload.models import mpnet
from autoload.models.configs import MPNetConfig
from model_cases import assert_head_close, assert_outputs_close, labels_for

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=40, layer_norm_eps=1e-5)
VARIANTS = {
    "2_layers_4_heads": {},
    "1_layer_3_heads_gelu_new_40_bucket_rows": dict(hidden_size=24, num_attention_heads=3, num_hidden_layers=1,
                                                     hidden_act="gelu_new", relative_attention_num_buckets=40),
    "3_layers_2_heads_relu_pad_token_0": dict(hidden_size=16, num_attention_heads=2, num_hidden_layers=3,
                                              hidden_act="relu", pad_token_id=0),
}
HEADS = ["MPNetModel", "MPNetForMaskedLM", "MPNetForSequenceClassification", "MPNetForTokenClassification",
         "MPNetForQuestionAnswering", "MPNetForMultipleChoice"]
PAD = 1  # MPNet's padding index, whatever pad_token_id says


def perturb_(model: torch.nn.Module, seed: int = 0, scale: float = 0.1) -> None:
    """Move every parameter (tied ones once) off its init, so LayerNorm 1/0, zero biases and pad rows are tested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


def make_pair(folder, cls_name="MPNetModel", attn="sdpa", seed=0, **overrides):
    """A random reference model (perturbed, eager: transformers' MPNet has no SDPA path) saved to `folder`, loaded
    back by the reference and by autoload (with `attn`)."""
    config = transformers.MPNetConfig(**{**TINY, **overrides})
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    ref = getattr(transformers, cls_name)(config)
    perturb_(ref, seed)
    ref.save_pretrained(folder)
    ref = getattr(transformers, cls_name).from_pretrained(folder, attn_implementation="eager").eval()
    ours = getattr(mpnet, cls_name).from_pretrained(folder, attn_implementation=attn)
    assert type(ours).__name__ == cls_name and not ours.training
    return ref, ours


def make_batch(cls_name="MPNetModel", padding="right", B=3, T=10, vocab=99, seed=1):
    """input_ids (id 1 at the padding) and attention_mask; rows 2 and 3 padded on `padding`'s side (None: no mask).
    Multiple choice gets a (B, 2, T) layout."""
    g = torch.Generator().manual_seed(seed)
    shape = (B, 2, T) if cls_name == "MPNetForMultipleChoice" else (B, T)
    ids = torch.randint(3, vocab, shape, generator=g)
    mask = torch.ones(shape, dtype=torch.long)
    if padding == "right":
        mask[1, ..., T - 3:], mask[2, ..., T - 6:] = 0, 0
    elif padding == "left":
        mask[1, ..., :2], mask[2, ..., :5] = 0, 0
    inputs = {"input_ids": ids.masked_fill(mask == 0, PAD)}
    if padding is not None:
        inputs["attention_mask"] = mask
    return inputs


def mpnet_labels(cls_name, inputs, num_labels=2, problem="single", seed=2):
    ids = inputs["input_ids"]
    return labels_for(cls_name, ids, (ids != PAD).long(), num_labels, seed, problem)


def assert_states_close(got, expected):
    """Hidden states (embeddings + one per layer) and attention weights, each close."""
    assert len(got.hidden_states) == len(expected.hidden_states)
    assert len(got.attentions) == len(expected.attentions) == len(expected.hidden_states) - 1
    for ours, ref in zip(got.hidden_states + got.attentions, expected.hidden_states + expected.attentions):
        assert_close(ours, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("num_buckets,max_distance", [(32, 128), (8, 20), (16, 40), (6, 9)])
def test_relative_position_buckets_match_the_reference(num_buckets, max_distance):
    offsets = torch.arange(-300, 301)[None, :] - torch.arange(0, 3)[:, None]  # (3, 601): both sides, far past max
    expected = MPNetEncoder.relative_position_bucket(offsets, num_buckets=num_buckets, max_distance=max_distance)
    got = mpnet.relative_position_bucket(offsets, num_buckets=num_buckets, max_distance=max_distance)
    assert torch.equal(got, expected)
    # every bucket is reached, the log-spaced ones included, but the upper half's first (a key 0 to the right)
    assert set(got.unique().tolist()) == set(range(num_buckets)) - {num_buckets // 2}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("cls_name", HEADS)
def test_every_head_matches_the_reference(tmp_path, cls_name, variant):
    ref, ours = make_pair(tmp_path, cls_name, **VARIANTS[variant])
    for padding in ("right", "left", None):
        inputs = make_batch(cls_name, padding)
        for attn in ("sdpa", "eager"):
            ours.config._attn_implementation = attn
            with torch.no_grad():
                expected = ref(**inputs, output_hidden_states=True, output_attentions=True)
                got = ours(**inputs, output_hidden_states=True, output_attentions=True)
                plain = ours(**inputs)  # without the weights: SDPA unless eager
            assert_outputs_close(got, expected)
            assert_outputs_close(plain, expected)
            assert_states_close(got, expected)


def test_a_sequence_longer_than_max_distance(tmp_path):
    """T = 150 > max_distance 128: offsets reach every bucket, the far ones clamped to the last."""
    ref, ours = make_pair(tmp_path, "MPNetForMaskedLM", hidden_size=16, num_attention_heads=2, num_hidden_layers=1,
                          intermediate_size=20, max_position_embeddings=160)
    inputs = make_batch(padding="right", T=150)
    for attn in ("sdpa", "eager"):
        ours.config._attn_implementation = attn
        with torch.no_grad():
            expected = ref(**inputs, output_attentions=True, output_hidden_states=True)
            got = ours(**inputs, output_attentions=True, output_hidden_states=True)
            plain = ours(**inputs)
        assert_outputs_close(got, expected)
        assert_outputs_close(plain, expected)
        assert_states_close(got, expected)


@pytest.mark.parametrize("cls_name", HEADS)
def test_losses_and_tuples_match_the_reference(tmp_path, cls_name):
    ref, ours = make_pair(tmp_path, cls_name, num_labels=3 if cls_name != "MPNetForQuestionAnswering" else 2)
    inputs = make_batch(cls_name)
    labels = mpnet_labels(cls_name, inputs, num_labels=3)
    with torch.no_grad():
        expected, got = ref(**inputs, **labels), ours(**inputs, **labels)
        expected_tuple = ref(**inputs, **labels, return_dict=False, output_hidden_states=True)
        got_tuple = ours(**inputs, **labels, return_dict=False, output_hidden_states=True)
    assert_outputs_close(got, expected)
    assert (got.get("loss") is None) == (cls_name == "MPNetModel")
    expected_tuple = [t for t in expected_tuple if t is not None]  # the reference's bare model keeps pooler None
    assert len(got_tuple) == len(expected_tuple)
    for a, b in zip(got_tuple, expected_tuple):
        assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("problem,num_labels", [("regression", 1), ("single", 4), ("multi", 4)])
def test_sequence_classification_problem_types(tmp_path, problem, num_labels):
    ref, ours = make_pair(tmp_path, "MPNetForSequenceClassification", num_labels=num_labels)
    inputs = make_batch()
    labels = mpnet_labels("MPNetForSequenceClassification", inputs, num_labels, problem)
    assert_head_close(ours, ref, inputs, labels)


def test_inputs_embeds_and_position_ids(tmp_path):
    ref, ours = make_pair(tmp_path, "MPNetModel")
    inputs = make_batch(padding="left")
    embeds = ref.embeddings.word_embeddings(inputs["input_ids"]).detach()
    positions = torch.arange(3, 13).expand(3, 10)
    with torch.no_grad():
        for extra in ({"inputs_embeds": embeds}, {"input_ids": inputs["input_ids"], "position_ids": positions}):
            kwargs = {"attention_mask": inputs["attention_mask"], **extra}
            assert_outputs_close(ours(**kwargs), ref(**kwargs))
    with pytest.raises(ValueError, match="exactly one"):
        ours(input_ids=inputs["input_ids"], inputs_embeds=embeds)


def test_gradients_and_checkpointing_match_the_reference(tmp_path):
    ref, ours = make_pair(tmp_path, "MPNetForSequenceClassification", hidden_dropout_prob=0.0,
                          attention_probs_dropout_prob=0.0)
    inputs = make_batch("MPNetForSequenceClassification", padding="left")
    labels = mpnet_labels("MPNetForSequenceClassification", inputs)
    grads = []
    for model, checkpointing in ((ref, False), (ours, False), (ours, True)):
        model.train().zero_grad()
        if checkpointing:
            model.gradient_checkpointing_enable()
        model(**inputs, **labels).loss.backward()
        grads.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
    assert ours.mpnet.gradient_checkpointing
    assert set(grads[1]) == set(grads[0]) and "mpnet.encoder.relative_attention_bias.weight" in grads[1]
    for got in grads[1:]:
        for name, expected in grads[0].items():
            assert_close(got[name], expected, atol=1e-4, rtol=1e-4, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("seed", [0, 5])
def test_seeded_construction_equals_the_reference(seed):
    config = transformers.MPNetConfig(**TINY)
    for cls_name in HEADS:
        torch.manual_seed(seed)
        ref = getattr(transformers, cls_name)(config)
        torch.manual_seed(seed)
        ours = getattr(autoload, cls_name)(MPNetConfig.from_dict(config.to_dict()))
        expected = ref.state_dict()
        for key, value in ours.state_dict().items():
            assert torch.equal(value, expected[key]), (cls_name, key)
    assert ours.mpnet.embeddings.position_embeddings.weight[PAD].abs().sum() == 0
    mlm = autoload.AutoModelForMaskedLM.from_config(MPNetConfig.from_dict(config.to_dict()))
    assert mlm.lm_head.decoder.weight is mlm.mpnet.embeddings.word_embeddings.weight
    assert mlm.lm_head.decoder.bias is mlm.lm_head.bias


@pytest.mark.parametrize("auto_name,cls_name", [
    ("AutoModel", "MPNetModel"), ("AutoModelForMaskedLM", "MPNetForMaskedLM"),
    ("AutoModelForPreTraining", "MPNetForMaskedLM"),
    ("AutoModelForSequenceClassification", "MPNetForSequenceClassification"),
    ("AutoModelForTokenClassification", "MPNetForTokenClassification"),
    ("AutoModelForQuestionAnswering", "MPNetForQuestionAnswering"),
    ("AutoModelForMultipleChoice", "MPNetForMultipleChoice")])
def test_auto_classes_load_the_folder(tmp_path, auto_name, cls_name):
    ref, _ = make_pair(tmp_path, cls_name)
    config = autoload.AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, MPNetConfig) and config.relative_attention_num_buckets == 32
    ours = getattr(autoload, auto_name).from_pretrained(tmp_path)
    assert type(ours).__name__ == cls_name
    inputs = make_batch(cls_name)
    with torch.no_grad():
        assert_outputs_close(ours(**inputs), ref(**inputs))


def test_resize_token_embeddings_matches_the_reference(tmp_path):
    ref, ours = make_pair(tmp_path, "MPNetForMaskedLM")
    for model in (ref, ours):
        torch.manual_seed(3)
        model.resize_token_embeddings(105)
    head = ours.lm_head
    assert head.decoder.weight is ours.mpnet.embeddings.word_embeddings.weight and head.bias is head.decoder.bias
    assert head.bias.shape == (105,) and ours.config.vocab_size == 105
    inputs = make_batch(vocab=105)
    with torch.no_grad():
        assert_outputs_close(ours(**inputs), ref(**inputs))


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_bf16_is_close_to_the_reference(tmp_path, attn):
    ref, ours = make_pair(tmp_path, "MPNetForMaskedLM", attn=attn)
    ref = ref.to(torch.bfloat16)
    ours = type(ours).from_pretrained(tmp_path, dtype=torch.bfloat16, attn_implementation=attn)
    assert ours.dtype == torch.bfloat16
    inputs = make_batch(padding="left")
    with torch.no_grad():
        expected, got = ref(**inputs).logits, ours(**inputs).logits
    assert got.dtype == torch.bfloat16
    assert_close(got.float(), expected.float(), atol=2e-2 * expected.float().abs().max().item(), rtol=0)


def test_autoload_save_then_transformers_load(tmp_path):
    ref, ours = make_pair(tmp_path / "src", "MPNetForMaskedLM")
    ours.save_pretrained(tmp_path / "saved")
    again, info = transformers.MPNetForMaskedLM.from_pretrained(tmp_path / "saved", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    inputs = make_batch()
    with torch.no_grad():
        assert_outputs_close(again.eval()(**inputs), ref(**inputs))


SENTENCES = ["This is an example sentence.", "Each sentence is converted",
             "A considerably longer sentence, with punctuation; it makes the other two padded quite a bit more!"]


@pytest.fixture(scope="module")
def st_embeddings(mpnet_dir) -> torch.Tensor:
    """(B, H): sentence_transformers' encode of SENTENCES with the real folder (the oracle of the embeddings)."""
    from sentence_transformers import SentenceTransformer
    return SentenceTransformer(str(mpnet_dir), device="cpu").encode(SENTENCES, convert_to_tensor=True)


def test_real_all_mpnet_base_v2(mpnet_dir, st_embeddings):
    """The real checkpoint: autoload's hidden states equal transformers' on a padded batch of real sentences, and its
    sentence embeddings (pooled and normalised as modules.json and 1_Pooling/config.json say) equal
    sentence_transformers' encode."""
    modules = [m["type"].rpartition(".")[2] for m in json.loads((mpnet_dir / "modules.json").read_text())]
    pooling = json.loads((mpnet_dir / "1_Pooling" / "config.json").read_text())
    assert modules == ["Transformer", "Pooling", "Normalize"] and pooling["pooling_mode_mean_tokens"]
    assert not any(v for k, v in pooling.items() if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens")
    batch = transformers.AutoTokenizer.from_pretrained(mpnet_dir)(SENTENCES, padding=True, return_tensors="pt")
    assert batch["attention_mask"].min() == 0  # padding is exercised
    ref = transformers.MPNetModel.from_pretrained(mpnet_dir).eval()
    ours = autoload.AutoModel.from_pretrained(mpnet_dir)
    assert type(ours) is mpnet.MPNetModel and ours.dtype == torch.float32
    with torch.no_grad():
        expected, got = ref(**batch), ours(**batch)
    assert_close(got.last_hidden_state, expected.last_hidden_state, atol=1e-4, rtol=0)
    assert_close(got.pooler_output, expected.pooler_output, atol=1e-4, rtol=0)

    mask = batch["attention_mask"][..., None].float()  # (B, T, 1)
    mean = (got.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, H)
    embeddings = torch.nn.functional.normalize(mean, p=2, dim=1)  # (B, H)
    assert_close(embeddings, st_embeddings, atol=1e-5, rtol=0)


def test_real_all_mpnet_base_v2_end_to_end(mpnet_dir, st_embeddings):
    """autoload's own MPNetTokenizer gives transformers' batch, and the sentence-embeddings pipeline (tokenizer, model,
    the repo's pooling and normalisation) gives the embeddings of sentence_transformers' encode."""
    expected = transformers.AutoTokenizer.from_pretrained(mpnet_dir)(SENTENCES, padding=True, return_tensors="pt")
    tokenizer = autoload.AutoTokenizer.from_pretrained(mpnet_dir)
    assert type(tokenizer).__name__ == "MPNetTokenizer"
    got = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    assert set(got) == set(expected) == {"input_ids", "attention_mask"}
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    embeddings = autoload.pipeline("sentence-embeddings", mpnet_dir)(SENTENCES)  # (B, H)
    assert_close(torch.as_tensor(embeddings), st_embeddings, atol=1e-5, rtol=0)
