"""SentencePiece Unigram tokenizers (XLM-R, CamemBERT, DeBERTa-v3, ALBERT) against transformers 5.x's classes.

(a) Tiny Unigram models trained here with the `sentencepiece` trainer (a test-only oracle, as are protobuf and
transformers) in the settings each model family uses; both libraries load the same folder: the `.model` alone, and
the tokenizer.json that transformers saves from it. (b) The real XLM-R vocabulary (multilingual-e5-small's
tokenizer.json, 250,002 pieces) on multilingual text. Ids, tokens, offsets, special-token masks, pairs, truncation
with overflow, padding, tensors and decoding must be identical; autoload reads the .model without sentencepiece.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys

import pytest
import sentencepiece as spm

import autoload
from autoload.errors import RepoFileError
from autoload.tokenization import (AlbertTokenizer, CamembertTokenizer, DebertaV2Tokenizer, XLMRobertaTokenizer,
                                   tokenizer_class)
from tokenizer_cases import (CALLS, CORPUS, PAIRS, TEXTS, assert_same_attributes, assert_same_call,
                             assert_same_decoding, assert_same_everywhere, train_byte_level, transformers_auto,
                             write_folder)

# the special pieces each family's SentencePiece model starts with (trainer ids and names)
XLMR_PIECES = {}  # the trainer's defaults: <unk>=0 <s>=1 </s>=2, as fairseq's models
DEBERTA_PIECES = dict(pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]",
                      eos_piece="[SEP]", unk_piece="[UNK]")
ALBERT_PIECES = dict(pad_id=0, unk_id=1, bos_id=2, eos_id=3, bos_piece="[CLS]", eos_piece="[SEP]",
                     user_defined_symbols=["[MASK]"])

# case -> (tokenizer class, SentencePiece file, trainer options, tokenizer_config.json options)
CASES = {
    "xlmr": (XLMRobertaTokenizer, "sentencepiece.bpe.model", XLMR_PIECES, {}),
    "xlmr_byte_fallback_digits": (XLMRobertaTokenizer, "sentencepiece.bpe.model",
                                  dict(byte_fallback=True, split_digits=True), {"model_max_length": 512}),
    "xlmr_identity_no_prefix": (XLMRobertaTokenizer, "sentencepiece.bpe.model",
                                dict(normalization_rule_name="identity"), {"add_prefix_space": False}),
    "camembert": (CamembertTokenizer, "sentencepiece.bpe.model", XLMR_PIECES, {}),
    "camembert_byte_fallback": (CamembertTokenizer, "sentencepiece.bpe.model", dict(byte_fallback=True),
                                {"model_max_length": 512}),
    "camembert_extra_left": (CamembertTokenizer, "sentencepiece.bpe.model", XLMR_PIECES,  # the config's extras win
                             {"additional_special_tokens": ["<extra>", "fox"], "padding_side": "left"}),
    "deberta_v3": (DebertaV2Tokenizer, "spm.model", DEBERTA_PIECES, {"do_lower_case": False, "vocab_type": "spm"}),
    "deberta_v3_punct_lower": (DebertaV2Tokenizer, "spm.model", dict(DEBERTA_PIECES, split_digits=True),
                               {"split_by_punct": True, "do_lower_case": True}),
    "deberta_v2_identity": (DebertaV2Tokenizer, "spm.model", dict(DEBERTA_PIECES, normalization_rule_name="identity",
                                                                  byte_fallback=True), {"add_prefix_space": False}),
    "albert": (AlbertTokenizer, "spiece.model", ALBERT_PIECES, {}),
    "albert_cased_accents": (AlbertTokenizer, "spiece.model", ALBERT_PIECES,
                             {"do_lower_case": False, "keep_accents": True, "remove_space": True}),
    "albert_nfkc_cf_bytes": (AlbertTokenizer, "spiece.model",
                             dict(ALBERT_PIECES, normalization_rule_name="nmt_nfkc_cf", byte_fallback=True), {}),
}
HARD = ["``quoted'' and ''twice``", "x <mask> y [MASK] z <s> </s> [CLS] <extra> fox", "   ", "a\u3000b\u00a0c\u2003d",
        "ÀÉÎÕÜ ÅNGSTRÖM", "١٢٣ ① ⅻ ½ ﬁ", "\u200b\ufeff\u00ad", "a.b,c!d?e(f)g"]


def train_unigram(options: dict) -> bytes:
    """A small Unigram model trained on tokenizer_cases.CORPUS (well under a second)."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(CORPUS), model_writer=model, model_type="unigram",
                                   vocab_size=400, hard_vocab_limit=False, character_coverage=0.995,
                                   minloglevel=2, **options)
    return model.getvalue()


@pytest.fixture(scope="session")
def spm_folders(tmp_path_factory) -> dict:
    """case -> a folder with the trained SentencePiece file and a tokenizer_config.json naming the class."""
    root = tmp_path_factory.mktemp("unigram")
    folders = {}
    for case, (cls, filename, trainer, config) in CASES.items():
        folder = root / case
        folder.mkdir()
        (folder / filename).write_bytes(train_unigram(trainer))
        write_folder(folder, {"tokenizer_config.json": {"tokenizer_class": cls.__name__, **config}})
        folders[case] = folder
    return folders


@pytest.mark.parametrize("case", sorted(CASES))
def test_spm_model_parity(spm_folders, case):
    """The .model alone: the same vocabulary, ids, offsets, masks, truncation, padding and decoding."""
    cls = CASES[case][0]
    ours, theirs = cls.from_pretrained(spm_folders[case]), transformers_auto(spm_folders[case])
    assert type(theirs).__name__ == cls.__name__
    assert_same_attributes(ours, theirs)
    assert json.loads(ours.backend_tokenizer.to_str()) == json.loads(theirs.backend_tokenizer.to_str())
    texts = TEXTS + HARD
    assert_same_decoding(ours, theirs, texts)
    for kwargs in CALLS:
        assert_same_call(ours, theirs, texts, **kwargs)
        # short pairs: a 400-character second text overflows into thousands of rows with these tiny vocabularies
        assert_same_call(ours, theirs, [p[0] for p in PAIRS[:3]], [p[1] for p in PAIRS[:3]], **kwargs)


def test_spm_model_full_matrix(spm_folders):
    """Every call variant on single texts, batches and pairs (the parity test above runs them on batches)."""
    folder = spm_folders["xlmr_byte_fallback_digits"]
    assert_same_everywhere(XLMRobertaTokenizer.from_pretrained(folder), transformers_auto(folder))


def same_pipeline(ours, theirs) -> bool:
    """Normalizer, pre-tokenizer, decoder and post-processor serialize alike (the model is compared by ids)."""
    parts = ("normalizer", "pre_tokenizer", "decoder", "post_processor")
    state = [[None if getattr(tok.backend_tokenizer, part) is None
              else json.loads(getattr(tok.backend_tokenizer, part).__getstate__()) for part in parts]
             for tok in (ours, theirs)]
    return state[0] == state[1]


@pytest.mark.parametrize("case", ["xlmr", "camembert", "deberta_v3_punct_lower", "albert_cased_accents"])
def test_tokenizer_json_round_trips(spm_folders, tmp_path, case):
    """tokenizer.json written by transformers is read by our class (and ours by transformers) to the same tokenizer."""
    cls = CASES[case][0]
    theirs = transformers_auto(spm_folders[case])
    theirs.save_pretrained(tmp_path / "theirs")
    ours = cls.from_pretrained(tmp_path / "theirs")
    assert_same_attributes(ours, theirs)
    assert_same_decoding(ours, theirs, TEXTS + HARD)
    for kwargs in CALLS[:1] + CALLS[6:7] + CALLS[12:13]:
        assert_same_call(ours, theirs, TEXTS, **kwargs)
    ours.save_pretrained(tmp_path / "ours")
    again = transformers_auto(tmp_path / "ours")
    assert type(again).__name__ == cls.__name__
    assert again(TEXTS + HARD)["input_ids"] == theirs(TEXTS + HARD)["input_ids"]


def test_fairseq_ids(spm_folders):
    """XLM-R: <s> <pad> </s> <unk> at 0-3, each piece one id later than in the model, <mask> last;
    CamemBERT: its NOTUSED tokens around <pad> and <unk>, <s>/</s> at 5/6."""
    processor = spm.SentencePieceProcessor(model_file=str(spm_folders["xlmr"] / "sentencepiece.bpe.model"))
    xlmr = XLMRobertaTokenizer.from_pretrained(spm_folders["xlmr"])
    assert [xlmr.bos_token_id, xlmr.pad_token_id, xlmr.eos_token_id, xlmr.unk_token_id] == [0, 1, 2, 3]
    assert xlmr.mask_token_id == len(xlmr) - 1 == processor.get_piece_size() + 1  # 4 + (size - 3) pieces
    text = "The quick brown fox, naïve café"
    # the model's <unk> (0) is fairseq's 3
    assert xlmr(text)["input_ids"] == [0] + [3 if i == 0 else i + 1 for i in processor.encode(text)] + [2]
    second = [3 if i == 0 else i + 1 for i in processor.encode("fox")]
    assert xlmr(text, "fox")["input_ids"][-len(second) - 3:] == [2, 2, *second, 2]  # <s> A </s></s> B </s>
    camembert = CamembertTokenizer.from_pretrained(spm_folders["camembert"])
    assert camembert.convert_ids_to_tokens([0, 1, 2, 3, 4, 5, 6]) == [
        "<s>NOTUSED", "<pad>", "</s>NOTUSED", "<unk>", "<unk>NOTUSED", "<s>", "</s>"]
    assert camembert.mask_token_id == len(camembert) - 1


def test_unigram_viterbi_matches_sentencepiece(spm_folders):
    """Where transformers' pipeline is SentencePiece's (charsmap, dummy prefix, single spaces), the pieces are
    SentencePiece's own best segmentation."""
    folder = spm_folders["deberta_v3"]
    processor = spm.SentencePieceProcessor(model_file=str(folder / "spm.model"))
    ours = DebertaV2Tokenizer.from_pretrained(folder)
    for text in CORPUS[:20]:
        text = " ".join(text.split())
        assert ours.tokenize(text) == processor.encode(text, out_type=str), text


def test_token_types_and_options(spm_folders):
    deberta = DebertaV2Tokenizer.from_pretrained(spm_folders["deberta_v3_punct_lower"])
    encoded = deberta("Hello, World!", "Second one.")
    assert encoded["token_type_ids"][0] == 0 and encoded["token_type_ids"][-1] == 1
    assert deberta.convert_ids_to_tokens(encoded["input_ids"])[0] == "[CLS]"
    assert deberta.tokenize("HELLO World") == deberta.tokenize("hello world")  # do_lower_case
    assert all(token.strip("▁") in ("", ",") or "," not in token for token in deberta.tokenize("a,b,,c"))
    albert = AlbertTokenizer.from_pretrained(spm_folders["albert"])
    assert "token_type_ids" not in albert("a", "b")
    encoded = albert("a", "b", return_token_type_ids=True)
    tokens = albert.convert_ids_to_tokens(encoded["input_ids"])
    assert tokens[0] == "[CLS]" and tokens.count("[SEP]") == 2 and tokens[-1] == "[SEP]"
    first = tokens.index("[SEP]") + 1
    assert encoded["token_type_ids"] == [0] * first + [1] * (len(tokens) - first)
    assert albert.tokenize("ÀÉ") == albert.tokenize("ae")  # lowercased, accents stripped


def test_auto_tokenizer_and_aliases(spm_folders):
    for case in ("xlmr", "camembert", "deberta_v3", "albert"):
        cls = CASES[case][0]
        assert tokenizer_class(cls.__name__ + "Fast") is cls
        assert getattr(autoload, cls.__name__ + "Fast") is cls
        tok = autoload.AutoTokenizer.from_pretrained(spm_folders[case])
        assert type(tok) is cls


@pytest.mark.parametrize("case,model_type", [("xlmr", "xlm-roberta"), ("camembert", "camembert"),
                                             ("deberta_v3", "deberta-v2"), ("albert", "albert")])
def test_auto_tokenizer_from_model_type(spm_folders, tmp_path, case, model_type):
    """No tokenizer_config.json: config.json's model_type picks the class, which reads the .model alone."""
    filename = CASES[case][1]
    folder = write_folder(tmp_path / case, {"config.json": {"model_type": model_type}})
    (folder / filename).write_bytes((spm_folders[case] / filename).read_bytes())
    ours, theirs = autoload.AutoTokenizer.from_pretrained(folder), transformers_auto(folder)
    assert type(ours) is CASES[case][0] and type(theirs).__name__ == CASES[case][0].__name__
    assert ours(TEXTS, TEXTS[::-1])["input_ids"] == theirs(TEXTS, TEXTS[::-1])["input_ids"]


def test_model_read_without_sentencepiece(spm_folders):
    """Loading from the .model imports neither sentencepiece nor protobuf (nor transformers)."""
    code = (f"import sys; from autoload.tokenization import AlbertTokenizer; "
            f"tok = AlbertTokenizer.from_pretrained({str(spm_folders['albert'])!r}); assert tok('hello')['input_ids']; "
            "print(sorted(m for m in ('sentencepiece', 'google.protobuf', 'transformers') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_wrong_or_missing_files(spm_folders, tmp_path):
    bpe = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(CORPUS), model_writer=bpe, model_type="bpe",
                                   vocab_size=300, hard_vocab_limit=False, minloglevel=2)
    folder = write_folder(tmp_path / "bpe", {"tokenizer_config.json": {"tokenizer_class": "XLMRobertaTokenizer"}})
    (folder / "sentencepiece.bpe.model").write_bytes(bpe.getvalue())
    with pytest.raises(RepoFileError, match="BPE model"):
        XLMRobertaTokenizer.from_pretrained(folder)
    (folder / "sentencepiece.bpe.model").write_bytes(b"\x0a\xff\xff")  # a truncated proto
    with pytest.raises(OSError, match="not a valid SentencePiece model"):
        XLMRobertaTokenizer.from_pretrained(folder)
    with pytest.raises(OSError, match="spiece.model"):
        AlbertTokenizer.from_pretrained(spm_folders["deberta_v3"])  # spm.model is not ALBERT's file
    train_byte_level().save(str(folder / "tokenizer.json"))  # a BPE tokenizer.json comes first, and is refused
    with pytest.raises(RepoFileError, match="no Unigram vocabulary"):
        XLMRobertaTokenizer.from_pretrained(folder)


def test_malformed_tokenizer_json_is_a_clear_error(spm_folders, tmp_path):
    """Bad vocab entries, a charsmap that is not one: RepoFileError (the file's unk_id is not read: fairseq's is 3)."""
    theirs = transformers_auto(spm_folders["xlmr"])
    theirs.save_pretrained(tmp_path / "good")
    good = json.loads((tmp_path / "good" / "tokenizer.json").read_text(encoding="utf-8"))
    for name, (where, key, value) in {"entry": ("model", "vocab", [5, 6]), "score": ("model", "vocab", [["a", "x"]]),
                                      "charsmap": ("normalizer", "precompiled_charsmap", "@@@")}.items():
        data = json.loads(json.dumps(good))
        data[where][key] = value
        folder = write_folder(tmp_path / name, {"tokenizer.json": data,
                                                "tokenizer_config.json": {"tokenizer_class": "XLMRobertaTokenizer"}})
        with pytest.raises(RepoFileError):
            XLMRobertaTokenizer.from_pretrained(folder)
    model = (spm_folders["xlmr"] / "sentencepiece.bpe.model").read_bytes()
    with pytest.raises(RepoFileError, match="charsmap"):  # a .model whose charsmap is garbage
        XLMRobertaTokenizer(vocab=[("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)],
                            _spm_precompiled_charsmap=b"garbage" + model[:10])


# -- (b) the real XLM-R vocabulary -------------------------------------------------------------------------------

MULTILINGUAL = [
    "query: how much protein should a female eat",
    "人工智能是计算机科学的一个分支，它企图了解智能的实质。",
    "مرحبا بالعالم، كيف حالك اليوم؟ ١٢٣",
    "नमस्ते दुनिया, आप कैसे हैं? हिन्दी में लिखा पाठ।",
    "Emoji 😀👍🏽 and flags 🇨🇳🇫🇷 ❤️ family 👨‍👩‍👧",
    "Café déjà vu — naïve façade, Ångström, résumé, ÀÉÎÕÜ, e\u0301",
    "日本語のテキスト、カタカナ ｶﾀｶﾅ と 한국어 텍스트",
    "Русский текст и Ελληνικά, שלום עולם, ภาษาไทย",
    "Ｆｕｌｌ－ｗｉｄｔｈ　ＡＢＣ１２３！？  spaces\t\ttabs\n\nnewlines  ",
    "a <mask> b <s> c </s> d <unk> e",
    "",
]


@pytest.fixture(scope="module")
def e5_pair(e5_tokenizer_json, tmp_path_factory):
    folder = write_folder(tmp_path_factory.mktemp("e5"), {
        "tokenizer.json": e5_tokenizer_json,
        "tokenizer_config.json": {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 512}})
    return XLMRobertaTokenizer.from_pretrained(folder), transformers_auto(folder)


def test_real_xlmr_vocab(e5_pair):
    ours, theirs = e5_pair
    assert type(theirs).__name__ == "XLMRobertaTokenizer" and len(ours) == 250002
    assert_same_attributes(ours, theirs)
    assert same_pipeline(ours, theirs)
    assert_same_decoding(ours, theirs, MULTILINGUAL + TEXTS)
    pairs = list(zip(MULTILINGUAL[:5], MULTILINGUAL[5:10])) + PAIRS
    assert_same_everywhere(ours, theirs, texts=MULTILINGUAL, pairs=pairs)
    assert ours.tokenize("Emoji 😀") == ["▁E", "moji", "▁😀"]
    words = [["Hello", "wörld", "人工智能", "😀"], ["नमस्ते", "مرحبا"]]
    assert_same_call(ours, theirs, words, is_split_into_words=True, return_offsets_mapping=True, padding=True)


@pytest.fixture(scope="module")
def e5_spm_folder(e5_tokenizer_json, tmp_path_factory):
    """XLM-R's `sentencepiece.bpe.model` rebuilt from the real tokenizer.json (no Unigram .model ships on PyPI in an
    installable package): the model's own `<unk> <s> </s>`, the 249,997 pieces with their scores, the nmt_nfkc
    charsmap; written with protobuf (test-only)."""
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
    folder = write_folder(tmp_path_factory.mktemp("e5_spm"),
                          {"tokenizer_config.json": {"tokenizer_class": "XLMRobertaTokenizer"}})
    (folder / "sentencepiece.bpe.model").write_bytes(proto.SerializeToString())
    return folder


def test_real_xlmr_sentencepiece_model(e5_spm_folder, e5_pair):
    """The .model route on the real vocabulary: transformers' conversion, our tokenizer.json route, and
    SentencePiece itself (fairseq ids: its id + 1, its unknown 0 -> 3) all agree."""
    ours, theirs = XLMRobertaTokenizer.from_pretrained(e5_spm_folder), transformers_auto(e5_spm_folder)
    assert len(ours) == len(theirs) == len(e5_pair[0]) == 250002
    assert same_pipeline(ours, theirs)
    texts = MULTILINGUAL + TEXTS
    for kwargs in ({"return_offsets_mapping": True, "return_special_tokens_mask": True}, CALLS[6], CALLS[9]):
        assert_same_call(ours, theirs, texts, **kwargs)
    assert ours(texts)["input_ids"] == e5_pair[0](texts)["input_ids"]
    assert_same_decoding(ours, theirs, texts)
    processor = spm.SentencePieceProcessor(model_file=str(e5_spm_folder / "sentencepiece.bpe.model"))
    for text in texts:
        if "<mask>" not in text:  # special-token text is matched whole by the tokenizers, not by SentencePiece
            expected = [3 if i == 0 else i + 1 for i in processor.encode(text)]
            assert ours(text, add_special_tokens=False)["input_ids"] == expected, text
