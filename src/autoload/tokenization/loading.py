"""Which files a tokenizer is read from, and how their settings combine into constructor keywords.

The precedence rules are those of transformers 5.x (`PreTrainedTokenizerBase._from_pretrained`):

* `tokenizer_config.json` gives the constructor keywords; its `tokenizer_class`, `init_inputs`, `auto_map` and any
  file paths are dropped (files come from the repo, never from paths written in a config);
* with a `tokenizer.json`, `add_bos_token`/`add_eos_token` are dropped: its post-processor already says what to add;
* `chat_template.jinja` and `additional_chat_templates/*.jinja` override an inline `chat_template`;
* `added_tokens_decoder` in the config is authoritative; without it (legacy repos) `special_tokens_map.json`,
  `added_tokens.json` and the `added_tokens` of `tokenizer.json` are merged;
* `additional_special_tokens` becomes `extra_special_tokens`; other `*_token` keys are model-specific special tokens.
"""

from __future__ import annotations

import json
import os

from tokenizers import AddedToken, Tokenizer

from .. import jsonfiles
from ..errors import RepoFileError

CONFIG_FILE = "tokenizer_config.json"
TOKENIZER_FILE = "tokenizer.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
ADDED_TOKENS_FILE = "added_tokens.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
LEGACY_CHAT_TEMPLATE_FILE = "chat_template.json"  # processors' file; used only when nothing else has a template
CHAT_TEMPLATE_DIR = "additional_chat_templates"

# Everything any tokenizer class may read, in one list so a repo is asked once. Never weights.
TOKENIZER_FILE_PATTERNS = [
    TOKENIZER_FILE, CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE, ADDED_TOKENS_FILE,
    "vocab.txt", "vocab.json", "merges.txt", "*.tiktoken", "tokenizer.model",
    "sentencepiece.bpe.model", "spm.model", "spiece.model",  # SentencePiece Unigram models (XLM-R, DeBERTa, ALBERT)
    "source.spm", "target.spm", "target_vocab.json",  # Marian
    CHAT_TEMPLATE_FILE, LEGACY_CHAT_TEMPLATE_FILE, f"{CHAT_TEMPLATE_DIR}/*.jinja",
]

SPECIAL_TOKENS_ATTRIBUTES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")

# Config keys that name files or describe where a tokenizer came from: never constructor arguments.
_DROPPED_CONFIG_KEYS = ("tokenizer_class", "init_inputs", "auto_map", "name_or_path", "vocab_file", "merges_file",
                        "tokenizer_file", "special_tokens_map_file", "added_tokens_file", "tokenizer_config_file",
                        "chat_template_file", "files_loaded", "is_local", "local_files_only", "backend")


class TokenizerFiles(dict):
    """{repo-relative name: local path} of the tokenizer files a repo has, with each JSON parsed at most once
    (a Qwen tokenizer.json is 7 MB: the added tokens and the vocab are read from the same parse)."""

    def __init__(self, paths: dict[str, str], name: str):
        super().__init__(paths)
        self.name = name
        self._parsed: dict[str, object] = {}

    def json(self, filename: str):
        if filename not in self._parsed:
            self._parsed[filename] = read_json(self[filename], filename)
        return self._parsed[filename]


def read_json(path: str, what: str):
    """A tokenizer JSON file (each holds an object), through the bounded reader: `RepoFileError` (an OSError)
    names the file when it is invalid, nested too deeply or over its size limit (tokenizer.json 512 MiB, others
    64 MiB)."""
    return jsonfiles.read_json(path, expect=dict)


def read_text(path: str) -> str:
    """A chat template file (at most 16 MiB)."""
    return jsonfiles.read_text(path)


def load_tokenizer_json(path: str) -> Tokenizer:
    """`tokenizers.Tokenizer.from_file` for a repo's tokenizer.json, within its size limit, with its errors
    (invalid JSON, nesting past serde's recursion limit, unknown types) as `RepoFileError`s naming the file."""
    jsonfiles.check_file_size(path)
    try:
        return Tokenizer.from_file(path)
    except Exception as err:  # tokenizers raises a bare Exception
        raise RepoFileError(f"{path} cannot be loaded as a tokenizer.json ({err}). Fix or re-download the file "
                            "(`autoload download ... --force`).") from None


def to_added_token(value, *, special: bool | None = None):
    """A saved token ({"content": ..., "lstrip": ...} with or without "__type") as a `tokenizers.AddedToken`."""
    if isinstance(value, AddedToken):
        return value
    if isinstance(value, dict):
        fields = {k: v for k, v in value.items() if k not in ("__type", "id")}
        if special is not None:
            fields["special"] = special
        return AddedToken(**fields)
    return value


def decode_added_tokens(obj):
    """Recursively turn {"__type": "AddedToken", ...} dicts (the config's encoding) into AddedTokens."""
    if isinstance(obj, dict):
        if obj.get("__type") == "AddedToken":
            return to_added_token(obj)
        return {key: decode_added_tokens(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [decode_added_tokens(item) for item in obj]
    return obj


def encode_added_tokens(obj):
    """The reverse of `decode_added_tokens`, for writing a config."""
    if isinstance(obj, AddedToken):
        return {"__type": "AddedToken", **obj.__getstate__()}
    if isinstance(obj, dict):
        return {key: encode_added_tokens(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [encode_added_tokens(item) for item in obj]
    return obj


def chat_templates(files: dict[str, str]) -> str | dict[str, str] | None:
    """The repo's template files: one default -> a string, several -> {name: template}, none -> None."""
    templates = {}
    if CHAT_TEMPLATE_FILE in files:
        templates["default"] = read_text(files[CHAT_TEMPLATE_FILE])
    prefix = CHAT_TEMPLATE_DIR + "/"
    for relative, path in sorted(files.items()):
        if relative.startswith(prefix) and relative.endswith(".jinja") and "/" not in relative[len(prefix):]:
            templates[relative[len(prefix):-len(".jinja")]] = read_text(path)
    if not templates:
        return None
    if list(templates) == ["default"]:
        return templates["default"]
    return templates


def build_init_kwargs(files: TokenizerFiles, user_kwargs: dict) -> dict:
    """Constructor keywords from the repo's files and the caller's keywords (which win), per the module rules.

    Returns the keywords with `added_tokens_decoder` as {id: AddedToken} and special tokens as str/AddedToken.
    """
    name_or_path = files.name
    config = files.json(CONFIG_FILE) if CONFIG_FILE in files else {}
    if not isinstance(config, dict):
        raise OSError(f"{CONFIG_FILE} of {name_or_path} should hold a JSON object, not {type(config).__name__}.")
    kwargs = dict(config)
    for key in _DROPPED_CONFIG_KEYS:
        kwargs.pop(key, None)
    if TOKENIZER_FILE in files:
        kwargs.pop("add_bos_token", None)
        kwargs.pop("add_eos_token", None)

    templates = chat_templates(files)
    if templates is not None:
        kwargs["chat_template"] = templates
    elif kwargs.get("chat_template") is None and LEGACY_CHAT_TEMPLATE_FILE in files:
        # transformers' AutoTokenizer ignores this processor file; we use it rather than fail on apply_chat_template
        legacy = files.json(LEGACY_CHAT_TEMPLATE_FILE)
        if isinstance(legacy, dict) and legacy.get("chat_template"):
            kwargs["chat_template"] = legacy["chat_template"]

    kwargs.update(user_kwargs)
    if "additional_special_tokens" in kwargs and not kwargs.get("extra_special_tokens"):
        kwargs["extra_special_tokens"] = kwargs.pop("additional_special_tokens")

    added_tokens_decoder: dict[int, AddedToken] = {}
    if "added_tokens_decoder" in kwargs:
        for index, token in kwargs["added_tokens_decoder"].items():
            token = to_added_token(token)
            if not isinstance(token, AddedToken):
                raise OSError(f"added_tokens_decoder[{index}] in {CONFIG_FILE} of {name_or_path} should be a token "
                              f"object, not {token!r}.")
            added_tokens_decoder[int(index)] = token
    else:
        _merge_legacy_tokens(files, kwargs, user_kwargs, added_tokens_decoder)
        if "additional_special_tokens" in kwargs and not kwargs.get("extra_special_tokens"):
            kwargs["extra_special_tokens"] = kwargs.pop("additional_special_tokens")
    kwargs["added_tokens_decoder"] = added_tokens_decoder
    kwargs = decode_added_tokens(kwargs)

    # Named special tokens pick up the exact AddedToken (lstrip, normalized, ...) the added tokens declare.
    by_content = {token.content: token for token in added_tokens_decoder.values()}
    for key in SPECIAL_TOKENS_ATTRIBUTES:
        value = kwargs.get(key)
        if value is not None and by_content:
            kwargs[key] = by_content.get(str(value), value)

    model_specific = {key: kwargs.pop(key) for key in list(kwargs)
                      if key.endswith("_token") and key not in SPECIAL_TOKENS_ATTRIBUTES
                      and isinstance(kwargs[key], (str, AddedToken))}
    if isinstance(kwargs.get("extra_special_tokens"), dict):
        model_specific.update(kwargs.pop("extra_special_tokens"))
    if model_specific:
        kwargs["model_specific_special_tokens"] = {**kwargs.get("model_specific_special_tokens", {}), **model_specific}
    kwargs["name_or_path"] = name_or_path
    return kwargs


def _merge_legacy_tokens(files: TokenizerFiles, kwargs: dict, user_kwargs: dict,
                         added_tokens_decoder: dict[int, AddedToken]) -> None:
    """Repos saved before `added_tokens_decoder` existed: special_tokens_map.json, added_tokens.json and
    tokenizer.json's own added tokens, in that order."""
    if SPECIAL_TOKENS_MAP_FILE in files:
        special_map = files.json(SPECIAL_TOKENS_MAP_FILE)
        for key, value in special_map.items():
            if user_kwargs.get(key):
                continue  # the caller's choice wins
            if key in ("additional_special_tokens", "extra_special_tokens") and isinstance(value, list):
                value = [to_added_token(t, special=True) for t in value]
                if key == "extra_special_tokens":
                    existing = list(kwargs.get("extra_special_tokens") or [])
                    value = existing + [t for t in value if t not in existing]
            elif isinstance(value, dict) and key != "extra_special_tokens":
                value = to_added_token(value, special=True)
            kwargs[key] = value
    if ADDED_TOKENS_FILE in files:
        # transformers counts only named tokens and `extra_special_tokens` here, not a legacy
        # `additional_special_tokens` list from special_tokens_map.json: those tokens stay non-special in the vocab
        special = {str(kwargs[k]) for k in SPECIAL_TOKENS_ATTRIBUTES if kwargs.get(k)}
        extra = kwargs.get("extra_special_tokens") or []
        special.update(str(t) for t in (extra.values() if isinstance(extra, dict) else extra))
        for content, index in files.json(ADDED_TOKENS_FILE).items():
            is_special = content in special
            added_tokens_decoder[int(index)] = AddedToken(content, rstrip=False, lstrip=False,
                                                          normalized=not is_special, special=is_special)
    if TOKENIZER_FILE in files:
        for entry in files.json(TOKENIZER_FILE).get("added_tokens") or []:
            added_tokens_decoder[int(entry["id"])] = to_added_token(entry)


def fetch_tokenizer_files(source) -> TokenizerFiles:
    """All tokenizer files of `source` (an `autoload.hub.source.FileSource`) in one fetch."""
    return TokenizerFiles(source.fetch(TOKENIZER_FILE_PATTERNS), os.fspath(source.name))


def model_parts_from_tokenizer_json(files: TokenizerFiles, model: str) -> dict:
    """What a model-specific class takes from tokenizer.json: the vocab (+ merges for BPE), the post-processor,
    padding and truncation. Normalizer, pre-tokenizer and decoder are the class's own (transformers 5 semantics).
    """
    data = files.json(TOKENIZER_FILE)
    model_json = data.get("model") or {}
    # The Rust objects come from a copy without vocab/merges/added tokens: cheap to parse, same settings.
    minimal_model = dict(model_json, vocab={})
    if model_json.get("type") == "BPE":
        minimal_model["merges"] = []
    if model_json.get("type") in (None, "Unigram"):
        minimal = load_tokenizer_json(files[TOKENIZER_FILE])
    else:
        try:
            minimal = Tokenizer.from_str(json.dumps(dict(data, model=minimal_model, added_tokens=[])))
        except Exception as err:  # tokenizers raises a bare Exception
            raise RepoFileError(f"{files[TOKENIZER_FILE]} cannot be loaded as a tokenizer.json ({err}). Fix or "
                                "re-download the file.") from None
    parts = {"post_processor": minimal.post_processor, "tokenizer_padding": minimal.padding,
             "tokenizer_truncation": minimal.truncation}
    vocab = model_json.get("vocab")
    if isinstance(vocab, list):  # Unigram-style [[piece, score], ...]: ids are positions
        vocab = {entry[0] if isinstance(entry, list) else entry: i for i, entry in enumerate(vocab)}
    parts["vocab"] = vocab
    if model == "BPE" and "merges" in model_json:
        parts["merges"] = [tuple(merge.split(" ")) if isinstance(merge, str) else tuple(merge)
                           for merge in model_json["merges"]]
    return parts
