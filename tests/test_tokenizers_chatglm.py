"""ChatGLM2/3 and GLM-4 tokenizers without the repos' code: SentencePiece models trained here (sentencepiece is the
reference) and a GLM-4 style rank file derived from a byte-level BPE trained here (tiktoken is the reference);
then the ChatGLM conventions of docs/chatglm.md sections 3 and 4: specials, prefix, left padding with
position_ids, decoding per variant, build_prompt / build_chat_input, chat templates, save/load, AutoTokenizer."""

from __future__ import annotations

import base64
import json

import pytest
import sentencepiece as spm
import tiktoken
import torch
from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

from autoload.tokenization import ChatGLM4Tokenizer, ChatGLMTokenizer, tokenizer_class
from autoload.tokenization.chatglm import GLM4_PATTERN, GLM4_SPECIAL_TOKENS, _rank_tokenizer_json
from autoload.tokenization.sentencepiece import read_model
from autoload.tokenization.sentencepiece_bpe import build_tokenizer
from autoload.tokenization.tiktoken_ranks import bytes_to_unicode
from spm_models import random_texts, train_sentencepiece
from tokenizer_cases import write_folder

CORPUS = [
    "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.",
    "人工智能是计算机科学的一个分支，它企图了解智能的实质。你好，世界！我是一个语言模型。",
    "def main():    print('hello world')\t# greeting, return 0",
    "Café, naïve, résumé, façade — Ångström; Ελληνικά κείμενο; русский текст.",
    "123 4567 89.10 2023年7月30日 3.1415926 and 1,000,000 people",
    "[Round 1] 问：今天天气怎么样？ 答：今天天气很好。问：明天呢？ 答：明天下雨。",
    "Numbers 0 1 2 3 4 5 6 7 8 9 and symbols !@#$%^&*()_+-=[]{};:'\",.<>/?|`~",
    "philosophy isopropyl people sophisticated hello world 晚上睡不着应该怎么办",
]
PIECES = ["你好", "世界", "hello", "world", "Hello", "12", "345", "今天", "天气", "😀", "👋🏽", "é", "e\u0301", "Å", "ﬁ",
          "①", "Ａ", "\u3000", "\u00a0", "sop", "eop", "[gMASK]", "<|user|>", "<|assistant|>", "<sop>", "▁", "</s>",
          "<unk>", ".", "，", "。", "'s", "don't", "问：", "答：", "[Round 1]"]
SPACES = [" ", "  ", "    ", "\t", "\t\t", "\n", "\n\n", " \n ", "\r\n"]
TEXTS = random_texts(1000, CORPUS, PIECES, SPACES)


@pytest.fixture(scope="module")
def sp_files(tmp_path_factory):
    """{"identity": chatglm2-like model (dummy prefix, whitespace kept), "nfkc": the trainer's defaults}."""
    folder = tmp_path_factory.mktemp("sp")
    return {"identity": train_sentencepiece(folder / "identity.model", CORPUS, 520, model_type="bpe",
                                            add_dummy_prefix=True, remove_extra_whitespaces=False,
                                            normalization_rule_name="identity"),
            "nfkc": train_sentencepiece(folder / "nfkc.model", CORPUS, 520, model_type="bpe")}


def chatglm_repo(folder, model_file: str, name: str = "THUDM/chatglm2-6b", **config):
    """A folder like the THUDM repos: tokenizer.model + their tokenizer_config.json (the .py file is NOT there)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(model_file, "rb") as handle:
        (folder / "tokenizer.model").write_bytes(handle.read())
    return write_folder(folder, {"tokenizer_config.json": {
        "name_or_path": name, "remove_space": False, "do_lower_case": False, "tokenizer_class": "ChatGLMTokenizer",
        "auto_map": {"AutoTokenizer": ["tokenization_chatglm.ChatGLMTokenizer", None]}, **config}})


@pytest.fixture(scope="module")
def glm2(sp_files, tmp_path_factory):
    return ChatGLMTokenizer.from_pretrained(chatglm_repo(tmp_path_factory.mktemp("c2") / "repo", sp_files["identity"]))


@pytest.fixture(scope="module")
def glm3(sp_files, tmp_path_factory):
    folder = chatglm_repo(tmp_path_factory.mktemp("c3") / "repo", sp_files["identity"], name="THUDM/chatglm3-6b")
    return ChatGLMTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def sp(sp_files):
    return spm.SentencePieceProcessor(model_file=sp_files["identity"])


@pytest.fixture(scope="module")
def glm4_ranks() -> dict[bytes, int]:
    """Ranks of a byte-level BPE trained with GLM-4's split: every byte, then the merges in order."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(GLM4_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    trainer = trainers.BpeTrainer(vocab_size=900, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(CORPUS * 5, trainer=trainer)
    byte_of = {char: byte for byte, char in bytes_to_unicode().items()}
    return {bytes(byte_of[c] for c in token): index for token, index in tokenizer.get_vocab().items()}


@pytest.fixture(scope="module")
def glm4_folder(glm4_ranks, tmp_path_factory):
    lines = "".join(f"{base64.b64encode(token).decode()} {rank}\n"
                    for token, rank in sorted(glm4_ranks.items(), key=lambda item: item[1]))
    return write_folder(tmp_path_factory.mktemp("g4") / "glm-4-9b-chat", {"tokenizer.model": lines,
                        "tokenizer_config.json": {
                            "tokenizer_class": "ChatGLM4Tokenizer", "eos_token": "<|endoftext|>",
                            "pad_token": "<|endoftext|>", "padding_side": "left", "clean_up_tokenization_spaces": False,
                            "auto_map": {"AutoTokenizer": ["tokenization_chatglm.ChatGLM4Tokenizer", None]}}})


@pytest.fixture(scope="module")
def glm4(glm4_folder):
    return ChatGLM4Tokenizer.from_pretrained(glm4_folder)


# -- parity with the reference libraries ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["identity", "nfkc"])
def test_sentencepiece_parity(sp_files, kind):
    reference = spm.SentencePieceProcessor(model_file=sp_files[kind])
    ours = build_tokenizer(read_model(sp_files[kind]), sp_files[kind])
    tok = ChatGLMTokenizer(vocab_file=sp_files[kind])
    mismatches = []
    for text in TEXTS:
        ids = reference.encode(text)
        if (ours.encode(text, add_special_tokens=False).ids != ids or tok.encode(text, add_special_tokens=False) != ids
                or ours.decode(ids) != reference.decode(ids) or tok.decode(ids) != reference.decode(ids)):
            mismatches.append(text)
    assert mismatches == []
    assert tok.encode("你好") == tok.get_prefix_tokens() + reference.encode("你好")


def test_model_proto_fields(sp_files, tmp_path):
    identity, nfkc = read_model(sp_files["identity"]), read_model(sp_files["nfkc"])
    assert len(identity.pieces) == 520 and identity.model_type == 2 and identity.byte_fallback
    assert (identity.unk_id, identity.bos_id, identity.eos_id, identity.pad_id) == (0, 1, 2, -1)
    assert identity.pieces[:3] == [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)]
    assert identity.pieces[3][0] == "<0x00>" and identity.pieces[3][2] == 6
    assert (identity.normalizer_name, identity.precompiled_charsmap, identity.add_dummy_prefix,
            identity.remove_extra_whitespaces) == ("identity", b"", True, False)
    assert nfkc.normalizer_name == "nmt_nfkc" and nfkc.precompiled_charsmap and nfkc.remove_extra_whitespaces
    unigram = train_sentencepiece(tmp_path / "unigram.model", CORPUS, 440, model_type="unigram")
    with pytest.raises(ValueError, match=r"unigram\.model is a SentencePiece UNIGRAM model; only BPE"):
        ChatGLMTokenizer(vocab_file=unigram)
    (tmp_path / "junk.model").write_bytes(b"\x0a\xff\xff")
    with pytest.raises(OSError, match="junk.model is not a valid SentencePiece model"):
        read_model(str(tmp_path / "junk.model"))


def test_glm4_parity_with_tiktoken(glm4, glm4_ranks):
    specials = {token: len(glm4_ranks) + i for i, token in enumerate(GLM4_SPECIAL_TOKENS)}
    reference = tiktoken.Encoding("glm4-test", pat_str=GLM4_PATTERN, mergeable_ranks=glm4_ranks,
                                  special_tokens=specials)
    mismatches = []
    for text in TEXTS:
        ids = reference.encode(text, disallowed_special=())
        if glm4.encode(text, add_special_tokens=False) != ids or glm4.decode(ids) != reference.decode(ids):
            mismatches.append(text)
    assert mismatches == []
    assert glm4.special_ids == specials and len(glm4) == len(glm4_ranks) + 14
    chat = "<|user|>\n你好<|assistant|>"
    assert glm4(chat, add_special_tokens=False, split_special_tokens=False).input_ids == \
        reference.encode(chat, allowed_special="all")


# -- special tokens, prefix, padding ----------------------------------------------------------------------------


def test_special_ids_and_prefix(glm2, glm3, glm4, sp):
    n = sp.get_piece_size()
    assert glm2.variant == "chatglm2" and glm3.variant == "chatglm3" and glm4.variant == "glm4"
    assert glm2.special_ids == {"[MASK]": n, "[gMASK]": n + 1, "[sMASK]": n + 2, "sop": n + 3, "eop": n + 4}
    assert len(glm2) == n + 5 and len(glm3) == n + 9
    assert [glm3.get_command(t) for t in ("<|system|>", "<|user|>", "<|assistant|>", "<|observation|>")] == \
        [n + 5, n + 6, n + 7, n + 8]
    for tok in (glm2, glm3):
        assert (tok.eos_token, tok.eos_token_id, tok.pad_token, tok.pad_token_id, tok.unk_token_id) == \
            ("</s>", 2, "<unk>", 0, 0)
        assert tok.bos_token is None and tok.get_command("<eos>") == 2 and tok.get_command("<pad>") == 0
        assert tok.get_prefix_tokens() == [n + 1, n + 3]
        assert tok.padding_side == "left"
        assert tok.model_input_names == ["input_ids", "attention_mask", "position_ids"]
    with pytest.raises(KeyError, match="<|user|>"):
        glm2.get_command("<|user|>")
    first = glm4.special_ids["<|endoftext|>"]
    assert glm4.eos_token_id == glm4.pad_token_id == first
    assert glm4.get_prefix_tokens() == [first + 2, first + 4] and glm4.get_command("<|user|>") == first + 7
    assert glm4.encode("你好") == [first + 2, first + 4] + glm4.encode("你好", add_special_tokens=False)


def test_pair_encoding(glm2, glm4, sp):
    out = glm2("你好", "世界")
    assert out.input_ids == glm2.get_prefix_tokens() + sp.encode("你好") + sp.encode("世界") + [2]
    assert out.position_ids == list(range(len(out.input_ids)))
    assert glm4.encode("a", "b") == glm4.get_prefix_tokens() + glm4.encode("ab", add_special_tokens=False) + \
        [glm4.eos_token_id]


def test_left_padding_and_position_ids(glm2, sp):
    prefix = glm2.get_prefix_tokens()
    single = glm2("你好世界")
    assert single.position_ids == list(range(len(single.input_ids)))  # also without padding
    out = glm2(["你好世界", "hi"], padding=True)
    short = prefix + sp.encode("hi")
    pads = len(out.input_ids[0]) - len(short)
    assert out.input_ids[1] == [0] * pads + short
    assert out.attention_mask[1] == [0] * pads + [1] * len(short)
    assert out.position_ids[1] == [0] * pads + list(range(len(short)))
    assert out.position_ids[0] == list(range(len(out.input_ids[0])))
    tensors = glm2(["你好世界", "hi"], padding="max_length", max_length=24, return_tensors="pt")
    assert tensors.position_ids.tolist()[1] == [0] * (24 - len(short)) + list(range(len(short)))
    assert tensors.position_ids.dtype == tensors.input_ids.dtype and tensors.input_ids.shape == (2, 24)
    assert glm2("hi", return_tensors="pt").position_ids.tolist() == [list(range(len(short)))]
    assert "attention_mask" not in glm2("hi", return_attention_mask=False)
    # pad(): a collate function's path, lists or tensors; position_ids are recomputed, not padded
    rows = [glm2("你好世界"), glm2("hi")]
    padded = glm2.pad([dict(row) for row in rows])
    assert padded.input_ids == out.input_ids and padded.position_ids == out.position_ids
    padded = glm2.pad([{k: torch.tensor(v) for k, v in row.items()} for row in rows])
    assert padded.position_ids.tolist() == out.position_ids


def test_right_padding_refused(glm2, glm4, sp_files):
    for tok in (glm2, glm4):
        with pytest.raises(ValueError, match="pads on the left only"):
            tok(["a", "bb"], padding=True, padding_side="right")
        with pytest.raises(ValueError, match="pads on the left only"):
            tok.pad([{"input_ids": [1]}, {"input_ids": [1, 2]}], padding_side="right")
    with pytest.raises(ValueError, match="pads on the left only"):
        ChatGLMTokenizer(vocab_file=sp_files["identity"], padding_side="right")
    assert glm2(["a", "bb"], padding_side="right").input_ids  # no padding asked: nothing to refuse


# -- decoding ----------------------------------------------------------------------------------------------------


def test_decode_per_variant(glm2, glm3, glm4):
    text = "你好 hello"
    for tok in (glm2, glm3):
        ids = tok.encode(text) + [2]
        assert tok.decode(ids, skip_special_tokens=True) == text
        assert tok.decode([0, 1, 2] + tok.encode(text, add_special_tokens=False)) == text  # pad/bos/eos: ""
    assert glm2.decode(glm2.encode(text) + [2]) == text  # ChatGLM2: specials always vanish
    assert glm3.decode(glm3.encode(text) + [2]) == "[gMASK]sop" + text  # ChatGLM3 writes them
    role = glm3.get_command("<|assistant|>")
    assert glm3.decode([role] + glm3.encode("hello", add_special_tokens=False)) == "<|assistant|>hello"
    assert glm4.decode(glm4.encode(text) + [glm4.eos_token_id]) == "[gMASK]<sop>" + text + "<|endoftext|>"
    assert glm4.decode(glm4.encode(text) + [glm4.eos_token_id], skip_special_tokens=True) == text
    for tok, model_rows in ((glm2, 640), (glm3, 640), (glm4, 1024)):  # the embedding has more rows than ids
        ids = tok.encode("hi", add_special_tokens=False)
        assert tok.decode(ids + list(range(len(tok), model_rows)) + [-1]) == "hi"
        assert tok.decode([len(tok)]) == ""
    assert glm2.batch_decode([glm2.encode("a"), glm2.encode("b")]) == ["a", "b"]


def test_special_lookalikes_in_text_stay_text(glm3, glm4, sp):
    text = "sop [gMASK] <|user|> eop philosophy"
    assert glm3.encode(text, add_special_tokens=False) == sp.encode(text)
    assert glm3.decode(sp.encode(text)) == text
    assert glm4.decode(glm4.encode(text, add_special_tokens=False)) == text
    assert not set(glm4.encode(text, add_special_tokens=False)) & set(glm4.special_ids.values())
    # asked for explicitly (the original's encode_special_tokens=True), they are matched
    assert glm3("<|user|>", add_special_tokens=False, split_special_tokens=False).input_ids == \
        [glm3.get_command("<|user|>")]


# -- chat formats ------------------------------------------------------------------------------------------------


def test_build_prompt(glm2, sp):
    assert glm2.build_prompt("你好") == "[Round 1]\n\n问：你好\n\n答："
    prompt = glm2.build_prompt("晚上睡不着应该怎么办", [("你好", "你好👋！我是人工智能助手 ChatGLM2-6B"), ("hi", "hello")])
    assert prompt == ("[Round 1]\n\n问：你好\n\n答：你好👋！我是人工智能助手 ChatGLM2-6B\n\n"
                      "[Round 2]\n\n问：hi\n\n答：hello\n\n[Round 3]\n\n问：晚上睡不着应该怎么办\n\n答：")
    assert glm2(prompt).input_ids == glm2.get_prefix_tokens() + sp.encode(prompt)
    inputs = glm2.build_chat_input("你好", history=[])
    assert inputs.input_ids.tolist() == [glm2(glm2.build_prompt("你好")).input_ids]
    assert inputs.position_ids.tolist() == [list(range(inputs.input_ids.shape[1]))]


def test_chatglm2_template_matches_build_prompt(glm2):
    # "sop" inside words stays text; a rendered template matches it only as a word of its own (as "[gMASK]sop")
    history = [("你好", "你好👋！"), ("philosophy", "isopropyl alcohol")]
    messages = [m for q, r in history for m in ({"role": "user", "content": q}, {"role": "assistant", "content": r})]
    messages.append({"role": "user", "content": "晚上睡不着应该怎么办"})
    out = glm2.apply_chat_template(messages, add_generation_prompt=True)
    assert out.input_ids == glm2(glm2.build_prompt("晚上睡不着应该怎么办", history)).input_ids
    assert out.position_ids == list(range(len(out.input_ids)))
    with pytest.raises(Exception, match="only user and assistant"):
        glm2.apply_chat_template([{"role": "system", "content": "x"}, {"role": "user", "content": "y"}])


def test_chatglm3_build_chat_input(glm3, sp):
    gmask, sop, user, assistant, system = (glm3.get_command(t) for t in ("[gMASK]", "sop", "<|user|>",
                                                                         "<|assistant|>", "<|system|>"))
    newline = sp.encode("\n")  # "▁" then <0x0A>: the dummy prefix is its own piece
    assert newline == [sp.piece_to_id("▁"), sp.piece_to_id("<0x0A>")]
    inputs = glm3.build_chat_input("你好")
    assert inputs.input_ids.tolist() == [[gmask, sop, user, *newline, *sp.encode("你好"), assistant]]
    assert inputs.attention_mask.tolist() == [[1] * (6 + len(sp.encode("你好")))]
    assert inputs.position_ids.tolist() == [list(range(inputs.input_ids.shape[1]))]
    tools = [{"name": "get_weather", "description": "天气", "parameters": {"city": "北京"}}]
    history = [{"role": "system", "content": "You are ChatGLM3.", "tools": tools},
               {"role": "user", "content": "hi"}, {"role": "assistant", "metadata": "get_weather", "content": "x"}]
    ids = glm3.build_chat_input("你好", history).input_ids[0].tolist()
    system_text = "You are ChatGLM3.\n" + json.dumps(tools, indent=4, ensure_ascii=False)
    assert ids[2:] == ([system, *newline, *sp.encode(system_text), user, *newline, *sp.encode("hi"), assistant,
                        *sp.encode("get_weather\n"), *sp.encode("x"), user, *newline, *sp.encode("你好"), assistant])
    assert glm3.build_single_message("observation", "", "ok")[0] == glm3.get_command("<|observation|>")
    with pytest.raises(ValueError, match="role should be one of"):
        glm3.build_single_message("tool", "", "x")


def test_chatglm3_template_matches_build_chat_input(glm3):
    history = [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好👋！我是人工智能助手 ChatGLM3-6B"}]
    query = "晚上睡不着应该怎么办"
    out = glm3.apply_chat_template([*history, {"role": "user", "content": query}], add_generation_prompt=True,
                                   return_tensors="pt")
    expected = glm3.build_chat_input(query, history)
    assert out.input_ids.tolist() == expected.input_ids.tolist()
    assert out.position_ids.tolist() == expected.position_ids.tolist()
    text = glm3.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert text == "[gMASK]sop<|user|>\n hi<|assistant|>"


def test_glm4_chat_input_and_template(glm4):
    gmask, sop, user, assistant = (glm4.get_command(t) for t in ("[gMASK]", "<sop>", "<|user|>", "<|assistant|>"))
    hello = glm4.encode("你好", add_special_tokens=False)
    assert glm4.encode("\n", add_special_tokens=False) == [198]  # bytes in GPT-2 order come first, as in GLM-4
    inputs = glm4.build_chat_input("你好")
    assert inputs.input_ids.tolist() == [[gmask, sop, user, 198, *hello, assistant]]
    assert inputs.position_ids.tolist() == [list(range(len(hello) + 5))]
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}]
    out = glm4.apply_chat_template([*history, {"role": "user", "content": "你好"}], add_generation_prompt=True)
    assert out.input_ids == glm4.build_chat_input("你好", history).input_ids[0].tolist()
    tools = [{"name": "search", "parameters": {}}]
    ids = glm4.build_chat_input("q", [{"role": "system", "content": "sys", "tools": tools}]).input_ids[0].tolist()
    assert glm4.decode(ids).startswith("[gMASK]<sop><|system|>\nsys\n\n## search\n\n{\n    \"name\": \"search\"")


# -- loading, saving, detection ---------------------------------------------------------------------------------


def test_variant_detection(sp_files, tmp_path):
    model = sp_files["identity"]
    assert ChatGLMTokenizer.from_pretrained(chatglm_repo(tmp_path / "a", model)).variant == "chatglm2"
    assert ChatGLMTokenizer.from_pretrained(chatglm_repo(tmp_path / "b", model, name="x/y",
                                                         chat_template="{{ 1 }}")).variant == "chatglm3"
    user = {"content": "<|user|>", "special": True, "lstrip": False, "rstrip": False, "normalized": False,
            "single_word": False}
    tok = ChatGLMTokenizer.from_pretrained(chatglm_repo(tmp_path / "c", model, name="x/y",
                                                        added_tokens_decoder={"64795": user}))
    assert tok.variant == "chatglm3" and tok.get_command("<|user|>") == 526  # ids are ours, not the config's
    assert ChatGLMTokenizer.from_pretrained(tmp_path / "a", variant="chatglm3").variant == "chatglm3"
    with pytest.raises(ValueError, match="variant should be"):
        ChatGLMTokenizer(vocab_file=model, variant="glm4")


@pytest.mark.parametrize("which", ["glm2", "glm3", "glm4"])
def test_save_and_load(which, request, tmp_path):
    tok = request.getfixturevalue(which)
    tok.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == type(tok).__name__ and "eos_token" not in config
    assert (tmp_path / "tokenizer.model").read_bytes() == open(tok.vocab_file, "rb").read()
    back = tokenizer_class(config["tokenizer_class"]).from_pretrained(tmp_path)
    assert type(back) is type(tok) and back.variant == tok.variant and len(back) == len(tok)
    assert back.special_ids == tok.special_ids and back.chat_template == tok.chat_template
    for text in TEXTS[:200]:
        assert back.encode(text) == tok.encode(text)
        assert back.decode(tok.encode(text)) == tok.decode(tok.encode(text))
    messages = [{"role": "user", "content": "你好 sop"}]
    assert back.apply_chat_template(messages, add_generation_prompt=True) == \
        tok.apply_chat_template(messages, add_generation_prompt=True)


def test_auto_tokenizer_with_auto_map_and_no_code(sp_files, glm4_folder, tmp_path):
    from autoload import AutoTokenizer
    folder = chatglm_repo(tmp_path / "chatglm2-6b", sp_files["identity"])
    tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    assert type(tok) is ChatGLMTokenizer and tok.variant == "chatglm2"
    tok = AutoTokenizer.from_pretrained(glm4_folder, trust_remote_code=False)
    assert type(tok) is ChatGLM4Tokenizer


def test_file_detection_and_missing_file(glm4_folder, sp_files, tmp_path):
    # the class name in the config is only a hint: tokenizer.model says which family it is
    assert type(ChatGLMTokenizer.from_pretrained(glm4_folder)) is ChatGLM4Tokenizer
    sp_folder = chatglm_repo(tmp_path / "sp", sp_files["identity"], tokenizer_class="ChatGLM4Tokenizer")
    assert type(ChatGLM4Tokenizer.from_pretrained(sp_folder)) is ChatGLMTokenizer
    empty = write_folder(tmp_path / "empty", {"tokenizer_config.json": {"tokenizer_class": "ChatGLMTokenizer"}})
    with pytest.raises(OSError, match=r"empty.*needs tokenizer\.model"):
        ChatGLMTokenizer.from_pretrained(empty)


def test_glm4_conversion_is_cached(glm4_folder):
    ChatGLM4Tokenizer.from_pretrained(glm4_folder)
    before = _rank_tokenizer_json.cache_info()
    ChatGLM4Tokenizer.from_pretrained(glm4_folder)  # the same file again: no second conversion
    after = _rank_tokenizer_json.cache_info()
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)
