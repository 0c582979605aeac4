"""`autoload.pipeline` against `transformers.pipeline` (test-only oracle) on the same tiny checkpoints saved by
transformers: fill-mask with the real bert-base-chinese vocabulary, feature-extraction, sentence-embeddings on
the real all-MiniLM-L6-v2, text- and token-classification (every aggregation strategy), text-generation; batching
equals one-by-one; the error messages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from torch.nn import functional as F

import autoload
from autoload.pipelines import pipeline

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
            max_position_embeddings=128, initializer_range=0.5)  # wide init: peaked, well-separated scores
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
ZH = ["巴黎是[MASK]国的首都。", "北京是中国的[MASK]都，人口很多。", "[MASK]天天气很好", "我爱[MASK][MASK]。"]
EN = ["Sarah Connor lives in Zurichberg with the Huggingface transformers.", "Hello world",
      "Angela Merkel visited Washington yesterday, and [weird] tokens!", "the unaffable Königsberger went home"]


def save_tiny(folder: Path, cls_name: str, tokenizer: Path, seed: int = 0, **config) -> Path:
    """A random transformers model and a tokenizer: `tokenizer` is the real bert-base-chinese vocab.txt (the
    chinese_vocab fixture) or the all-MiniLM-L6-v2 folder (minilm_dir), whose tokenizer files are copied."""
    torch.manual_seed(seed)
    zh = tokenizer.name == "vocab.txt"
    vocab_size = 21128 if zh else 30522
    make_config = transformers.LlamaConfig if cls_name.startswith("Llama") else transformers.BertConfig
    model = getattr(transformers, cls_name)(make_config(vocab_size=vocab_size, **{**TINY, **config}))
    model.save_pretrained(folder)
    if zh:
        transformers.BertTokenizer(str(tokenizer), do_lower_case=False).save_pretrained(folder)
    else:
        for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
            shutil.copy(tokenizer / name, folder / name)
    return folder


def assert_same(ours, ref, atol=1e-5, path="result"):
    """Equal structure, keys and values; floats (and numpy scalars) within atol."""
    if hasattr(ref, "item") and not hasattr(ref, "shape") or type(ref).__module__ == "numpy":
        ref = ref.item()
    if isinstance(ref, float):
        assert isinstance(ours, float) and abs(ours - ref) <= atol, f"{path}: {ours} != {ref}"
    elif isinstance(ref, dict):
        assert isinstance(ours, dict) and list(ours) == list(ref), f"{path}: keys {list(ours)} != {list(ref)}"
        for key in ref:
            assert_same(ours[key], ref[key], atol, f"{path}[{key!r}]")
    elif isinstance(ref, (list, tuple)):
        assert isinstance(ours, list) and len(ours) == len(ref), f"{path}: {ours!r} != {ref!r}"
        for i, (a, b) in enumerate(zip(ours, ref)):
            assert_same(a, b, atol, f"{path}[{i}]")
    else:
        assert ours == ref, f"{path}: {ours!r} != {ref!r}"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (on a busy 2-core machine, 2 threads make a 32x32 matmul ~1000x
    slower); restored afterwards for the other test files."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def mlm(tmp_path_factory, chinese_vocab):
    folder = save_tiny(tmp_path_factory.mktemp("mlm"), "BertForMaskedLM", chinese_vocab)
    return pipeline("fill-mask", folder), transformers.pipeline("fill-mask", model=str(folder))


@pytest.fixture(scope="module")
def tagger(tmp_path_factory, minilm_dir):
    folder = save_tiny(tmp_path_factory.mktemp("ner"), "BertForTokenClassification", minilm_dir, initializer_range=0.3,
                       id2label=dict(enumerate(NER_LABELS)), label2id={k: i for i, k in enumerate(NER_LABELS)})
    return pipeline("ner", folder), transformers.pipeline("ner", model=str(folder))


# -- fill-mask ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ZH[:2] + ZH[3:], ids=["one_mask", "mask_mid", "two_masks"])
@pytest.mark.parametrize("top_k", [1, 5])
def test_fill_mask_equals_the_reference(mlm, text, top_k):
    ours, ref = mlm
    assert_same(ours(text, top_k=top_k), ref(text, top_k=top_k))


def test_fill_mask_lists_targets_and_batches(mlm):
    ours, ref = mlm
    assert_same(ours(ZH, top_k=3), ref(ZH, top_k=3))  # a list with a two-mask input: list of (list of) lists
    assert_same(ours(ZH[:1]), ref(ZH[:1]))  # a one-item list gives that item's result, as the reference
    assert_same(ours(ZH[0], targets=["法", "英", "德国"]), ref(ZH[0], targets=["法", "英", "德国"]))
    assert len(ours(ZH[0], targets=["法", "英"], top_k=5)) == 2
    one_by_one = [ours(text, top_k=4) for text in ZH]
    assert_same(ours(ZH, top_k=4, batch_size=3), one_by_one)
    assert_same(ours(ZH * 10, top_k=4, batch_size=8, progress=False), one_by_one * 10)


def test_fill_mask_projects_only_the_masked_positions(mlm):
    ours, _ = mlm
    rows = []
    hook = ours.model.cls.predictions.decoder.register_forward_hook(lambda m, i, o: rows.append(i[0].shape))
    try:
        ours(ZH, top_k=2)
    finally:
        hook.remove()
    assert rows == [torch.Size([5, 32])]  # 5 masks in 4 texts (one batch of 8): (M, H), not (B, T, H)


def test_fill_mask_errors(mlm, tmp_path, chinese_vocab):
    ours, _ = mlm
    with pytest.raises(ValueError, match=r"No mask token \(\[MASK\]\) in the input '巴黎是法国的首都。'"):
        ours(["巴黎是法国的首都。"])
    with pytest.raises(TypeError, match="did you mean 'top_k'"):
        ours(ZH[0], topk=3)
    with pytest.raises(ValueError, match="top_k must be a positive int"):
        ours(ZH[0], top_k=0)
    classifier = autoload.AutoModelForSequenceClassification.from_pretrained(
        save_tiny(tmp_path, "BertForSequenceClassification", chinese_vocab))
    with pytest.raises(ValueError, match="no masked-language-model head.*AutoModelForMaskedLM"):
        pipeline("fill-mask", classifier)
    with pytest.raises(ValueError, match="Did you mean 'fill-mask'.*Supported tasks: feature-extraction"):
        pipeline("fill_mask", tmp_path)
    with pytest.raises(ValueError, match="needs model="):
        pipeline("fill-mask")


def test_a_loaded_model_takes_its_tokenizer_from_its_folder(mlm):
    ours, ref = mlm
    again = pipeline("fill-mask", ours.model, device="cpu", dtype=torch.float32, top_k=2)
    assert again.model is ours.model and again.defaults["top_k"] == 2
    assert_same(again(ZH[0]), ref(ZH[0], top_k=2))
    assert_same(again(ZH[0], top_k=3), ref(ZH[0], top_k=3))  # a call's option overrides the pipeline's


# -- feature-extraction and sentence-embeddings --------------------------------------------------------------

def test_feature_extraction_equals_the_reference(tmp_path, chinese_vocab):
    folder = save_tiny(tmp_path, "BertForMaskedLM", chinese_vocab)  # AutoModel takes the encoder of a head checkpoint
    ours, ref = pipeline("feature-extraction", folder), transformers.pipeline("feature-extraction", model=str(folder))
    texts = ["巴黎是法国的首都。", "你好", "北京是中国的首都，人口很多。"]
    assert_same(ours(texts[0]), ref(texts[0]), atol=1e-4)
    assert_same(ours(texts, batch_size=3), [ref(t) for t in texts], atol=1e-4)  # batch padding is removed
    tensor = ours(texts[1], return_tensors=True)
    assert tensor.shape == (1, 4, 32) and torch.allclose(tensor, torch.tensor(ref(texts[1])), atol=1e-4)
    head = autoload.AutoModelForMaskedLM.from_pretrained(folder)  # a head model passed in: its encoder's states
    assert_same(pipeline("feature-extraction", head, tokenizer=str(folder))(texts[0]), ref(texts[0]), atol=1e-4)


def test_sentence_embeddings_follow_minilm_files(minilm_dir):
    ours = pipeline("sentence-embeddings", minilm_dir)
    assert ours.setup.found and ours.setup.pooling == ["mean"] and ours.setup.normalize
    assert ours.max_length == 256  # sentence_bert_config.json
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply today.",
             "Someone is having a meal."]
    got = ours(texts)
    assert got.shape == (4, 384) and got.dtype == torch.float32

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(minilm_dir))
    model = transformers.AutoModel.from_pretrained(str(minilm_dir)).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state  # (B, T, H)
    mask = batch["attention_mask"][..., None].float()
    expected = F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours(texts[0]), expected[0], atol=1e-5, rtol=0)  # one text: a (D,) vector

    cosine = got @ got.T
    assert cosine[0, 1] > cosine[0, 2] and cosine[0, 3] > cosine[0, 2] and cosine[1, 3] > cosine[1, 2]
    raw = ours(texts, normalize=False)
    torch.testing.assert_close(F.normalize(raw, dim=-1), expected, atol=1e-5, rtol=0)
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(4), atol=1e-3)
    torch.testing.assert_close(ours(texts, pooling="cls", normalize=False), hidden[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(ours(texts, batch_size=1), got, atol=1e-5, rtol=0)


def test_sentence_embeddings_pooling_dense_and_fallback(tmp_path, chinese_vocab):
    plain = save_tiny(tmp_path / "plain", "BertModel", chinese_vocab)
    texts = ["你好", "北京是中国的首都，人口很多。"]
    model = transformers.BertModel.from_pretrained(str(plain)).eval()
    batch = transformers.AutoTokenizer.from_pretrained(str(plain))(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state  # (B, T, H)
    mask = batch["attention_mask"][..., None].float()
    mean = (hidden * mask).sum(1) / mask.sum(1)
    torch.testing.assert_close(pipeline("sentence-embeddings", plain)(texts), mean, atol=1e-5, rtol=0)  # no files

    repo = shutil.copytree(plain, tmp_path / "st")
    (repo / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]))
    (repo / "1_Pooling").mkdir()
    (repo / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 32, "pooling_mode_cls_token": True, "pooling_mode_max_tokens": True,
        "pooling_mode_mean_tokens": False, "pooling_mode_mean_sqrt_len_tokens": True}))
    (repo / "2_Dense").mkdir()
    (repo / "2_Dense" / "config.json").write_text(json.dumps({
        "in_features": 96, "out_features": 8, "bias": True, "activation_function": "torch.nn.modules.activation.Tanh"}))
    dense = torch.nn.Linear(96, 8)
    from safetensors.torch import save_file
    save_file({"linear.weight": dense.weight.detach(), "linear.bias": dense.bias.detach()},
              str(repo / "2_Dense" / "model.safetensors"))
    maxed = hidden.masked_fill(mask == 0, -1e9).amax(1)
    pooled = torch.cat([hidden[:, 0], maxed, (hidden * mask).sum(1) / mask.sum(1).sqrt()], dim=-1)  # (B, 96)
    with torch.no_grad():
        expected = torch.tanh(dense(pooled))
    torch.testing.assert_close(pipeline("sentence-embeddings", repo)(texts), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(pipeline("sentence-embeddings", repo, normalize=True)(texts),
                               F.normalize(expected, dim=-1), atol=1e-5, rtol=0)


# -- text-classification ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("problem", ["single_label_classification", "multi_label_classification"])
def test_text_classification_equals_the_reference(tmp_path, problem, chinese_vocab):
    labels = {0: "NEGATIVE", 1: "NEUTRAL", 2: "POSITIVE"}
    folder = save_tiny(tmp_path, "BertForSequenceClassification", chinese_vocab, id2label=labels, problem_type=problem,
                       label2id={v: k for k, v in labels.items()})
    ours = pipeline("sentiment-analysis", folder)
    ref = transformers.pipeline("sentiment-analysis", model=str(folder))
    texts = ["这部电影太好看了！", "很差", "一般般吧，没什么特别的。"]
    pair = {"text": "今天天气很好", "text_pair": "我们去公园吧"}
    assert_same(ours(texts[0]), ref(texts[0]))  # [{"label", "score"}]
    assert_same(ours(texts), ref(texts))
    assert_same(ours(pair), ref(pair))
    for options in ({"top_k": 2}, {"top_k": None}, {"function_to_apply": "none", "top_k": None},
                    {"function_to_apply": "softmax"}):
        assert_same(ours(texts[1], **options), ref(texts[1], **options))
        assert_same(ours(texts, **options), ref(texts, **options))
    assert_same(ours(texts * 3, top_k=None, batch_size=4), [ours(t, top_k=None) for t in texts * 3])
    if problem == "multi_label_classification":  # independent sigmoids: the scores need not sum to 1
        scores = [entry["score"] for entry in ours(texts[0], top_k=None)]
        assert abs(sum(scores) - 1) > 1e-3
    # return_all_scores (dropped by transformers 5; 4.x's rule): every label in id order, unsorted
    in_id_order = [sorted(result, key=lambda entry: ours.model.config.label2id[entry["label"]])
                   for result in ref(texts, top_k=None)]
    with pytest.warns(FutureWarning, match="use top_k=None"):
        assert_same(ours(texts[0], return_all_scores=True), in_id_order[:1])
        assert_same(ours(texts, return_all_scores=True), in_id_order)
        assert_same(ours(texts[0], return_all_scores=False), ref(texts[0]))
        assert_same(ours(texts, return_all_scores=True, top_k=2), ref(texts, top_k=2))  # top_k wins
    constructed = pipeline("text-classification", folder, return_all_scores=True, top_k=None)
    assert_same(constructed(texts[1:]), ref(texts[1:], top_k=None))
    assert_same(pipeline("text-classification", folder, top_k=1)(texts), ref(texts, top_k=1))


# -- token-classification --------------------------------------------------------------------------------------

@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
def test_token_classification_equals_the_reference(tagger, strategy):
    ours, ref = tagger
    for text in EN:
        got, expected = ours(text, aggregation_strategy=strategy), ref(text, aggregation_strategy=strategy)
        assert_same(got, expected, atol=1e-5)
        assert all(text[e["start"]:e["end"]] for e in got)
    assert_same(ours(EN, aggregation_strategy=strategy, batch_size=3),
                [ref(text, aggregation_strategy=strategy) for text in EN], atol=1e-5)


def test_token_classification_options(tagger):
    ours, ref = tagger
    everything = ours(EN[0], ignore_labels=[])
    assert_same(everything, ref(EN[0], ignore_labels=[]))
    assert {e["entity"] for e in everything} <= set(NER_LABELS) and [e["index"] for e in everything] == sorted(
        e["index"] for e in everything)
    with pytest.raises(ValueError, match="aggregation_strategy='merge': use one of none, simple"):
        ours(EN[0], aggregation_strategy="merge")


def test_token_classification_stride_and_pre_split_words(tagger, tmp_path):
    ours, ref = tagger
    folder = Path(ours.model.name_or_path)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    short = tmp_path / "short"
    shutil.copytree(folder, short)
    (short / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 12}))
    ours_short, ref_short = pipeline("ner", short), transformers.pipeline("ner", model=str(short))
    long_text = " ".join(EN)  # ~50 tokens: 5+ windows of 12
    for strategy in ("simple", "first", "average", "max"):
        for stride in (2, 5):
            got = ours_short(long_text, stride=stride, aggregation_strategy=strategy, ignore_labels=[])
            assert_same(got, ref_short(long_text, stride=stride, aggregation_strategy=strategy, ignore_labels=[]))
            assert got[-1]["end"] > len(long_text) - 12  # the windows cover the whole text
        assert_same(ours_short([long_text, EN[1]], stride=3, aggregation_strategy=strategy),
                    ref_short([long_text, EN[1]], stride=3, aggregation_strategy=strategy))
    with pytest.raises(ValueError, match="needs aggregation_strategy 'simple'"):
        ours_short(long_text, stride=2)
    with pytest.raises(ValueError, match="less than tokenizer.model_max_length"):
        ours_short(long_text, stride=12, aggregation_strategy="simple")
    words = [text.split() for text in EN]
    for strategy in ("none", "simple", "first"):
        assert_same(ours(words[0], is_split_into_words=True, aggregation_strategy=strategy),
                    ref(words[0], is_split_into_words=True, aggregation_strategy=strategy))
        assert_same(ours(words, is_split_into_words=True, aggregation_strategy=strategy, batch_size=3),
                    ref(words, is_split_into_words=True, aggregation_strategy=strategy))
    assert_same(ours(words[2], is_split_into_words=True, delimiter="_", ignore_labels=[]),
                ref(words[2], is_split_into_words=True, delimiter="_", ignore_labels=[]))
    with pytest.raises(TypeError, match="pass is_split_into_words=True"):
        ours(words)
    with pytest.raises(TypeError, match="a list of words"):
        ours(EN[0], is_split_into_words=True)


# -- zero-shot-classification ----------------------------------------------------------------------------------

@pytest.mark.parametrize("nli", [["contradiction", "neutral", "entailment"],
                                 ["ENTAILMENT", "neutral", "contradiction"]])
def test_zero_shot_classification_equals_the_reference(tmp_path, minilm_dir, nli):
    folder = save_tiny(tmp_path, "BertForSequenceClassification", minilm_dir, id2label=dict(enumerate(nli)),
                       label2id={label: i for i, label in enumerate(nli)}, initializer_range=0.3)
    ours = pipeline("zero-shot-classification", folder)
    ref = transformers.pipeline("zero-shot-classification", model=str(folder))
    assert ours.entailment_id == ref.entailment_id == nli.index(next(n for n in nli if n.lower() == "entailment"))
    labels = ["politics", "sports", "cooking", "science fiction"]
    for options in ({}, {"multi_label": True}, {"hypothesis_template": "The topic is {}"}):
        assert_same(ours(EN[0], candidate_labels=labels, **options),
                    ref(EN[0], candidate_labels=labels, **options))
        assert_same(ours(EN, labels, batch_size=3, **options), ref(EN, labels, **options))
    assert_same(ours(EN[1], candidate_labels="sports, cooking"), ref(EN[1], candidate_labels="sports, cooking"))
    assert_same(ours(EN[2], candidate_labels=["sports"]), ref(EN[2], candidate_labels=["sports"]))  # one: binary
    result = ours(EN[0], labels)
    assert abs(sum(result["scores"]) - 1) < 1e-5 and result["scores"] == sorted(result["scores"], reverse=True)
    assert abs(sum(ours(EN[0], labels, multi_label=True)["scores"]) - 1) > 1e-3
    preset = pipeline("zero-shot-classification", folder, candidate_labels=labels, multi_label=True)
    assert_same(preset(EN[3]), ref(EN[3], candidate_labels=labels, multi_label=True))
    with pytest.raises(ValueError, match="needs candidate_labels"):
        ours(EN[0])
    with pytest.raises(ValueError, match="has no place for the label"):
        ours(EN[0], labels, hypothesis_template="No slot here.")
    with pytest.raises(ValueError, match="at least one text"):
        ours([], candidate_labels=labels)
    with pytest.raises(TypeError, match=r"unknown option\(s\) 'multilabel' \(did you mean 'multi_label'"):
        ours(EN[0], labels, multilabel=True)


def test_zero_shot_classification_needs_a_classifier(tmp_path, minilm_dir, caplog):
    folder = save_tiny(tmp_path / "mlm", "BertForMaskedLM", minilm_dir)
    with pytest.raises(ValueError, match="cannot do zero-shot-classification"):
        pipeline("zero-shot-classification", autoload.AutoModelForMaskedLM.from_pretrained(folder))
    vague = save_tiny(tmp_path / "vague", "BertForSequenceClassification", minilm_dir, num_labels=3)
    with caplog.at_level("WARNING", logger="autoload"):
        ours = pipeline("zero-shot-classification", vague)
    assert ours.entailment_id == -1 and "starts with 'entail'" in caplog.text
    ref = transformers.pipeline("zero-shot-classification", model=str(vague))
    assert_same(ours(EN[0], ["a", "b"]), ref(EN[0], ["a", "b"]))


# -- text-generation -------------------------------------------------------------------------------------------

def test_text_generation_equals_the_reference(tmp_path, minilm_dir):
    folder = save_tiny(tmp_path, "LlamaForCausalLM", minilm_dir, num_attention_heads=4, num_key_value_heads=2,
                       bos_token_id=101, eos_token_id=102, pad_token_id=0)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["chat_template"] = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}assistant:{% endif %}")
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    ours = pipeline("text-generation", folder, do_sample=False, max_new_tokens=6)
    ref = transformers.pipeline("text-generation", model=str(folder))
    greedy = dict(do_sample=False, max_new_tokens=6)
    prompts = ["hello world", "a much longer prompt about nothing at all"]
    chat = [{"role": "user", "content": "hi there"}]
    assert_same(ours(prompts[0]), ref(prompts[0], **greedy))
    assert_same(ours(prompts, batch_size=2), ref(prompts, **greedy))  # left-padded batch = one by one
    assert_same(ours(prompts[1], return_full_text=False), ref(prompts[1], return_full_text=False, **greedy))
    assert_same(ours(chat), ref(chat, **greedy))
    prefill = chat + [{"role": "assistant", "content": "well"}]
    assert_same(ours(prefill), ref(prefill, **greedy))
    sampled = ours(prompts[0], do_sample=True, seed=0, num_return_sequences=2)
    assert len(sampled) == 2 and all(s["generated_text"].startswith(prompts[0]) for s in sampled)
    ids = ours(prompts[0], return_tensors=True)[0]["generated_token_ids"]
    assert ours.tokenizer.decode(ids, skip_special_tokens=True).startswith(prompts[0])
    with pytest.raises(TypeError, match="unknown option 'max_new_token'"):
        ours(prompts[0], max_new_token=3)


def test_loading_options_go_to_from_pretrained_not_generate(tmp_path, minilm_dir):
    folder = save_tiny(tmp_path, "LlamaForCausalLM", minilm_dir, num_attention_heads=4, num_key_value_heads=2,
                       bos_token_id=101, eos_token_id=102, pad_token_id=0)
    greedy = dict(do_sample=False, max_new_tokens=5)
    prompt = "hello world"
    for loading in (dict(torch_dtype=torch.float64), dict(dtype="float64", device_map="cpu"),
                    dict(model_kwargs={"dtype": torch.float64}), dict(torch_dtype="float64", dtype="float64")):
        ours = pipeline("text-generation", folder, **loading, **greedy)
        ref = transformers.pipeline("text-generation", model=str(folder), dtype=torch.float64,
                                    device_map=loading.get("device_map"))
        assert ours.model.dtype == torch.float64 and ref.model.dtype == torch.float64
        assert_same(ours(prompt), ref(prompt, **greedy))
        assert not {"torch_dtype", "dtype", "device_map", "model_kwargs"} & set(ours.defaults)
    with pytest.raises(ValueError, match="disagree"):
        pipeline("text-generation", folder, dtype="float32", torch_dtype="float64")
    with pytest.raises(ValueError, match="device or device_map, not both"):
        pipeline("text-generation", folder, device="cpu", device_map="cpu")
    with pytest.raises(ValueError, match="model_kwargs and device_map apply when the model is loaded by name"):
        pipeline("text-generation", ours.model, device_map="cpu")


# -- common ----------------------------------------------------------------------------------------------------

def test_progress_bar_on_long_lists(mlm, capsys):
    ours, _ = mlm
    ours(ZH[:1] * 33, top_k=1, progress=True)
    assert "fill-mask" in capsys.readouterr().err
    ours(ZH[:1] * 33, top_k=1, progress=False)
    ours(ZH[:1] * 3, top_k=1)
    assert capsys.readouterr().err == ""


def test_run_returns_one_result_per_input(mlm):
    ours, ref = mlm
    assert_same(ours.run(ZH[:1], top_k=2), [ref(ZH[0], top_k=2)])
    with pytest.raises(TypeError, match="flat list"):
        ours.run([ZH[:2]])


def test_task_names_and_lazy_export():
    from autoload.pipelines import TASKS, pipeline_class
    src = str(Path(__file__).resolve().parent.parent / "src")
    probe = f"import sys; sys.path.insert(0, {src!r}); import autoload.pipelines; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "False"
    assert pipeline_class("ner") is pipeline_class("token-classification")
    assert pipeline_class("sentiment-analysis").task == "text-classification"
    assert sorted(TASKS) == ["feature-extraction", "fill-mask", "sentence-embeddings", "summarization",
                             "text-classification", "text-generation", "text-ranking", "text2text-generation",
                             "token-classification", "translation", "zero-shot-classification"]
    assert pipeline_class("translation_en_to_fr") is pipeline_class("translation")
    with pytest.raises(ValueError, match="Unknown task 'question-answering'"):
        pipeline("question-answering", "x")
    assert "pipeline" in autoload.__all__ and autoload.pipeline is pipeline


def test_cli_run(mlm, capsys):
    from autoload import cli
    ours, ref = mlm
    folder = ours.model.name_or_path
    assert cli.main(["run", "fill-mask", folder, ZH[0], "--top-k", "2", "--json"]) == 0
    assert_same(json.loads(capsys.readouterr().out), ref(ZH[0], top_k=2))
    assert cli.main(["run", "fill-mask", folder, ZH[0], ZH[3]]) == 0
    out = capsys.readouterr().out
    assert ZH[0] in out and "mask 2:" in out
    assert cli.main(["run", "fill-mask", folder, "没有", "--top-k", "2"]) == 1
    assert "No mask token ([MASK])" in capsys.readouterr().err
    assert cli.main(["run", "fill-mask", folder, ZH[0], "-o", "topk=2"]) == 1
    assert "did you mean 'top_k'" in capsys.readouterr().err
    assert os.path.isdir(folder)
