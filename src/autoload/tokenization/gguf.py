"""The tokenizer a GGUF file describes (`AutoTokenizer.from_pretrained(folder_or_repo, gguf_file=...)`).

A GGUF has no tokenizer.json: its metadata holds `tokenizer.ggml.model` ("gpt2": byte-level BPE; "llama":
SentencePiece-style BPE), the tokens (with scores and types), the merges, the special token ids, add_bos/add_eos
and `tokenizer.chat_template`. The backend is built as transformers' GGUF converter builds it:
- "gpt2": tokens respelled in GPT-2's byte alphabet where needed, the file's merges, GPT2Tokenizer's pipeline;
  a `tokenizer.ggml.pre` with a known split regex (qwen2, llama3...) gets that regex before ByteLevel;
- "llama": LlamaTokenizer (Metaspace, byte fallback) over the tokens, with the file's merges or, when it has
  none, merges recovered from the vocabulary ordered by score; add_bos defaults to True. Gemma files get
  GemmaTokenizer, phi3 files a normalizer-based prefix space (see `_sentencepiece`).
Tokens typed CONTROL (3) become special tokens, USER_DEFINED (4) plain added tokens.
"""

from __future__ import annotations

from tokenizers import AddedToken, Regex, normalizers, pre_tokenizers

from .base import TokenizersBackend
from .gemma import GemmaTokenizer
from .gpt2 import GPT2Tokenizer
from .llama import LlamaTokenizer
from .patterns import QWEN2_PATTERN
from .tiktoken_ranks import bytes_to_unicode

CONTROL, USER_DEFINED = 3, 4
_LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                   r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# tokenizer.ggml.pre -> the split regex its merges were learned with (others keep GPT-2's ByteLevel regex)
SPLIT_PATTERNS = {**dict.fromkeys(("llama3", "llama-v3", "llama-bpe", "falcon3", "smaug-bpe", "dbrx"),
                                  _LLAMA3_PATTERN),
                  **dict.fromkeys(("qwen2", "deepseek-r1-qwen", "megrez"), QWEN2_PATTERN)}
_SPECIAL_IDS = {"bos_token": "bos_token_id", "eos_token": "eos_token_id", "unk_token": "unknown_token_id",
                "pad_token": "padding_token_id"}


def tokenizer_from_gguf(source, gguf_file: str, **overrides) -> TokenizersBackend:
    """The tokenizer of `gguf_file` in a folder or repo; keyword overrides as in from_pretrained."""
    from ..quant.gguf import GGUFError, open_gguf
    gf = open_gguf(source, gguf_file)
    meta = gf.metadata
    kind, tokens = meta.get("tokenizer.ggml.model"), meta.get("tokenizer.ggml.tokens")
    if kind not in ("gpt2", "llama") or tokens is None:
        key = "tokenizer.ggml.model" if tokens is not None else "tokenizer.ggml.tokens"
        raise GGUFError(f"{gf.path}: {key} is {meta.get(key)!r}; autoload builds GGUF tokenizers of the 'gpt2' "
                        "(byte-level BPE) and 'llama' (SentencePiece BPE) kinds.")
    types = [int(t) for t in meta.get("tokenizer.ggml.token_type", [])]
    options = {name: (tokens[int(meta[f"tokenizer.ggml.{key}"])] if f"tokenizer.ggml.{key}" in meta else None)
               for name, key in _SPECIAL_IDS.items()}
    add_bos = meta.get("tokenizer.ggml.add_bos_token", kind == "llama")
    options.update(add_bos_token=bool(add_bos), chat_template=meta.get("tokenizer.chat_template"),
                   name_or_path=gf.path)
    if "tokenizer.ggml.add_eos_token" in meta:
        options["add_eos_token"] = bool(meta["tokenizer.ggml.add_eos_token"])
    options.update(overrides)
    if kind == "gpt2":
        tokenizer = _byte_level(tokens, meta.get("tokenizer.ggml.merges", []), options)
        split = SPLIT_PATTERNS.get(meta.get("tokenizer.ggml.pre"))
        if split is not None:
            tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(split), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        tokenizer = _sentencepiece(tokens, meta, options)
    _add_typed_tokens(tokenizer, tokens, types, byte_level=kind == "gpt2")
    return tokenizer


def _sentencepiece(tokens: list[str], meta: dict, options: dict) -> TokenizersBackend:
    """LlamaTokenizer over the vocabulary; gemma: GemmaTokenizer, tokens of spaces spelled with "▁" and missing
    merges recovered in file order (its scores do not follow the merge order); phi3: the prefix "▁" and the
    spaces come from a normalizer (no Metaspace), as its tokenizer.json has them."""
    arch = meta.get("general.architecture")
    merges = meta.get("tokenizer.ggml.merges")
    merges = [tuple(m.split(" ")) for m in merges] if merges is not None else None
    if arch in ("gemma", "gemma2", "gemma3"):
        tokens = ["▁" * len(t) if " " in t and not t.strip() else t for t in tokens]
        return GemmaTokenizer(vocab={t: i for i, t in enumerate(tokens)},
                              merges=merges if merges is not None else merges_from_scores(tokens, None), **options)
    if merges is None:
        merges = merges_from_scores(tokens, meta.get("tokenizer.ggml.scores"))
    tokenizer = LlamaTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, **options)
    if arch == "phi3":
        backend = tokenizer.backend_tokenizer
        backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        backend.pre_tokenizer = None
        tokenizer.saved_class_name = "TokenizersBackend"  # saved, its tokenizer.json is read as it is
    return tokenizer


def _byte_level(tokens: list[str], merges: list[str], options: dict) -> TokenizersBackend:
    spelling = bytes_to_unicode()
    alphabet = set(spelling.values())
    vocab = {(t if set(t) <= alphabet else "".join(spelling[b] for b in t.encode("utf-8"))): i
             for i, t in enumerate(tokens)}
    return GPT2Tokenizer(vocab=vocab, merges=[tuple(m.split(" ")) for m in merges], **options)


def _add_typed_tokens(tokenizer, tokens: list[str], types: list[int], byte_level: bool) -> None:
    """CONTROL tokens as special tokens (in a byte-level vocab only those spelled in its alphabet: llama.cpp
    mislabels some), USER_DEFINED ones as plain added tokens, so neither is cut into pieces."""
    alphabet = set(bytes_to_unicode().values()) if byte_level else None
    control = [AddedToken(t, normalized=False, special=True) for t, kind in zip(tokens, types)
               if kind == CONTROL and (alphabet is None or set(t) <= alphabet)]
    if control:
        tokenizer.add_special_tokens({"additional_special_tokens": control}, replace_extra_special_tokens=False)
    vocab = tokenizer.get_vocab()
    user = [AddedToken(t, normalized=False, special=False) for t, kind in zip(tokens, types)
            if kind == USER_DEFINED and t in vocab]
    if user:
        tokenizer.add_tokens(user)


def merges_from_scores(tokens: list[str], scores) -> list[tuple[str, str]]:
    """BPE merges implied by a SentencePiece vocabulary: every split of a token into two tokens of the vocab,
    best score first (ties: shorter left, then shorter right piece), as transformers recovers them."""
    vocab = {t: i for i, t in enumerate(tokens)}
    scores = [float(s) for s in scores] if scores is not None else [-float(i) for i in range(len(tokens))]
    merges = []
    for token, score in zip(tokens, scores):
        local = [(token[:k], token[k:], score) for k in range(1, len(token))
                 if token[:k] in vocab and token[k:] in vocab]
        merges.extend(sorted(local, key=lambda m: (vocab[m[0]], vocab[m[1]])))
    merges.sort(key=lambda m: (m[2], len(m[0]), len(m[1])), reverse=True)
    return [(left, right) for left, right, _ in merges]
