"""BERT WordPiece parity with transformers 5.x on real vocabularies: bert-base-chinese's vocab.txt alone (with
tokenizer_config variants) and the all-MiniLM-L6-v2 folder (tokenizer.json + vocab.txt + legacy special_tokens_map).
Every call variant (padding, truncation strategies with stride and overflow, offsets, tensors, pairs) and decoding
must give identical results."""

from __future__ import annotations

import json

import pytest

from autoload.tokenization import BertTokenizer, DistilBertTokenizer, TokenizersBackend
from tokenizer_cases import (CALLS, TEXTS, assert_same_attributes, assert_same_call, assert_same_decoding,
                             assert_same_everywhere, transformers_auto, write_folder)

CHINESE_CONFIGS = {
    "defaults": {},
    "cased": {"do_lower_case": False},
    "no_chinese_split": {"tokenize_chinese_chars": False},
    "strip_accents": {"strip_accents": True},
    "keep_accents": {"strip_accents": False},
    "cased_strip_accents": {"do_lower_case": False, "strip_accents": True},
    "real_config": {"do_lower_case": False, "model_max_length": 512},  # bert-base-chinese's own
}


@pytest.fixture(params=sorted(CHINESE_CONFIGS))
def chinese_folder(request, tmp_path, chinese_vocab):
    config = {"tokenizer_class": "BertTokenizer", **CHINESE_CONFIGS[request.param]}
    return write_folder(tmp_path / request.param, {"vocab.txt": chinese_vocab, "tokenizer_config.json": config})


def test_chinese_vocab_txt_variants(chinese_folder):
    ours = BertTokenizer.from_pretrained(chinese_folder)
    theirs = transformers_auto(chinese_folder)
    assert type(theirs).__name__ == "BertTokenizer"
    assert_same_attributes(ours, theirs)
    assert_same_decoding(ours, theirs)
    for kwargs in CALLS[:3] + CALLS[6:7] + CALLS[9:13]:  # the full matrix runs on the real config below
        assert_same_call(ours, theirs, TEXTS, **kwargs)
    # the pipeline is the §2.4 recipe
    backend = json.loads(ours.backend_tokenizer.to_str())
    assert backend == json.loads(theirs.backend_tokenizer.to_str())
    assert backend["model"]["max_input_chars_per_word"] == 100
    assert backend["decoder"] == {"type": "WordPiece", "prefix": "##", "cleanup": True}


def test_chinese_full_matrix(tmp_path, chinese_vocab):
    folder = write_folder(tmp_path / "zh", {"vocab.txt": chinese_vocab,
                                            "tokenizer_config.json": {"tokenizer_class": "BertTokenizer",
                                                                      "do_lower_case": False,
                                                                      "model_max_length": 512}})
    ours, theirs = BertTokenizer.from_pretrained(folder), transformers_auto(folder)
    assert_same_everywhere(ours, theirs)


def test_chinese_vocab_without_config(tmp_path, chinese_vocab):
    """vocab.txt alone: the class defaults (lowercase, strip accents with it, CJK splitting)."""
    folder = write_folder(tmp_path / "bare", {"vocab.txt": chinese_vocab})
    ours = BertTokenizer.from_pretrained(folder)
    from transformers import BertTokenizer as Reference
    theirs = Reference.from_pretrained(str(folder))
    assert_same_attributes(ours, theirs)
    assert_same_decoding(ours, theirs)
    assert ours.model_max_length == int(1e30)
    assert ours.tokenize("Héllo 你好") == ["hello", "你", "好"]


def test_minilm_folder(tmp_path, minilm_dir):
    folder = minilm_dir
    ours, theirs = BertTokenizer.from_pretrained(folder), transformers_auto(folder)
    assert type(theirs).__name__ == "BertTokenizer"
    assert_same_attributes(ours, theirs)
    assert_same_everywhere(ours, theirs)
    assert_same_decoding(ours, theirs)
    assert ours("Hello world")["input_ids"] == [101, 7592, 2088, 102]
    assert ours.model_max_length == 512


def test_minilm_generic_backend_reads_tokenizer_json_verbatim(minilm_dir):
    from transformers import PreTrainedTokenizerFast
    folder = minilm_dir
    ours = TokenizersBackend.from_pretrained(folder)
    theirs = PreTrainedTokenizerFast.from_pretrained(str(folder))
    assert_same_attributes(ours, theirs)
    for kwargs in CALLS:
        assert_same_call(ours, theirs, TEXTS, **kwargs)
    assert "token_type_ids" not in ours("hi")  # the generic class only returns input_ids + attention_mask


def test_model_class_rebuilds_pipeline_from_its_definition(tmp_path, minilm_dir):
    """v5 semantics: BertTokenizer ignores tokenizer.json's normalizer/pre-tokenizer; the generic class keeps them."""
    data = json.loads((minilm_dir / "tokenizer.json").read_text())
    data["normalizer"]["lowercase"] = False
    data["pre_tokenizer"] = {"type": "Whitespace"}
    config = json.loads((minilm_dir / "tokenizer_config.json").read_text())
    folder = write_folder(tmp_path / "edited", {"tokenizer.json": data, "tokenizer_config.json": config})
    text = "Hello WORLD, don't"
    bert, generic = BertTokenizer.from_pretrained(folder), TokenizersBackend.from_pretrained(folder)
    assert bert.tokenize(text) == transformers_auto(folder).tokenize(text)
    assert bert.tokenize(text) == ["hello", "world", ",", "don", "'", "t"]
    assert generic.tokenize(text) != bert.tokenize(text)


def test_tokenizer_json_post_processor_replaced_by_bert_template(tmp_path, minilm_dir):
    data = json.loads((minilm_dir / "tokenizer.json").read_text())
    data["post_processor"] = None
    folder = write_folder(tmp_path / "nopp", {"tokenizer.json": data,
                                               "tokenizer_config.json": {"tokenizer_class": "BertTokenizer"}})
    ours, theirs = BertTokenizer.from_pretrained(folder), transformers_auto(folder)
    assert ours("a b", "c")["input_ids"] == theirs("a b", "c")["input_ids"]
    assert ours("a b", "c")["token_type_ids"] == [0, 0, 0, 0, 1, 1]


def test_distilbert_has_no_token_type_ids(tmp_path, chinese_vocab):
    folder = write_folder(tmp_path / "distil", {"vocab.txt": chinese_vocab,
                                                "tokenizer_config.json": {"tokenizer_class": "DistilBertTokenizer"}})
    ours, theirs = DistilBertTokenizer.from_pretrained(folder), transformers_auto(folder)
    assert ours.model_input_names == theirs.model_input_names == ["input_ids", "attention_mask"]
    assert_same_call(ours, theirs, TEXTS, padding=True)


def test_legacy_special_tokens_map_and_added_tokens(tmp_path, chinese_vocab):
    """No added_tokens_decoder in the config: special_tokens_map.json and added_tokens.json are merged."""
    folder = write_folder(tmp_path / "legacy", {
        "vocab.txt": chinese_vocab,
        "tokenizer_config.json": {"tokenizer_class": "BertTokenizer", "do_lower_case": False},
        "special_tokens_map.json": {"mask_token": {"content": "[MASK]", "lstrip": True, "rstrip": False,
                                                   "normalized": False, "single_word": False},
                                    "additional_special_tokens": ["<ent>", "<ent2>"]},
        "added_tokens.json": {"<ent>": 21128, "<ent2>": 21129, "newword": 21130},
    })
    ours, theirs = BertTokenizer.from_pretrained(folder), transformers_auto(folder)
    assert_same_attributes(ours, theirs)
    text = "an <ent> and <ent2> and newword [MASK] here"
    assert_same_call(ours, theirs, text)
    assert ours.extra_special_tokens == ["<ent>", "<ent2>"]
    assert ours.decode(ours(text)["input_ids"], skip_special_tokens=True) == theirs.decode(
        theirs(text)["input_ids"], skip_special_tokens=True)


def test_added_tokens_decoder_is_authoritative(tmp_path, chinese_vocab):
    config = {"tokenizer_class": "BertTokenizer", "do_lower_case": True,
              "added_tokens_decoder": {
                  "0": {"content": "[PAD]", "lstrip": False, "normalized": False, "rstrip": False,
                        "single_word": False, "special": True},
                  "21128": {"content": "<NEW>", "lstrip": False, "normalized": False, "rstrip": True,
                            "single_word": False, "special": True},
                  "21129": {"content": "Hello", "lstrip": False, "normalized": True, "rstrip": False,
                            "single_word": True, "special": False}},
              "extra_special_tokens": ["<NEW>"], "image_token": "<NEW>"}
    folder = write_folder(tmp_path / "decoder", {"vocab.txt": chinese_vocab, "tokenizer_config.json": config,
                                                 "special_tokens_map.json": {"pad_token": "[UNK]"}})  # ignored
    ours, theirs = BertTokenizer.from_pretrained(folder), transformers_auto(folder)
    assert_same_attributes(ours, theirs)
    assert ours.pad_token == "[PAD]"
    assert ours.image_token == theirs.image_token == "<NEW>"
    assert ours.image_token_id == theirs.image_token_id == 21128
    for text in ("say <NEW>   hello HelloHello Hello", "hello"):
        assert_same_call(ours, theirs, text, return_offsets_mapping=True)


def test_user_kwargs_override_config(minilm_dir):
    folder = minilm_dir
    ours = BertTokenizer.from_pretrained(folder, do_lower_case=False, model_max_length=64, padding_side="left")
    theirs = transformers_auto(folder, do_lower_case=False, model_max_length=64, padding_side="left")
    assert_same_attributes(ours, theirs)
    assert_same_call(ours, theirs, TEXTS, padding=True, truncation=True)
    with pytest.raises(TypeError, match="do_lower_case"):
        BertTokenizer.from_pretrained(folder, do_lowercase=False)
