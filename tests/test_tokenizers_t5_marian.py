"""T5 / mT5 tokenizers (SentencePiece Unigram + `<extra_id_N>` sentinels) against transformers 5.x's T5Tokenizer.

A tiny Unigram model trained here with the `sentencepiece` trainer (test-only oracle) in T5's layout (`<pad>`=0,
`</s>`=1, `<unk>`=2, no bos); both libraries load the same folder: the `spiece.model` alone, and the tokenizer.json
that transformers saves from it. Ids, offsets, special-token masks, padding, truncation, decoding (with and without
special tokens) and `text_target=` labels must be identical; autoload reads the .model without sentencepiece.
"""

from __future__ import annotations

import io
import json

import pytest
import sentencepiece as spm

from autoload.errors import RepoFileError
from autoload.tokenization import T5Tokenizer, tokenizer_class
from tokenizer_cases import (CALLS, CORPUS, PAIRS, TEXTS, assert_same_attributes, assert_same_call,
                             assert_same_decoding, transformers_auto, write_folder)

T5_PIECES = dict(pad_id=0, eos_id=1, unk_id=2, bos_id=-1)
HARD = ["translate English to German: the house", "a <extra_id_0> b <extra_id_99> c </s> <pad>", "   ",
        "ÀÉÎÕÜ ÅNGSTRÖM ½ ﬁ", "a\u3000b\u00a0c"]
# case -> tokenizer_config.json; "mt5": no tokenizer_class, config.json's model_type decides (transformers: T5Tokenizer)
CASES = {"t5": {"tokenizer_class": "T5Tokenizer"},
         "t5_extra_10": {"tokenizer_class": "T5Tokenizer", "extra_ids": 10, "legacy": False},
         "mt5": {}}


def train_unigram(options: dict) -> bytes:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(CORPUS), model_writer=model, model_type="unigram",
                                   vocab_size=400, hard_vocab_limit=False, character_coverage=0.995,
                                   minloglevel=2, **options)
    return model.getvalue()


@pytest.fixture(scope="session")
def t5_folders(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("t5")
    model = train_unigram(T5_PIECES)
    folders = {}
    for case, config in CASES.items():
        folder = root / case
        folder.mkdir()
        (folder / "spiece.model").write_bytes(model)
        write_folder(folder, {"tokenizer_config.json": config, "config.json": {"model_type": case[:3].rstrip("_")}})
        folders[case] = folder
    return folders


@pytest.mark.parametrize("case", sorted(CASES))
def test_t5_spm_model_parity(t5_folders, case):
    ours, theirs = T5Tokenizer.from_pretrained(t5_folders[case]), transformers_auto(t5_folders[case])
    assert type(theirs).__name__ == "T5Tokenizer"
    assert_same_attributes(ours, theirs)
    assert ours.get_vocab() == theirs.get_vocab()
    assert ours.pad_token_id == 0 and ours.unk_token_id == 2 and ours.bos_token_id is None
    texts = TEXTS + HARD
    assert_same_decoding(ours, theirs, texts)
    for kwargs in CALLS:
        assert_same_call(ours, theirs, texts, **kwargs)
        assert_same_call(ours, theirs, [p[0] for p in PAIRS[:3]], [p[1] for p in PAIRS[:3]], **kwargs)
    # transformers 5's own get_sentinel_tokens reads a v4 attribute that no longer exists: compare with its extras
    sentinels = [token for token in theirs.extra_special_tokens if token.startswith("<extra_id_")]
    assert sorted(ours.get_sentinel_token_ids()) == sorted(theirs.convert_tokens_to_ids(sentinels))
    assert ours.convert_tokens_to_ids("<extra_id_0>") == len(ours) - 1


def test_t5_tokenizer_json_and_text_target(t5_folders, tmp_path):
    theirs = transformers_auto(t5_folders["t5"])
    theirs.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").exists()
    ours = T5Tokenizer.from_pretrained(tmp_path)
    assert json.loads(ours.backend_tokenizer.to_str()) == json.loads(theirs.backend_tokenizer.to_str())
    kwargs = dict(text_target=["the label text", "a"], padding=True, truncation=True, max_length=8)
    assert dict(ours(TEXTS[:2], **kwargs)) == dict(theirs(TEXTS[:2], **kwargs))
    assert dict(ours(**kwargs)) == dict(theirs(**kwargs))


def test_names_resolve_to_t5():
    for name in ("T5Tokenizer", "T5TokenizerFast"):
        assert tokenizer_class(name) is T5Tokenizer
    assert tokenizer_class("MT5Tokenizer") is None  # as transformers' tokenizer_class_from_name


def test_malformed_spiece_model(tmp_path):
    (tmp_path / "spiece.model").write_bytes(b"\x0a\xff\xff")
    write_folder(tmp_path, {"tokenizer_config.json": {"tokenizer_class": "T5Tokenizer"}})
    with pytest.raises(RepoFileError, match="spiece.model"):
        T5Tokenizer.from_pretrained(tmp_path)
