"""Baichuan / Baichuan2 and InternLM2 tokenizers, built from the repos' `tokenizer.model` without their
tokenization_*.py (docs/baichuan-internlm2.md).

Both repos ship a copy of transformers' old slow `LlamaTokenizer`: the text is split on special tokens, each
piece is encoded by SentencePiece as the model file says (its normaliser, dummy prefix and whitespace rules,
byte fallback; read by sentencepiece.py, rebuilt as a `tokenizers` BPE by sentencepiece_bpe.py), and `<s>` / `</s>`
are added per `add_bos_token` / `add_eos_token` (`[bos] A [eos]`, a pair `[bos] A [eos] [bos] B [eos]`). Decoding
is SentencePiece's. The repos' flags are kept when saving (tokenizer_config.json), and tokenizer.model is copied
next to the tokenizer.json, so the original code can read a saved folder.

Class defaults are the repos' (the tokenizer_config.json files override them): Baichuan add_bos_token=True,
add_eos_token=False (Baichuan2's files set both false), no pad token; InternLM2 add_bos_token=True,
add_eos_token=False, pad `</s>`. Padding is on the left, for generation.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tokenizers import AddedToken, Tokenizer

from . import loading, saving
from .base import TokenizersBackend

MODEL_FILE = "tokenizer.model"


class SentencePieceLlamaTokenizer(TokenizersBackend):
    """The slow LlamaTokenizer's behaviour over a SentencePiece BPE `tokenizer.model` (what the Baichuan and
    InternLM2 classes share)."""

    model_input_names = ["input_ids", "attention_mask"]
    padding_side = "left"

    def __init__(self, tokenizer_object: Tokenizer | None = None, *, vocab_file: str | None = None,
                 add_bos_token: bool = True, add_eos_token: bool = False, bos_token="<s>", eos_token="</s>",
                 unk_token="<unk>", pad_token=None, **kwargs):
        if tokenizer_object is None:
            if vocab_file is None:
                raise ValueError(f"{type(self).__name__} needs a SentencePiece model (vocab_file='tokenizer.model') "
                                 "or a tokenizer_object.")
            from .sentencepiece import read_model
            from .sentencepiece_bpe import build_tokenizer
            tokenizer_object = build_tokenizer(read_model(vocab_file), vocab_file)
            declared = {str(token) for token in (kwargs.get("added_tokens_decoder") or {}).values()
                        if getattr(token, "special", True)}
            tokenizer_object = _specials_as_written(tokenizer_object, declared)
        self.vocab_file = vocab_file
        # `<s>`, `</s>`, `<unk>` are SentencePiece control pieces that the slow class splits out before encoding:
        # matched as written, never through the normaliser (which would also rename them, e.g. to "▁<s>")
        named = [exact(token) for token in (bos_token, eos_token, unk_token, pad_token)]
        contents = {str(token) for token in named if token is not None}
        kwargs["added_tokens_decoder"] = {index: exact(token) if str(token) in contents else token
                                          for index, token in (kwargs.get("added_tokens_decoder") or {}).items()}
        super().__init__(tokenizer_object, add_bos_token=add_bos_token, add_eos_token=add_eos_token,
                         bos_token=named[0], eos_token=named[1], unk_token=named[2], pad_token=named[3], **kwargs)

    @classmethod
    def _from_files(cls, files, kwargs, source):
        model_file = files.get(MODEL_FILE)
        if model_file is None:
            raise cls._missing_files_error(source, [MODEL_FILE], files)
        config = files.json(loading.CONFIG_FILE) if loading.CONFIG_FILE in files else {}
        for key in ("add_bos_token", "add_eos_token"):  # dropped by the generic reader when a tokenizer.json is there
            if key in config and key not in kwargs:
                kwargs[key] = config[key]
        if loading.TOKENIZER_FILE in files:  # a saved folder: its tokenizer.json has the tokens added by the user
            saved = {int(entry["id"]): loading.to_added_token(entry)
                     for entry in files.json(loading.TOKENIZER_FILE).get("added_tokens") or []}
            kwargs["added_tokens_decoder"] = {**saved, **(kwargs.get("added_tokens_decoder") or {})}
        return cls(vocab_file=model_file, **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike) -> tuple[str, ...]:
        """tokenizer.json + tokenizer_config.json (with add_bos_token / add_eos_token, as the repos write them) +
        chat template, and a copy of tokenizer.model."""
        written = saving.save_pretrained(self, save_directory)
        config_path = Path(save_directory) / loading.CONFIG_FILE
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config.update(add_bos_token=self.add_bos_token, add_eos_token=self.add_eos_token)
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                               encoding="utf-8")
        if self.vocab_file and os.path.isfile(self.vocab_file):
            target = Path(save_directory) / MODEL_FILE
            if not target.exists() or not os.path.samefile(self.vocab_file, target):
                shutil.copyfile(self.vocab_file, target)
            written += (str(target),)
        return written


def _specials_as_written(tokenizer: Tokenizer, declared: set[str]) -> Tokenizer:
    """The user-defined pieces the config declares special (InternLM2's `<|im_start|>`, ...) re-registered as
    special tokens matched as written. (Rebuilt from JSON: `tokenizers` keeps the normalised spelling, e.g.
    "▁<|im_start|>", of a token first added as normalized, and decoding would not skip it.)"""
    data = json.loads(tokenizer.to_str())
    entries = [entry for entry in data.get("added_tokens") or [] if entry["content"] in declared]
    if not entries:
        return tokenizer
    for entry in entries:
        entry.update(normalized=False, special=True)
    return Tokenizer.from_str(json.dumps(data))


def exact(token):
    """A special token matched as written (an AddedToken with normalized=False, special=True); None stays None."""
    if not isinstance(token, AddedToken):
        return token
    return AddedToken(token.content, single_word=token.single_word, lstrip=token.lstrip, rstrip=token.rstrip,
                      normalized=False, special=True)


class BaichuanTokenizer(SentencePieceLlamaTokenizer):
    """Baichuan / Baichuan2 (`tokenization_baichuan.BaichuanTokenizer`; Baichuan-7B's `BaiChuanTokenizer`)."""


class InternLM2Tokenizer(SentencePieceLlamaTokenizer):
    """InternLM2 / InternLM2.5 (`tokenization_internlm2.InternLM2Tokenizer` and its Fast twin)."""

    def __init__(self, tokenizer_object: Tokenizer | None = None, *, pad_token="</s>", **kwargs):
        super().__init__(tokenizer_object, pad_token=pad_token, **kwargs)


BaiChuanTokenizer = BaichuanTokenizer
InternLM2TokenizerFast = InternLM2Tokenizer
