"""RoBERTa (byte-level BPE) and MPNet (WordPiece) parity with transformers 5.x's RobertaTokenizer / MPNetTokenizer,
each loaded from the same folder: ids, attention masks, offsets, special-token masks, pairs, truncation, padding and
decoding on hard texts (unicode, accents, leading spaces, `<mask>` inside text, emoji, the empty string).

RoBERTa's vocabulary is a byte-level BPE trained here with `tokenizers` (no PyPI package we can use ships a real
roberta vocab.json/merges.txt), saved in the layouts real repos use; MPNet's is the real all-mpnet-base-v2
(conftest's `mpnet_dir`), read from its tokenizer.json and from its vocab.txt alone."""

from __future__ import annotations

import json

import pytest
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

import autoload
from autoload import AutoTokenizer
from autoload.tokenization import MPNetTokenizer, RobertaTokenizer, TokenizersBackend
from tokenizer_cases import (CALLS, CORPUS, LONG_TEXT, PAIRS, TEXTS, assert_same_attributes, assert_same_call,
                             assert_same_decoding, assert_same_everywhere, transformers_auto, write_folder)

MASK_TEXTS = ["Paris is the <mask> of France.", "<mask>", "a<mask>b and a <mask>  b", "  leading <mask>",
              " Hello world", "Hello world", "Ünïcödé <mask> 😀 <s> inside </s> text <pad>", ""]
CHECKS = [{}, {"add_special_tokens": False}, {"padding": True, "return_special_tokens_mask": True},
          {"return_offsets_mapping": True, "return_special_tokens_mask": True},
          {"truncation": True, "max_length": 7, "padding": "max_length"}]


def spec(content: str, lstrip: bool = False) -> dict:
    return {"content": content, "lstrip": lstrip, "normalized": False, "rstrip": False, "single_word": False,
            "special": True}


@pytest.fixture(scope="module")
def roberta_files(tmp_path_factory):
    """A RoBERTa-style byte-level BPE: <s> <pad> </s> <unk> at ids 0-3, merges, then <mask> (lstrip) last."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    tokenizer.add_special_tokens([AddedToken("<mask>", lstrip=True, normalized=False, special=True)])
    tokenizer.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    folder = tmp_path_factory.mktemp("roberta_trained")
    tokenizer.model.save(str(folder))
    tokenizer.save(str(folder / "tokenizer.json"))
    files = {name: (folder / name).read_text(encoding="utf-8")
             for name in ("vocab.json", "merges.txt", "tokenizer.json")}
    files["mask_id"] = tokenizer.token_to_id("<mask>")
    return files


def roberta_layout(name: str, files: dict) -> dict:
    bpe = {"vocab.json": files["vocab.json"], "merges.txt": files["merges.txt"]}
    declared = {**{str(i): spec(t) for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>"])},
                str(files["mask_id"]): spec("<mask>", lstrip=True)}
    return {
        # roberta-base's own layout: tokenizer.json (added <mask> with lstrip) and a one-line config
        "tokenizer_json": {"tokenizer.json": files["tokenizer.json"],
                           "tokenizer_config.json": {"model_max_length": 512, "tokenizer_class": "RobertaTokenizer"}},
        # what transformers 4.3x saved: vocab/merges and added_tokens_decoder
        "files_declared": {**bpe, "tokenizer_config.json": {"tokenizer_class": "RobertaTokenizerFast",
                                                             "added_tokens_decoder": declared, "errors": "replace",
                                                             "model_max_length": 512}},
        # legacy special_tokens_map.json, with a prefix space and untrimmed offsets
        "legacy_prefix_untrimmed": {**bpe, "special_tokens_map.json": {"mask_token": spec("<mask>", lstrip=True)},
                                    "tokenizer_config.json": {"tokenizer_class": "RobertaTokenizer",
                                                              "add_prefix_space": True, "trim_offsets": False}},
        # vocab/merges and the class name only: <mask> is added last and does not eat the space before it
        "bare": {**bpe, "tokenizer_config.json": {"tokenizer_class": "RobertaTokenizer"}},
    }[name]


@pytest.mark.parametrize("layout", ["tokenizer_json", "files_declared", "legacy_prefix_untrimmed", "bare"])
def test_roberta_layouts(tmp_path, roberta_files, layout):
    folder = write_folder(tmp_path / layout, roberta_layout(layout, roberta_files))
    ours, theirs = RobertaTokenizer.from_pretrained(folder), transformers_auto(folder)
    assert type(theirs).__name__ == "RobertaTokenizer"
    assert_same_attributes(ours, theirs)
    assert_same_decoding(ours, theirs, texts=TEXTS + MASK_TEXTS)
    for kwargs in CHECKS + CALLS[9:12]:
        assert_same_call(ours, theirs, TEXTS + MASK_TEXTS, **kwargs)
        assert_same_call(ours, theirs, [p[0] for p in PAIRS], [p[1] for p in PAIRS], **kwargs)
    for text in MASK_TEXTS:
        assert ours(text, return_offsets_mapping=True).data == theirs(text, return_offsets_mapping=True).data
    # the backend pipeline is the reference's, piece for piece
    assert json.loads(ours.backend_tokenizer.to_str()) == json.loads(theirs.backend_tokenizer.to_str())


def test_roberta_template_offsets_and_masks(tmp_path, roberta_files):
    folder = write_folder(tmp_path / "r", roberta_layout("tokenizer_json", roberta_files))
    ours, theirs = RobertaTokenizer.from_pretrained(folder), transformers_auto(folder)
    mask = roberta_files["mask_id"]
    encoded = ours("Paris is the <mask>.", "Yes", return_offsets_mapping=True, return_special_tokens_mask=True)
    ids = encoded["input_ids"]
    assert ids[0] == 0 and ids.count(2) == 3 and ids[-1] == 2 and mask in ids  # <s> A </s></s> B </s>
    assert ids[ids.index(mask) - 1] != ours.convert_tokens_to_ids("Ġ")  # lstrip: the space went into <mask>
    assert encoded["special_tokens_mask"] == [int(i in (0, 2)) for i in ids]
    assert "token_type_ids" not in encoded and ours.model_input_names == ["input_ids", "attention_mask"]
    assert encoded["offset_mapping"][ids.index(mask)] == (13, 19)  # " <mask>": the space is not in the offsets
    assert encoded.data == theirs("Paris is the <mask>.", "Yes", return_offsets_mapping=True,
                                  return_special_tokens_mask=True).data
    for text, pair in [("Hello world", None), ("", None), ("a", "b c"), ("", "")]:
        built = theirs(text, pair)["input_ids"]
        assert ours.get_special_tokens_mask(built, already_has_special_tokens=True) == theirs.get_special_tokens_mask(
            built, already_has_special_tokens=True)
    for tok in (ours, theirs):  # neither builds the mask of a sequence without its special tokens
        with pytest.raises(NotImplementedError):
            tok.get_special_tokens_mask([5, 6])
    assert ours.num_special_tokens_to_add() == 2 and ours.num_special_tokens_to_add(pair=True) == 4


def test_roberta_options_and_split_words(tmp_path, roberta_files):
    folder = write_folder(tmp_path / "r", roberta_layout("files_declared", roberta_files))
    for options in ({"add_prefix_space": True}, {"trim_offsets": False}, {"add_prefix_space": True,
                                                                          "trim_offsets": False}):
        ours, theirs = RobertaTokenizer.from_pretrained(folder, **options), transformers_auto(folder, **options)
        assert ours.add_prefix_space == theirs.add_prefix_space and ours.trim_offsets == theirs.trim_offsets
        for kwargs in CHECKS[:2] + CHECKS[3:4]:
            assert_same_call(ours, theirs, TEXTS + MASK_TEXTS, **kwargs)
        if options.get("add_prefix_space"):
            words = [["Hello", "wörld", "😀"], ["<mask>", "again"], ["single"]]
            for kwargs in ({}, {"return_offsets_mapping": True}, {"padding": True}):
                assert_same_call(ours, theirs, words, is_split_into_words=True, **kwargs)


def test_roberta_full_matrix_and_lossless(tmp_path, roberta_files):
    folder = write_folder(tmp_path / "r", roberta_layout("tokenizer_json", roberta_files))
    ours, theirs = RobertaTokenizer.from_pretrained(folder), transformers_auto(folder)
    assert_same_everywhere(ours, theirs, texts=TEXTS[:6] + MASK_TEXTS[:3])
    for text in TEXTS + [LONG_TEXT]:  # byte-level BPE is lossless
        assert ours.decode(ours.encode(text), skip_special_tokens=True) == text


def test_roberta_save_and_auto(tmp_path, roberta_files):
    folder = write_folder(tmp_path / "r", roberta_layout("legacy_prefix_untrimmed", roberta_files))
    ours = AutoTokenizer.from_pretrained(folder)
    assert type(ours) is RobertaTokenizer and autoload.RobertaTokenizerFast is RobertaTokenizer
    ours.save_pretrained(tmp_path / "saved")
    again, theirs = RobertaTokenizer.from_pretrained(tmp_path / "saved"), transformers_auto(tmp_path / "saved")
    reference = transformers_auto(folder)
    for tok in (again, theirs):
        assert tok.add_prefix_space and not tok.trim_offsets
        assert tok(MASK_TEXTS, return_offsets_mapping=True).data == reference(MASK_TEXTS,
                                                                              return_offsets_mapping=True).data
    assert_same_attributes(again, theirs)


# -- MPNet ---------------------------------------------------------------------------------------------------------

def test_mpnet_real_folder(mpnet_dir):
    """all-mpnet-base-v2 as published: tokenizer.json (with a fixed 128 padding and truncation baked in),
    vocab.txt, a legacy special_tokens_map.json (<mask> with lstrip) and tokenizer_config.json."""
    ours, theirs = MPNetTokenizer.from_pretrained(mpnet_dir), transformers_auto(mpnet_dir)
    assert type(theirs).__name__ == "MPNetTokenizer"
    assert_same_attributes(ours, theirs)
    assert_same_everywhere(ours, theirs, texts=TEXTS[:6] + MASK_TEXTS[:3])
    assert_same_decoding(ours, theirs, texts=TEXTS + MASK_TEXTS)
    assert ours("Hello <mask> world!")["input_ids"] == [0, 7596, 30526, 2092, 1003, 2]
    assert ours("a", "b")["input_ids"] == [0, 1041, 2, 2, 1042, 2]
    assert ours.model_input_names == ["input_ids", "attention_mask"] and ours.model_max_length == 512
    assert json.loads(ours.backend_tokenizer.to_str()) == json.loads(theirs.backend_tokenizer.to_str())


@pytest.mark.parametrize("layout", ["vocab_only", "vocab_and_configs", "cased_no_chinese"])
def test_mpnet_from_vocab_txt(tmp_path, mpnet_dir, layout):
    files = {"vocab.txt": mpnet_dir / "vocab.txt"}
    if layout == "vocab_and_configs":
        files.update({name: mpnet_dir / name for name in ("tokenizer_config.json", "special_tokens_map.json")})
    elif layout == "cased_no_chinese":
        files["tokenizer_config.json"] = {"tokenizer_class": "MPNetTokenizer", "do_lower_case": False,
                                          "tokenize_chinese_chars": False, "strip_accents": True}
    folder = write_folder(tmp_path / layout, files)
    from transformers import MPNetTokenizer as Reference
    ours, theirs = MPNetTokenizer.from_pretrained(folder), Reference.from_pretrained(str(folder))
    assert_same_attributes(ours, theirs)
    assert_same_decoding(ours, theirs, texts=TEXTS + MASK_TEXTS)
    for kwargs in CHECKS + CALLS[9:12]:
        assert_same_call(ours, theirs, TEXTS + MASK_TEXTS, **kwargs)
        assert_same_call(ours, theirs, [p[0] for p in PAIRS], [p[1] for p in PAIRS], **kwargs)
    # from vocab.txt alone the class's own tokens: <mask> (an entry of vocab.txt) still eats the space before it
    assert ours.added_tokens_decoder[30526].lstrip and ours("x <mask>")["input_ids"][-2] == 30526


def test_mpnet_defaults_and_setters():
    from transformers import MPNetTokenizer as Reference
    vocab = {token: i for i, token in enumerate(["<s>", "<pad>", "</s>", "[UNK]", "hello", "world", "##s", ","])}
    ours, theirs = MPNetTokenizer(dict(vocab)), Reference(vocab=dict(vocab))
    assert_same_attributes(ours, theirs)
    for kwargs in CHECKS:
        assert_same_call(ours, theirs, ["hello worlds", "Hello <mask>, world", ""], **kwargs)
    # no vocab at all: the special tokens are added in order, and encoding fails alike (no [UNK] in the vocab)
    empty, reference_empty = MPNetTokenizer(), Reference()
    assert empty.get_vocab() == reference_empty.get_vocab()
    assert empty("<s><mask>", add_special_tokens=False)["input_ids"] == [0, 4]
    assert_same_call(empty, reference_empty, "hi")
    with pytest.raises(Exception, match="Missing \\[UNK\\] token"):
        empty("hi")
    ours.mask_token = "<m>"
    assert ours._special_tokens["mask_token"].lstrip and ours.mask_token == "<m>"


def test_mpnet_auto_save_and_exports(tmp_path, mpnet_dir):
    tok = AutoTokenizer.from_pretrained(mpnet_dir)
    assert type(tok) is MPNetTokenizer and issubclass(MPNetTokenizer, TokenizersBackend)
    assert autoload.MPNetTokenizerFast is MPNetTokenizer
    tok.save_pretrained(tmp_path / "saved")
    again, theirs = MPNetTokenizer.from_pretrained(tmp_path / "saved"), transformers_auto(tmp_path / "saved")
    assert type(theirs).__name__ == "MPNetTokenizer"
    expected = transformers_auto(mpnet_dir)(MASK_TEXTS, ["pair"] * len(MASK_TEXTS), return_offsets_mapping=True).data
    for loaded in (again, theirs):
        assert loaded(MASK_TEXTS, ["pair"] * len(MASK_TEXTS), return_offsets_mapping=True).data == expected
    assert_same_attributes(again, theirs)
