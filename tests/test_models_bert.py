"""BERT against the reference (transformers, test-only): tiny random models saved by the reference and loaded
through autoload's real loading path, compared output by output (fp32 atol 1e-4) for every head, with and without
padding, with and without token_type_ids; losses, bf16, hidden states / attentions, training, the causal decoder
with its KV cache, and cross-attention. Loading-specific tests live in test_models_bert_loading.py."""

from __future__ import annotations

import pytest
import torch
import transformers
from torch.testing import assert_close

import model_cases
from autoload.models import bert
from autoload.models.configs import BertConfig
from autoload.nn.cache import DynamicCache
from model_cases import assert_outputs_close, perturb_

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

TINY = dict(vocab_size=99, hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=37,
            max_position_embeddings=40, type_vocab_size=2)
VARIANTS = {
    "3_heads_of_8_1_layer": dict(num_hidden_layers=1),
    "3_layers_gelu_new_classifier_dropout": dict(hidden_size=32, num_attention_heads=4, num_hidden_layers=3,
                                                  hidden_act="gelu_new", classifier_dropout=0.3),
    "relu_3_token_types": dict(hidden_size=16, num_attention_heads=2, hidden_act="relu", type_vocab_size=3),
}
HEADS = ["BertModel", "BertForPreTraining", "BertForMaskedLM", "BertLMHeadModel", "BertForNextSentencePrediction",
         "BertForSequenceClassification", "BertForTokenClassification", "BertForQuestionAnswering",
         "BertForMultipleChoice"]


def make_pair(folder, cls_name="BertForMaskedLM", attn="sdpa", dtype=torch.float32, seed=0, **overrides):
    """A random reference model (perturbed) saved to `folder`, loaded back by the reference and by autoload."""
    config = transformers.BertConfig(**{**TINY, **overrides})
    config.is_decoder = config.is_decoder or cls_name == "BertLMHeadModel"
    return model_cases.make_pair(folder, getattr(transformers, cls_name), getattr(bert, cls_name), config, attn=attn,
                                 dtype=dtype, seed=seed, prepare=lambda model: perturb_(model, seed))


def make_batch(cls_name="BertModel", padding=True, token_types=True, B=3, T=9, vocab=99, type_vocab=2, seed=1):
    """Model inputs: token ids (right padding with id 0 in rows 2 and 3), a mask, segment ids A then B. Multiple
    choice gets a (B, 2, T) layout."""
    inputs = model_cases.encoder_batch(cls_name, padding, B, T, vocab, seed)
    if token_types:
        types = torch.zeros_like(inputs["input_ids"])
        types[..., T // 2:] = 1
        types[..., -1] = type_vocab - 1
        inputs["token_type_ids"] = types
    return inputs


def labels_for(cls_name, inputs, num_labels=2, problem="single", seed=2):
    ids = inputs["input_ids"]
    B = ids.shape[0]
    if cls_name == "BertForNextSentencePrediction":
        return {"labels": torch.tensor([1, 0, 1][:B])}
    task = "BertForMaskedLM" if cls_name == "BertForPreTraining" else cls_name  # the MLM labels, then NSP's
    labels = model_cases.labels_for(task, ids, (ids != 0).long(), num_labels, seed, problem)
    if cls_name == "BertForPreTraining":
        labels["next_sentence_label"] = torch.tensor([0, 1, 1][:B])
    return labels


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("cls_name", HEADS)
def test_every_head_matches_the_reference(tmp_path, cls_name, variant):
    ref, ours = make_pair(tmp_path, cls_name, **VARIANTS[variant])
    type_vocab = VARIANTS[variant].get("type_vocab_size", 2)
    for padding in (False, True):
        for token_types in (False, True):
            inputs = make_batch(cls_name, padding, token_types, type_vocab=type_vocab)
            with torch.no_grad():
                expected, got = ref(**inputs), ours(**inputs)
            assert_outputs_close(got, expected)
            if cls_name == "BertLMHeadModel":
                assert isinstance(got.past_key_values, DynamicCache) and got.past_key_values.get_seq_length() == 9


@pytest.mark.parametrize("cls_name", HEADS)
def test_losses_match_the_reference(tmp_path, cls_name):
    ref, ours = make_pair(tmp_path, cls_name, num_labels=3 if cls_name != "BertForQuestionAnswering" else 2)
    inputs = make_batch(cls_name)
    labels = labels_for(cls_name, inputs, num_labels=3)
    with torch.no_grad():
        expected, got = ref(**inputs, **labels), ours(**inputs, **labels)
    assert_outputs_close(got, expected)
    assert (got.get("loss") is None) == (cls_name == "BertModel")


@pytest.mark.parametrize("problem,num_labels", [("regression", 1), ("single", 4), ("multi", 4)])
def test_sequence_classification_problem_types(tmp_path, problem, num_labels):
    ref, ours = make_pair(tmp_path, "BertForSequenceClassification", num_labels=num_labels)
    inputs = make_batch()
    labels = labels_for("BertForSequenceClassification", inputs, num_labels, problem)
    model_cases.assert_head_close(ours, ref, inputs, labels)
    assert ours.config.problem_type == {"regression": "regression", "single": "single_label_classification",
                                        "multi": "multi_label_classification"}[problem]


def test_masked_lm_loss_ignores_minus_100(tmp_path):
    _, ours = make_pair(tmp_path, "BertForMaskedLM")
    inputs = make_batch()
    labels = torch.full_like(inputs["input_ids"], -100)
    labels[0, 2], labels[1, 4] = 7, 11
    with torch.no_grad():
        out = ours(**inputs, labels=labels)
    logits = out.logits
    manual = torch.nn.functional.cross_entropy(torch.stack([logits[0, 2], logits[1, 4]]), torch.tensor([7, 11]))
    assert_close(out.loss, manual)


def test_bf16_is_close_to_the_reference(tmp_path):
    ref, ours = make_pair(tmp_path, "BertForPreTraining", dtype=torch.bfloat16)
    assert ours.dtype == torch.bfloat16 and ours.bert.embeddings.word_embeddings.weight.dtype == torch.bfloat16
    inputs = make_batch("BertForPreTraining")
    with torch.no_grad():
        expected, got = ref(**inputs), ours(**inputs)
    for key in ("prediction_logits", "seq_relationship_logits"):
        assert got[key].dtype == torch.bfloat16
        scale = expected[key].float().abs().max().item()
        assert_close(got[key].float(), expected[key].float(), atol=2e-2 * scale, rtol=0)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_hidden_states_and_attentions_match_the_reference(tmp_path, attn):
    ref, ours = make_pair(tmp_path, "BertModel", attn=attn, num_hidden_layers=3)
    inputs = make_batch()
    with torch.no_grad():
        expected = ref(**inputs, output_hidden_states=True, output_attentions=True)
        got = ours(**inputs, output_hidden_states=True, output_attentions=True)
    assert list(got.keys()) == [k for k in expected.keys() if k != "cache"]
    assert len(got.hidden_states) == 4
    for a, b in zip(got.hidden_states, expected.hidden_states):
        assert a.shape == (3, 9, 24)
        assert_close(a, b, atol=1e-4, rtol=0)
    assert got.hidden_states[-1] is got.last_hidden_state
    assert len(got.attentions) == len(expected.attentions) == (3 if attn == "eager" else 0)  # sdpa: () as the reference
    assert got.cross_attentions == () == expected.cross_attentions
    for a, b in zip(got.attentions, expected.attentions):
        assert a.shape == (3, 3, 9, 9)
        assert_close(a, b, atol=1e-5, rtol=0)
        assert_close(a.sum(-1), torch.ones(3, 3, 9))
        assert a[2, :, :, 3:].max() < 1e-6  # padded keys get no weight
    # eager and sdpa agree on the outputs
    other_attn = "eager" if attn == "sdpa" else "sdpa"
    _, other = make_pair(tmp_path / "other", "BertModel", attn=other_attn, num_hidden_layers=3)
    with torch.no_grad():
        assert_close(other(**inputs).last_hidden_state, got.last_hidden_state, atol=1e-5, rtol=0)


def test_head_flags_return_dict_and_config_defaults(tmp_path):
    ref, ours = make_pair(tmp_path, "BertForSequenceClassification", attn="eager")
    inputs = make_batch()
    labels = labels_for("BertForSequenceClassification", inputs)
    with torch.no_grad():
        expected = ref(**inputs, **labels, output_hidden_states=True, output_attentions=True, return_dict=False)
        got = ours(**inputs, **labels, output_hidden_states=True, output_attentions=True, return_dict=False)
    assert isinstance(got, tuple) and len(got) == len(expected) == 4
    assert_close(got[0], expected[0], atol=1e-4, rtol=0)
    assert_close(got[1], expected[1], atol=1e-4, rtol=0)
    assert len(got[2]) == 3 and len(got[3]) == 2
    ours.config.output_hidden_states = True  # config defaults are honoured like the reference's
    ours.config.return_dict = False
    with torch.no_grad():
        out = ours(**inputs)
    assert isinstance(out, tuple) and len(out) == 2 and len(out[1]) == 3


def test_inputs_embeds_and_position_ids(tmp_path):
    ref, ours = make_pair(tmp_path, "BertForMaskedLM")
    inputs = make_batch()
    ids = inputs.pop("input_ids")
    embeds = ours.get_input_embeddings()(ids)  # (B, T, H)
    positions = torch.arange(9).flip(0)[None].expand(3, 9)
    with torch.no_grad():
        assert_outputs_close(ours(inputs_embeds=embeds, **inputs), ref(inputs_embeds=embeds, **inputs))
        assert_outputs_close(ours(ids, position_ids=positions, **inputs), ref(ids, position_ids=positions, **inputs))
    with pytest.raises(ValueError, match="exactly one"):
        ours(ids, inputs_embeds=embeds)


def test_causal_lm_left_padding_and_cached_decoding(tmp_path):
    """The decoder: full forwards match the reference (right and left padding; pad rows of left padding are
    garbage in both and skipped), and prefill + one token at a time with the cache equals the full forward."""
    ref, ours = make_pair(tmp_path, "BertLMHeadModel")
    inputs = make_batch(token_types=False)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    left_mask = mask.flip(-1)
    left_ids = ids.masked_fill(left_mask == 0, 0)
    positions = (left_mask.cumsum(-1) - 1).clamp(min=0)  # positions that follow the left padding
    with torch.no_grad():
        assert_outputs_close(ours(ids, attention_mask=mask), ref(ids, attention_mask=mask))
        got = ours(left_ids, attention_mask=left_mask, position_ids=positions).logits
        expected = ref(left_ids, attention_mask=left_mask, position_ids=positions).logits
        real = left_mask.bool()
        assert_close(got[real], expected[real], atol=1e-4, rtol=0)
        for attn in ("sdpa", "eager"):
            ours.config._attn_implementation = attn
            for batch_ids, batch_mask in ((ids[:1], None), (left_ids, left_mask)):
                kwargs = {} if batch_mask is None else {"attention_mask": batch_mask}
                pos = None if batch_mask is None else positions
                full = ours(batch_ids, position_ids=pos, **kwargs).logits  # (B, T, V)
                out = ours(batch_ids[:, :4], position_ids=None if pos is None else pos[:, :4],
                           **({} if batch_mask is None else {"attention_mask": batch_mask[:, :4]}))
                steps, cache = [out.logits], out.past_key_values
                for t in range(4, 9):
                    step_kwargs = {} if batch_mask is None else {"attention_mask": batch_mask[:, :t + 1]}
                    out = ours(batch_ids[:, t:t + 1], past_key_values=cache, use_cache=True,
                               position_ids=None if pos is None else pos[:, t:t + 1], **step_kwargs)
                    steps.append(out.logits)
                    assert out.past_key_values is cache and cache.get_seq_length() == t + 1
                stepped = torch.cat(steps, dim=1)
                keep = torch.ones_like(full[..., 0], dtype=torch.bool) if batch_mask is None else batch_mask.bool()
                assert_close(stepped[keep], full[keep], atol=1e-5, rtol=0)
        # labels: shifted next-token loss, and no cache is built for a training forward
        labels = labels_for("BertLMHeadModel", inputs)["labels"]
        got, expected = ours(ids, attention_mask=mask, labels=labels), ref(ids, attention_mask=mask, labels=labels)
        assert_close(got.loss, expected.loss, atol=1e-5, rtol=0)
        assert got.past_key_values is None
        assert ours(ids, logits_to_keep=1).logits.shape == (3, 1, 99)
        assert ours(ids, cache=DynamicCache()).past_key_values.get_seq_length() == 9  # the 5.24 keyword


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_cross_attention_matches_the_reference(tmp_path, attn):
    ref, ours = make_pair(tmp_path, "BertLMHeadModel", attn=attn, add_cross_attention=True)
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
    for a, b in zip(got.cross_attentions + got.attentions, expected.cross_attentions + expected.attentions):
        assert_close(a, b, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="cross-attention"):
        make_pair(tmp_path / "plain", "BertLMHeadModel")[1](**inputs, encoder_hidden_states=encoder_states)


def test_training_step_lowers_the_loss_and_reaches_the_embeddings():
    torch.manual_seed(0)
    config = BertConfig(**TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = bert.BertForMaskedLM(config)
    assert model.training
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    assert model.cls.predictions.decoder.bias is model.cls.predictions.bias
    assert torch.count_nonzero(model.cls.predictions.bias) == 0
    inputs = make_batch()
    labels = labels_for("BertForMaskedLM", inputs)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(5):
        loss = model(**inputs, **labels).loss
        optimizer.zero_grad()
        loss.backward()
        losses.append(loss.item())
        grad = model.bert.embeddings.word_embeddings.weight.grad
        assert grad is not None and grad.abs().sum() > 0
        optimizer.step()
    assert losses[-1] < losses[0]
    # dropout is active in train mode (outputs vary) and off in eval mode
    noisy = bert.BertModel(BertConfig(**TINY, hidden_dropout_prob=0.5))
    x = make_batch()["input_ids"]
    assert not torch.equal(noisy(x).last_hidden_state, noisy(x).last_hidden_state)
    noisy.eval()
    assert torch.equal(noisy(x).last_hidden_state, noisy(x).last_hidden_state)


@pytest.mark.parametrize("act", ["gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "quick_gelu", "relu", "silu",
                                 "swish", "gelu_python", "gelu_accurate", "mish", "tanh", "linear", "relu2"])
def test_activations_match_the_reference(act):
    from transformers.activations import ACT2FN as REFERENCE

    from autoload.nn.activations import get_activation
    x = torch.linspace(-6, 6, 1001)
    assert_close(get_activation(act)(x), REFERENCE[act](x), atol=1e-6, rtol=0)


def test_unknown_activation_is_a_clear_error():
    with pytest.raises(KeyError, match="Did you mean 'gelu_new'"):
        bert.BertModel(BertConfig(**{**TINY, "hidden_act": "gelu_nwe"}))
