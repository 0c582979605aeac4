"""BERT loading and saving against the reference: base-model prefixes both ways with the same missing/unexpected
report, legacy `.bin` checkpoints (LayerNorm gamma/beta, position_ids buffer, untied decoder copies), num_labels
changes with ignore_mismatched_sizes, the real all-MiniLM-L6-v2 weights, autoload save -> transformers load, the
Auto classes, tying and init."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from torch.testing import assert_close

import autoload
from autoload.models import bert
from autoload.models.configs import BertConfig
from autoload.registry.table import MODEL_TYPES
from model_cases import assert_outputs_close
from test_models_bert import TINY, make_batch, make_pair, perturb_

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()


def reference_info(cls_name, folder, **kwargs):
    _, info = getattr(transformers, cls_name).from_pretrained(folder, output_loading_info=True, **kwargs)
    return {k: set(info[k]) for k in ("missing_keys", "unexpected_keys")}


def our_info(cls_name, folder, **kwargs):
    model, info = getattr(bert, cls_name).from_pretrained(folder, output_loading_info=True, **kwargs)
    return model, {k: set(info[k]) for k in ("missing_keys", "unexpected_keys")}


def test_head_checkpoint_into_the_base_model(tmp_path):
    ref, _ = make_pair(tmp_path, "BertForMaskedLM")
    ours, info = our_info("BertModel", tmp_path)
    assert info == reference_info("BertModel", tmp_path)
    assert info["missing_keys"] == {"pooler.dense.weight", "pooler.dense.bias"}
    assert info["unexpected_keys"] == {"cls.predictions.bias", "cls.predictions.transform.dense.weight",
                                       "cls.predictions.transform.dense.bias",
                                       "cls.predictions.transform.LayerNorm.weight",
                                       "cls.predictions.transform.LayerNorm.bias"}
    inputs = make_batch()
    with torch.no_grad():
        assert_close(ours(**inputs).last_hidden_state, ref.bert(**inputs).last_hidden_state, atol=1e-4, rtol=0)
    assert ours.pooler.dense.weight.device.type == "cpu" and ours.pooler.dense.weight.std() < 0.05  # fresh init


def test_base_checkpoint_into_a_head_model(tmp_path):
    ref, _ = make_pair(tmp_path, "BertModel")
    ours, info = our_info("BertForSequenceClassification", tmp_path, num_labels=3)
    assert info == reference_info("BertForSequenceClassification", tmp_path, num_labels=3)
    assert info == {"missing_keys": {"classifier.weight", "classifier.bias"}, "unexpected_keys": set()}
    inputs = make_batch()
    with torch.no_grad():
        expected = ref(**inputs)
        got = ours.bert(**inputs)
        assert_close(got.pooler_output, expected.pooler_output, atol=1e-4, rtol=0)
        logits = ours(**inputs).logits
    assert_close(logits, ours.classifier(expected.pooler_output), atol=1e-4, rtol=0)
    assert torch.count_nonzero(ours.classifier.bias) == 0  # initialised the reference's way


@pytest.mark.parametrize("keep_decoder_copies", [False, True])
def test_legacy_bin_checkpoint_with_gamma_beta(tmp_path, keep_decoder_copies):
    """An old-style pytorch_model.bin: LayerNorm.gamma/beta, the persistent position_ids buffer, and (in the
    oldest files) the decoder's own copies of the tied weights."""
    ref, _ = make_pair(tmp_path / "fresh", "BertForPreTraining")
    state = {}
    for key, tensor in ref.state_dict().items():
        if not keep_decoder_copies and key.startswith("cls.predictions.decoder."):
            continue
        key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        state[key] = tensor.clone()
    state["bert.embeddings.position_ids"] = torch.arange(40)[None]
    assert any(k.endswith("LayerNorm.gamma") for k in state)
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    torch.save(state, legacy / "pytorch_model.bin")
    config = json.loads((tmp_path / "fresh" / "config.json").read_text())
    config.pop("dtype", None)
    (legacy / "config.json").write_text(json.dumps(config))
    ours, info = our_info("BertForPreTraining", legacy)
    assert info == {"missing_keys": set(), "unexpected_keys": set()}
    assert info == reference_info("BertForPreTraining", legacy)
    assert ours.cls.predictions.decoder.weight is ours.bert.embeddings.word_embeddings.weight
    inputs = make_batch()
    with torch.no_grad():
        assert_outputs_close(ours(**inputs), ref(**inputs))
    # the same file into the bare model: prefix stripped, renamed, heads reported unexpected
    base, base_info = our_info("BertModel", legacy)
    # the report names unexpected keys as the file spells them (the reference: after the gamma/beta rename)
    renamed = {k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
               for k in base_info["unexpected_keys"]}
    assert {**base_info, "unexpected_keys": renamed} == reference_info("BertModel", legacy)
    with torch.no_grad():
        assert_close(base(**inputs).pooler_output, ref.bert(**inputs).pooler_output, atol=1e-4, rtol=0)


def test_num_labels_change_needs_ignore_mismatched_sizes(tmp_path):
    ref, _ = make_pair(tmp_path, "BertForSequenceClassification")  # 2 labels
    with pytest.raises(ValueError, match="ignore_mismatched_sizes"):
        bert.BertForSequenceClassification.from_pretrained(tmp_path, num_labels=5)
    ours, info = bert.BertForSequenceClassification.from_pretrained(tmp_path, num_labels=5,
                                                                   ignore_mismatched_sizes=True,
                                                                   output_loading_info=True)
    assert {k for k, _, _ in info["mismatched_keys"]} == {"classifier.weight", "classifier.bias"}
    assert dict((k, (c, m)) for k, c, m in info["mismatched_keys"])["classifier.weight"] == ((2, 24), (5, 24))
    inputs = make_batch()
    with torch.no_grad():
        assert ours(**inputs).logits.shape == (3, 5)
        assert_close(ours.bert(**inputs).pooler_output, ref.bert(**inputs).pooler_output, atol=1e-4, rtol=0)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_real_minilm_weights_match_the_reference(attn, minilm_dir):
    folder = minilm_dir
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    sentences = ["This is an example sentence.", "Each sentence is converted",
                 "A considerably longer sentence, with punctuation; it forces the others to be padded a lot more!",
                 "Ünïcödé and numbers 12345 too"]
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    assert batch["attention_mask"].min() == 0  # padding is exercised
    ref = transformers.BertModel.from_pretrained(folder, attn_implementation=attn).eval()
    ours = autoload.AutoModel.from_pretrained(folder, attn_implementation=attn)
    assert type(ours) is bert.BertModel and ours.dtype == torch.float32
    with torch.no_grad():
        expected, got = ref(**batch), ours(**batch)
    assert_close(got.last_hidden_state, expected.last_hidden_state, atol=1e-4, rtol=0)
    assert_close(got.pooler_output, expected.pooler_output, atol=1e-4, rtol=0)
    # sentence-transformers' mean pooling of the real tokens agrees too
    mask = batch["attention_mask"][..., None].float()
    mean = (got.last_hidden_state * mask).sum(1) / mask.sum(1)
    assert_close(mean, (expected.last_hidden_state * mask).sum(1) / mask.sum(1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("cls_name", ["BertForMaskedLM", "BertForSequenceClassification", "BertLMHeadModel"])
def test_autoload_save_then_transformers_load(tmp_path, cls_name):
    ref, ours = make_pair(tmp_path / "src", cls_name)
    ours.save_pretrained(tmp_path / "saved")
    again, info = getattr(transformers, cls_name).from_pretrained(tmp_path / "saved", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    inputs = make_batch(token_types=False)
    with torch.no_grad():
        assert_outputs_close(ours(**inputs), again.eval()(**inputs), atol=0)
        assert_outputs_close(ours(**inputs), ref(**inputs))


def test_fresh_model_saved_by_autoload_loads_in_transformers(tmp_path):
    """A model built from a config (autoload's own init and tying) saves only the tie source, as the reference."""
    torch.manual_seed(0)
    ours = bert.BertForPreTraining(BertConfig(**TINY)).eval()
    perturb_(ours)
    ours.save_pretrained(tmp_path)
    from safetensors import safe_open
    with safe_open(tmp_path / "model.safetensors", framework="pt") as f:
        keys = set(f.keys())
    assert "cls.predictions.bias" in keys and "cls.predictions.decoder.weight" not in keys
    assert "cls.predictions.decoder.bias" not in keys and "bert.embeddings.position_ids" not in keys
    ref = transformers.BertForPreTraining.from_pretrained(tmp_path).eval()
    inputs = make_batch()
    with torch.no_grad():
        assert_outputs_close(ours(**inputs), ref(**inputs), atol=0)


def test_init_matches_the_reference_scheme():
    torch.manual_seed(0)
    model = bert.BertForPreTraining(BertConfig(**{**TINY, "hidden_size": 64, "num_attention_heads": 4}))
    assert torch.count_nonzero(model.cls.predictions.bias) == 0
    assert torch.count_nonzero(model.bert.embeddings.word_embeddings.weight[0]) == 0  # padding row
    for name, p in model.named_parameters():
        if "LayerNorm.weight" in name:
            assert torch.all(p == 1), name
        elif name.endswith(".bias"):
            assert torch.count_nonzero(p) == 0, name
        elif p.dim() == 2 and p.numel() > 1000:
            assert 0.015 < p.std().item() < 0.025, name


@pytest.mark.parametrize("auto_name", sorted(MODEL_TYPES["bert"]["tasks"]))
def test_auto_classes_resolve_to_the_bert_classes(tmp_path, auto_name):
    expected_name = MODEL_TYPES["bert"]["tasks"][auto_name].rpartition(":")[2]
    ref_cls = "BertLMHeadModel" if expected_name == "BertLMHeadModel" else "BertForMaskedLM"
    ref, _ = make_pair(tmp_path, ref_cls)
    model = getattr(autoload, auto_name).from_pretrained(tmp_path)
    assert type(model).__name__ == expected_name and not model.training
    inputs = make_batch(token_types=False)
    with torch.no_grad():  # every head shares the backbone loaded from the same checkpoint
        assert_close(model.bert(**inputs).last_hidden_state if hasattr(model, "bert") else
                     model(**inputs).last_hidden_state, ref.bert(**inputs).last_hidden_state, atol=1e-4, rtol=0)
        if auto_name in ("AutoModelForMaskedLM", "AutoModelForCausalLM"):
            assert_outputs_close(model(**inputs), ref(**inputs))


def test_tying_and_embedding_accessors(tmp_path):
    _, ours = make_pair(tmp_path, "BertForMaskedLM")
    words = ours.bert.embeddings.word_embeddings
    assert ours.get_input_embeddings() is words
    assert ours.get_output_embeddings() is ours.cls.predictions.decoder
    assert ours.cls.predictions.decoder.weight is words.weight
    assert ours.cls.predictions.decoder.bias is ours.cls.predictions.bias
    assert bert.BertForSequenceClassification(BertConfig(**TINY)).get_output_embeddings() is None
    new = torch.nn.Embedding(99, 24)
    ours.set_input_embeddings(new)
    assert ours.bert.embeddings.word_embeddings is new and ours.get_input_embeddings() is new
    # tie_word_embeddings=False: decoder weight and bias are their own parameters, loaded from the checkpoint
    ref, untied = make_pair(tmp_path / "untied", "BertForMaskedLM", tie_word_embeddings=False)
    assert untied.cls.predictions.decoder.weight is not untied.bert.embeddings.word_embeddings.weight
    assert untied.cls.predictions.decoder.bias is not untied.cls.predictions.bias
    with torch.no_grad():
        assert_outputs_close(untied(**make_batch()), ref(**make_batch()))


def test_bf16_checkpoint_loads_as_bf16_with_auto_dtype(tmp_path):
    torch.manual_seed(0)
    transformers.BertForMaskedLM(transformers.BertConfig(**TINY)).to(torch.bfloat16).save_pretrained(tmp_path)
    ours = bert.BertForMaskedLM.from_pretrained(tmp_path)
    assert ours.dtype == torch.bfloat16
    assert ours.bert.embeddings.position_ids.dtype == torch.long  # buffers keep their integer dtype
    with torch.no_grad():
        assert ours(**make_batch()).logits.dtype == torch.bfloat16
    assert bert.BertForMaskedLM.from_pretrained(tmp_path, dtype=torch.float32).dtype == torch.float32


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_cuda_matches_the_cpu_reference(tmp_path, dtype, attn):
    ref, _ = make_pair(tmp_path, "BertForPreTraining")
    ours = bert.BertForPreTraining.from_pretrained(tmp_path, device_map="cuda", dtype=dtype, attn_implementation=attn)
    assert ours.device.type == "cuda" and ours.dtype == dtype
    assert ours.bert.embeddings.position_ids.device.type == "cuda"
    inputs = make_batch("BertForPreTraining")
    with torch.no_grad():
        expected = ref(**inputs)
        got = ours(**{k: v.cuda() for k, v in inputs.items()})
    for key in ("prediction_logits", "seq_relationship_logits"):
        scale = expected[key].abs().max().item()
        atol = 1e-3 * scale if dtype == torch.float32 else 3e-2 * scale  # TF32 / half precision
        assert_close(got[key].float().cpu(), expected[key], atol=atol, rtol=0)
