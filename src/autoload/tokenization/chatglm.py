"""ChatGLM2 / ChatGLM3 and GLM-4 tokenizers, built from the repos' `tokenizer.model` without their
tokenization_chatglm.py (see docs/chatglm.md sections 3 and 4).

* ChatGLM2/3: `tokenizer.model` is a SentencePiece BPE model (read by sentencepiece_bpe.py). The specials follow
  the n pieces: `[MASK]` n, `[gMASK]` n+1, `[sMASK]` n+2, `sop` n+3, `eop` n+4, and for ChatGLM3 `<|system|>`,
  `<|user|>`, `<|assistant|>`, `<|observation|>` n+5..n+8. eos `</s>` (2), pad and unk `<unk>` (0).
* GLM-4: `tokenizer.model` is a tiktoken rank file ("base64 rank" lines, read by tiktoken_ranks.py) with the
  cl100k-style split; 14 specials from id len(ranks) on, eos = pad = `<|endoftext|>`.

Common behaviour, as the original classes: `[gMASK] sop` (`[gMASK] <sop>`) in front of every encoded text (a pair
also gets eos at the end), left padding only, `position_ids` in every output (0..n-1 over real tokens, 0 on pads),
special strings typed in plain text stay text (the chat builders and `apply_chat_template` produce special ids),
and ids the tokenizer does not know (the embedding has more rows) decode to "".
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import shutil
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, processors

from . import loading, saving
from .base import TokenizersBackend
from .chat import apply_chat_template
from .encoding import BatchEncoding
from .padding import pad as pad_inputs

logger = logging.getLogger(__name__)

MODEL_FILE = "tokenizer.model"
CHATGLM_SPECIAL_TOKENS = ("[MASK]", "[gMASK]", "[sMASK]", "sop", "eop")
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|observation|>")
GLM4_SPECIAL_TOKENS = ("<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", *ROLE_TOKENS,
                       "<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>", "<|end_of_video|>")
ROLES = ("system", "user", "assistant", "observation")
# GLM-4's split (cl100k's): contractions, letters with one leading non-letter, 1-3 digits, punctuation runs,
# newline runs, whitespace not followed by a non-space
GLM4_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
                r"""\s*[\r\n]+|\s+(?!\S)|\s+""")

# ChatGLM3's template (tokenizer_config.json of the 2024 revisions): "<|role|>\n content" per message. The space
# after the newline becomes SentencePiece's dummy prefix, so the ids equal build_chat_input's.
CHATGLM3_TEMPLATE = ("{% for message in messages %}{% if loop.first %}[gMASK]sop{% endif %}"
                     "<|{{ message['role'] }}|>\n {{ message['content'] }}{% endfor %}"
                     "{% if add_generation_prompt %}<|assistant|>{% endif %}")
# ChatGLM2 has no template: this one writes build_prompt's "[Round i]" format from user/assistant turns.
CHATGLM2_TEMPLATE = ("[gMASK]sop{% set ns = namespace(round=0) %}{% for message in messages %}"
                     "{% if message['role'] == 'user' %}{% set ns.round = ns.round + 1 %}"
                     "[Round {{ ns.round }}]\n\n问：{{ message['content'] }}\n\n答："
                     "{% elif message['role'] == 'assistant' %}{{ message['content'] }}\n\n"
                     "{% else %}{{ raise_exception('ChatGLM2 prompts have only user and assistant turns, not '"
                     " + message['role']) }}{% endif %}{% endfor %}")
# GLM-4 without a template in its config: "<|role|>metadata\ncontent" per message, as build_chat_input
GLM4_TEMPLATE = ("[gMASK]<sop>{% for message in messages %}<|{{ message['role'] }}|>"
                 "{{ message['metadata'] | default('') }}\n{{ message['content'] }}{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def is_rank_file(path: str) -> bool:
    """True for a tiktoken rank file (ASCII "base64 rank" lines), False for a binary SentencePiece proto."""
    with open(path, "rb") as handle:
        head = handle.read(4096)
    first = head.split(b"\n", 1)[0]
    return re.fullmatch(rb"[A-Za-z0-9+/=]+ \d+\r?", first) is not None


@functools.lru_cache(maxsize=2)
def _rank_tokenizer_json(path: str, mtime_ns: int, size: int) -> str:
    """GLM-4's tokenizer as JSON, built once per file version (151k ranks take seconds to convert)."""
    from .tiktoken_ranks import build_from_ranks
    return build_from_ranks(path, pattern=GLM4_PATTERN, special_tokens=GLM4_SPECIAL_TOKENS, nfc=False).to_str()


def _position_ids(mask):
    """0..n-1 over the real tokens, 0 on left padding: the running sum of the attention mask minus one, floored
    at 0. `mask` is a list (flat or one row per sequence), a torch tensor or a numpy array."""
    if hasattr(mask, "cumsum"):
        return (mask.cumsum(-1) - 1).clip(min=0)
    if mask and isinstance(mask[0], (list, tuple)):
        return [_position_ids(row) for row in mask]
    positions, running = [], 0
    for value in mask:
        running += value
        positions.append(max(running - 1, 0))
    return positions


class _GLMTokenizer(TokenizersBackend):
    """What ChatGLM2/3 and GLM-4 share: prefix, left padding, position_ids, decoding, chat inputs, saving."""

    model_input_names = ["input_ids", "attention_mask", "position_ids"]
    padding_side = "left"
    special_token_names: tuple[str, ...] = ()  # this variant's appended specials, in id order
    prefix_names: tuple[str, str] = ("[gMASK]", "sop")
    variant: str = ""

    def _setup_glm(self, vocab_file: str | None) -> None:
        """After TokenizersBackend.__init__: check the specials' ids, install the prefix post-processor."""
        self.vocab_file = vocab_file
        ids = [self._tokenizer.token_to_id(token) for token in self.special_token_names]
        if None in ids or ids != list(range(ids[0], ids[0] + len(ids))):
            raise ValueError(f"{type(self).__name__} ({self.variant}): the special tokens "
                             f"{list(self.special_token_names)} should have consecutive ids, got {ids}.")
        self.special_ids = dict(zip(self.special_token_names, ids))
        first, second = self.prefix_names
        eos = self.eos_token
        self._tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{first} {second} $A", pair=f"{first} {second} $A $B:1 {eos}:1",
            special_tokens=[(first, self.special_ids[first]), (second, self.special_ids[second]),
                            (eos, self.eos_token_id)])

    def __len__(self) -> int:
        # the highest id + 1 (tokenizers counts a special whose text is also a piece once, not twice)
        added = self._tokenizer.get_added_tokens_decoder()
        return max(self._tokenizer.get_vocab_size(with_added_tokens=False), max(added, default=-1) + 1)

    # -- ids of the special tokens ----------------------------------------------------------------------------

    def get_command(self, token: str) -> int:
        """The id of a special token (`"[gMASK]"`, `"<|user|>"`, ...; also `"<eos>"`, `"<pad>"`)."""
        commands = {**self.special_ids, "<eos>": self.eos_token_id, "<pad>": self.pad_token_id}
        if self._tokenizer.token_to_id("<s>") is not None:  # SentencePiece's bos (unused by ChatGLM)
            commands["<bos>"] = self._tokenizer.token_to_id("<s>")
        if token not in commands:
            raise KeyError(f"{token!r} is not a special token of {type(self).__name__} ({self.variant}); "
                           f"known: {', '.join(commands)}.")
        return commands[token]

    def get_prefix_tokens(self) -> list[int]:
        """`[gMASK] sop` (GLM-4: `[gMASK] <sop>`): what every encoded text starts with."""
        return [self.special_ids[name] for name in self.prefix_names]

    # -- encoding: left padding, position_ids -----------------------------------------------------------------

    def _check_padding_side(self, side: str | None, padding) -> None:
        side = side or self.padding_side
        if side != "left" and padding not in (False, None, "do_not_pad"):
            raise ValueError(f"{type(self).__name__} pads on the left only (its position_ids count from the first "
                             f"real token), not {side!r}.")

    def _encode(self, text, text_pair, **options) -> BatchEncoding:
        self._check_padding_side(options["padding_side"], options["padding"])
        want_mask = options["return_attention_mask"]
        out = super()._encode(text, text_pair, **{**options, "return_attention_mask": True})
        out["position_ids"] = _position_ids(out["attention_mask"])
        if want_mask is False:
            del out["attention_mask"]
        return out

    def pad(self, encoded_inputs, padding: bool | str = True, max_length: int | None = None,
            pad_to_multiple_of: int | None = None, padding_side: str | None = None,
            return_attention_mask: bool | None = None, return_tensors: str | None = None,
            verbose: bool = True) -> BatchEncoding:
        """Left-pad encoded inputs; position_ids are recomputed from the padded attention mask."""
        self._check_padding_side(padding_side, padding)
        if isinstance(encoded_inputs, (list, tuple)) and encoded_inputs and isinstance(encoded_inputs[0], dict):
            encoded_inputs = [{k: v for k, v in row.items() if k != "position_ids"} for row in encoded_inputs]
        else:
            encoded_inputs = {k: v for k, v in dict(encoded_inputs).items() if k != "position_ids"}
        out = pad_inputs(self, encoded_inputs, padding, max_length, pad_to_multiple_of, padding_side, True,
                          return_tensors, verbose)
        out["position_ids"] = _position_ids(out["attention_mask"])
        if return_attention_mask is False:
            del out["attention_mask"]
        return out

    def _text_ids(self, text: str) -> list[int]:
        """Ids of plain text: no prefix, special strings as text."""
        return self(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]

    def apply_chat_template(self, conversation, *, tokenizer_kwargs: dict | None = None, **kwargs):
        """The generic `apply_chat_template`, with special strings matched in the rendered text: the template writes
        `[gMASK]`, `sop` and the role tokens as text. (As with any chat template, a special typed in a message
        matches too; `sop`/`eop` only as words of their own.) `build_chat_input` never matches message text."""
        tokenizer_kwargs = {"split_special_tokens": False, **(tokenizer_kwargs or {})}
        return apply_chat_template(self, conversation, tokenizer_kwargs=tokenizer_kwargs, **kwargs)

    def build_single_message(self, role: str, metadata: str, message: str) -> list[int]:
        """`<|role|>` + ids of f"{metadata}\\n" + ids of the message (ChatGLM3 / GLM-4)."""
        if role not in ROLES:
            raise ValueError(f"role should be one of {', '.join(ROLES)}, not {role!r}.")
        return [self.get_command(f"<|{role}|>")] + self._text_ids(f"{metadata}\n") + self._text_ids(message)

    def _chat_ids(self, query: str, history, role: str) -> list[int]:
        ids = []
        for item in history or []:
            content = item["content"]
            if item["role"] == "system" and "tools" in item:
                content = self._with_tools(content, item["tools"])
            ids += self.build_single_message(item["role"], item.get("metadata", ""), content)
        return ids + self.build_single_message(role, "", query) + [self.get_command("<|assistant|>")]

    def build_chat_input(self, query: str, history: list | None = None, role: str = "user") -> BatchEncoding:
        """The model inputs for the next turn (torch tensors, batch of one): prefix, every history message
        ({"role", "content", optional "metadata"; a system message may carry "tools"}), the query, `<|assistant|>`."""
        ids = self.get_prefix_tokens() + self._chat_ids(query, history, role)
        return BatchEncoding({"input_ids": [ids], "attention_mask": [[1] * len(ids)],
                              "position_ids": [list(range(len(ids)))]}, tensor_type="pt")

    # -- decoding ---------------------------------------------------------------------------------------------

    def _hidden_ids(self) -> set[int]:
        """Ids that always decode to "" (ChatGLM2/3: bos, eos, pad; ChatGLM2 also its specials)."""
        return set()

    def _decode(self, token_ids, skip_special_tokens: bool, clean_up_tokenization_spaces: bool | None) -> str:
        # runs of ordinary ids are decoded together; a special id ends a run and is written as its text (as the
        # original classes do: SentencePiece drops the dummy-prefix space at the start of each run)
        token_ids = [token_ids] if isinstance(token_ids, int) else [int(i) for i in token_ids]
        size, hidden = len(self), self._hidden_ids()
        specials = {index: token for token, index in self.special_ids.items()}
        parts, run = [], []
        for index in token_ids:
            if index < 0 or index >= size or index in hidden:
                continue
            if index in specials:
                if run:
                    parts.append(self._tokenizer.decode(run, skip_special_tokens=skip_special_tokens))
                    run = []
                if not skip_special_tokens:
                    parts.append(specials[index])
            else:
                run.append(index)
        if run:
            parts.append(self._tokenizer.decode(run, skip_special_tokens=skip_special_tokens))
        return "".join(parts)

    # -- loading and saving -----------------------------------------------------------------------------------

    @classmethod
    def _from_files(cls, files, kwargs, source):
        model_file = files.get(MODEL_FILE)
        if loading.TOKENIZER_FILE not in files and model_file is None:
            raise cls._missing_files_error(source, [MODEL_FILE], files)
        target = cls
        if model_file is not None:  # the file says which family it is, whatever the config's class name
            target = ChatGLM4Tokenizer if is_rank_file(model_file) else ChatGLMTokenizer
            if target is not cls:
                logger.info("%s names %s but its tokenizer.model is a %s: loading it as %s.", source.describe(),
                            cls.__name__, "tiktoken rank file" if target is ChatGLM4Tokenizer else
                            "SentencePiece model", target.__name__)
        config = files.json(loading.CONFIG_FILE) if loading.CONFIG_FILE in files else {}
        if config.get("split_special_tokens") is False and kwargs.get("split_special_tokens") is False:
            # transformers writes its default (false) into saved configs; the original classes decide with
            # `encode_special_tokens` (default: specials typed in text stay text)
            del kwargs["split_special_tokens"]
        if target is ChatGLM4Tokenizer:
            kwargs.pop("variant", None)
        elif "variant" not in kwargs and "chatglm3" in str(config.get("name_or_path")):
            kwargs["variant"] = "chatglm3"
        if model_file is None:  # a folder saved without tokenizer.model
            return target(loading.load_tokenizer_json(files[loading.TOKENIZER_FILE]), **kwargs)
        # tokenizer.model is the source of truth (a special whose text is also a piece has two ids, which a
        # tokenizer.json cannot keep); a saved tokenizer.json adds the tokens added by the user
        if loading.TOKENIZER_FILE in files:
            saved = {int(entry["id"]): loading.to_added_token(entry)
                     for entry in files.json(loading.TOKENIZER_FILE).get("added_tokens") or []}
            kwargs["added_tokens_decoder"] = {**saved, **(kwargs.get("added_tokens_decoder") or {})}
        return target(vocab_file=model_file, **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike) -> tuple[str, ...]:
        """tokenizer.json + tokenizer_config.json (tokenizer_class and variant kept) + chat template, and a copy
        of tokenizer.model so the repo's original code can read the folder too."""
        written = saving.save_pretrained(self, save_directory)
        config_path = Path(save_directory) / loading.CONFIG_FILE
        config = json.loads(config_path.read_text(encoding="utf-8"))
        # the original classes define these tokens as read-only properties: a saved value breaks them
        for key in ("eos_token", "pad_token", "unk_token"):
            config.pop(key, None)
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                               encoding="utf-8")
        if self.vocab_file and os.path.isfile(self.vocab_file):
            target = Path(save_directory) / MODEL_FILE
            if not target.exists() or not os.path.samefile(self.vocab_file, target):
                shutil.copyfile(self.vocab_file, target)
            written += (str(target),)
        return written


def _plain_added_tokens(added_tokens_decoder: dict | None, reserved: set[str]) -> dict:
    """The config's added tokens minus the ones this class builds itself (specials, <unk>, <s>, </s>)."""
    return {index: token for index, token in (added_tokens_decoder or {}).items() if str(token) not in reserved}


class ChatGLMTokenizer(_GLMTokenizer):
    """ChatGLM2-6B / ChatGLM3-6B tokenizer (SentencePiece BPE + appended specials), no remote code.

    `variant` is "chatglm2" or "chatglm3": chatglm3 when the config has a chat template or `<|user|>` among its
    tokens, or its name contains "chatglm3"; `variant=` overrides. The variants differ in the role tokens,
    the chat format (`build_prompt` vs `build_chat_input`) and decoding: ChatGLM2 drops its specials, ChatGLM3
    writes them unless `skip_special_tokens=True`. bos, eos and pad always decode to "".
    """

    def __init__(self, tokenizer_object: Tokenizer | None = None, *, vocab_file: str | None = None,
                 variant: str | None = None, eos_token="</s>", pad_token="<unk>", unk_token="<unk>",
                 encode_special_tokens: bool = False, split_special_tokens: bool | None = None,
                 padding_side: str | None = None, chat_template=None, added_tokens_decoder: dict | None = None,
                 name_or_path: str = "", **kwargs):
        if padding_side not in (None, "left"):
            raise ValueError(f"ChatGLMTokenizer pads on the left only, not {padding_side!r}.")
        if variant is None:
            named = [str(kwargs.get(key)) for key in kwargs if key.endswith("_token")]
            named += [str(token) for token in (added_tokens_decoder or {}).values()]
            named += [str(token) for token in kwargs.get("extra_special_tokens") or []]
            variant = "chatglm3" if (chat_template is not None or "<|user|>" in named
                                     or "chatglm3" in os.fspath(name_or_path)) else "chatglm2"
        if variant not in ("chatglm2", "chatglm3"):
            raise ValueError(f"variant should be 'chatglm2' or 'chatglm3' (GLM-4 is ChatGLM4Tokenizer), "
                             f"not {variant!r}.")
        self.variant = variant
        self.special_token_names = CHATGLM_SPECIAL_TOKENS + (ROLE_TOKENS if variant == "chatglm3" else ())
        if tokenizer_object is None:
            if vocab_file is None:
                raise ValueError("ChatGLMTokenizer needs a SentencePiece model (vocab_file='tokenizer.model') "
                                 "or a tokenizer_object.")
            from .sentencepiece import read_model
            from .sentencepiece_bpe import build_tokenizer
            # "sop"/"eop" are words: in a rendered chat template they match only when not inside a word
            specials = [AddedToken(token, single_word=token in ("sop", "eop"), normalized=False, special=True)
                        for token in self.special_token_names]
            tokenizer_object = build_tokenizer(read_model(vocab_file), vocab_file, specials)
        if chat_template is None:
            chat_template = CHATGLM3_TEMPLATE if variant == "chatglm3" else CHATGLM2_TEMPLATE
        reserved = {*self.special_token_names, "<unk>", "<s>", "</s>"}
        super().__init__(tokenizer_object, name_or_path=name_or_path, eos_token=eos_token, pad_token=pad_token,
                         unk_token=unk_token, padding_side=padding_side, chat_template=chat_template,
                         split_special_tokens=not encode_special_tokens if split_special_tokens is None
                         else split_special_tokens,
                         added_tokens_decoder=_plain_added_tokens(added_tokens_decoder, reserved),
                         variant=variant, **kwargs)
        self._setup_glm(vocab_file)

    def _hidden_ids(self) -> set[int]:
        hidden = {self._tokenizer.token_to_id(token) for token in ("<unk>", "<s>", "</s>")}
        hidden |= {self.eos_token_id, self.pad_token_id}
        if self.variant == "chatglm2":
            hidden |= set(self.special_ids.values())
        return hidden - {None}

    def build_prompt(self, query: str, history: list | None = None) -> str:
        """ChatGLM2's prompt: "[Round i]\\n\\n问：{query}\\n\\n答：{response}\\n\\n" per past (query, response)
        pair, then "[Round n+1]\\n\\n问：{query}\\n\\n答："."""
        prompt = ""
        if any(isinstance(item, dict) for item in history or []):
            raise TypeError("ChatGLM2's history is a list of (query, response) pairs, not role dicts.")
        for number, (old_query, response) in enumerate(history or [], 1):
            prompt += f"[Round {number}]\n\n问：{old_query}\n\n答：{response}\n\n"
        return prompt + f"[Round {len(history or []) + 1}]\n\n问：{query}\n\n答："

    def build_chat_input(self, query: str, history: list | None = None, role: str = "user") -> BatchEncoding:
        """Model inputs (torch tensors, batch of one) for the next turn. ChatGLM3: role-token messages (history of
        {"role", "content", ...} dicts). ChatGLM2: `build_prompt(query, history)` (history of (query, response)
        pairs) with the prefix."""
        if self.variant == "chatglm2":
            return self([self.build_prompt(query, history)], return_tensors="pt")
        return super().build_chat_input(query, history, role)

    @staticmethod
    def _with_tools(content: str, tools) -> str:
        return content + "\n" + json.dumps(tools, indent=4, ensure_ascii=False)


class ChatGLM4Tokenizer(_GLMTokenizer):
    """GLM-4-9B(-chat) tokenizer: tiktoken ranks in `tokenizer.model` as byte-level BPE, 14 specials after them,
    prefix `[gMASK] <sop>`, eos = pad = `<|endoftext|>`. Specials decode as their text unless
    `skip_special_tokens=True`."""

    special_token_names = GLM4_SPECIAL_TOKENS
    prefix_names = ("[gMASK]", "<sop>")
    variant = "glm4"

    def __init__(self, tokenizer_object: Tokenizer | None = None, *, vocab_file: str | None = None,
                 eos_token="<|endoftext|>", pad_token="<|endoftext|>", encode_special_tokens: bool = False,
                 split_special_tokens: bool | None = None, padding_side: str | None = None, chat_template=None,
                 added_tokens_decoder: dict | None = None, **kwargs):
        if padding_side not in (None, "left"):
            raise ValueError(f"ChatGLM4Tokenizer pads on the left only, not {padding_side!r}.")
        if tokenizer_object is None:
            if vocab_file is None:
                raise ValueError("ChatGLM4Tokenizer needs a rank file (vocab_file='tokenizer.model') or a "
                                 "tokenizer_object.")
            stat = os.stat(vocab_file)
            tokenizer_object = Tokenizer.from_str(_rank_tokenizer_json(os.path.realpath(vocab_file),
                                                                       stat.st_mtime_ns, stat.st_size))
        super().__init__(tokenizer_object, eos_token=eos_token, pad_token=pad_token, padding_side=padding_side,
                         chat_template=GLM4_TEMPLATE if chat_template is None else chat_template,
                         split_special_tokens=not encode_special_tokens if split_special_tokens is None
                         else split_special_tokens,
                         added_tokens_decoder=_plain_added_tokens(added_tokens_decoder, set(GLM4_SPECIAL_TOKENS)),
                         **kwargs)
        self._setup_glm(vocab_file)

    @staticmethod
    def _with_tools(content: str, tools) -> str:
        for function in tools:
            content += f"\n\n## {function['name']}\n\n{json.dumps(function, ensure_ascii=False, indent=4)}"
            content += "\n在调用上述函数时，请使用 Json 格式表示调用的参数。"
        return content

