"""Config flags passed through from_pretrained (keywords that update the config) behave as the reference's: none is
silently dropped. Each flag is compared with transformers on one tiny random checkpoint loaded by both libraries."""

from __future__ import annotations

import pytest
import torch
import transformers
from torch.testing import assert_close

import autoload
from autoload.models.configs import LlamaConfig

LLAMA = dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0)
BERT = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
GPT2 = dict(vocab_size=99, n_embd=32, n_layer=2, n_head=4, bos_token_id=1, eos_token_id=2)
IDS = torch.tensor([[5, 17, 42, 8, 3, 61], [9, 4, 77, 23, 0, 0]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """model class name -> a folder saved by the reference (the bare backbones for the heads built from them)."""
    out = {}
    for name, config in (("LlamaForCausalLM", transformers.LlamaConfig(**LLAMA)),
                         ("LlamaModel", transformers.LlamaConfig(**LLAMA)),
                         ("BertModel", transformers.BertConfig(**BERT)),
                         ("GPT2LMHeadModel", transformers.GPT2Config(**GPT2))):
        torch.manual_seed(0)
        out[name] = tmp_path_factory.mktemp(name)
        getattr(transformers, name)(config).save_pretrained(out[name])
    return out


def load_both(folder, name: str, **kwargs):
    torch.manual_seed(1)  # heads missing from the checkpoint draw the same numbers (see test_init_parity.py)
    ref = getattr(transformers, name).from_pretrained(folder, **kwargs)
    torch.manual_seed(1)
    ours = getattr(autoload, name).from_pretrained(folder, **kwargs)
    return ref, ours


@pytest.mark.parametrize("name,source", [("LlamaForCausalLM", "LlamaForCausalLM"), ("BertModel", "BertModel"),
                                         ("GPT2LMHeadModel", "GPT2LMHeadModel")])
def test_output_attentions_at_load_switches_to_eager(folders, name, source):
    ref, ours = load_both(folders[source], name, output_attentions=True)
    assert ref.config._attn_implementation == ours.config._attn_implementation == "eager"
    r, o = ref(IDS, attention_mask=MASK), ours(IDS, attention_mask=MASK)
    assert len(o.attentions) == len(r.attentions) == 2
    for got, want in zip(o.attentions, r.attentions):
        assert_close(got[MASK.bool()[:, None, :, None].expand_as(got)], want[MASK.bool()[:, None, :, None].expand_as(want)],
                     atol=1e-4, rtol=1e-4)


def test_output_attentions_through_a_config(folders):
    """A config whose output_attentions was set (keyword or attribute) loads and builds eager models, as the
    reference; a value read from config.json does not switch (nor in the reference)."""
    folder = folders["LlamaForCausalLM"]
    ref_config = transformers.AutoConfig.from_pretrained(folder, output_attentions=True)
    our_config = autoload.AutoConfig.from_pretrained(folder, output_attentions=True)
    assert ref_config._attn_implementation == our_config._attn_implementation == "eager"
    ours = autoload.LlamaForCausalLM.from_pretrained(folder, config=our_config)
    assert len(ours(IDS).attentions) == 2
    config = LlamaConfig(**LLAMA)
    config.output_attentions = True
    assert len(autoload.LlamaForCausalLM(config)(IDS).attentions) == 2
    reference = transformers.LlamaConfig(**LLAMA)
    reference.output_attentions = True
    assert reference._attn_implementation == config._attn_implementation


def test_output_attentions_with_sdpa_is_refused_as_by_the_reference(folders):
    folder = folders["LlamaForCausalLM"]
    with pytest.raises(Exception, match="output_attentions"):
        transformers.LlamaForCausalLM.from_pretrained(folder, output_attentions=True, attn_implementation="sdpa")
    with pytest.raises(ValueError, match="output_attentions"):
        autoload.LlamaForCausalLM.from_pretrained(folder, output_attentions=True, attn_implementation="sdpa")


def test_output_attentions_at_call_time_on_sdpa_matches_the_reference(folders):
    """Asked for at call time on an sdpa model, the reference returns an empty tuple; so does autoload."""
    ref, ours = load_both(folders["LlamaForCausalLM"], "LlamaForCausalLM")
    assert tuple(ref(IDS, output_attentions=True).attentions) == tuple(ours(IDS, output_attentions=True).attentions) == ()


@pytest.mark.parametrize("name,source", [("LlamaForCausalLM", "LlamaForCausalLM"), ("BertModel", "BertModel")])
def test_output_hidden_states(folders, name, source):
    ref, ours = load_both(folders[source], name, output_hidden_states=True)
    r, o = ref(IDS), ours(IDS)
    assert len(o.hidden_states) == len(r.hidden_states) == 3
    for got, want in zip(o.hidden_states, r.hidden_states):
        assert_close(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["LlamaForCausalLM", "GPT2LMHeadModel"])
def test_use_cache(folders, name):
    for use_cache in (False, True):
        ref, ours = load_both(folders[name], name, use_cache=use_cache)
        assert (ref(IDS).past_key_values is None) == (ours(IDS).past_key_values is None) == (not use_cache)
        assert ours.config.use_cache is ref.config.use_cache is use_cache


def test_return_dict_false(folders):
    ref, ours = load_both(folders["BertModel"], "BertForSequenceClassification", return_dict=False)
    r, o = ref(IDS, attention_mask=MASK), ours(IDS, attention_mask=MASK)
    assert isinstance(r, tuple) and isinstance(o, tuple) and len(r) == len(o)
    assert_close(o[0], r[0], atol=1e-4, rtol=1e-4)


def test_num_labels_id2label_and_problem_type(folders):
    id2label = {0: "neg", 1: "mid", 2: "pos"}
    ref, ours = load_both(folders["BertModel"], "BertForSequenceClassification", id2label=id2label,
                          label2id={v: k for k, v in id2label.items()}, problem_type="multi_label_classification")
    assert ours.config.num_labels == ref.config.num_labels == 3
    assert ours.config.id2label == ref.config.id2label and ours.config.label2id == ref.config.label2id
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    r, o = ref(IDS, attention_mask=MASK, labels=labels), ours(IDS, attention_mask=MASK, labels=labels)
    assert_close(o.logits, r.logits, atol=1e-4, rtol=1e-4)
    assert_close(o.loss, r.loss, atol=1e-4, rtol=1e-4)  # BCE: the problem_type reached the loss
    ref, ours = load_both(folders["BertModel"], "BertForSequenceClassification", num_labels=5)
    assert ours.config.num_labels == ref.config.num_labels == 5
    assert ours(IDS).logits.shape == ref(IDS).logits.shape == (2, 5)
    assert ours.config.id2label == ref.config.id2label


def test_pad_token_id_reaches_the_pooling(folders):
    """Sequence classification on a decoder pools the last non-pad token: the pad id given at load decides it."""
    ids = torch.tensor([[5, 17, 42, 7, 7], [9, 4, 77, 23, 61]])
    ref, ours = load_both(folders["LlamaModel"], "LlamaForSequenceClassification", pad_token_id=7, num_labels=2)
    assert ours.config.pad_token_id == ref.config.pad_token_id == 7
    assert_close(ours(ids).logits, ref(ids).logits, atol=1e-4, rtol=1e-4)


def test_tie_word_embeddings(folders):
    for tie in (True, False):
        ref, ours = load_both(folders["GPT2LMHeadModel"], "GPT2LMHeadModel", tie_word_embeddings=tie)
        ref_tied = ref.lm_head.weight.data_ptr() == ref.transformer.wte.weight.data_ptr()
        our_tied = ours.lm_head.weight.data_ptr() == ours.transformer.wte.weight.data_ptr()
        assert ref_tied == our_tied == tie
        assert ours.config.tie_word_embeddings is ref.config.tie_word_embeddings is tie


def test_attn_implementation(folders):
    for attn in ("eager", "sdpa"):
        ref, ours = load_both(folders["LlamaForCausalLM"], "LlamaForCausalLM", attn_implementation=attn)
        assert ours.config._attn_implementation == ref.config._attn_implementation == attn
        assert_close(ours(IDS, attention_mask=MASK).logits[MASK.bool()], ref(IDS, attention_mask=MASK).logits[MASK.bool()],
                     atol=1e-4, rtol=1e-4)


def test_an_unknown_keyword_is_an_error_not_a_silent_drop(folders):
    with pytest.raises((TypeError, ValueError), match="output_attention"):
        autoload.LlamaForCausalLM.from_pretrained(folders["LlamaForCausalLM"], output_attention=True)


def test_subfolder_is_read_not_dropped(folders, tmp_path):
    """from_pretrained(folder, subfolder=...) loads the model under the subfolder (it used to be dropped, which
    silently loaded whatever the top level held)."""
    import shutil
    shutil.copytree(folders["LlamaForCausalLM"], tmp_path / "text_model")
    shutil.copytree(folders["GPT2LMHeadModel"], tmp_path, dirs_exist_ok=True)  # another model at the top level
    ref = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, subfolder="text_model")
    ours = autoload.AutoModelForCausalLM.from_pretrained(tmp_path, subfolder="text_model")
    assert type(ours).__name__ == type(ref).__name__ == "LlamaForCausalLM"
    assert_close(ours(IDS).logits, ref(IDS).logits, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="subfolder"):
        autoload.LlamaForCausalLM.from_pretrained("org/not-local", subfolder="text_model", local_files_only=True)


@pytest.mark.parametrize("overrides", [
    {"rope_parameters": {"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0}}, {"rms_norm_eps": 0.5},
    {"hidden_act": "gelu"}, {"max_position_embeddings": 16}, {"attention_dropout": 0.0}])
def test_architecture_keywords_reach_the_model(folders, overrides):
    """Keywords that change the computation reach it: the logits are the reference's under the same keywords."""
    ids = torch.randint(1, 99, (1, 40), generator=torch.Generator().manual_seed(0))
    ref, ours = load_both(folders["LlamaForCausalLM"], "LlamaForCausalLM", **overrides)
    assert_close(ours(ids).logits, ref(ids).logits, atol=1e-4, rtol=1e-4)
    for key, value in overrides.items():
        assert getattr(ours.config, key) == getattr(ref.config, key) == value


def test_dropout_keywords_reach_training(folders):
    """hidden/attention/classifier dropout given at load: the same seeded train-mode logits as the reference."""
    for overrides in ({}, {"hidden_dropout_prob": 0.3, "attention_probs_dropout_prob": 0.0, "classifier_dropout": 0.5}):
        ref, ours = load_both(folders["BertModel"], "BertForSequenceClassification", **overrides)
        outputs = []
        for model in (ref.train(), ours.train()):
            torch.manual_seed(4)
            outputs.append(model(IDS, attention_mask=MASK).logits)
        assert_close(outputs[1], outputs[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["GPT2LMHeadModel", "BertModel"])
def test_output_hidden_states_other_families(folders, name):
    ref, ours = load_both(folders[name], name, output_hidden_states=True, use_cache=False)
    r, o = ref(IDS), ours(IDS)
    assert len(o.hidden_states) == len(r.hidden_states)
    assert_close(o.hidden_states[-1], r.hidden_states[-1], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name,source,overrides", [
    ("BertLMHeadModel", "BertModel", {"is_decoder": True}), ("BertLMHeadModel", "BertModel", {"is_decoder": False}),
    ("GPT2LMHeadModel", "GPT2LMHeadModel", {"scale_attn_by_inverse_layer_idx": True}),
    ("GPT2LMHeadModel", "GPT2LMHeadModel", {"reorder_and_upcast_attn": True}),
    ("GPT2LMHeadModel", "GPT2LMHeadModel", {"scale_attn_weights": False}),
    ("GPT2LMHeadModel", "GPT2LMHeadModel", {"activation_function": "relu", "layer_norm_epsilon": 0.5})])
def test_family_keywords_reach_the_model(folders, name, source, overrides):
    ref, ours = load_both(folders[source], name, **overrides)
    assert_close(ours(IDS).logits, ref(IDS).logits, atol=1e-4, rtol=1e-4)
    for key, value in overrides.items():
        assert getattr(ours.config, key) == getattr(ref.config, key) == value
