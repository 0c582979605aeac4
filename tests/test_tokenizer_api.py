"""The tokenizer API around the encoder: BatchEncoding, special-token attributes, pad(), sides, save/load round trips
with transformers both ways, loading a repo id through the local hub (tokenizer files only), the class table, and
import cost (no torch)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys

import pytest

from autoload.tokenization import (TOKENIZER_CLASSES, BatchEncoding, BertTokenizer, GPT2Tokenizer, TokenizersBackend,
                                   tokenizer_class)
from conftest import ROOT, write_repo
from tokenizer_cases import (CALLS, PAIRS, TEXTS, assert_same_attributes, assert_same_call, plain, train_byte_level,
                             transformers_auto, write_folder)


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return BertTokenizer.from_pretrained(minilm_dir)


def test_batch_encoding_api(minilm):
    out = minilm(["Hello world!", "red green blue cat"], padding=True)
    assert isinstance(out, BatchEncoding) and isinstance(out, dict)
    assert out.input_ids is out["input_ids"] and out.attention_mask == out["attention_mask"]
    assert out.tokens(0) == ["[CLS]", "hello", "world", "!", "[SEP]", "[PAD]"]
    assert out.word_ids(0) == [None, 0, 1, 2, None, None]
    assert out.sequence_ids(1)[:2] == [None, 0]
    assert out.char_to_token(0, 6) == 2 and out.char_to_token(6) == 2
    assert out.token_to_chars(0, 2) == (6, 11)
    assert out.token_to_word(1, 1) == 0 and out.word_to_tokens(1, 0) == (1, 2)
    assert out.char_to_word(0, 7) == 1 and out.word_to_chars(0, 1) == (6, 11)
    assert out[0].ids == out.input_ids[0]  # an int gives the backend Encoding
    assert out.n_sequences == 1 and out.is_fast
    with pytest.raises(AttributeError, match="input_ids"):
        out.labels
    clone = pickle.loads(pickle.dumps(out))
    assert dict(clone) == dict(out) and clone.tokens(1) == out.tokens(1)
    import torch
    tensors = minilm(["a b", "c"], padding=True, return_tensors="pt").to("cpu")
    assert tensors.input_ids.dtype == torch.int64 and tensors.input_ids.shape == (2, 4)
    assert minilm("x", return_tensors="pt")["input_ids"].shape == (1, 3)  # tensors keep the batch axis
    arrays = minilm(["a b", "c"], padding=True, return_tensors="np")
    assert arrays["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    with pytest.raises(ValueError, match="padding=True"):
        minilm(["a b", "c"], return_tensors="pt")
    with pytest.raises(ValueError, match="return_tensors"):
        minilm("a", return_tensors="tf")
    empty = minilm([], return_tensors="pt")
    assert empty["input_ids"].dtype == torch.int64


def test_tokenizer_pickles_and_copies(minilm):
    """DataLoader workers (spawn) pickle the tokenizer; copies must encode the same and stay independent."""
    import copy
    for clone in (pickle.loads(pickle.dumps(minilm)), copy.deepcopy(minilm)):
        assert clone(TEXTS)["input_ids"] == minilm(TEXTS)["input_ids"]
        assert clone.pad_token_id == 0 and clone.special_tokens_map == minilm.special_tokens_map
        clone.add_tokens(["zzzunseen"])
        assert len(clone) == len(minilm) + 1


def test_special_token_attributes_match_transformers(tmp_path):
    folder = write_folder(tmp_path / "g", {"tokenizer.json": train_byte_level().to_str(),
                                           "tokenizer_config.json": {"tokenizer_class": "GPT2Tokenizer"}})
    ours, theirs = GPT2Tokenizer.from_pretrained(folder), transformers_auto(folder)
    for tok in (ours, theirs):
        assert tok.pad_token is None and tok.pad_token_id is None
        tok.pad_token = tok.eos_token
        tok.sep_token_id = 2
        tok.mask_token = "not-in-vocab"
    assert_same_attributes(ours, theirs)
    assert ours.sep_token == "<|im_end|>" and ours.mask_token_id == ours.unk_token_id
    assert ours.add_special_tokens({"cls_token": "<cls>"}) == theirs.add_special_tokens({"cls_token": "<cls>"}) == 1
    assert ours.add_special_tokens({"additional_special_tokens": ["<a>", "<b>"]}) == theirs.add_special_tokens(
        {"additional_special_tokens": ["<a>", "<b>"]})
    assert ours.add_special_tokens({"extra_special_tokens": ["<c>"]}, replace_extra_special_tokens=False) == \
        theirs.add_special_tokens({"extra_special_tokens": ["<c>"]}, replace_extra_special_tokens=False)
    assert ours.extra_special_tokens == theirs.extra_special_tokens == ["<a>", "<b>", "<c>"]
    assert ours.extra_special_tokens_ids == theirs.extra_special_tokens_ids
    assert ours.add_tokens("plain") == theirs.add_tokens("plain") == 1
    assert ours.add_tokens([]) == 0
    assert_same_attributes(ours, theirs)
    assert ours.get_added_vocab() == theirs.get_added_vocab()
    with pytest.raises(ValueError, match="not a special token name"):
        ours.add_special_tokens({"pda_token": "x"})
    assert ours.max_len_single_sentence == theirs.max_len_single_sentence
    text = "<a> plain <cls> x<c>"
    assert_same_call(ours, theirs, [text, "y"], padding=True, return_special_tokens_mask=True)
    ids = ours(text)["input_ids"]
    assert ours.get_special_tokens_mask(ids, already_has_special_tokens=True) == theirs.get_special_tokens_mask(
        ids, already_has_special_tokens=True)


def test_sides_and_defaults_match_transformers(tmp_path, chinese_vocab):
    folder = write_folder(tmp_path / "bare", {"vocab.txt": chinese_vocab,
                                              "tokenizer_config.json": {"tokenizer_class": "BertTokenizer"}})
    ours, theirs = BertTokenizer.from_pretrained(folder), transformers_auto(folder)
    assert ours.model_max_length == theirs.model_max_length == int(1e30)
    # padding="max_length"/truncation=True without a max length: switched off when the model has no limit
    for kwargs in ({"padding": "max_length"}, {"truncation": True}, {"padding": "max_length", "truncation": True}):
        assert_same_call(ours, theirs, TEXTS, **kwargs)
    for tok in (ours, theirs):
        tok.padding_side, tok.truncation_side = "left", "left"
    for kwargs in CALLS:
        assert_same_call(ours, theirs, TEXTS, **kwargs)
        assert_same_call(ours, theirs, [p[0] for p in PAIRS], [p[1] for p in PAIRS], **kwargs)
    assert_same_call(ours, theirs, TEXTS, text_target=TEXTS[::-1], padding=True)
    ours.padding_side = "middle"
    with pytest.raises(ValueError, match="padding_side"):
        ours(TEXTS, padding=True)
    with pytest.raises(ValueError, match="padding="):
        ours(TEXTS, padding="shortest")
    with pytest.raises(ValueError, match="text"):
        ours(123)


def test_pad_matches_transformers(minilm, minilm_dir):
    theirs = transformers_auto(minilm_dir)
    features = [minilm(text) for text in TEXTS[:4]]
    cases = [dict(), dict(padding="max_length", max_length=40), dict(pad_to_multiple_of=8),
             dict(padding_side="left"), dict(return_attention_mask=False), dict(return_tensors="pt")]
    for kwargs in cases:
        a = minilm.pad([dict(f) for f in features], **kwargs)
        b = theirs.pad([dict(f) for f in features], **kwargs)
        assert {k: plain(v) for k, v in a.items()} == {k: plain(v) for k, v in b.items()}, kwargs
    single = minilm.pad({"input_ids": [101, 102]}, padding="max_length", max_length=4)
    assert single["input_ids"] == [101, 102, 0, 0] and single["attention_mask"] == [1, 1, 0, 0]
    import torch
    batch = {"input_ids": [torch.tensor([1, 2, 3]), torch.tensor([4])]}
    padded = minilm.pad(batch)
    assert isinstance(padded["input_ids"], torch.Tensor) and padded["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    with pytest.raises(ValueError, match="input_ids"):
        minilm.pad({"labels": [1]})


def test_decode_variants(minilm, minilm_dir):
    theirs = transformers_auto(minilm_dir)
    ids = minilm(TEXTS[:3], padding=True)["input_ids"]
    import torch
    assert minilm.decode(torch.tensor(ids[0])) == theirs.decode(torch.tensor(ids[0]))
    assert minilm.decode(torch.tensor(ids)) == theirs.decode(torch.tensor(ids))
    assert minilm.batch_decode(torch.tensor(ids), skip_special_tokens=True) == theirs.batch_decode(
        torch.tensor(ids), skip_special_tokens=True)
    assert minilm.decode(101) == theirs.decode(101) == "[CLS]"
    assert minilm.batch_decode([]) == []
    assert minilm.convert_ids_to_tokens(7592) == "hello"


def _roundtrip_ids(tok_a, tok_b, texts=TEXTS):
    for text in texts:
        assert tok_a(text)["input_ids"] == tok_b(text)["input_ids"], text
    assert tok_a(PAIRS[0][0], PAIRS[0][1])["input_ids"] == tok_b(PAIRS[0][0], PAIRS[0][1])["input_ids"]


@pytest.mark.parametrize("case", ["chinese_vocab", "minilm", "bpe_added_tokens"])
def test_save_pretrained_both_ways(tmp_path, case, request):
    if case == "chinese_vocab":
        source = write_folder(tmp_path / "src", {"vocab.txt": request.getfixturevalue("chinese_vocab"),
                                                 "tokenizer_config.json": {"tokenizer_class": "BertTokenizer",
                                                                           "do_lower_case": False,
                                                                           "strip_accents": True}})
        cls = BertTokenizer
    elif case == "minilm":
        source, cls = request.getfixturevalue("minilm_dir"), BertTokenizer
    else:
        source = write_folder(tmp_path / "src", {"tokenizer.json": train_byte_level().to_str(),
                                                 "tokenizer_config.json": {"tokenizer_class": "GPT2Tokenizer"}})
        cls = GPT2Tokenizer
    ours = cls.from_pretrained(source)
    if case == "bpe_added_tokens":
        ours.add_tokens(["brandnew"])
        ours.add_special_tokens({"pad_token": "<pad>", "extra_special_tokens": ["<x>"]})
    ours.padding_side = "left"
    written = ours.save_pretrained(tmp_path / "ours")
    assert sorted(os.path.basename(p) for p in written) == ["tokenizer.json", "tokenizer_config.json"]
    config = json.loads((tmp_path / "ours" / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == cls.__name__ and "added_tokens_decoder" not in config
    theirs = transformers_auto(tmp_path / "ours")
    assert type(theirs).__name__ == cls.__name__
    again = cls.from_pretrained(tmp_path / "ours")
    assert_same_attributes(again, theirs)
    texts = TEXTS + (["a brandnew <x> token <pad>"] if case == "bpe_added_tokens" else [])
    _roundtrip_ids(ours, theirs, texts)
    _roundtrip_ids(again, theirs, texts)
    assert theirs.padding_side == again.padding_side == "left"
    # the reverse: transformers saves, autoload loads
    theirs.save_pretrained(tmp_path / "theirs")
    back = cls.from_pretrained(tmp_path / "theirs")
    assert_same_attributes(back, theirs)
    _roundtrip_ids(back, theirs, texts)


def test_loading_a_repo_id_fetches_only_tokenizer_files(hub, hub_root, minilm_dir):
    files = {name: (minilm_dir / name).read_bytes() for name in
             ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "config.json")}
    files["model.safetensors"] = os.urandom(4096)
    files["pytorch_model.bin"] = os.urandom(2048)
    files["1_Pooling/config.json"] = b"{}"
    write_repo(hub_root / "sentence-transformers" / "all-MiniLM-L6-v2", files)
    hub.reset_requests()
    tok = BertTokenizer.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")
    assert tok("Hello world")["input_ids"] == [101, 7592, 2088, 102]
    paths = [request.path for request in hub.requests]
    assert paths and not any(p.endswith((".safetensors", ".bin")) or "1_Pooling" in p for p in paths), paths
    assert not any(p.endswith("/config.json") and "resolve" in p for p in paths)  # config.json is not ours
    downloads = [p for p in paths if "/resolve/" in p]
    assert sorted(p.rsplit("/", 1)[1] for p in downloads) == ["special_tokens_map.json", "tokenizer.json",
                                                             "tokenizer_config.json", "vocab.txt"]
    # cached now: offline loading works and asks nothing
    hub.reset_requests()
    again = TokenizersBackend.from_pretrained("sentence-transformers/all-MiniLM-L6-v2", local_files_only=True)
    assert again("Hello world")["input_ids"] == [101, 7592, 2088, 102] and hub.requests == []


def test_from_source_with_a_vocab_only_repo(hub):
    from autoload.hub.source import FileSource
    source = FileSource("google-bert/bert-base-chinese")  # conftest's repo: 7-token vocab.txt + model.safetensors
    hub.reset_requests()
    tok = BertTokenizer.from_source(source)
    assert tok.tokenize("你好") == ["你", "好"] and tok("你好")["input_ids"] == [2, 5, 6, 3]
    assert not any("safetensors" in r.path for r in hub.requests)
    with pytest.raises(OSError, match="tokenizer.json"):
        GPT2Tokenizer.from_source(source)


def test_errors_are_clear(tmp_path, minilm, minilm_dir, chinese_vocab):
    with pytest.raises(TypeError, match=r"'padding_sde' \(did you mean 'padding_side'\?\)"):
        BertTokenizer.from_pretrained(minilm_dir, padding_sde="left")
    empty = write_folder(tmp_path / "empty", {"README.md": "nothing here"})
    with pytest.raises(OSError, match=r"needs tokenizer.json or vocab.txt"):
        BertTokenizer.from_pretrained(empty)
    with pytest.raises(OSError, match="tokenizer.json"):
        TokenizersBackend.from_pretrained(write_folder(tmp_path / "spm", {"tokenizer.model": "x"}))
    broken = write_folder(tmp_path / "broken", {"vocab.txt": chinese_vocab})
    (broken / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(OSError, match="not valid JSON"):
        BertTokenizer.from_pretrained(broken)
    with pytest.raises(OSError, match="neither a local folder nor a valid repo id"):
        BertTokenizer.from_pretrained("no such//folder")
    assert repr(minilm).startswith("BertTokenizer(name_or_path=")
    assert minilm.init_kwargs["do_lower_case"] is True and minilm.name_or_path == str(minilm_dir)


def test_class_table_matches_transformers_names():
    from transformers.models.auto import tokenization_auto as transformers
    for name, target in TOKENIZER_CLASSES.items():
        cls = tokenizer_class(name)
        assert f"{cls.__module__}:{cls.__name__}" == target
        reference = transformers.tokenizer_class_from_name(name)
        if name in ("QWenTokenizer", "ChatGLMTokenizer", "ChatGLM4Tokenizer", "BaichuanTokenizer", "BaiChuanTokenizer",
                    "InternLM2Tokenizer", "InternLM2TokenizerFast"):
            assert reference is None  # remote code in transformers; built from the repos' files here
        elif name in ("PreTrainedTokenizer", "PythonBackend"):
            assert reference.__name__ == "PythonBackend"  # AutoTokenizer upgrades it to TokenizersBackend
        else:
            assert reference.__name__ == cls.__name__, name
    assert tokenizer_class("BertTokenizerFast") is BertTokenizer and tokenizer_class("Nope") is None


def test_import_is_light(minilm, minilm_dir):
    probe = (f"import sys; sys.path.insert(0, {str(ROOT / 'src')!r});"
             "import autoload.tokenization as t; from autoload.tokenization import BertTokenizer, TokenizersBackend,"
             " GPT2Tokenizer, Qwen2Tokenizer, LlamaTokenizer, QWenTokenizer;"
             f"tok = BertTokenizer.from_pretrained({str(minilm_dir)!r}); tok(['a b', 'c'], padding=True);"
             "tok.decode([101, 102]);"
             "print(' '.join(sys.modules))")
    loaded = set(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                check=True).stdout.split())
    assert not loaded & {"torch", "transformers", "numpy", "jinja2", "requests"}, loaded & {"torch", "transformers",
                                                                                          "numpy", "jinja2"}
    bare = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT / 'src')!r});"
                           "import autoload.tokenization; print(' '.join(sys.modules))"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert "tokenizers" not in bare  # the package itself is only a table until a class is used


def test_copying_a_folder_with_symlinked_vocab(tmp_path, chinese_vocab):
    """FileSource reads folders through symlinks (the HF cache layout)."""
    folder = write_folder(tmp_path / "linked", {"vocab.txt": chinese_vocab})
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy, symlinks=True)
    assert BertTokenizer.from_pretrained(copy).tokenize("北京") == ["北", "京"]
