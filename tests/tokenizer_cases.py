"""Shared material for the tokenizer parity tests: hard texts, call variants, and the comparison of an autoload
tokenizer with transformers' on the same inputs. The real vocab files come from conftest's data fixtures."""

from __future__ import annotations

import json
import logging
from pathlib import Path

TEXTS = [
    "Hello, world! How are you doing today?",
    "混合 Chinese 和 English 文本，测试一下。北京欢迎你",
    "Café déjà vu — naïve façade, Ångström, résumé, ÀÉÎÕÜ",
    "Emoji 😀👍🏽 and flags 🇨🇳🇫🇷 ❤️ family 👨‍👩‍👧",
    "Ｆｕｌｌ－ｗｉｄｔｈ　ＡＢＣ１２３！？ and ｶﾀｶﾅ",
    "  leading and   multiple\t\ttabs\n\nnewlines  trailing   ",
    "control\x00chars\x07 here\x1b and \u200b zero width \ufeff bom \u00ad soft",
    "",
    "don't can't I'm we're they've it's y'all",
    "Numbers 12345 and 3.14159, 1,000,000 and ١٢٣",
    "e\u0301 combining vs é precomposed; ﬁ ligature; Ⅻ",
    "URL https://example.com/a?b=c&d=e#f and e-mail a.b@c.org",
]
LONG_TEXT = " ".join(["The quick brown fox jumps over the lazy dog 敏捷的棕色狐狸 ünïcödé 😀."] * 60)
PAIRS = [("What is the capital of France?", "Paris is the capital and largest city of France."),
         ("短问题", "一个更长一点的回答，包含 English words 和标点。"),
         ("", "second only"),
         ("Une question à propos de l'été", LONG_TEXT[:400])]

CORPUS = TEXTS + [LONG_TEXT] + [
    "The tokenizer learns merges from this small corpus of English, français, Deutsch und 中文.",
    "def main():\n    print('hello world')\n    return 0\n",
    "Numbers like 2024, 3.14 and 1e-5 appear; so do <tags> and {braces}.",
] * 5
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Keyword sets for tok(batch, **kwargs); each is run on single texts, batches and pairs.
CALLS = [
    {},
    {"add_special_tokens": False},
    {"padding": True},
    {"padding": "longest", "pad_to_multiple_of": 8},
    {"padding": "max_length", "max_length": 48},
    {"padding": True, "padding_side": "left"},
    {"truncation": True, "max_length": 12},
    {"max_length": 10},  # max_length alone truncates
    {"padding": "max_length", "truncation": True, "max_length": 16, "pad_to_multiple_of": 8},
    {"truncation": "longest_first", "max_length": 9, "stride": 2, "return_overflowing_tokens": True},
    {"truncation": "only_first", "max_length": 20, "stride": 3, "return_overflowing_tokens": True, "padding": True},
    {"truncation": "only_second", "max_length": 24, "stride": 4, "return_overflowing_tokens": True},
    {"return_offsets_mapping": True, "return_special_tokens_mask": True, "return_length": True},
    {"return_token_type_ids": True, "return_attention_mask": False},
    {"return_token_type_ids": False},
    {"padding": True, "return_tensors": "pt"},
    {"padding": True, "truncation": True, "max_length": 32, "return_tensors": "pt", "return_offsets_mapping": True},
]


def train_byte_level(pre_tokenizer=None, normalizer=None):
    """A small GPT-2 style byte-level BPE trained on CORPUS, with SPECIALS at ids 0, 1, 2."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    tokenizer = Tokenizer(models.BPE())
    if normalizer is not None:
        tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer or pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return tokenizer


def write_folder(folder: Path, files: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            path.symlink_to(content)
        elif isinstance(content, (dict, list)):
            path.write_text(json.dumps(content, ensure_ascii=False), encoding="utf-8")
        else:
            path.write_text(content, encoding="utf-8")
    return folder


def transformers_auto(path, **kwargs):
    """transformers' AutoTokenizer (the reference), imported only here and quieted."""
    import transformers
    transformers.logging.set_verbosity_error()
    return transformers.AutoTokenizer.from_pretrained(str(path), **kwargs)


def plain(value):
    if hasattr(value, "tolist"):
        return ("tensor", str(getattr(value, "dtype", "")), value.tolist())
    if isinstance(value, tuple):
        return list(plain(v) for v in value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def run(tok, *args, **kwargs):
    try:
        return "ok", tok(*args, **kwargs)
    except BaseException as err:  # both sides must fail alike (tokenizers' Rust panics are BaseExceptions)
        if isinstance(err, KeyboardInterrupt):
            raise
        return "error", err


def assert_same_call(ours, theirs, *args, **kwargs):
    """tok(*args, **kwargs) gives the same keys, values (and tensor dtypes), tokens and word ids on both sides."""
    status_a, a = run(ours, *args, **kwargs)
    status_b, b = run(theirs, *args, **kwargs)
    assert status_a == status_b, f"{kwargs}: autoload {status_a} ({a!r:.300}) vs transformers {status_b} ({b!r:.300})"
    if status_a == "error":
        return
    assert list(a.keys()) == list(b.keys()), kwargs
    for key in a:
        assert plain(a[key]) == plain(b[key]), (key, kwargs, args[:1])
    if b.encodings:
        assert len(a.encodings) == len(b.encodings)
        for i in range(len(b.encodings)):
            assert a.tokens(i) == b.tokens(i)
            assert a.word_ids(i) == b.word_ids(i)
            assert a.sequence_ids(i) == b.sequence_ids(i)


def assert_same_everywhere(ours, theirs, *, texts=TEXTS, pairs=PAIRS, calls=CALLS):
    """Every call variant on single texts, the batch, and pairs (single and batched)."""
    for kwargs in calls:
        assert_same_call(ours, theirs, texts, **kwargs)
        for text in texts[:4] + [LONG_TEXT, ""]:
            assert_same_call(ours, theirs, text, **kwargs)
        assert_same_call(ours, theirs, [p[0] for p in pairs], [p[1] for p in pairs], **kwargs)
        assert_same_call(ours, theirs, pairs[0][0], pairs[0][1], **kwargs)
        assert_same_call(ours, theirs, [list(p) for p in pairs], **kwargs)  # a batch of pairs as one list


def assert_same_decoding(ours, theirs, texts=TEXTS + [LONG_TEXT]):
    ids = theirs(texts)["input_ids"]
    assert ours(texts)["input_ids"] == ids
    for skip in (False, True):
        assert ours.batch_decode(ids, skip_special_tokens=skip) == theirs.batch_decode(ids, skip_special_tokens=skip)
        for row in ids:
            assert ours.decode(row, skip_special_tokens=skip) == theirs.decode(row, skip_special_tokens=skip)
            for clean in (True, False):
                assert (ours.decode(row, skip_special_tokens=skip, clean_up_tokenization_spaces=clean)
                        == theirs.decode(row, skip_special_tokens=skip, clean_up_tokenization_spaces=clean))
    for row in ids[:3]:
        tokens = theirs.convert_ids_to_tokens(row)
        assert ours.convert_ids_to_tokens(row) == tokens
        assert ours.convert_ids_to_tokens(row, skip_special_tokens=True) == theirs.convert_ids_to_tokens(
            row, skip_special_tokens=True)
        assert ours.convert_tokens_to_ids(tokens) == theirs.convert_tokens_to_ids(tokens)
        assert ours.convert_tokens_to_string(tokens) == theirs.convert_tokens_to_string(tokens)
    for text in texts[:5]:
        assert ours.tokenize(text) == theirs.tokenize(text)
        assert ours.encode(text) == theirs.encode(text)


def assert_same_attributes(ours, theirs):
    assert ours.special_tokens_map == theirs.special_tokens_map
    assert ours.all_special_tokens == theirs.all_special_tokens
    assert ours.all_special_ids == theirs.all_special_ids
    for name in ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"):
        assert getattr(ours, name) == getattr(theirs, name), name
        assert getattr(ours, name + "_id") == getattr(theirs, name + "_id"), name
    assert len(ours) == len(theirs)
    assert ours.vocab_size == theirs.vocab_size
    assert ours.get_vocab() == theirs.get_vocab()
    assert ours.model_max_length == theirs.model_max_length
    assert ours.padding_side == theirs.padding_side
    assert ours.truncation_side == theirs.truncation_side
    assert ours.model_input_names == theirs.model_input_names
    assert ours.added_tokens_decoder == theirs.added_tokens_decoder
    assert ours.num_special_tokens_to_add() == theirs.num_special_tokens_to_add()
    assert ours.num_special_tokens_to_add(pair=True) == theirs.num_special_tokens_to_add(pair=True)
    assert ours.is_fast and theirs.is_fast
    # same repr, apart from where each was loaded from
    assert repr(ours).split("', ", 1)[1] == repr(theirs).split("', ", 1)[1]


def quiet_transformers():
    logging.getLogger("transformers").setLevel(logging.ERROR)
