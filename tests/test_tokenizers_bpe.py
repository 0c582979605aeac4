"""Byte-level BPE parity with transformers 5.x: a BPE trained here with `tokenizers` and saved GPT-2 style
(vocab.json + merges.txt) and as tokenizer.json, read by GPT2Tokenizer, Qwen2Tokenizer, LlamaTokenizer and the
generic backend; and the real Qwen rank file (qwen.tiktoken) against transformers' TikTokenConverter and against
tiktoken's merge rule written out in Python."""

from __future__ import annotations

import base64
import json
import unicodedata

import pytest
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from autoload.tokenization import GPT2Tokenizer, LlamaTokenizer, Qwen2Tokenizer, QWenTokenizer, TokenizersBackend
from autoload.tokenization.qwen2 import QWEN2_PATTERN
from autoload.tokenization.tiktoken_ranks import QWEN_SPECIAL_TOKENS, load_ranks
from tokenizer_cases import (CALLS, CORPUS, LONG_TEXT, SPECIALS, TEXTS, assert_same_attributes, assert_same_call,
                             assert_same_decoding, assert_same_everywhere, train_byte_level, transformers_auto,
                             write_folder)


@pytest.fixture(scope="module")
def gpt2_files(tmp_path_factory):
    """{"vocab.json", "merges.txt", "tokenizer.json"} contents of a GPT-2 style trained BPE."""
    tokenizer = train_byte_level()
    folder = tmp_path_factory.mktemp("trained")
    tokenizer.model.save(str(folder))
    tokenizer.save(str(folder / "tokenizer.json"))
    return {name: (folder / name).read_text(encoding="utf-8") for name in ("vocab.json", "merges.txt",
                                                                        "tokenizer.json")}


@pytest.fixture(scope="module")
def qwen_style_json(tmp_path_factory):
    tokenizer = train_byte_level(
        pre_tokenizer=pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
        normalizer=normalizers.NFC())
    return tokenizer.to_str()


def added_tokens_decoder(first_id: int) -> dict:
    return {str(first_id + i): {"content": token, "lstrip": False, "normalized": False, "rstrip": False,
                                "single_word": False, "special": True} for i, token in enumerate(SPECIALS)}


def test_gpt2_from_vocab_and_merges(tmp_path, gpt2_files):
    folder = write_folder(tmp_path / "gpt2", {"vocab.json": gpt2_files["vocab.json"],
                                              "merges.txt": gpt2_files["merges.txt"],
                                              "tokenizer_config.json": {"tokenizer_class": "GPT2Tokenizer"}})
    ours, theirs = GPT2Tokenizer.from_pretrained(folder), transformers_auto(folder)
    assert type(theirs).__name__ == "GPT2Tokenizer"
    assert_same_attributes(ours, theirs)
    assert_same_decoding(ours, theirs)
    # no pad token: padding fails on both sides, ours says how to fix it
    with pytest.raises(ValueError, match=r"tok.pad_token = tok.eos_token"):
        ours(TEXTS, padding=True)
    ours.pad_token = ours.eos_token
    theirs.pad_token = theirs.eos_token
    assert ours.pad_token_id == theirs.pad_token_id == 0
    assert_same_everywhere(ours, theirs)
    for text in TEXTS + [LONG_TEXT]:  # byte-level BPE is lossless
        assert ours.decode(ours.encode(text)) == text


def test_gpt2_from_tokenizer_json_with_prefix_space(tmp_path, gpt2_files):
    config = {"tokenizer_class": "GPT2Tokenizer", "add_prefix_space": True, "pad_token": "<|endoftext|>",
              "model_max_length": 1024, "add_bos_token": True}  # add_bos_token dropped: tokenizer.json decides
    folder = write_folder(tmp_path / "gpt2j", {"tokenizer.json": gpt2_files["tokenizer.json"],
                                               "tokenizer_config.json": config})
    ours, theirs = GPT2Tokenizer.from_pretrained(folder), transformers_auto(folder)
    assert_same_attributes(ours, theirs)
    assert_same_decoding(ours, theirs)
    assert_same_everywhere(ours, theirs)
    assert ours.tokenize("Hello") == theirs.tokenize("Hello")
    assert ours.tokenize("Hello")[0].startswith("Ġ")  # the prefix space


def test_gpt2_split_into_words(tmp_path, gpt2_files):
    folder = write_folder(tmp_path / "words", {"tokenizer.json": gpt2_files["tokenizer.json"],
                                               "tokenizer_config.json": {"tokenizer_class": "GPT2Tokenizer",
                                                                         "add_prefix_space": True}})
    ours, theirs = GPT2Tokenizer.from_pretrained(folder), transformers_auto(folder)
    words = [["Hello", "world", "!"], ["混合", "text"], ["single"]]
    assert_same_call(ours, theirs, words, is_split_into_words=True)
    assert_same_call(ours, theirs, words[0], is_split_into_words=True)
    out = ours(words, is_split_into_words=True)
    assert out.word_ids(0)[:2] == [0, 0] or out.word_ids(0)[0] == 0


@pytest.mark.parametrize("layout", ["tokenizer.json", "vocab+merges"])
def test_qwen2_class(tmp_path, gpt2_files, qwen_style_json, layout):
    vocab_size = len(json.loads(gpt2_files["vocab.json"]))
    config = {"tokenizer_class": "Qwen2Tokenizer", "model_max_length": 32768, "errors": "replace",
              "added_tokens_decoder": added_tokens_decoder(0), "extra_special_tokens": ["<|im_start|>", "<|im_end|>"],
              "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": None, "split_special_tokens": False}
    files = {"tokenizer_config.json": config}
    if layout == "tokenizer.json":
        files["tokenizer.json"] = qwen_style_json
    else:
        files["vocab.json"], files["merges.txt"] = gpt2_files["vocab.json"], gpt2_files["merges.txt"]
    folder = write_folder(tmp_path / "qwen2", files)
    ours, theirs = Qwen2Tokenizer.from_pretrained(folder), transformers_auto(folder)
    assert type(theirs).__name__ == "Qwen2Tokenizer" and vocab_size > 500
    assert_same_attributes(ours, theirs)
    assert_same_decoding(ours, theirs)
    assert_same_everywhere(ours, theirs)
    chat = "<|im_start|>user\nHello 123<|im_end|>\n<|im_start|>assistant\n"
    assert_same_call(ours, theirs, chat, return_offsets_mapping=True)
    assert ours(chat)["input_ids"][0] == 1  # <|im_start|> matched whole
    assert_same_call(ours, theirs, chat, split_special_tokens=True)


def test_generic_backend_from_tokenizer_json(tmp_path, gpt2_files):
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|im_start|>",
              "eos_token": "<|endoftext|>", "add_bos_token": True, "clean_up_tokenization_spaces": True,
              "chat_template": "{{ messages[0]['content'] }}"}
    folder = write_folder(tmp_path / "generic", {"tokenizer.json": gpt2_files["tokenizer.json"],
                                                 "tokenizer_config.json": config})
    ours, theirs = TokenizersBackend.from_pretrained(folder), transformers_auto(folder)
    assert type(theirs).__name__ == "TokenizersBackend"
    assert_same_attributes(ours, theirs)
    assert_same_decoding(ours, theirs)  # clean_up_tokenization_spaces=True is refused for BPE on both sides
    for kwargs in CALLS[:2] + CALLS[6:]:
        assert_same_call(ours, theirs, TEXTS, **kwargs)
    # an explicit add_bos_token (caller keyword) rebuilds the post-processor on both sides
    ours, theirs = (TokenizersBackend.from_pretrained(folder, add_bos_token=True),
                    transformers_auto(folder, add_bos_token=True))
    assert ours("hi")["input_ids"] == theirs("hi")["input_ids"]
    assert ours("hi")["input_ids"][0] == 1
    assert ours("a", "b")["input_ids"] == theirs("a", "b")["input_ids"]


def llama_style_json() -> str:
    """A Llama-2 style tokenizer.json (SentencePiece BPE in tokenizers form): "▁" for spaces, byte fallback."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                           decoders.Strip(" ", 1, 0)])
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=900, special_tokens=["<unk>", "<s>", "</s>", *byte_tokens])
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                             special_tokens=[("<s>", 1)])
    return tokenizer.to_str()


def test_llama2_style(tmp_path):
    config = {"tokenizer_class": "LlamaTokenizer", "legacy": False, "add_bos_token": True, "add_eos_token": False,
              "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": None,
              "added_tokens_decoder": {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                                "single_word": False, "special": True}
                                       for i, t in enumerate(["<unk>", "<s>", "</s>"])}}
    folder = write_folder(tmp_path / "llama", {"tokenizer.json": llama_style_json(), "tokenizer_config.json": config})
    ours, theirs = LlamaTokenizer.from_pretrained(folder), transformers_auto(folder)
    assert type(theirs).__name__ == "LlamaTokenizer"
    assert ours.padding_side == "left"
    assert_same_attributes(ours, theirs)
    assert_same_decoding(ours, theirs)
    ours.pad_token, theirs.pad_token = "</s>", "</s>"
    for kwargs in CALLS:
        assert_same_call(ours, theirs, TEXTS, **kwargs)
    assert ours.tokenize("ÿ😀")[:2] == theirs.tokenize("ÿ😀")[:2]  # byte fallback


# -- Qwen(-1) tiktoken ranks ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qwen_tiktoken(tmp_path_factory, qwen_ranks):
    folder = write_folder(tmp_path_factory.mktemp("qwen") / "Qwen-7B", {
        "qwen.tiktoken": qwen_ranks,
        "tokenizer_config.json": {"model_max_length": 8192, "tokenizer_class": "QWenTokenizer",
                                  "auto_map": {"AutoTokenizer": ["tokenization_qwen.QWenTokenizer", None]}}})
    return folder, QWenTokenizer.from_pretrained(folder)


def tiktoken_reference_encode(ranks: dict[bytes, int], text: str) -> list[int]:
    """tiktoken's algorithm, spelled out: NFC, split specials, split with Qwen's regex, then per piece repeatedly
    merge the adjacent pair whose concatenation has the lowest rank (leftmost on ties)."""
    import regex
    special_ids = {token: len(ranks) + i for i, token in enumerate(QWEN_SPECIAL_TOKENS)}
    text = unicodedata.normalize("NFC", text)
    chunks = regex.split("(" + "|".join(map(regex.escape, QWEN_SPECIAL_TOKENS)) + ")", text)
    ids = []
    for chunk in chunks:
        if chunk in special_ids:
            ids.append(special_ids[chunk])
            continue
        for piece in regex.findall(QWEN2_PATTERN, chunk):
            parts = [bytes([b]) for b in piece.encode("utf-8")]
            while len(parts) > 1:
                best = min(range(len(parts) - 1), key=lambda i: (ranks.get(parts[i] + parts[i + 1], 1 << 62), i))
                if parts[best] + parts[best + 1] not in ranks:
                    break
                parts[best:best + 2] = [parts[best] + parts[best + 1]]
            ids.extend(ranks[part] for part in parts)
    return ids


def test_qwen_tiktoken_matches_tiktoken_rule(qwen_tiktoken, qwen_ranks):
    _, tok = qwen_tiktoken
    ranks = load_ranks(str(qwen_ranks))
    assert len(tok) == len(ranks) + len(QWEN_SPECIAL_TOKENS) == 151851
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|extra_204|>"]) == [
        151643, 151644, 151645, 151850]
    texts = TEXTS + [LONG_TEXT, "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n你好<|im_end|>",
                     "e\u0301" * 3 + " NFC first", "     \n\n\t  x", "'s 'S 'll'LL 123456789 ٣"]
    for text in texts:
        assert tok(text)["input_ids"] == tiktoken_reference_encode(ranks, text), text
    assert tok.decode(tok(texts[1])["input_ids"]) == texts[1]
    assert tok.eos_token == tok.pad_token == "<|endoftext|>"


def test_qwen_tiktoken_matches_transformers_converter(qwen_tiktoken, monkeypatch, qwen_ranks):
    """transformers' TikTokenConverter (its tiktoken reader swapped for ours: tiktoken is not installed) builds the
    same vocab and merges; ids agree on NFC text (the converter has no NFC step, Qwen's tokenizer does)."""
    from transformers import TokenizersBackend as Reference
    from transformers.convert_slow_tokenizer import TikTokenConverter
    _, tok = qwen_tiktoken
    monkeypatch.setattr(TikTokenConverter, "load_tiktoken_bpe", staticmethod(load_ranks))
    converted = TikTokenConverter(vocab_file=str(qwen_ranks), pattern=QWEN2_PATTERN,
                                  extra_special_tokens=list(QWEN_SPECIAL_TOKENS)).converted()
    ours_json, theirs_json = json.loads(tok.backend_tokenizer.to_str()), json.loads(converted.to_str())
    assert ours_json["model"] == theirs_json["model"]
    assert ours_json["pre_tokenizer"] == theirs_json["pre_tokenizer"]
    assert ours_json["added_tokens"] == theirs_json["added_tokens"]
    theirs = Reference(tokenizer_object=converted, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                       unk_token="<|endoftext|>")
    texts = [unicodedata.normalize("NFC", text) for text in TEXTS + [LONG_TEXT]]
    for kwargs in CALLS:
        assert_same_call(tok, theirs, texts, **kwargs)
    assert_same_decoding(tok, theirs, texts)


def test_qwen_tiktoken_saves_a_tokenizer_json_transformers_reads(qwen_tiktoken, tmp_path):
    _, tok = qwen_tiktoken
    tok.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "TokenizersBackend" and "auto_map" not in config
    theirs = transformers_auto(tmp_path / "saved")
    again = TokenizersBackend.from_pretrained(tmp_path / "saved")
    for text in TEXTS:
        assert theirs(text)["input_ids"] == tok(text)["input_ids"] == again(text)["input_ids"]


def test_rank_file_errors(tmp_path):
    bad = tmp_path / "bad" / "qwen.tiktoken"
    bad.parent.mkdir()
    bad.write_text(base64.b64encode(b"a").decode() + " 0\nnot-a-line\n")
    with pytest.raises(OSError, match="line 2"):
        QWenTokenizer.from_pretrained(bad.parent)
    with pytest.raises(OSError, match=r"qwen\.tiktoken"):
        QWenTokenizer.from_pretrained(write_folder(tmp_path / "empty", {"tokenizer_config.json": {}}))


def test_added_tokens_then_encode(tmp_path, gpt2_files):
    folder = write_folder(tmp_path / "add", {"tokenizer.json": gpt2_files["tokenizer.json"],
                                             "tokenizer_config.json": {"tokenizer_class": "GPT2Tokenizer"}})
    ours, theirs = GPT2Tokenizer.from_pretrained(folder), transformers_auto(folder)
    for tok in (ours, theirs):
        assert tok.add_tokens(["newtoken", AddedToken(" spaced", lstrip=True)]) == 2
        assert tok.add_special_tokens({"pad_token": "<pad>", "extra_special_tokens": ["<x>", "<y>"]}) == 3
    assert_same_attributes(ours, theirs)
    text = "a newtoken b  spaced <x>c<y> <pad>"
    assert_same_call(ours, theirs, [text, "short"], padding=True, return_offsets_mapping=True)
    ids = ours(text)["input_ids"]
    assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(ids, skip_special_tokens=True)
    assert ours.pad_token_id == len(ours) - 3


def test_llama_declared_but_byte_level_uses_generic_backend(tmp_path, gpt2_files):
    """Llama-3 style: tokenizer_class LlamaTokenizer over a byte-level tokenizer.json (transformers' AutoTokenizer
    switches to TokenizersBackend; so does LlamaTokenizer.from_pretrained here)."""
    config = {"tokenizer_class": "LlamaTokenizer", "bos_token": "<|im_start|>", "eos_token": "<|im_end|>"}
    folder = write_folder(tmp_path / "llama3", {"tokenizer.json": gpt2_files["tokenizer.json"],
                                                "tokenizer_config.json": config})
    ours, theirs = LlamaTokenizer.from_pretrained(folder), transformers_auto(folder)
    assert type(ours).__name__ == type(theirs).__name__ == "TokenizersBackend"
    assert_same_attributes(ours, theirs)
    for kwargs in CALLS[:3]:
        assert_same_call(ours, theirs, TEXTS, **kwargs)


QWEN25_TOKENS = [("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
                 ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
                 ("<|box_end|>", True), ("<|quad_start|>", True), ("<|quad_end|>", True), ("<|vision_start|>", True),
                 ("<|vision_end|>", True), ("<|vision_pad|>", True), ("<|image_pad|>", True), ("<|video_pad|>", True),
                 ("<tool_call>", False), ("</tool_call>", False), ("<|fim_prefix|>", False), ("<|fim_middle|>", False),
                 ("<|fim_suffix|>", False), ("<|fim_pad|>", False), ("<|repo_name|>", False), ("<|file_sep|>", False)]


def test_qwen25_layout_on_the_real_vocab(qwen_tiktoken, tmp_path):
    """A Qwen2.5-shaped repo: the real 151k byte-level vocab (saved from the rank file) with Qwen2.5's
    tokenizer_config (added_tokens_decoder from 151643, special and non-special entries, unk/bos null)."""
    _, source = qwen_tiktoken
    source.save_pretrained(tmp_path / "repo")
    config = {"add_bos_token": False, "add_prefix_space": False, "bos_token": None, "unk_token": None,
              "clean_up_tokenization_spaces": False, "eos_token": "<|im_end|>", "errors": "replace",
              "model_max_length": 131072, "pad_token": "<|endoftext|>", "split_special_tokens": False,
              "tokenizer_class": "Qwen2Tokenizer",
              "additional_special_tokens": [token for token, special in QWEN25_TOKENS[1:14]],
              "added_tokens_decoder": {str(151643 + i): {"content": token, "lstrip": False, "normalized": False,
                                                         "rstrip": False, "single_word": False, "special": special}
                                       for i, (token, special) in enumerate(QWEN25_TOKENS)}}
    (tmp_path / "repo" / "tokenizer_config.json").write_text(json.dumps(config))
    ours, theirs = Qwen2Tokenizer.from_pretrained(tmp_path / "repo"), transformers_auto(tmp_path / "repo")
    assert type(theirs).__name__ == "Qwen2Tokenizer"
    assert_same_attributes(ours, theirs)
    assert ours.convert_tokens_to_ids("<|file_sep|>") == 151664 and ours.unk_token is None
    texts = TEXTS + ["<|im_start|>user\n<tool_call>{\"a\": 1}</tool_call><|vision_start|><|image_pad|><|im_end|>"]
    for kwargs in CALLS:
        assert_same_call(ours, theirs, texts, **kwargs)
    assert_same_decoding(ours, theirs, texts)
