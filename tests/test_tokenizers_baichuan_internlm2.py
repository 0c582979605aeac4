"""BaichuanTokenizer and InternLM2Tokenizer without the repos' code: SentencePiece BPE models trained here, with
the normaliser settings of each family's tokenizer.model, are the reference (sentencepiece itself), with the repos'
add_bos_token / add_eos_token flags on top; then the repos' folders (tokenizer.model + tokenizer_config.json with
auto_map, no .py file) through AutoTokenizer with and without trust_remote_code, special tokens in text, padding,
and save / reload."""

from __future__ import annotations

import json
import re

import pytest
import sentencepiece as spm

from autoload import AutoTokenizer
from autoload.tokenization import BaichuanTokenizer, InternLM2Tokenizer, tokenizer_class
from spm_models import random_texts, train_sentencepiece
from tokenizer_cases import write_folder

CORPUS = [
    "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.",
    "人工智能是计算机科学的一个分支，它企图了解智能的实质。你好，世界！我是一个语言模型。",
    "def main():    print('hello world')\t# greeting, return 0",
    "Café, naïve, résumé, façade — Ångström; Ελληνικά κείμενο; русский текст.",
    "123 4567 89.10 2023年7月30日 3.1415926 and 1,000,000 people",
    "<|im_start|>user\n今天天气怎么样？<|im_end|>\n<|im_start|>assistant\n今天天气很好。<|im_end|>",
]
PIECES = ["你好", "世界", "hello", "world", " Hello", "12", "345", "今天", "😀", "👋🏽", "é", "e\u0301", "ﬁ", "Ａ", "\u3000",
          ".", "，", "。", "'s", "don't", "<|im_start|>", "<|im_end|>", "<", "s>", "</"]
SPACES = [" ", "  ", "    ", "\t", "\n", "\n\n", " \n ", "\r\n"]
USER_DEFINED = ["<|im_start|>", "<|im_end|>"]
TEXTS = [text.replace("<s>", "<t>").replace("</s>", "</t>")  # the specials' strings: tested apart
         for text in random_texts(300, CORPUS, PIECES, SPACES)]


def train(path, **options) -> str:
    return train_sentencepiece(path, CORPUS, 400, model_type="bpe", **options)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Each family's normaliser settings: Baichuan2's tokenizer.model has no dummy prefix and keeps whitespace;
    InternLM2's adds the dummy prefix and keeps whitespace (both identity, digits split, user-defined symbols);
    "nfkc" is the trainer's defaults (as Baichuan 1)."""
    folder = tmp_path_factory.mktemp("spm")
    common = dict(normalization_rule_name="identity", remove_extra_whitespaces=False, split_digits=True,
                  user_defined_symbols=USER_DEFINED)
    return {"baichuan2": train(folder / "baichuan2.model", add_dummy_prefix=False, **common),
            "internlm2": train(folder / "internlm2.model", add_dummy_prefix=True, **common),
            "nfkc": train(folder / "nfkc.model")}


def token(content: str, **flags) -> dict:
    return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": True, "rstrip": False,
            "single_word": True, **flags}


def baichuan_repo(folder, model_file: str, **config):
    """A folder like baichuan-inc/Baichuan2-7B-Chat's: tokenizer.model and its tokenizer_config.json."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.model").write_bytes(open(model_file, "rb").read())
    return write_folder(folder, {"tokenizer_config.json": {
        "auto_map": {"AutoTokenizer": ["tokenization_baichuan.BaichuanTokenizer", None]},
        "add_bos_token": False, "add_eos_token": False, "use_fast": False, "clean_up_tokenization_spaces": False,
        "eos_token": token("</s>"), "bos_token": token("<s>"), "unk_token": token("<unk>"),
        "pad_token": token("<unk>"), "model_max_length": 4096, "sp_model_kwargs": {},
        "tokenizer_class": "BaichuanTokenizer", **config}})


def internlm2_repo(folder, model_file: str, **config):
    """A folder like internlm/internlm2-chat-7b's (its chat tokens are user-defined pieces of tokenizer.model)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.model").write_bytes(open(model_file, "rb").read())
    sp = spm.SentencePieceProcessor(model_file=model_file)
    added = {str(sp.piece_to_id(t)): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                      "single_word": False, "special": True} for t in USER_DEFINED}
    return write_folder(folder, {"tokenizer_config.json": {
        "auto_map": {"AutoTokenizer": ["tokenization_internlm2.InternLM2Tokenizer",
                                       "tokenization_internlm2_fast.InternLM2TokenizerFast"]},
        "added_tokens_decoder": added, "additional_special_tokens": USER_DEFINED, "bos_token": "<s>",
        "clean_up_tokenization_spaces": False, "eos_token": "</s>", "pad_token": "</s>", "unk_token": "<unk>",
        "model_max_length": 1000000000000000019884624838656, "tokenizer_class": "InternLM2Tokenizer",
        "decode_with_prefix_space": False, "sp_model_kwargs": None, **config}})


def expected_ids(sp, text: str, bos: bool, eos: bool, specials=()) -> list[int]:
    """The slow LlamaTokenizer's ids: the text split on the special tokens (`specials`: the repo's declared ones),
    each piece encoded by SentencePiece alone (so each gets the dummy prefix, where the model adds one)."""
    ids = []
    for part in re.split("(" + "|".join(map(re.escape, specials)) + ")", text) if specials else [text]:
        ids += [sp.piece_to_id(part)] if part in specials else sp.encode(part)
    return [1] * bos + ids + [2] * eos


@pytest.mark.parametrize("kind", ["baichuan2", "internlm2", "nfkc"])
@pytest.mark.parametrize("bos,eos", [(False, False), (True, False), (True, True)])
def test_ids_and_decoding_match_sentencepiece(models, tmp_path, kind, bos, eos):
    sp = spm.SentencePieceProcessor(model_file=models[kind])
    if kind == "internlm2":
        tok = InternLM2Tokenizer.from_pretrained(internlm2_repo(tmp_path / kind, models[kind], add_bos_token=bos,
                                                                add_eos_token=eos))
    else:
        tok = BaichuanTokenizer.from_pretrained(baichuan_repo(tmp_path / kind, models[kind], add_bos_token=bos,
                                                              add_eos_token=eos))
    assert (tok.add_bos_token, tok.add_eos_token) == (bos, eos)
    specials = USER_DEFINED if kind == "internlm2" else ()  # InternLM2's config declares its chat tokens special
    for text in TEXTS:
        ids = tok(text)["input_ids"]
        assert ids == expected_ids(sp, text, bos, eos, specials), text
        if not any(special in text for special in specials):  # decoding around specials: the class's own
            assert tok.decode(ids, skip_special_tokens=True) == sp.decode(ids[bos:len(ids) - eos]), text
    batch = tok(TEXTS[:20])["input_ids"]
    assert batch == [expected_ids(sp, text, bos, eos, specials) for text in TEXTS[:20]]
    pair = tok("hello world", "你好")["input_ids"]  # the slow LlamaTokenizer's pair: [bos] A [eos] [bos] B [eos]
    assert pair == expected_ids(sp, "hello world", bos, eos) + expected_ids(sp, "你好", bos, eos)


def test_special_tokens_in_text_split_the_text(models, tmp_path):
    """As the repos' slow classes: special strings become their ids, each piece between them is encoded alone."""
    sp = spm.SentencePieceProcessor(model_file=models["baichuan2"])
    # plain strings: the released files' AddedTokens are single_word (matched only between words, as there)
    tok = BaichuanTokenizer.from_pretrained(baichuan_repo(tmp_path / "b", models["baichuan2"], eos_token="</s>",
                                                          bos_token="<s>"))
    assert tok("hello</s>world<s> 你好")["input_ids"] == sp.encode("hello") + [2] + sp.encode("world") + [1] + \
        sp.encode(" 你好")
    sp = spm.SentencePieceProcessor(model_file=models["internlm2"])
    tok = InternLM2Tokenizer.from_pretrained(internlm2_repo(tmp_path / "i", models["internlm2"]))
    start, end = (sp.piece_to_id(t) for t in USER_DEFINED)
    assert tok.convert_tokens_to_ids(USER_DEFINED) == [start, end] and tok.bos_token_id == 1
    text = "<|im_start|>user\n你好<|im_end|>"
    assert tok(text)["input_ids"] == [1, start] + sp.encode("user\n你好") + [end]  # user-defined: whole pieces
    assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == "user\n你好"


def test_auto_tokenizer_native_with_or_without_trust(models, tmp_path):
    folders = {"baichuan": baichuan_repo(tmp_path / "b", models["baichuan2"]),
               "internlm2": internlm2_repo(tmp_path / "i", models["internlm2"])}
    for model_type, cls in (("baichuan", BaichuanTokenizer), ("internlm2", InternLM2Tokenizer)):
        folder = folders[model_type]
        for trust in (None, True, False):  # the .py files are not there: only the native class can load these
            assert type(AutoTokenizer.from_pretrained(folder, trust_remote_code=trust)) is cls
        with pytest.raises(OSError, match=f"tokenization_{model_type}"):
            AutoTokenizer.from_pretrained(folder, trust_remote_code=True, native=False)
        config = json.loads((folder / "tokenizer_config.json").read_text())
        del config["tokenizer_class"], config["auto_map"]  # resolved from config.json's model_type
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
        (folder / "config.json").write_text(json.dumps({"model_type": model_type, "auto_map": {  # the repo's
            "AutoConfig": f"configuration_{model_type}.Config", "AutoModelForCausalLM": f"modeling_{model_type}.M"}}))
        assert type(AutoTokenizer.from_pretrained(folder)) is cls
    assert tokenizer_class("BaiChuanTokenizer") is BaichuanTokenizer  # Baichuan-7B (v1) spells it so
    assert tokenizer_class("InternLM2TokenizerFast") is InternLM2Tokenizer


def test_padding_save_and_reload(models, tmp_path):
    sp = spm.SentencePieceProcessor(model_file=models["internlm2"])
    tok = AutoTokenizer.from_pretrained(internlm2_repo(tmp_path / "i", models["internlm2"], add_eos_token=True))
    assert tok.padding_side == "left" and tok.pad_token_id == 2  # pad `</s>`, as the repo's class
    out = tok(["hello world 你好", "a"], padding=True)
    short = expected_ids(sp, "a", True, True)
    assert out["input_ids"][1] == [2] * (len(out["input_ids"][0]) - len(short)) + short
    assert out["attention_mask"][1].count(0) == len(out["input_ids"][0]) - len(short)
    tok.add_tokens(["<extra>"])
    tok.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "tokenizer_config.json").read_text())
    assert saved["tokenizer_class"] == "InternLM2Tokenizer"
    assert (saved["add_bos_token"], saved["add_eos_token"]) == (True, True)  # the repos' flags, for their code too
    assert (tmp_path / "saved" / "tokenizer.model").read_bytes() == open(models["internlm2"], "rb").read()
    again = AutoTokenizer.from_pretrained(tmp_path / "saved")
    assert type(again) is InternLM2Tokenizer
    for text in [*TEXTS[:50], "x<extra>y"]:
        assert again(text)["input_ids"] == tok(text)["input_ids"], text
    assert again.convert_tokens_to_ids("<extra>") == tok.convert_tokens_to_ids("<extra>") == len(sp)
    defaults = BaichuanTokenizer(vocab_file=models["baichuan2"])  # the repo class's defaults: bos yes, eos no
    assert (defaults.add_bos_token, defaults.add_eos_token, defaults.pad_token) == (True, False, None)


def test_internlm2_chat_prompt_and_turns(models, tmp_path):
    """InternLM2-Chat's chat() / stream_chat() on a tiny random model: the repos' prompt (build_inputs), the answer
    from greedy decoding up to `<|im_end|>`, the (query, response) history."""
    import torch

    from autoload.models.configs import InternLM2Config
    from autoload.models.internlm2 import InternLM2ForCausalLM
    sp = spm.SentencePieceProcessor(model_file=models["internlm2"])
    tok = InternLM2Tokenizer.from_pretrained(internlm2_repo(tmp_path / "i", models["internlm2"]))
    torch.manual_seed(0)
    model = InternLM2ForCausalLM(InternLM2Config(vocab_size=len(sp), hidden_size=32, intermediate_size=48,
                                                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                                 bias=False)).eval()
    start, end = (sp.piece_to_id(t) for t in USER_DEFINED)
    history = [("你好", "hello")]
    ids = model.build_inputs(tok, "world", history, meta_instruction="sys")["input_ids"][0].tolist()
    turn = [start] + sp.encode("user\n你好") + [end] + sp.encode("\n") + [start] + sp.encode("assistant\nhello")
    assert ids == ([1, start] + sp.encode("system\nsys") + [end] + sp.encode("\n") + turn + [end] +
                   sp.encode("\n") + [start] + sp.encode("user\nworld") + [end] + sp.encode("\n") + [start] +
                   sp.encode("assistant\n"))
    options = dict(do_sample=False, max_new_tokens=6, meta_instruction="sys")
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False, eos_token_id=[2, end])
        response, new_history = model.chat(tok, "world", history, **options)
        streamed = list(model.stream_chat(tok, "world", history, **options))
    assert response == tok.decode(out[0, len(ids):], skip_special_tokens=True).split("<|im_end|>")[0]
    assert new_history == history + [("world", response)] and history == [("你好", "hello")]
    assert streamed[-1] == (response, new_history)
