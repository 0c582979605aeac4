"""GemmaTokenizer parity with transformers 5.x on a Gemma-style tokenizer.json trained here with `tokenizers` (spaces
as "▁" without a prefix space, byte fallback, `<pad>` `<eos>` `<bos>` `<unk>` `<mask>` at 0-4, `<bos> $A`):
ids, masks, offsets, pairs, padding, decoding, and AutoTokenizer on every gemma model_type."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

import autoload
from autoload.tokenization import GemmaTokenizer
from tokenizer_cases import (CALLS, CORPUS, TEXTS, assert_same_attributes, assert_same_call, assert_same_decoding,
                             transformers_auto, write_folder)

SPECIAL = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]


@pytest.fixture(scope="module")
def gemma_json() -> str:
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tokenizer.normalizer = normalizers.Replace(" ", "▁")
    tokenizer.pre_tokenizer = pre_tokenizers.Split(" ", "merged_with_previous")
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=900, special_tokens=[*SPECIAL, *byte_tokens])
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A <bos> $B",
                                                             special_tokens=[("<bos>", 2)])
    return tokenizer.to_str()


def tokenizer_config() -> dict:
    return {"tokenizer_class": "GemmaTokenizer", "add_bos_token": True, "add_eos_token": False,
            "bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>", "pad_token": "<pad>",
            "mask_token": "<mask>", "padding_side": "left",
            "added_tokens_decoder": {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                              "single_word": False, "special": True} for i, t in enumerate(SPECIAL)}}


def test_gemma_tokenizer_matches_the_reference(tmp_path, gemma_json):
    folder = write_folder(tmp_path / "gemma", {"tokenizer.json": gemma_json,
                                               "tokenizer_config.json": tokenizer_config()})
    ours, theirs = GemmaTokenizer.from_pretrained(folder), transformers_auto(folder)
    assert type(theirs).__name__ == "GemmaTokenizer" and ours.padding_side == "left"
    assert ours.pad_token_id == 0 and ours.eos_token_id == 1 and ours.bos_token_id == 2
    assert_same_attributes(ours, theirs)
    assert_same_decoding(ours, theirs)
    for kwargs in CALLS:
        assert_same_call(ours, theirs, TEXTS, **kwargs)
    assert ours(" two  spaces")["input_ids"] == theirs(" two  spaces")["input_ids"]  # no prefix space added
    assert ours.tokenize("ÿ😀") == theirs.tokenize("ÿ😀")  # byte fallback
    assert ours.decode(ours("a b  c")["input_ids"], skip_special_tokens=True) == "a b  c"


@pytest.mark.parametrize("model_type", ["gemma", "gemma2", "gemma3_text", "gemma3"])
def test_auto_tokenizer_picks_gemma_for_every_model_type(tmp_path, gemma_json, model_type):
    config = tokenizer_config()
    config.pop("tokenizer_class")  # resolved from config.json's model_type
    folder = write_folder(tmp_path / model_type, {"tokenizer.json": gemma_json, "tokenizer_config.json": config,
                                                  "config.json": {"model_type": model_type}})
    ours, theirs = autoload.AutoTokenizer.from_pretrained(folder), transformers_auto(folder)
    assert type(ours) is GemmaTokenizer and type(theirs).__name__ == "GemmaTokenizer"
    assert ours(TEXTS)["input_ids"] == theirs(TEXTS)["input_ids"]
