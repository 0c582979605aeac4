"""Byte-level BPE from a tiktoken rank file (`qwen.tiktoken`: one "base64(token bytes) rank" per line).

tiktoken has no merge list: it repeatedly joins the adjacent pair whose concatenation has the lowest rank. The same
result comes out of a `tokenizers` BPE whose merges are, for every token, each split of it into two tokens, ordered
by the rank of the token they make (ties by the ranks of the two halves) — the reconstruction transformers'
`TikTokenConverter` uses. `ignore_merges=True` makes a whole-word vocab hit win outright, as in tiktoken.

The default pattern and special tokens are Qwen(-1)'s: Qwen2's split regex, then `<|endoftext|>`, `<|im_start|>`,
`<|im_end|>` and `<|extra_0|>`..`<|extra_204|>` at the ids right after the ranks (151643...).
"""

from __future__ import annotations

import base64

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE

from .patterns import QWEN2_PATTERN

QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", *(f"<|extra_{i}|>" for i in range(205)))


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map: printable Latin-1 bytes stand for themselves, the other 68 bytes
    (control characters, space, ...) take the characters from U+0100 on, so no token string holds whitespace."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def load_ranks(path: str) -> dict[bytes, int]:
    """Read a .tiktoken file: {token bytes: rank}."""
    ranks = {}
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
            except ValueError:
                raise OSError(f"{path} line {number} is not '<base64 token> <rank>': {line[:80]!r}") from None
    return ranks


def vocab_and_merges(ranks: dict[bytes, int]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The BPE vocab (byte-level strings) and merges equivalent to tiktoken's rank-driven merging."""
    byte_char = bytes_to_unicode()

    def as_text(token: bytes) -> str:
        return "".join(byte_char[b] for b in token)

    vocab = {as_text(token): rank for token, rank in ranks.items()}
    merges = []  # (rank of the merged token, rank of left, rank of right, left, right)
    for token, rank in ranks.items():
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            left_rank, right_rank = ranks.get(left), ranks.get(right)
            if left_rank is not None and right_rank is not None:
                merges.append((rank, left_rank, right_rank, left, right))
    merges.sort(key=lambda merge: merge[:3])
    return vocab, [(as_text(left), as_text(right)) for _, _, _, left, right in merges]


def build_from_ranks(path: str, *, pattern: str = QWEN2_PATTERN, special_tokens=QWEN_SPECIAL_TOKENS,
                     nfc: bool = True) -> Tokenizer:
    """A `tokenizers.Tokenizer` for a rank file: NFC (Qwen normalizes its input), split with `pattern`, byte-level
    BPE, special tokens at the ids following the ranks."""
    ranks = load_ranks(path)
    vocab, merges = vocab_and_merges(ranks)
    next_id = len(vocab)
    if set(vocab.values()) != set(range(next_id)):
        # Sparse ranks: give the special tokens the ids after the largest rank, inside the vocab, so they keep them.
        next_id = max(vocab.values()) + 1
        for offset, token in enumerate(special_tokens):
            vocab.setdefault(token, next_id + offset)
    tokenizer = Tokenizer(BPE(vocab, merges, fuse_unk=False, ignore_merges=True))
    if nfc:
        tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.add_special_tokens([AddedToken(token, normalized=False, special=True) for token in special_tokens])
    return tokenizer
