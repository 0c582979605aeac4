"""`TokenizersBackend` (alias `PreTrainedTokenizerFast`): a `tokenizers.Tokenizer` with the transformers 5.x API.

The generic class loads `tokenizer.json` verbatim. Model-specific subclasses (bert.py, gpt2.py, qwen2.py, llama.py)
rebuild normalizer / pre-tokenizer / decoder from their own definition and take only the vocab, merges,
post-processor, padding and truncation from `tokenizer.json` — the transformers 5.x semantics.

Encoding runs in Rust (`Tokenizer.encode_batch`, with padding and truncation configured on the backend per call);
this module turns the results into a `BatchEncoding`. torch is imported only for `return_tensors="pt"`.
"""

from __future__ import annotations

import copy
import inspect
import logging
import os

from tokenizers import AddedToken, Tokenizer, processors

from . import loading, padding, saving
from ..hub.push import push_to_hub as _push_to_hub
from .chat import apply_chat_template, get_chat_template
from .encoding import BatchEncoding, to_python
from .padding import VERY_LARGE_INTEGER
from .tiktoken_ranks import build_from_ranks

logger = logging.getLogger(__name__)


class _SpecialToken:
    """`tok.bos_token`: the token string (or None); assigning a str/AddedToken replaces it (the vocab is unchanged:
    use `add_special_tokens` to add a new token)."""

    def __set_name__(self, owner, attr):
        self.attr = attr

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        value = obj._special_tokens.get(self.attr)
        return None if value is None else str(value)

    def __set__(self, obj, value):
        obj._set_special_token(self.attr, value)


class _SpecialTokenId:
    """`tok.bos_token_id`: the token's id (unk's id when it is not in the vocab); assigning an id sets the token."""

    def __set_name__(self, owner, attr):
        self.token_attr = attr.removesuffix("_id")

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        value = obj._special_tokens.get(self.token_attr)
        return None if value is None else obj._token_to_id(str(value))

    def __set__(self, obj, value):
        obj._set_special_token(self.token_attr, None if value is None else obj.convert_ids_to_tokens(int(value)))


class TokenizersBackend:
    """A tokenizer backed by the Rust `tokenizers` library, with the calling conventions of transformers 5.x.

    Load with `from_pretrained(name_or_path)` (a folder or a hub repo id) or `from_source(FileSource)`;
    build directly from a `tokenizers.Tokenizer` with `TokenizersBackend(tokenizer_object, eos_token=..., ...)`.
    """

    model_input_names: list[str] = ["input_ids", "attention_mask"]
    padding_side: str = "right"
    truncation_side: str = "right"
    # name saved as `tokenizer_class`; transformers maps it back to the same class
    saved_class_name: str | None = None

    bos_token = _SpecialToken()
    eos_token = _SpecialToken()
    unk_token = _SpecialToken()
    sep_token = _SpecialToken()
    pad_token = _SpecialToken()
    cls_token = _SpecialToken()
    mask_token = _SpecialToken()
    bos_token_id = _SpecialTokenId()
    eos_token_id = _SpecialTokenId()
    unk_token_id = _SpecialTokenId()
    sep_token_id = _SpecialTokenId()
    pad_token_id = _SpecialTokenId()
    cls_token_id = _SpecialTokenId()
    mask_token_id = _SpecialTokenId()

    def __init__(self, tokenizer_object: Tokenizer | None = None, *, name_or_path: str = "",
                 model_max_length: int | None = None, padding_side: str | None = None,
                 truncation_side: str | None = None, model_input_names: list[str] | None = None,
                 clean_up_tokenization_spaces: bool = False, split_special_tokens: bool = False,
                 chat_template: str | dict | list | None = None, add_bos_token: bool | None = None,
                 add_eos_token: bool | None = None,
                 bos_token=None, eos_token=None, unk_token=None, sep_token=None, pad_token=None, cls_token=None,
                 mask_token=None, extra_special_tokens=None, model_specific_special_tokens: dict | None = None,
                 added_tokens_decoder: dict | None = None, post_processor=None, tokenizer_padding=None,
                 tokenizer_truncation=None, tokenizer_file: str | None = None, **config):
        if tokenizer_object is None:
            if tokenizer_file is None:
                raise ValueError("TokenizersBackend needs a `tokenizers.Tokenizer` (tokenizer_object=) or a "
                                 "tokenizer.json path (tokenizer_file=); to load a repo use from_pretrained().")
            tokenizer_object = Tokenizer.from_file(tokenizer_file)
        self._tokenizer = tokenizer_object
        self.name_or_path = os.fspath(name_or_path)
        self._warned_too_long = self._warned_bpe_cleanup = False

        # tokenizer.json's padding/truncation are re-installed on rebuilt backends, as transformers does; every
        # call resets them to its own arguments, so they only matter to code that uses `backend_tokenizer` directly
        if tokenizer_truncation is not None:
            self._tokenizer.enable_truncation(**tokenizer_truncation)
        if tokenizer_padding is not None:
            self._tokenizer.enable_padding(**tokenizer_padding)
        if post_processor is not None:
            self._tokenizer.post_processor = post_processor
        # A config that names add_bos/add_eos (or a backend with no post-processor) gets a template built from them
        self._add_bos_token = bool(add_bos_token)
        self._add_eos_token = bool(add_eos_token)
        update_post_processor = (add_bos_token is not None or add_eos_token is not None
                                 or self._tokenizer.post_processor is None)

        self.model_max_length = VERY_LARGE_INTEGER if model_max_length is None else model_max_length
        self.padding_side = padding_side or type(self).padding_side
        self.truncation_side = truncation_side or type(self).truncation_side
        for name, side in (("padding_side", self.padding_side), ("truncation_side", self.truncation_side)):
            if side not in ("right", "left"):
                raise ValueError(f"{name} should be 'right' or 'left', not {side!r}.")
        self.model_input_names = list(model_input_names or type(self).model_input_names)
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        self.split_special_tokens = split_special_tokens
        if isinstance(chat_template, (list, tuple)):  # legacy config form: [{"name": ..., "template": ...}]
            chat_template = {entry["name"]: entry["template"] for entry in chat_template}
        self.chat_template = chat_template
        self.pad_token_type_id = 0

        # Special tokens: the seven named ones, model-specific named ones (image_token, ...) and unnamed extras.
        named = {"bos_token": bos_token, "eos_token": eos_token, "unk_token": unk_token, "sep_token": sep_token,
                 "pad_token": pad_token, "cls_token": cls_token, "mask_token": mask_token}
        model_specific = dict(model_specific_special_tokens or {})
        for key in list(config):
            if key.endswith("_token") and isinstance(config[key], (str, AddedToken)):
                model_specific[key] = config.pop(key)
        if isinstance(extra_special_tokens, dict):
            model_specific.update(extra_special_tokens)
            extra_special_tokens = None
        self._special_tokens: dict[str, str | AddedToken | None] = {}
        for key, value in {**named, **model_specific}.items():
            if value is not None and not isinstance(value, (str, AddedToken)):
                raise TypeError(f"{key} should be a str or a tokenizers.AddedToken, not {type(value).__name__}.")
            self._special_tokens[key] = value
        if extra_special_tokens is not None and not isinstance(extra_special_tokens, (list, tuple)):
            raise TypeError("extra_special_tokens should be a list of tokens (or a dict of named tokens).")
        self._extra_special_tokens: list[str | AddedToken] = list(extra_special_tokens or [])

        # What save_pretrained writes back (besides the current special tokens and settings).
        self.init_kwargs = {**copy.deepcopy(config), **{k: v for k, v in named.items() if v is not None}}
        if model_specific:
            self.init_kwargs["model_specific_special_tokens"] = dict(model_specific)
        if extra_special_tokens:
            self.init_kwargs["extra_special_tokens"] = list(extra_special_tokens)
        for key, value in (("model_max_length", model_max_length), ("padding_side", padding_side),
                           ("truncation_side", truncation_side), ("model_input_names", model_input_names),
                           ("clean_up_tokenization_spaces", clean_up_tokenization_spaces or None),
                           ("split_special_tokens", split_special_tokens or None),
                           ("add_bos_token", add_bos_token), ("add_eos_token", add_eos_token)):
            if value is not None:
                self.init_kwargs[key] = value
        self.clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output = config.get(
            "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output", False)

        self._add_declared_tokens(added_tokens_decoder or {})
        self._tokenizer.encode_special_tokens = self.split_special_tokens
        if update_post_processor:
            self.update_post_processor()

    def _add_declared_tokens(self, added_tokens_decoder: dict[int, AddedToken]) -> None:
        """Register the config's added tokens (in id order) and any special token the backend lacks.

        Tokens already in the vocab keep their id; new ones are appended, so the order here fixes their ids.
        """
        present = self._tokenizer.get_added_tokens_decoder()
        present_reprs = {repr(token) for token in present.values()}
        to_add = [token for _, token in sorted(added_tokens_decoder.items(), key=lambda item: item[0])
                  if repr(token) not in present_reprs]
        known = [token.content for token in present.values()] + [str(token) for token in to_add]
        for value in [*self._special_tokens.values(), *self._extra_special_tokens]:
            if value is not None and str(value) not in known and value not in to_add:
                to_add.append(value)
        named = {str(value) for value in self._special_tokens.values() if value}
        tokens = []
        for token in to_add:
            if isinstance(token, str):
                token = AddedToken(token, special=True)
            elif not token.special and token.content in named:
                token.special = True
            tokens.append(token)
        if tokens:
            self._tokenizer.add_tokens(tokens)

    # -- loading ------------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, revision: str | None = None, token=None,
                        cache_dir=None, local_files_only: bool = False, endpoint: str | None = None,
                        **init_kwargs):
        """Load from a local folder or a hub repo id (tokenizer files only, never weights).

        `init_kwargs` override the repo's tokenizer_config.json (e.g. `padding_side="left"`, `pad_token="<pad>"`).
        """
        from ..hub.source import FileSource
        source = FileSource(name_or_path, revision=revision, token=token, cache_dir=cache_dir,
                            local_files_only=local_files_only, endpoint=endpoint)
        return cls.from_source(source, **init_kwargs)

    @classmethod
    def from_source(cls, source, **init_kwargs):
        """Load from an `autoload.hub.source.FileSource`, fetching every tokenizer file in one call."""
        cls._check_kwargs(init_kwargs)
        init_kwargs.pop("use_fast", None)  # transformers 5 ignores it too: every tokenizer is a Rust one
        files = loading.fetch_tokenizer_files(source)
        kwargs = loading.build_init_kwargs(files, init_kwargs)
        return cls._from_files(files, kwargs, source)

    @classmethod
    def _from_files(cls, files: loading.TokenizerFiles, kwargs: dict, source):
        """Build the instance from the fetched files. The generic class reads tokenizer.json verbatim."""
        if loading.TOKENIZER_FILE in files:
            return cls(loading.load_tokenizer_json(files[loading.TOKENIZER_FILE]), **kwargs)
        rank_files = sorted(name for name in files if name.endswith(".tiktoken"))
        if rank_files:
            return cls(build_from_ranks(files[rank_files[0]]), **kwargs)
        raise cls._missing_files_error(source, [loading.TOKENIZER_FILE, "*.tiktoken"], files)

    @classmethod
    def _missing_files_error(cls, source, wanted: list[str], files) -> OSError:
        found = ", ".join(sorted(files)) or "no tokenizer files at all"
        hint = (" A SentencePiece tokenizer.model alone is not supported: the repo needs a tokenizer.json."
                if "tokenizer.model" in files else "")
        return OSError(f"Can't build a {cls.__name__} from {source.describe()}: it needs {' or '.join(wanted)}, "
                       f"and has {found}.{hint}")

    @classmethod
    def _check_kwargs(cls, kwargs: dict) -> None:
        """Keywords given by the caller must be constructor options (or `*_token`s): a typo is an error."""
        known = {"use_fast", "additional_special_tokens"}
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is not None:
                known.update(name for name, p in inspect.signature(init).parameters.items()
                             if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
        known.discard("self")
        unknown = [key for key in kwargs if key not in known and not key.endswith("_token")]
        if unknown:
            import difflib
            hints = [f"{key!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(key, known, 1)) else
                     repr(key) for key in unknown]
            raise TypeError(f"{cls.__name__}.from_pretrained() got unknown option(s) {', '.join(hints)}. "
                            f"Options: {', '.join(sorted(known))}.")

    # -- special tokens -----------------------------------------------------------------------------------------

    SPECIAL_TOKENS_ATTRIBUTES = loading.SPECIAL_TOKENS_ATTRIBUTES

    def _set_special_token(self, name: str, value) -> None:
        if value is not None and not isinstance(value, (str, AddedToken)):
            raise ValueError(f"{name} must be a str or a tokenizers.AddedToken, not {type(value).__name__}.")
        self._special_tokens[name] = value

    def __getattr__(self, name: str):
        # model-specific named tokens (image_token, image_token_id, ...) declared by the config
        specials = self.__dict__.get("_special_tokens")
        if specials is not None:
            base = name.removesuffix("_id")
            if base in specials and base not in self.SPECIAL_TOKENS_ATTRIBUTES:
                value = specials[base]
                if value is None:
                    return None
                return self._token_to_id(str(value)) if name != base else str(value)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    @property
    def extra_special_tokens(self) -> list[str]:
        """Special tokens without a name (the v4 `additional_special_tokens`)."""
        return [str(token) for token in self._extra_special_tokens]

    @extra_special_tokens.setter
    def extra_special_tokens(self, tokens) -> None:
        self._extra_special_tokens = list(tokens or [])

    @property
    def extra_special_tokens_ids(self) -> list[int]:
        return self.convert_tokens_to_ids(self.extra_special_tokens)

    @property
    def special_tokens_map(self) -> dict[str, str]:
        """Named special tokens that are set: {"eos_token": "</s>", ...} (extras not included, as in v5)."""
        return {name: str(value) for name, value in self._special_tokens.items() if value is not None}

    @property
    def all_special_tokens(self) -> list[str]:
        """Named and extra special tokens, without duplicates, in a stable order."""
        seen: dict[str, None] = {}
        for value in [*self._special_tokens.values(), *self._extra_special_tokens]:
            if value is not None:
                seen.setdefault(str(value))
        return list(seen)

    @property
    def all_special_ids(self) -> list[int]:
        return self.convert_tokens_to_ids(self.all_special_tokens)

    def add_tokens(self, new_tokens, special_tokens: bool = False) -> int:
        """Add tokens (str or AddedToken) that are not in the vocab yet; returns the backend's count."""
        if not new_tokens:
            return 0
        if not isinstance(new_tokens, (list, tuple)):
            new_tokens = [new_tokens]
        if special_tokens:
            return self._tokenizer.add_special_tokens(list(new_tokens))
        return self._tokenizer.add_tokens(list(new_tokens))

    def add_special_tokens(self, special_tokens_dict: dict, replace_extra_special_tokens: bool = True) -> int:
        """Set named special tokens (`{"pad_token": "<pad>"}`) and/or `extra_special_tokens`, adding any that are
        new to the vocab (returned: how many). Resize the model's embeddings to `len(tok)` after adding."""
        if not special_tokens_dict:
            return 0
        special_tokens_dict = dict(special_tokens_dict)
        if "additional_special_tokens" in special_tokens_dict and not special_tokens_dict.get("extra_special_tokens"):
            special_tokens_dict["extra_special_tokens"] = special_tokens_dict.pop("additional_special_tokens")
        allowed = set(self._special_tokens) | set(self.SPECIAL_TOKENS_ATTRIBUTES) | {"extra_special_tokens"}
        to_add = []
        for key, value in special_tokens_dict.items():
            if key not in allowed:
                raise ValueError(f"{key!r} is not a special token name; use one of {sorted(allowed)}.")
            if key == "extra_special_tokens":
                if not isinstance(value, (list, tuple)) or not all(isinstance(t, (str, AddedToken)) for t in value):
                    raise ValueError("extra_special_tokens should be a list of str or AddedToken.")
                new = [AddedToken(t, rstrip=False, lstrip=False, normalized=False, special=True)
                       if isinstance(t, str) else t
                       for t in value if replace_extra_special_tokens or str(t) not in self.extra_special_tokens]
                if replace_extra_special_tokens and new:
                    self._extra_special_tokens = list(new)
                else:
                    self._extra_special_tokens.extend(new)
                to_add.extend(new)
            else:
                if not isinstance(value, (str, AddedToken)):
                    raise ValueError(f"{key} should be a str or an AddedToken, not {type(value).__name__}.")
                if isinstance(value, str):
                    value = AddedToken(value, rstrip=False, lstrip=False, normalized=False, special=True)
                self._special_tokens[key] = value
                to_add.append(value)
        return self.add_tokens(to_add, special_tokens=True)

    @property
    def add_bos_token(self) -> bool:
        return self._add_bos_token

    @add_bos_token.setter
    def add_bos_token(self, value: bool) -> None:
        self._add_bos_token = value
        self.update_post_processor()

    @property
    def add_eos_token(self) -> bool:
        return self._add_eos_token

    @add_eos_token.setter
    def add_eos_token(self, value: bool) -> None:
        self._add_eos_token = value
        self.update_post_processor()

    def update_post_processor(self) -> None:
        """Rebuild the backend's post-processor from `add_bos_token`/`add_eos_token`: `[bos] $A [eos]`."""
        bos, eos = self.bos_token, self.eos_token
        if bos is None:
            self._add_bos_token = False
        if eos is None:
            self._add_eos_token = False
        single = f"{bos + ':0 ' if self._add_bos_token else ''}$A:0{' ' + eos + ':0' if self._add_eos_token else ''}"
        pair = (f"{single}{' ' + bos + ':1' if self._add_bos_token else ''} $B:1"
                f"{' ' + eos + ':1' if self._add_eos_token else ''}")
        special = []
        if self._add_bos_token:
            special.append((bos, self.bos_token_id))
        if self._add_eos_token:
            special.append((eos, self.eos_token_id))
        self._tokenizer.post_processor = processors.TemplateProcessing(single=single, pair=pair,
                                                                       special_tokens=special)

    # -- vocabulary ---------------------------------------------------------------------------------------------

    @property
    def backend_tokenizer(self) -> Tokenizer:
        """The `tokenizers.Tokenizer` doing the work."""
        return self._tokenizer

    @property
    def decoder(self):
        return self._tokenizer.decoder

    @property
    def is_fast(self) -> bool:
        return True

    @property
    def vocab_size(self) -> int:
        """Size of the base vocabulary, without added tokens (`len(tok)` counts them)."""
        return self._tokenizer.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def __bool__(self) -> bool:
        return True  # not len(): `if tokenizer:` must not depend on the vocab size

    def get_vocab(self) -> dict[str, int]:
        return self._tokenizer.get_vocab(with_added_tokens=True)

    @property
    def vocab(self) -> dict[str, int]:
        return self.get_vocab()

    @property
    def added_tokens_decoder(self) -> dict[int, AddedToken]:
        return self._tokenizer.get_added_tokens_decoder()

    @property
    def added_tokens_encoder(self) -> dict[str, int]:
        return {token.content: index for index, token in sorted(self.added_tokens_decoder.items())}

    def get_added_vocab(self) -> dict[str, int]:
        return self.added_tokens_encoder

    def _token_to_id(self, token: str) -> int | None:
        index = self._tokenizer.token_to_id(token)
        if index is None:
            unk = self._special_tokens.get("unk_token")
            return None if unk is None else self._tokenizer.token_to_id(str(unk))
        return index

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | list[int]:
        """Token(s) to id(s); unknown tokens give the unk token's id (None without one)."""
        if isinstance(tokens, str):
            return self._token_to_id(tokens)
        return [self._token_to_id(token) for token in tokens]

    def convert_ids_to_tokens(self, ids: int | list[int], skip_special_tokens: bool = False) -> str | list[str]:
        if isinstance(ids, int):
            return self._tokenizer.id_to_token(ids)
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._tokenizer.id_to_token(int(i)) for i in ids if int(i) not in skip]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        decoder = self._tokenizer.decoder
        return decoder.decode(tokens) if decoder is not None else " ".join(tokens)

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return self._tokenizer.num_special_tokens_to_add(pair)

    @property
    def max_len_single_sentence(self) -> int:
        return self.model_max_length - self.num_special_tokens_to_add(pair=False)

    @property
    def max_len_sentences_pair(self) -> int:
        return self.model_max_length - self.num_special_tokens_to_add(pair=True)

    def get_special_tokens_mask(self, token_ids_0: list[int], token_ids_1: list[int] | None = None,
                                already_has_special_tokens: bool = False) -> list[int]:
        """1 where an id (of an already-built sequence) is a special token, else 0."""
        if not already_has_special_tokens:
            raise NotImplementedError("get_special_tokens_mask works on built sequences: pass already_has_special_"
                                      "tokens=True, or encode with return_special_tokens_mask=True.")
        if token_ids_1 is not None:
            raise ValueError("Pass one already-built sequence (token_ids_1 must be None).")
        special = set(self.all_special_ids)
        return [1 if int(i) in special else 0 for i in token_ids_0]

    # -- encoding -----------------------------------------------------------------------------------------------

    def __call__(self, text=None, text_pair=None, *, text_target=None, text_pair_target=None,
                 add_special_tokens: bool = True, padding: bool | str = False, truncation: bool | str | None = None,
                 max_length: int | None = None, stride: int = 0, is_split_into_words: bool = False,
                 pad_to_multiple_of: int | None = None, padding_side: str | None = None,
                 return_tensors: str | None = None, return_token_type_ids: bool | None = None,
                 return_attention_mask: bool | None = None, return_overflowing_tokens: bool = False,
                 return_special_tokens_mask: bool = False, return_offsets_mapping: bool = False,
                 return_length: bool = False, split_special_tokens: bool | None = None,
                 verbose: bool = True) -> BatchEncoding:
        """Tokenize a text, a batch of texts, a pair (`text, text_pair`) or a batch of pairs.

        padding: False/"do_not_pad", True/"longest", "max_length" (to `max_length`, else model_max_length).
        truncation: True/"longest_first", "only_first", "only_second", False/"do_not_truncate"; `max_length` alone
        turns on "longest_first". With `return_overflowing_tokens`, the cut-off parts come back as extra rows
        (overlapping by `stride` tokens) and `overflow_to_sample_mapping` says which input each row is from.
        A single text gives flat lists; a batch (or any `return_tensors`) gives one row per sequence.
        """
        if text is None and text_target is None:
            raise ValueError("Give the text to tokenize (text=...) or a target (text_target=...).")
        padding, truncation, max_length = self._resolve_strategies(padding, truncation, max_length,
                                                                   pad_to_multiple_of, verbose)
        options = dict(add_special_tokens=add_special_tokens, padding=padding, truncation=truncation,
                       max_length=max_length, stride=stride, is_split_into_words=is_split_into_words,
                       pad_to_multiple_of=pad_to_multiple_of, padding_side=padding_side,
                       return_tensors=return_tensors, return_token_type_ids=return_token_type_ids,
                       return_attention_mask=return_attention_mask,
                       return_overflowing_tokens=return_overflowing_tokens,
                       return_special_tokens_mask=return_special_tokens_mask,
                       return_offsets_mapping=return_offsets_mapping, return_length=return_length,
                       split_special_tokens=split_special_tokens, verbose=verbose)
        encoded = self._encode(text, text_pair, **options) if text is not None else None
        if text_target is None:
            return encoded
        target = self._encode(text_target, text_pair_target, **options)
        if encoded is None:
            return target
        encoded["labels"] = target["input_ids"]
        return encoded

    def encode(self, text, text_pair=None, *, add_special_tokens: bool = True, padding: bool | str = False,
               truncation: bool | str | None = None, max_length: int | None = None, stride: int = 0,
               padding_side: str | None = None, return_tensors: str | None = None, **kwargs):
        """The `input_ids` of one text (or pair): `tok(text, ...)["input_ids"]`."""
        return self(text, text_pair, add_special_tokens=add_special_tokens, padding=padding, truncation=truncation,
                    max_length=max_length, stride=stride, padding_side=padding_side, return_tensors=return_tensors,
                    **kwargs)["input_ids"]

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False, **kwargs) -> list[str]:
        """The token strings of a text (no special tokens unless asked)."""
        return self(text, pair, add_special_tokens=add_special_tokens, **kwargs).tokens()

    def _configure_backend(self, padding: str, truncation: str, max_length, stride: int, pad_to_multiple_of,
                           padding_side: str | None) -> None:
        """Install this call's padding/truncation on the backend (touching it only when something changed)."""
        backend = self._tokenizer
        current_truncation = backend.truncation
        if truncation == "do_not_truncate":
            if current_truncation is not None:
                backend.no_truncation()
        else:
            if self.truncation_side not in ("right", "left"):
                raise ValueError(f"truncation_side should be 'right' or 'left', not {self.truncation_side!r}.")
            target = {"max_length": max_length, "stride": stride, "strategy": truncation,
                      "direction": self.truncation_side}
            current = None if current_truncation is None else {k: current_truncation.get(k) for k in target}
            if current != target:
                backend.enable_truncation(**target)
        current_padding = backend.padding
        if padding == "do_not_pad":
            if current_padding is not None:
                backend.no_padding()
        else:
            side = padding_side or self.padding_side
            if side not in ("right", "left"):
                raise ValueError(f"padding_side should be 'right' or 'left', not {side!r}.")
            target = {"length": max_length if padding == "max_length" else None, "direction": side,
                      "pad_id": self.pad_token_id, "pad_token": self.pad_token, "pad_type_id": self.pad_token_type_id,
                      "pad_to_multiple_of": pad_to_multiple_of}
            if current_padding != target:
                backend.enable_padding(**target)

    def _encode(self, text, text_pair, *, add_special_tokens, padding, truncation, max_length, stride,
                is_split_into_words, pad_to_multiple_of, padding_side, return_tensors, return_token_type_ids,
                return_attention_mask, return_overflowing_tokens, return_special_tokens_mask, return_offsets_mapping,
                return_length, split_special_tokens, verbose) -> BatchEncoding:
        for value, name in ((text, "text"), (text_pair, "text_pair")):
            if value is not None and not _is_text_input(value):
                raise ValueError(f"{name} must be a str (one text), a list of str (a batch, or one pre-split text "
                                 "with is_split_into_words=True) or a list of lists of str (pre-split batch); "
                                 f"got {type(value).__name__}.")
        if is_split_into_words:
            batched = isinstance(text, (list, tuple)) and bool(text) and isinstance(text[0], (list, tuple))
        else:
            batched = isinstance(text, (list, tuple))
        if batched:
            if isinstance(text_pair, str):
                raise TypeError("For a batch of texts, text_pair must be a list of the same length as text.")
            if text_pair is not None and len(text) != len(text_pair):
                raise ValueError(f"text has {len(text)} items but text_pair has {len(text_pair)}.")
            inputs = list(zip(text, text_pair)) if text_pair is not None else text
        else:
            inputs = [(text, text_pair)] if text_pair else [text]

        self._configure_backend(padding, truncation, max_length, stride, pad_to_multiple_of, padding_side)
        split = self.split_special_tokens if split_special_tokens is None else split_special_tokens
        if self._tokenizer.encode_special_tokens != split:
            self._tokenizer.encode_special_tokens = split
        try:
            encodings = self._tokenizer.encode_batch(inputs, add_special_tokens=add_special_tokens,
                                                     is_pretokenized=is_split_into_words)
        except BaseException as err:
            # tokenizers reports bad truncation settings (stride >= room left) as a Rust panic, a BaseException
            # that `except Exception` would miss: give it a catchable type
            if type(err).__name__ == "PanicException":
                raise ValueError(f"tokenizers refused this input: {err}") from None
            raise

        if return_overflowing_tokens:
            rows, sample_of_row = [], []
            for index, encoding in enumerate(encodings):
                for row in (encoding, *encoding.overflowing):
                    rows.append(row)
                    sample_of_row.append(index)
        else:
            rows = encodings
        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        data = {"input_ids": [row.ids for row in rows]}
        if return_token_type_ids:
            data["token_type_ids"] = [row.type_ids for row in rows]
        if return_attention_mask:
            data["attention_mask"] = [row.attention_mask for row in rows]
        if return_special_tokens_mask:
            data["special_tokens_mask"] = [row.special_tokens_mask for row in rows]
        if return_offsets_mapping:
            data["offset_mapping"] = [row.offsets for row in rows]
        if return_length:
            data["length"] = [len(row.ids) for row in rows]
        if return_overflowing_tokens:
            data["overflow_to_sample_mapping"] = sample_of_row
        if verbose and max_length is None and not self._warned_too_long:
            longest = max((len(ids) for ids in data["input_ids"]), default=0)
            if longest > self.model_max_length and self.model_max_length != 0:
                self._warned_too_long = True
                logger.warning("Token indices sequence length is longer than the specified maximum sequence length "
                               "for this model (%d > %d). Running this sequence through the model will result in "
                               "indexing errors", longest, self.model_max_length)

        if not batched and return_tensors is None and not return_overflowing_tokens:
            # one text in, flat lists out
            return BatchEncoding({key: value[0] if value and isinstance(value[0], list) else value
                                  for key, value in data.items()}, rows)
        return BatchEncoding(data, rows, tensor_type=return_tensors)

    # -- padding after the fact, saving, chat: in their own modules -------------------------------------------

    _resolve_strategies = padding.resolve_strategies
    pad = padding.pad
    save_pretrained = saving.save_pretrained
    push_to_hub = _push_to_hub  # save_pretrained into a temp folder, then one upload commit
    apply_chat_template = apply_chat_template
    get_chat_template = get_chat_template

    # -- decoding -----------------------------------------------------------------------------------------------

    def decode(self, token_ids, skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool | None = None) -> str | list[str]:
        """Ids to text. A batch (list of lists, 2-D tensor) gives a list of texts."""
        token_ids = to_python(token_ids)
        if isinstance(token_ids, dict):
            token_ids = token_ids["input_ids"]
        if isinstance(token_ids, (list, tuple)) and token_ids and isinstance(token_ids[0], (list, tuple)):
            return [self._decode(ids, skip_special_tokens, clean_up_tokenization_spaces) for ids in token_ids]
        return self._decode(token_ids, skip_special_tokens, clean_up_tokenization_spaces)

    def batch_decode(self, sequences, skip_special_tokens: bool = False,
                     clean_up_tokenization_spaces: bool | None = None) -> list[str]:
        sequences = to_python(sequences)
        if len(sequences) == 0:
            return []
        result = self.decode(sequences, skip_special_tokens, clean_up_tokenization_spaces)
        return [result] if isinstance(result, str) else result

    def _decode(self, token_ids, skip_special_tokens: bool, clean_up_tokenization_spaces: bool | None) -> str:
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        text = self._tokenizer.decode(token_ids, skip_special_tokens=skip_special_tokens)
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        if clean_up_tokenization_spaces:
            # The cleanup was written for WordPiece; on byte-level BPE it deletes real spaces before punctuation.
            if (type(self._tokenizer.model).__name__ == "BPE"
                    and not self.clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output):
                if not self._warned_bpe_cleanup:
                    self._warned_bpe_cleanup = True
                    logger.warning("Ignoring clean_up_tokenization_spaces=True for the BPE tokenizer %s: it would "
                                   "strip spaces before punctuation.", type(self).__name__)
            else:
                text = self.clean_up_tokenization(text)
        return text

    @staticmethod
    def clean_up_tokenization(text: str) -> str:
        """Remove the space before punctuation and contractions (" ." -> ".", " n't" -> "n't")."""
        for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                              (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
            text = text.replace(before, after)
        return text

    def __repr__(self) -> str:
        added = "\n\t".join(f"{index}: {token!r}," for index, token in self.added_tokens_decoder.items())
        added = f"\n\t{added}\n" if added else ""
        return (f"{type(self).__name__}(name_or_path='{self.name_or_path}', vocab_size={self.vocab_size}, "
                f"model_max_length={self.model_max_length}, padding_side='{self.padding_side}', "
                f"truncation_side='{self.truncation_side}', special_tokens={self.special_tokens_map}, "
                f"added_tokens_decoder={{{added}}})")


PreTrainedTokenizerFast = TokenizersBackend


def _is_text_input(value) -> bool:
    """str, list of str, list of lists/tuples of str (pairs or pre-split words), up to three levels deep."""
    if isinstance(value, str):
        return True
    if not isinstance(value, (list, tuple)):
        return False
    if not value:
        return True
    first = value[0]
    if isinstance(first, str):
        return True
    if isinstance(first, (list, tuple)):
        if not first or isinstance(first[0], str):
            return True
        if isinstance(first[0], (list, tuple)):
            return not first[0] or isinstance(first[0][0], str)
    return False
