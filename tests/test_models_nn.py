"""The shared blocks in autoload.nn against plain reference formulas: the attention entry point (SDPA and eager,
GQA, the additive-bias hook, soft-capping), the mask builder, the head helpers, and nn/'s import boundary."""

from __future__ import annotations

import ast
import math

import pytest
import torch

from autoload.nn.attention import attention
from autoload.nn.heads import keep_positions, pool_last_token
from autoload.nn.losses import causal_lm_loss, qa_span_loss
from autoload.nn.masks import attention_mask, packed_segments
from conftest import ROOT


def reference_attention(q, k, v, allowed=None, bias=None, softcap=None):
    """softmax(q·kᵀ/sqrt(hs) [softcapped] + bias, hidden keys at -inf)·v in float64, heads repeated for GQA."""
    q, k, v = q.double(), k.double(), v.double()
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if softcap is not None:
        scores = softcap * torch.tanh(scores / softcap)
    if bias is not None:
        scores = scores + bias.double()
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    return (scores.softmax(-1) @ v).float()


def qkv(b=2, nh=4, nkv=2, t=5, k_len=5, hs=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, nh, t, hs, generator=g), torch.randn(b, nkv, k_len, hs, generator=g),
            torch.randn(b, nkv, k_len, hs, generator=g))


@pytest.mark.parametrize("eager", [False, True])
@pytest.mark.parametrize("nkv", [4, 2, 1])
def test_causal_attention_with_gqa(eager, nkv):
    q, k, v = qkv(nkv=nkv)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    y, weights = attention(q, k, v, is_causal=True, eager=eager)
    torch.testing.assert_close(y, reference_attention(q, k, v, causal), atol=1e-5, rtol=0)
    assert (weights is not None) == eager
    if eager:
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 5))
        assert bool((weights[..., ~causal] == 0).all())


@pytest.mark.parametrize("eager", [False, True])
def test_one_query_over_a_padded_cache(eager):
    """Decoding step: one query per row over 6 cached keys, the first two of row 1 are padding."""
    q, k, v = qkv(t=1, k_len=6)
    padding = torch.ones(2, 6, dtype=torch.bool)
    padding[1, :2] = False
    mask = attention_mask(padding, 2, 1, past=5, additive=eager)
    y, _ = attention(q, k, v, mask, is_causal=True, eager=eager)
    torch.testing.assert_close(y, reference_attention(q, k, v, padding[:, None, None, :]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("eager", [False, True])
def test_additive_bias_hook(eager):
    """An ALiBi-like per-head linear bias on the scores, as a relative-position bias would be added."""
    q, k, v = qkv()
    slopes = torch.tensor([0.5, 0.25, 0.125, 0.0625])[:, None, None]  # (nh, 1, 1)
    distance = torch.arange(5)[None, :] - torch.arange(5)[:, None]  # (T, K): j - i
    bias = (slopes * distance)[None]  # (1, nh, T, K)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    y, _ = attention(q, k, v, is_causal=True, bias=bias, eager=eager)
    torch.testing.assert_close(y, reference_attention(q, k, v, causal, bias=bias), atol=1e-5, rtol=0)
    padding = torch.tensor([[True] * 5, [False, True, True, True, True]])
    mask = attention_mask(padding, 2, 5)
    y, _ = attention(q, k, v, mask, is_causal=True, bias=bias, eager=eager)
    allowed = causal[None, None] & padding[:, None, None, :]
    expected = reference_attention(q, k, v, allowed, bias=bias)  # row 1's first query sees no key: not compared
    torch.testing.assert_close(y[1:, :, 1:], expected[1:, :, 1:], atol=1e-5, rtol=0)


def test_softcap_runs_eager():
    q, k, v = qkv(seed=3)
    y, weights = attention(q * 4, k * 4, v, is_causal=True, softcap=2.0)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    torch.testing.assert_close(y, reference_attention(q * 4, k * 4, v, causal, softcap=2.0), atol=1e-5, rtol=0)
    assert weights is not None


def test_mask_builder():
    # no padding, T == K: SDPA's is_causal suffices
    assert attention_mask(None, 2, 4) is None
    assert attention_mask(torch.ones(2, 4, dtype=torch.bool), 2, 4) is None
    # bidirectional encoder: only padding is hidden
    padding = torch.tensor([[True, True, True, False]])
    assert attention_mask(torch.ones(1, 4, dtype=torch.bool), 1, 4, causal=False) is None
    enc = attention_mask(padding, 1, 4, causal=False)
    assert enc.shape == (1, 1, 4, 4) and bool((enc[0, 0] == padding).all())
    # sliding window of 2 over 2 cached + 3 new positions
    window = attention_mask(None, 1, 3, past=2, window=2)[0, 0]
    expected = torch.tensor([[0, 1, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 1, 1]], dtype=torch.bool)
    assert bool((window == expected).all())
    # additive: 0 where allowed, the dtype's most negative value elsewhere
    additive = attention_mask(None, 1, 3, additive=True, dtype=torch.float16)[0, 0]
    assert additive.dtype == torch.float16 and additive[0, 1] == torch.finfo(torch.float16).min and additive[1, 0] == 0
    # packed rows: positions restarting start a new segment
    segments = packed_segments(torch.tensor([[0, 1, 2, 0, 1]]))
    packed = attention_mask(None, 1, 5, segments=segments)[0, 0]
    assert not packed[3, 2] and packed[4, 3] and packed[2, 0]
    assert packed_segments(torch.tensor([[0, 1, 2]])) is None


def test_head_helpers():
    logits = torch.arange(2 * 4 * 3, dtype=torch.float).view(2, 4, 3)
    ids = torch.tensor([[5, 6, 0, 0], [0, 7, 8, 9]])
    torch.testing.assert_close(pool_last_token(logits, ids, 0), torch.stack([logits[0, 1], logits[1, 3]]))
    with pytest.raises(ValueError, match="no padding token"):
        pool_last_token(logits, ids, None)
    assert keep_positions(logits, 1).shape == (2, 1, 3) and keep_positions(logits, 0).shape == (2, 4, 3)
    assert keep_positions(logits, torch.tensor([0, 2])).shape == (2, 2, 3)
    labels = torch.tensor([[1, 2, -100, -100], [-100, 0, 1, 2]])
    expected = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 3), labels[:, 1:].reshape(-1))
    torch.testing.assert_close(causal_lm_loss(logits, labels), expected)
    start, end = logits[..., 0], logits[..., 1]
    loss = qa_span_loss(start, end, torch.tensor([1, 9]), torch.tensor([[2], [3]]))  # 9: clamped to T, ignored
    expected = (torch.nn.functional.cross_entropy(start[:1], torch.tensor([1]))
                + torch.nn.functional.cross_entropy(end, torch.tensor([2, 3]))) / 2
    torch.testing.assert_close(loss, expected)


def test_nn_imports_only_torch_and_itself():
    """autoload.nn is torch only: no module in it imports the rest of autoload, at any level."""
    for path in (ROOT / "src" / "autoload" / "nn").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level <= 1, f"{path.name} imports from outside nn/"
                assert node.level == 1 or not (node.module or "").startswith("autoload"), path.name
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("autoload") for a in node.names), path.name


def test_encoder_layer_is_the_post_ln_formula():
    """nn.encoder.EncoderLayer: x = LN(x + Wo·attn(x)), then LN(x + W2·act(W1·x)), padding keys hidden."""
    from types import SimpleNamespace

    from autoload.nn.encoder import EncoderLayer, cross_attention_mask
    config = SimpleNamespace(hidden_size=8, num_attention_heads=2, intermediate_size=12, hidden_act="gelu",
                             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, layer_norm_eps=1e-12,
                             is_decoder=False, add_cross_attention=False, _attn_implementation="eager")
    torch.manual_seed(0)
    layer = EncoderLayer(config).eval()
    x = torch.randn(2, 5, 8)
    allowed = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    allowed[1, ..., 3:] = False  # row 1: its last two keys are padding
    out, weights, cross = layer(x, allowed)
    a = layer.attention

    def heads(t):  # (B, T, 8) -> (B, 2, T, 4)
        return t.view(2, 5, 2, 4).transpose(1, 2)

    q, k, v = heads(a.self.query(x)), heads(a.self.key(x)), heads(a.self.value(x))
    y = reference_attention(q, k, v, allowed).transpose(1, 2).reshape(2, 5, 8)  # (B, T, H)
    h = a.output.LayerNorm(x + a.output.dense(y))
    expected = layer.output.LayerNorm(h + layer.output.dense(torch.nn.functional.gelu(layer.intermediate.dense(h))))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    assert weights.shape == (2, 2, 5, 5) and cross is None and float(weights[1, :, :, 3:].max()) == 0.0
    assert cross_attention_mask(torch.ones(2, 3), 2, 5) is None
    assert cross_attention_mask(torch.tensor([[1, 1, 0], [1, 1, 1]]), 2, 5).shape == (2, 1, 5, 3)
