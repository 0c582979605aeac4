"""autoload.SentenceTransformer and CrossEncoder against sentence-transformers (the reference, test-only): the
real all-MiniLM-L6-v2, repos with prompts, include_prompt=False, Dense layers and a `0_Transformer` folder, and
random cross-encoders, through the same folders; the text-ranking and sentence-embeddings pipelines; a repo on the
local hub."""

from __future__ import annotations

import json
import shutil

import pytest
import sentence_transformers
import torch
import transformers
from torch.nn import functional as F

import autoload
from autoload import CrossEncoder, SentenceTransformer, pipeline

transformers.logging.set_verbosity_error()

TEXTS = ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply today.",
         "Someone is having a meal.", "Hi", "A very long sentence " * 12 + "that ends here.", "", "über naïve café"]


def assert_close(got, want, atol=1e-5):
    torch.testing.assert_close(torch.as_tensor(got), torch.as_tensor(want), atol=atol, rtol=0)


@pytest.fixture(scope="module")
def minilm_pair(minilm_dir):
    return SentenceTransformer(minilm_dir), sentence_transformers.SentenceTransformer(str(minilm_dir), device="cpu")


def test_encode_equals_sentence_transformers_on_minilm(minilm_pair):
    ours, ref = minilm_pair
    assert ours.max_seq_length == ref.max_seq_length == 256
    assert ours.get_embedding_dimension() == ref.get_embedding_dimension() == 384
    assert ours.get_sentence_embedding_dimension() == 384
    want = ref.encode(TEXTS, batch_size=3)
    got = ours.encode(TEXTS, batch_size=3)
    assert type(got) is type(want) and got.shape == want.shape == (len(TEXTS), 384) and got.dtype == want.dtype
    assert_close(got, want)
    assert_close(ours.encode(TEXTS, batch_size=3, unpad=False), want)  # the padded path: same numbers
    assert_close(ours.encode(TEXTS, batch_size=1), want)
    tensor = ours.encode(TEXTS, convert_to_tensor=True)
    assert torch.is_tensor(tensor) and tensor.shape == (len(TEXTS), 384)
    one = ours.encode(TEXTS[0])
    assert one.shape == (384,) and abs(one - want[0]).max() < 1e-5
    listed = ours.encode(TEXTS[:2], convert_to_numpy=False)
    assert isinstance(listed, list) and all(torch.is_tensor(v) and v.shape == (384,) for v in listed)
    assert_close(ours.similarity(got, got), ref.similarity(want, want))


def test_encode_options_equal_the_reference(minilm_pair):
    ours, ref = minilm_pair
    for options in ({"normalize_embeddings": True}, {"truncate_dim": 64}, {"truncate_dim": 32, "normalize_embeddings": True},
                    {"prompt": "query: "}):
        assert_close(ours.encode(TEXTS, **options), ref.encode(TEXTS, **options))
    tokens_got = ours.encode(TEXTS[:3], output_value="token_embeddings")
    tokens_want = ref.encode(TEXTS[:3], output_value="token_embeddings")
    assert [t.shape for t in tokens_got] == [t.shape for t in tokens_want]
    for g, w in zip(tokens_got, tokens_want):
        assert_close(g, w)
    with pytest.raises(ValueError, match="precision"):
        ours.encode(TEXTS, precision="int8")
    with pytest.raises(ValueError, match="output_value"):
        ours.encode(TEXTS, output_value="logits")
    with pytest.raises(ValueError, match="batch_size"):
        ours.encode(TEXTS, batch_size=0)
    with pytest.raises(TypeError):
        ours.encode([1, 2])


def _with_files(src, dst, files: dict):
    folder = shutil.copytree(src, dst)
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(content))
    return folder


def test_prompts_and_include_prompt(minilm_dir, tmp_path):
    prompts = {"query": "query: ", "document": "passage: "}
    folder = _with_files(minilm_dir, tmp_path / "prompts", {
        "config_sentence_transformers.json": {"prompts": prompts, "default_prompt_name": None,
                                              "similarity_fn_name": "dot"},
        "1_Pooling/config.json": {"word_embedding_dimension": 384, "pooling_mode_mean_tokens": True,
                                  "include_prompt": False}})
    ours, ref = SentenceTransformer(folder), sentence_transformers.SentenceTransformer(str(folder), device="cpu")
    assert ours.prompts == prompts and ours.similarity_fn_name == "dot"
    assert_close(ours.encode_query(TEXTS), ref.encode_query(TEXTS))
    assert_close(ours.encode_document(TEXTS), ref.encode_document(TEXTS))
    assert_close(ours.encode(TEXTS, prompt_name="query"), ref.encode(TEXTS, prompt_name="query"))
    assert not torch.allclose(torch.as_tensor(ours.encode(TEXTS, prompt_name="query")), torch.as_tensor(ours.encode(TEXTS)))
    a, b = ours.encode(TEXTS[:3]), ours.encode(TEXTS[3:5])
    assert_close(ours.similarity(a, b), ref.similarity(a, b), atol=1e-4)  # dot product
    pipe = pipeline("sentence-embeddings", folder)
    assert_close(pipe(TEXTS, prompt_name="query"), torch.as_tensor(ref.encode(TEXTS, prompt_name="query")))
    with pytest.raises(ValueError, match="not one of this model's prompts"):
        ours.encode(TEXTS, prompt_name="classification")
    with pytest.raises(ValueError, match="similarity"):
        SentenceTransformer(folder, similarity_fn_name="jaccard")


@pytest.mark.parametrize("pooling", [{"pooling_mode_cls_token": True}, {"pooling_mode_max_tokens": True},
                                     {"pooling_mode_lasttoken": True},
                                     {"pooling_mode_mean_sqrt_len_tokens": True, "pooling_mode_weightedmean_tokens": True}])
def test_pooling_modes_and_dense(minilm_dir, tmp_path, pooling):
    modes = sum(1 for v in pooling.values() if v)
    folder = _with_files(minilm_dir, tmp_path / "pool", {
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
            {"idx": 3, "name": "3", "path": "3_Normalize", "type": "sentence_transformers.models.Normalize"}],
        "1_Pooling/config.json": {"word_embedding_dimension": 384, "pooling_mode_mean_tokens": False, **pooling},
        "2_Dense/config.json": {"in_features": 384 * modes, "out_features": 16, "bias": True,
                                "activation_function": "torch.nn.modules.activation.Tanh"}})
    torch.manual_seed(0)
    dense = torch.nn.Linear(384 * modes, 16)
    from safetensors.torch import save_file
    save_file({"linear.weight": dense.weight.detach(), "linear.bias": dense.bias.detach()},
              str(folder / "2_Dense" / "model.safetensors"))
    ours, ref = SentenceTransformer(folder), sentence_transformers.SentenceTransformer(str(folder), device="cpu")
    assert ours.get_sentence_embedding_dimension() == 16
    assert_close(ours.encode(TEXTS, batch_size=4), ref.encode(TEXTS, batch_size=4))


def test_transformer_in_a_subfolder_on_the_hub(minilm_dir, tmp_path, hub):
    """An old-style repo (`0_Transformer/` holds the model) served by the local hub, loaded by repo id."""
    repo = tmp_path / "hub" / "org" / "old-style"
    shutil.copytree(minilm_dir, repo / "0_Transformer", ignore=shutil.ignore_patterns("modules.json", "1_Pooling"))
    shutil.copytree(minilm_dir / "1_Pooling", repo / "1_Pooling")
    (repo / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    ours = SentenceTransformer("org/old-style")
    ref = sentence_transformers.SentenceTransformer(str(repo), device="cpu")
    assert ours.max_seq_length == 256
    assert_close(ours.encode(TEXTS), ref.encode(TEXTS))


def test_sentence_embeddings_pipeline_batches_by_tokens(minilm_pair, minilm_dir):
    _, ref = minilm_pair
    pipe = pipeline("sentence-embeddings", minilm_dir)
    assert_close(pipe(TEXTS, batch_size=3), torch.as_tensor(ref.encode(TEXTS)))
    assert_close(pipe(TEXTS[2]), torch.as_tensor(ref.encode(TEXTS[2])))


# -- cross-encoders --------------------------------------------------------------------------------------------

PAIRS = [("what is a panda?", "The giant panda is a bear native to China."), ("what is a panda?", "Paris is nice."),
         ("how tall is everest", "Mount Everest is 8,849 metres tall " * 5), ("hi", "")]


def _bert_reranker(folder, minilm_dir, num_labels: int, **extra):
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=37, num_labels=num_labels, **extra)
    transformers.BertForSequenceClassification(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm_dir / name, folder / name)
    return folder


@pytest.mark.parametrize("num_labels", [1, 3])
def test_cross_encoder_equals_sentence_transformers(minilm_dir, tmp_path, num_labels):
    folder = _bert_reranker(tmp_path / "ce", minilm_dir, num_labels)
    ours, ref = CrossEncoder(folder), sentence_transformers.CrossEncoder(str(folder), device="cpu")
    assert_close(ours.predict(PAIRS, batch_size=3), ref.predict(PAIRS, batch_size=3))
    assert_close(ours.predict(PAIRS, apply_softmax=True), ref.predict(PAIRS, apply_softmax=True))
    assert_close(ours.predict(PAIRS[0]), ref.predict(PAIRS[0]))
    if num_labels == 1:
        docs = [d for _, d in PAIRS]
        assert ours.rank("what is a panda?", docs, return_documents=True) == [
            {**r, "score": pytest.approx(r["score"], abs=1e-5)}
            for r in ref.rank("what is a panda?", docs, return_documents=True)]
        assert [r["corpus_id"] for r in ours.rank("panda", docs, top_k=2)] == \
            [r["corpus_id"] for r in ref.rank("panda", docs, top_k=2)]


def test_cross_encoder_activation_from_config(minilm_dir, tmp_path):
    folder = _bert_reranker(tmp_path / "ce", minilm_dir, 1, sentence_transformers={
        "activation_fn": "torch.nn.modules.linear.Identity"})
    ours, ref = CrossEncoder(folder), sentence_transformers.CrossEncoder(str(folder), device="cpu")
    assert isinstance(ours.activation_fn, torch.nn.Identity)
    assert_close(ours.predict(PAIRS), ref.predict(PAIRS))
    unsafe = _bert_reranker(tmp_path / "unsafe", minilm_dir, 1, sentence_transformers={"activation_fn": "os.system"})
    assert isinstance(CrossEncoder(unsafe).activation_fn, torch.nn.Sigmoid)  # never imports a repo's path


def test_xlm_roberta_reranker_and_text_ranking(e5_tokenizer_json, tmp_path):
    """bge-reranker's shape: XLMRobertaForSequenceClassification, one label, the real XLM-R tokenizer.json."""
    folder = tmp_path / "bge-like"
    torch.manual_seed(0)
    config = transformers.XLMRobertaConfig(vocab_size=250037, hidden_size=32, num_hidden_layers=2,
                                           num_attention_heads=4, intermediate_size=37, num_labels=1,
                                           max_position_embeddings=514)
    transformers.XLMRobertaForSequenceClassification(config).save_pretrained(folder)
    shutil.copy(e5_tokenizer_json, folder / "tokenizer.json")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "XLMRobertaTokenizer",
                                                              "model_max_length": 512}))
    ours, ref = CrossEncoder(folder), sentence_transformers.CrossEncoder(str(folder), device="cpu")
    pairs = PAIRS + [("熊猫是什么？", "大熊猫是一种熊。"), ("ما هو الباندا؟", "الباندا حيوان.")]
    assert_close(ours.predict(pairs), ref.predict(pairs))
    rank = pipeline("text-ranking", folder)
    docs = [d for _, d in pairs]
    want = ref.rank("熊猫是什么？", docs, return_documents=True)
    got = rank("熊猫是什么？", docs)
    assert [r["corpus_id"] for r in got] == [r["corpus_id"] for r in want]
    assert [r["text"] for r in got] == [r["text"] for r in want]
    assert_close([r["score"] for r in got], [r["score"] for r in want])
    assert len(rank("熊猫", docs, top_k=2)) == 2
    assert_close(rank(pairs[:2]), ref.predict(pairs[:2]))
    with pytest.raises(TypeError, match="unknown|Unknown"):
        rank("q", docs, topk=2)


def test_lazy_top_level_names():
    assert "SentenceTransformer" in autoload.__all__ and "CrossEncoder" in autoload.__all__
    import subprocess
    import sys
    probe = "import autoload.sentence, sys; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "False"


def test_bge_m3_style_cls_pooling_on_xlm_roberta(e5_tokenizer_json, tmp_path):
    """bge-m3's layout: an XLM-R encoder, CLS pooling, Normalize; the real XLM-R tokenizer.json."""
    folder = tmp_path / "bge-m3-like"
    torch.manual_seed(0)
    config = transformers.XLMRobertaConfig(vocab_size=250037, hidden_size=32, num_hidden_layers=2,
                                           num_attention_heads=4, intermediate_size=37, max_position_embeddings=514)
    transformers.XLMRobertaModel(config).save_pretrained(folder)
    shutil.copy(e5_tokenizer_json, folder / "tokenizer.json")
    _with_files(folder, tmp_path / "bge", {
        "tokenizer_config.json": {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 512},
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}],
        "sentence_bert_config.json": {"max_seq_length": 16, "do_lower_case": False},
        "1_Pooling/config.json": {"word_embedding_dimension": 32, "pooling_mode_cls_token": True,
                                  "pooling_mode_mean_tokens": False}})
    texts = TEXTS + ["熊猫是什么？", "ما هو الباندا؟ " * 4]
    ours, ref = SentenceTransformer(tmp_path / "bge"), sentence_transformers.SentenceTransformer(
        str(tmp_path / "bge"), device="cpu")
    assert ours.max_seq_length == 16  # long texts are cut at 16 tokens, as the reference
    assert_close(ours.encode(texts, batch_size=4), ref.encode(texts, batch_size=4))
