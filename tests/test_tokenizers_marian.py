"""Marian (opus-mt) tokenizer against transformers 5.x's MarianTokenizer (a Python tokenizer over sentencepiece).

No opus-mt vocab is on PyPI, so each folder is built here: two tiny SentencePiece models trained with the
`sentencepiece` trainer (test-only oracle) on a deterministic multilingual corpus -- source.spm on English/French,
target.spm on German/French -- and Marian-style vocabs (`</s>`=0, `<unk>`=1, `>>xx<<` codes, the pieces, `<pad>`
last), with a few source pieces left out of the vocab so that they encode as `<unk>`. Folders: a shared vocab, separate
vocabs (target_vocab.json, `<pad>` at another id), and a BPE target.spm. Both libraries load the same folder; ids,
masks, labels, padding, truncation, decoding, special-token masks and save/reload must agree.
"""

from __future__ import annotations

import copy
import io
import json
import pickle
import random

import pytest
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

from autoload import AutoTokenizer
from autoload.errors import RepoFileError
from autoload.tokenization import MarianTokenizer, tokenizer_class
from tokenizer_cases import CALLS, LONG_TEXT, PAIRS, TEXTS, plain, transformers_auto, write_folder

# the reference warns once per instance that sacremoses is missing; its encoding path never uses it
pytestmark = pytest.mark.filterwarnings("ignore:Recommended. pip install sacremoses")

EN = "the house is small and the cat sleeps on a red chair while we read books about music history".split()
FR = "la maison est petite et le chat dort sur une chaise rouge pendant que nous lisons des livres été".split()
DE = "das haus ist klein und die katze schläft auf einem roten stuhl während wir bücher über musik".split()
SYLLABLES = ["ka", "to", "ri", "mé", "su", "lo", "ven", "ar", "ü", "sch", "ön", "pa", "qu", "ir", "é"]
CODES = [">>fra<<", ">>deu<<", ">>ita<<"]
DROPPED = ["▁red", "▁cat", "us", "▁la"]  # trained pieces missing from the vocab: they encode as <unk>
HARD = [">>fra<< the red cat sleeps", ">>deu<<das haus", ">>xyz<< unknown code", ">>a b<< c", "a >>fra<< b",
        ">>fra<<", ">>fra", "the house </s> is <pad> small<unk>", "x</s>>>deu<< y", "Zebra 😀😀 ÀÉ ﬁ ZZZ qqq",
        "   ", "das haus schläft über la maison", "kasu tovenmé rischön"]
# the reference is a Python tokenizer: no offsets, and overflow comes back as `overflowing_tokens` (see marian.py)
MARIAN_CALLS = [kwargs for kwargs in CALLS
                if not kwargs.get("return_offsets_mapping") and not kwargs.get("return_overflowing_tokens")]
MARIAN_CALLS += [{"return_special_tokens_mask": True, "padding": True, "return_token_type_ids": True},
                 {"return_special_tokens_mask": True, "add_special_tokens": False, "return_token_type_ids": True},
                 {"truncation": True, "max_length": 6, "padding": True, "padding_side": "left",
                  "return_special_tokens_mask": True, "return_length": True}]


def longest_first_pairs(kwargs: dict) -> bool:
    """Pairs cut by "longest_first" to an odd budget differ (documented): which text keeps the extra token."""
    return kwargs.get("max_length") is not None and kwargs.get("truncation", True) in (True, "longest_first")


def corpus(words_a: list[str], words_b: list[str], seed: int) -> list[str]:
    """300 deterministic lines: real words of two languages, made-up words from SYLLABLES, punctuation, numbers."""
    rng = random.Random(seed)
    made = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))) for _ in range(60)]
    words_a, words_b = words_a + made[:30], words_b + made[30:]
    lines = []
    for i in range(300):
        line = " ".join(rng.choice(words_a if i % 3 else words_b) for _ in range(rng.randint(3, 12)))
        if i % 5 == 0:
            line = line.capitalize() + rng.choice([".", "!", "?", ","])
        if i % 7 == 0:
            line += f" {rng.randint(0, 999)}"
        lines.append(line)
    return lines


def train(lines: list[str], model_type: str) -> bytes:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model, model_type=model_type,
                                   vocab_size=80, hard_vocab_limit=False, character_coverage=1.0, minloglevel=2)
    return model.getvalue()


def normal_pieces(model: bytes) -> list[str]:
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model)
    return [piece.piece for piece in proto.pieces if piece.type == 1]


def marian_folder(root, source: bytes, target: bytes, separate: bool):
    source_pieces = [p for p in normal_pieces(source) if p not in DROPPED]
    target_pieces = [p for p in normal_pieces(target) if p not in DROPPED]
    files = {"tokenizer_config.json": {"source_lang": "en", "target_lang": "fr", "model_max_length": 512,
                                       "separate_vocabs": separate},
             "config.json": {"model_type": "marian"}}
    if separate:
        files["vocab.json"] = {p: i for i, p in enumerate(["</s>", "<unk>", *source_pieces, "<pad>"])}
        files["target_vocab.json"] = {p: i for i, p in enumerate(["</s>", "<unk>", "<pad>", *target_pieces])}
    else:
        shared = ["</s>", "<unk>", *CODES, *source_pieces, *(p for p in target_pieces if p not in source_pieces)]
        files["vocab.json"] = {p: i for i, p in enumerate(shared + ["<pad>"])}
    write_folder(root, files)
    (root / "source.spm").write_bytes(source)
    (root / "target.spm").write_bytes(target)
    return root


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("marian")
    source = train(corpus(EN, FR, 0), "unigram")
    target = train(corpus(DE, FR, 1), "unigram")
    target_bpe = train(corpus(DE, FR, 1), "bpe")
    return {"shared": marian_folder(root / "shared", source, target, separate=False),
            "separate": marian_folder(root / "separate", source, target, separate=True),
            "bpe_target": marian_folder(root / "bpe", source, target_bpe, separate=False)}


@pytest.fixture(scope="module")
def pairs(folders) -> dict:
    return {case: (MarianTokenizer.from_pretrained(folder), transformers_auto(folder))
            for case, folder in folders.items()}


def assert_same(ours, theirs, *args, **kwargs):
    a, b = ours(*args, **kwargs), theirs(*args, **kwargs)
    assert sorted(a) == sorted(b), (kwargs, sorted(a), sorted(b))
    for key in b:
        assert plain(a[key]) == plain(b[key]), (key, kwargs, args)


@pytest.mark.parametrize("case", ["shared", "separate", "bpe_target"])
def test_encoding_matches_transformers(pairs, case):
    ours, theirs = pairs[case]
    assert type(theirs).__name__ == "MarianTokenizer"
    texts = HARD + TEXTS
    for text in texts + [LONG_TEXT]:
        assert ours.tokenize(text) == theirs.tokenize(text), text
        assert ours(text)["input_ids"] == theirs(text)["input_ids"], text
        assert ours(text_target=text)["input_ids"] == theirs(text_target=text)["input_ids"], text
    for kwargs in MARIAN_CALLS:
        assert_same(ours, theirs, texts, **kwargs)
        assert_same(ours, theirs, texts[0], **kwargs)
        if longest_first_pairs(kwargs):  # an even budget (see marian.py); no odd max_length is a multiple of 8
            kwargs = {**kwargs, "max_length": kwargs["max_length"] + 1, "pad_to_multiple_of": None}
        assert_same(ours, theirs, [p[0] for p in PAIRS], [p[1] for p in PAIRS], **kwargs)
        assert_same(ours, theirs, texts[:4], text_target=HARD[4:8], **kwargs)
        assert_same(ours, theirs, text_target=HARD[:5], **kwargs)
    words = [text.split() for text in HARD[:6] if text.split()]
    assert_same(ours, theirs, words, is_split_into_words=True, padding=True)


@pytest.mark.parametrize("case", ["shared", "separate", "bpe_target"])
def test_decoding_matches_transformers(pairs, case):
    ours, theirs = pairs[case]
    texts = HARD + TEXTS
    sources, targets = theirs(texts)["input_ids"], theirs(text_target=texts)["input_ids"]
    rng = random.Random(3)
    generated = [[rng.randrange(len(ours.decoder)) for _ in range(12)] + [ours.eos_token_id] for _ in range(20)]
    for rows in (sources, targets, generated):
        for skip in (False, True):
            assert ours.batch_decode(rows, skip_special_tokens=skip) == theirs.batch_decode(
                rows, skip_special_tokens=skip)
            for use_source in (False, True):
                assert ours.batch_decode(rows, skip_special_tokens=skip, use_source_tokenizer=use_source) == \
                    theirs.batch_decode(rows, skip_special_tokens=skip, use_source_tokenizer=use_source)
            for row in rows[:6]:
                assert ours.decode(row, skip_special_tokens=skip) == theirs.decode(row, skip_special_tokens=skip)
                assert ours.convert_ids_to_tokens(row, skip_special_tokens=skip) == theirs.convert_ids_to_tokens(
                    row, skip_special_tokens=skip)
    import torch
    batch = torch.tensor(theirs(texts[:3], padding=True)["input_ids"])
    assert ours.batch_decode(batch, skip_special_tokens=True) == theirs.batch_decode(batch, skip_special_tokens=True)
    assert ours.decode(sources[0][0]) == theirs.decode(sources[0][0])
    for ids in ([len(ours) + 3, 5], [10**6]):  # outside the vocab and the .spm: both refuse
        with pytest.raises(IndexError):
            theirs.decode(ids)
        with pytest.raises(IndexError):
            ours.decode(ids)


@pytest.mark.parametrize("case", ["shared", "separate"])
def test_attributes_match_transformers(pairs, case):
    ours, theirs = pairs[case]
    for name in ("eos_token", "unk_token", "pad_token", "bos_token", "sep_token", "cls_token", "mask_token"):
        assert getattr(ours, name) == getattr(theirs, name), name
        assert getattr(ours, name + "_id") == getattr(theirs, name + "_id"), name
    assert ours.all_special_tokens == theirs.all_special_tokens and ours.all_special_ids == theirs.all_special_ids
    assert ours.vocab_size == theirs.vocab_size and len(ours) == len(theirs)
    assert ours.get_vocab() == theirs.get_vocab() and ours.get_src_vocab() == theirs.get_src_vocab()
    assert ours.supported_language_codes == theirs.supported_language_codes
    assert ours.supported_language_codes == ([] if case == "separate" else CODES)
    assert ours.model_max_length == theirs.model_max_length == 512
    assert (ours.source_lang, ours.target_lang, ours.separate_vocabs) == ("en", "fr", case == "separate")
    assert ours.num_special_tokens_to_add() == theirs.num_special_tokens_to_add() == 1
    ids = theirs(HARD[7])["input_ids"]
    for already in (False, True):
        assert ours.get_special_tokens_mask(ids, already_has_special_tokens=already) == \
            theirs.get_special_tokens_mask(ids, already_has_special_tokens=already)
    assert ours.get_special_tokens_mask(ids[:3], ids[3:]) == theirs.get_special_tokens_mask(ids[:3], ids[3:])
    tokens = theirs.tokenize(HARD[0]) + ["▁nope", "</s>"]
    assert ours.convert_tokens_to_ids(tokens) == theirs.convert_tokens_to_ids(tokens)
    assert ours.convert_tokens_to_string(tokens) == theirs.convert_tokens_to_string(tokens)
    assert ours.decoder == theirs.decoder


def test_separate_vocabs_use_the_target_vocab(pairs, folders):
    ours, _ = pairs["separate"]
    target_vocab = json.loads((folders["separate"] / "target_vocab.json").read_text())
    labels = ours(text_target="das haus")["input_ids"]
    pieces = ours.spm_target.model.tokenize("▁das▁haus")
    assert labels == [target_vocab[t.value] for t in pieces] + [ours.eos_token_id]
    assert ours.pad_token_id == json.loads((folders["separate"] / "vocab.json").read_text())["<pad>"] != \
        target_vocab["<pad>"]  # special tokens keep their source ids on the target side, as in the reference


def test_added_tokens_pickle_and_copy(folders):
    ours, theirs = MarianTokenizer.from_pretrained(folders["separate"]), transformers_auto(folders["separate"])
    assert ours.add_tokens(["<sep2>"], special_tokens=True) == theirs.add_tokens(["<sep2>"], special_tokens=True)
    assert ours.add_tokens(["zzq"]) == theirs.add_tokens(["zzq"])
    text = "kasu <sep2> das zzq haus"
    assert_same(ours, theirs, [text, "a"], text_target=[text, "b c"], padding=True)
    ids = theirs(text, text_target=text)["labels"]
    assert ours.decode(ids) == theirs.decode(ids) and len(ours) == len(theirs)
    for clone in (pickle.loads(pickle.dumps(ours)), copy.deepcopy(ours)):
        assert clone(HARD, text_target=HARD) == ours(HARD, text_target=HARD)
        assert clone(text)["input_ids"] == ours(text)["input_ids"] and clone.decode(ids) == ours.decode(ids)
        clone.add_tokens(["only-in-clone"])
        assert len(clone) == len(ours) + 1


@pytest.mark.parametrize("case", ["shared", "separate"])
def test_save_pretrained_reloads_in_both_libraries(folders, case, tmp_path):
    ours, theirs = MarianTokenizer.from_pretrained(folders[case]), transformers_auto(folders[case])
    ours.add_tokens(["<extra1>"], special_tokens=True)
    theirs.add_tokens(["<extra1>"], special_tokens=True)
    written = ours.save_pretrained(tmp_path / "ours")
    expected = {"source.spm", "target.spm", "vocab.json", "tokenizer_config.json"}
    if case == "separate":
        expected.add("target_vocab.json")
    assert {path.rsplit("/", 1)[1] for path in written} == expected
    theirs.save_pretrained(tmp_path / "theirs")
    reloaded = {"autoload from ours": MarianTokenizer.from_pretrained(tmp_path / "ours"),
                "transformers from ours": transformers_auto(tmp_path / "ours"),
                "autoload from theirs": AutoTokenizer.from_pretrained(tmp_path / "theirs")}
    text, target = ["<extra1> the house >>fra<< x", "a"], ["das haus <extra1>", "b"]
    expected_out = theirs(text, text_target=target, padding=True)
    for name, tok in reloaded.items():
        assert type(tok).__name__ == "MarianTokenizer", name
        assert dict(tok(text, text_target=target, padding=True)) == dict(expected_out), name
        assert tok.batch_decode(expected_out["labels"]) == theirs.batch_decode(expected_out["labels"]), name
        assert (tok.separate_vocabs, tok.source_lang, tok.target_lang) == (case == "separate", "en", "fr"), name
        assert tok.all_special_tokens == theirs.all_special_tokens, name


def test_auto_tokenizer_and_class_table(folders, tmp_path):
    assert tokenizer_class("MarianTokenizer") is MarianTokenizer
    import transformers
    paths = [str(folders["separate"] / name) for name in ("source.spm", "target.spm", "vocab.json",
                                                          "target_vocab.json")]
    direct = MarianTokenizer(*paths, separate_vocabs=True)  # the reference's positional file arguments
    reference = transformers.MarianTokenizer(*paths, separate_vocabs=True)
    assert dict(direct(HARD, text_target=HARD, padding=True)) == dict(reference(HARD, text_target=HARD, padding=True))
    assert direct.model_max_length == reference.model_max_length == 512
    assert isinstance(AutoTokenizer.from_pretrained(folders["shared"]), MarianTokenizer)
    # no tokenizer_class: config.json's model_type "marian" decides, as in the reference
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("source.spm", "target.spm", "vocab.json", "config.json"):
        (bare / name).write_bytes((folders["shared"] / name).read_bytes())
    tok = AutoTokenizer.from_pretrained(bare)
    assert isinstance(tok, MarianTokenizer) and type(transformers_auto(bare)).__name__ == "MarianTokenizer"
    assert tok(HARD[0])["input_ids"] == transformers_auto(bare)(HARD[0])["input_ids"]


def test_malformed_files_name_the_file(folders, tmp_path):
    def broken(name: str, content):
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        folder.mkdir()
        for file in ("source.spm", "target.spm", "vocab.json", "tokenizer_config.json"):
            (folder / file).write_bytes((folders["shared"] / file).read_bytes())
        (folder / name).write_bytes(content)
        return folder

    spm_bytes = (folders["shared"] / "source.spm").read_bytes()
    for name, content in [("vocab.json", b"{not json"), ("vocab.json", b'{"</s>": 0, "<unk>": "one"}'),
                          ("vocab.json", b'["a list"]'), ("vocab.json", b'{"</s>": 0, "a": 1}'),
                          ("source.spm", spm_bytes[:len(spm_bytes) // 2]), ("target.spm", b"\x0a\xff\xff")]:
        with pytest.raises(RepoFileError, match=name):
            MarianTokenizer.from_pretrained(broken(name, content))
    separate = broken("tokenizer_config.json", json.dumps({"separate_vocabs": True}).encode())
    with pytest.raises(RepoFileError, match="target_vocab.json"):
        MarianTokenizer.from_pretrained(separate)
    missing = broken("vocab.json", b"{}")
    (missing / "target.spm").unlink()
    with pytest.raises(OSError, match="target.spm"):
        MarianTokenizer.from_pretrained(missing)
    with pytest.raises(ValueError, match="sampling"):
        MarianTokenizer.from_pretrained(folders["shared"], sp_model_kwargs={"enable_sampling": True})
