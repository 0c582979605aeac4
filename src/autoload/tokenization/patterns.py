"""Pre-tokenizer split patterns shared by the tokenizer builders (Qwen2's BPE files and tiktoken rank files).
No imports: any tokenization module may use it."""

# Qwen's split: English contractions, a letter run with at most one leading non-letter/digit, ONE digit, punctuation
# runs (with trailing newlines), newline runs, and whitespace not followed by a non-space.
QWEN2_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
                 r"""\s*[\r\n]+|\s+(?!\S)|\s+""")
