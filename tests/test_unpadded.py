"""The unpadded path (nn/packing.py; ModernBERT's own): `model(..., unpad=True)` or `config.unpad_inputs = True`
runs the layers on the real tokens only. At real tokens it gives the padded reference's (transformers') hidden
states, pooled outputs, head logits and gradients; outputs at padded positions are zeros. It is what
SentenceTransformer.encode / CrossEncoder.predict use."""

from __future__ import annotations

import pytest
import torch
import transformers
from torch.testing import assert_close

import autoload

transformers.logging.set_verbosity_error()

TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=64)
FAMILIES = {
    "bert": (transformers.BertConfig, {}),
    "roberta": (transformers.RobertaConfig, {}),
    "xlm-roberta": (transformers.XLMRobertaConfig, {}),
    "electra": (transformers.ElectraConfig, {"embedding_size": 16}),
    "mpnet": (transformers.MPNetConfig, {}),
    "modernbert": (transformers.ModernBertConfig, {"local_attention": 4, "global_attn_every_n_layers": 2,
                                                    "pad_token_id": 0}),
}


def batch(pad_id: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 99, (4, 11), generator=g)
    mask = torch.ones(4, 11, dtype=torch.long)
    mask[1, 7:], mask[2, 3:], mask[3, 10:] = 0, 0, 0  # right padding of different lengths; row 0 full
    return ids.masked_fill(mask == 0, pad_id), mask


def pair(tmp_path, family: str, head: str):
    config_class, extra = FAMILIES[family]
    config = config_class(**TINY, **extra)
    config._attn_implementation = "sdpa" if family != "mpnet" else "eager"
    torch.manual_seed(0)
    name = {"bert": "Bert", "roberta": "Roberta", "xlm-roberta": "XLMRoberta", "electra": "Electra",
            "mpnet": "MPNet", "modernbert": "ModernBert"}[family] + head
    ref = getattr(transformers, name)(config)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # off the init: LayerNorm 1/0 and zero biases tested too
    ref.save_pretrained(tmp_path)
    ours = getattr(autoload, name).from_pretrained(tmp_path)
    return ref.eval(), ours.eval(), config.pad_token_id if config.pad_token_id is not None else 0


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_unpadded_backbone_equals_the_padded_reference(tmp_path, family):
    ref, ours, pad = pair(tmp_path, family, "Model")
    ids, mask = batch(pad)
    keep = mask.bool()
    want = ref(ids, attention_mask=mask, output_hidden_states=True)
    got = ours(ids, attention_mask=mask, output_hidden_states=True, unpad=True)
    assert_close(got.last_hidden_state[keep], want.last_hidden_state[keep], atol=1e-5, rtol=1e-4)
    assert bool((got.last_hidden_state[~keep] == 0).all())  # nothing computed for padding
    assert len(got.hidden_states) == len(want.hidden_states)
    for g, w in zip(got.hidden_states, want.hidden_states):
        assert g.shape == w.shape
        assert_close(g[keep], w[keep], atol=1e-5, rtol=1e-4)
    if getattr(want, "pooler_output", None) is not None:
        assert_close(got.pooler_output, want.pooler_output, atol=1e-5, rtol=1e-4)
    padded = ours(ids, attention_mask=mask)  # the default is the padded path: the reference's layout
    assert_close(padded.last_hidden_state, want.last_hidden_state, atol=1e-4, rtol=1e-4)
    assert_close(ours(ids[:1], attention_mask=mask[:1], unpad=True).last_hidden_state,
                 want.last_hidden_state[:1], atol=1e-4, rtol=1e-4)  # nothing to unpad: the padded path


@pytest.mark.parametrize("family", ["bert", "xlm-roberta", "mpnet"])
def test_config_switch_reaches_the_heads_and_gradients_match(tmp_path, family):
    ref, ours, pad = pair(tmp_path, family, "ForSequenceClassification")
    ours.config.unpad_inputs = True
    ids, mask = batch(pad)
    labels = torch.tensor([0, 1, 1, 0])
    ref.train(), ours.train()
    for model in (ref, ours):  # dropout off, gradients on
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    want, got = ref(ids, attention_mask=mask, labels=labels), ours(ids, attention_mask=mask, labels=labels)
    assert_close(got.logits, want.logits, atol=1e-5, rtol=1e-4)
    want.loss.backward()
    got.loss.backward()
    ref_grads = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        if p.grad is not None or ref_grads[name].grad is not None:
            assert_close(p.grad, ref_grads[name].grad, atol=1e-5, rtol=1e-4, msg=name)


def test_attention_weights_and_decoders_keep_the_padded_path(tmp_path):
    _, ours, pad = pair(tmp_path, "bert", "Model")
    ids, mask = batch(pad)
    ours.config._attn_implementation = "eager"
    out = ours(ids, attention_mask=mask, unpad=True, output_attentions=True)
    assert out.attentions[0].shape == (4, 4, 11, 11)  # weights need the padded layout: unpad does not apply
    assert not bool((out.last_hidden_state[~mask.bool()] == 0).all())
