"""Phi-3 parity with transformers 5.x (the oracle) on tiny random checkpoints: every head with left padding and
losses, fused qkv_proj / gate_up_proj loading, partial rotary, LongRoPE below and beyond
original_max_position_embeddings (legacy "su" name included), the sliding window, cached step-by-step decoding,
greedy / beam generation (greedy across the LongRoPE switch, where the reference recomputes its cache),
compile=True, save -> transformers reload, Auto classes, config errors, and AutoTokenizer on a Phi-3 style folder
(tokenizer_class LlamaTokenizer over a SentencePiece-BPE tokenizer.json: loaded as the file says, as the
reference does)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import transformers

import autoload
from autoload.generation import generate
from autoload.models import phi3
from autoload.errors import ConfigError
from autoload.models.configs import Phi3Config
from decoder_cases import batch, cached_decode, close, full_forward
from model_cases import assert_outputs_close, labels_for, make_pair
from tokenizer_cases import (CORPUS, TEXTS, assert_same_attributes, assert_same_call, assert_same_decoding,
                             transformers_auto, write_folder)

TASKS = ("Model", "ForCausalLM", "ForSequenceClassification", "ForTokenClassification")
ORIGINAL = 8  # original_max_position_embeddings of the LongRoPE configs: short factors below, long from here


def tiny(**overrides) -> transformers.Phi3Config:
    """hidden 32, 4 query / 2 key-value heads of 8 dims, 2 layers, vocab 99."""
    values = dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, bos_token_id=1,
                  eos_token_id=2, initializer_range=0.2)
    values.update(overrides)
    return transformers.Phi3Config(**values)


def longrope(partial: float = 0.5, kind: str = "longrope", **extra) -> transformers.Phi3Config:
    half = int(8 * partial) // 2  # one factor per rotated pair
    scaling = {"type": kind, "short_factor": [1.0 + 0.5 * i for i in range(half)],
               "long_factor": [2.0 + 3.0 * i for i in range(half)], **extra}
    return tiny(partial_rotary_factor=partial, original_max_position_embeddings=ORIGINAL, rope_scaling=scaling)


def _jitter(model):
    """Move every weight off its init (norm gains of 1 would hide a norm loaded into the wrong slot)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)


def pair(folder, config, task="ForCausalLM", attn="sdpa"):
    return make_pair(folder, getattr(transformers, f"Phi3{task}"), getattr(phi3, f"Phi3{task}"), config,
                     attn=attn, prepare=_jitter, reload=False)


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    """A LongRoPE checkpoint with partial rotary (rd = 4 of 8 dims) and a sliding window of 6 positions."""
    config = longrope()
    config.sliding_window = 6
    return pair(tmp_path_factory.mktemp("phi3"), config)


@pytest.mark.parametrize("task", TASKS)
def test_every_head_left_padded_with_loss(tmp_path, task):
    ref, ours = pair(tmp_path, tiny(partial_rotary_factor=0.5), task)
    ids, mask = batch(t=7, padding="left")
    labels = labels_for(task, ids, mask)
    with torch.no_grad():
        r = ref(ids, attention_mask=mask, **labels)
        o = ours(ids, attention_mask=mask, **labels)
    if task == "Model":
        close(o.last_hidden_state, r.last_hidden_state, mask=mask)
    elif task == "ForSequenceClassification":
        assert_outputs_close(o, r, keys=("loss", "logits"))
    else:
        close(o.logits, r.logits, mask=mask)
        torch.testing.assert_close(o.loss, r.loss, atol=1e-4, rtol=0)


@pytest.mark.parametrize("partial", [1.0, 0.75, 0.5])
def test_partial_rotary_default_rope(tmp_path, partial):
    ref, ours = pair(tmp_path, tiny(partial_rotary_factor=partial, rope_theta=500.0))
    assert ours.model.rotary_emb.inv_freq.shape == (int(8 * partial) // 2,)
    ids, mask = batch(t=9)
    close(full_forward(ours, ids, mask), full_forward(ref, ids, mask), mask=mask)


@pytest.mark.parametrize("length", [ORIGINAL - 2, ORIGINAL, ORIGINAL + 5])
def test_longrope_below_and_beyond_the_original_length(lm, length):
    ref, ours = lm
    ids, mask = batch(t=length, padding="left")
    expected = full_forward(ref, ids, mask)
    close(full_forward(ours, ids, mask), expected, mask=mask)
    with torch.no_grad():  # default positions 0..T-1 (no mask)
        close(ours(ids).logits, ref(ids).logits)


@pytest.mark.parametrize("kind,extra", [("su", {}), ("longrope", {"attention_factor": 1.3}),
                                        ("longrope", {"factor": 3.0})])
def test_longrope_variants(tmp_path, kind, extra):
    cfg = longrope(1.0, kind, **extra)
    ref, ours = pair(tmp_path, cfg)
    assert ours.config.rope_parameters["rope_type"] == "longrope"
    for t in (ORIGINAL - 1, ORIGINAL + 4):
        ids, mask = batch(t=t)
        close(full_forward(ours, ids, mask), full_forward(ref, ids, mask), mask=mask)


def test_phi4_mini_shape_tied_embeddings(tmp_path):
    """Phi-4-mini's layout: tied embeddings, LongRoPE on 3/4 of each head, a window longer than any sequence, and
    its extra config keys (kept, unused, as the reference)."""
    cfg = longrope(0.75)
    cfg.tie_word_embeddings, cfg.sliding_window = True, 262144
    for key, value in {"full_attn_mod": 1, "interpolate_factor": 1, "lm_head_bias": False, "mlp_bias": False}.items():
        setattr(cfg, key, value)
    ref, ours = pair(tmp_path, cfg)
    assert ours.lm_head.weight is ours.model.embed_tokens.weight
    assert ours.config.full_attn_mod == 1
    for t in (ORIGINAL - 3, ORIGINAL + 6):
        ids, mask = batch(t=t)
        close(full_forward(ours, ids, mask), full_forward(ref, ids, mask), mask=mask)


def test_gradient_checkpointing_and_training(lm):
    ref, ours = lm
    ids, mask = batch(t=ORIGINAL + 2, padding="right")
    labels = ids.masked_fill(mask == 0, -100)
    ours.train()
    try:
        loss = ours(ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        grads = {n: p.grad.clone() for n, p in ours.named_parameters()}
        ours.zero_grad()
        ours.gradient_checkpointing_enable()
        ours(ids, attention_mask=mask, labels=labels).loss.backward()
        for name, p in ours.named_parameters():
            torch.testing.assert_close(p.grad, grads[name], atol=1e-6, rtol=0, msg=name)
        with torch.no_grad():
            torch.testing.assert_close(loss, ref(ids, attention_mask=mask, labels=labels).loss, atol=1e-4, rtol=0)
    finally:
        ours.gradient_checkpointing_disable()
        ours.zero_grad()
        ours.eval()


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_sliding_window_and_eager(tmp_path, attn):
    ref, ours = pair(tmp_path, tiny(sliding_window=4, partial_rotary_factor=0.75), attn=attn)
    ids, mask = batch(t=10, padding="left")
    expected = full_forward(ref, ids, mask)
    close(full_forward(ours, ids, mask), expected, mask=mask)
    close(cached_decode(ours, ids, mask, 3), expected, mask=mask)
    if attn == "eager":
        with torch.no_grad():
            r = ref(ids, attention_mask=mask, output_attentions=True)
            o = ours(ids, attention_mask=mask, output_attentions=True)
        for a, b in zip(o.attentions, r.attentions, strict=True):
            close(a, b, mask=None)


@pytest.mark.parametrize("prefill", [1, 4])
def test_cached_decode_equals_full_forward(lm, prefill):
    """Below the LongRoPE switch, one token at a time against the cache gives the full forward's logits."""
    ref, ours = lm
    ids, mask = batch(t=ORIGINAL, padding="left")
    close(cached_decode(ours, ids, mask, prefill), full_forward(ref, ids, mask), mask=mask)


def test_greedy_across_the_longrope_switch(lm):
    """The reference drops its cache at the step that crosses original_max_position_embeddings; so do we."""
    ref, ours = lm
    ids, mask = batch(b=3, t=5, padding="left")
    options = dict(attention_mask=mask, max_new_tokens=10, do_sample=False, eos_token_id=None, pad_token_id=0)
    expected = ref.generate(ids, **options)
    assert expected.shape[1] > ORIGINAL + 1
    assert torch.equal(ours.generate(ids, **options), expected)
    assert torch.equal(ours.generate(ids[:1], max_new_tokens=10, eos_token_id=None), expected[:1])


@pytest.mark.parametrize("new_tokens", [4, 9])  # below, and across the LongRoPE switch
def test_beam_search_ids(lm, new_tokens):
    ref, ours = lm
    ids, mask = batch(b=2, t=3, padding="left")
    options = dict(attention_mask=mask, max_new_tokens=new_tokens, num_beams=3, do_sample=False, eos_token_id=None,
                   pad_token_id=0)
    assert torch.equal(ours.generate(ids, **options), ref.generate(ids, **options))


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available() and shutil.which("g++") is None,
                    reason="torch.compile on CPU needs a C++ compiler (g++)")
def test_compiled_greedy_equals_eager_across_the_longrope_switch(lm):
    """Compiled steps on the static cache (the full-cache mask cut to the sliding window); the step that crosses
    original_max_position_embeddings refills the cache."""
    ref, ours = lm
    ids, mask = batch(b=3, t=5, padding="left")
    options = dict(attention_mask=mask, max_new_tokens=8, eos_token_id=None)
    compiled = generate(ours, ids, compile=True, **options)
    assert compiled.shape[1] > ORIGINAL + 1
    assert torch.equal(compiled, generate(ours, ids, **options))
    assert torch.equal(compiled, ref.generate(ids, do_sample=False, pad_token_id=0, **options))


def test_save_reload_in_transformers_and_auto_classes(lm, tmp_path):
    ref, ours = lm
    ours.save_pretrained(tmp_path / "saved")
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "saved").eval()
    assert type(back).__name__ == "Phi3ForCausalLM"
    assert back.config.rope_parameters["long_factor"] == ref.config.rope_parameters["long_factor"]
    ids, mask = batch(t=ORIGINAL + 3)
    close(full_forward(back, ids, mask), full_forward(ours, ids, mask), atol=0)
    auto = autoload.AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    assert isinstance(auto, phi3.Phi3ForCausalLM) and isinstance(auto.config, Phi3Config)
    base = autoload.AutoModel.from_pretrained(tmp_path / "saved")
    assert isinstance(base, phi3.Phi3Model)
    for task in ("ForSequenceClassification", "ForTokenClassification"):
        head = getattr(autoload, f"AutoModel{task}").from_pretrained(tmp_path / "saved", num_labels=3)
        assert type(head).__name__ == f"Phi3{task}"
    with torch.no_grad():
        close(base(ids, attention_mask=mask).last_hidden_state,
              ref(ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1], mask=mask)


def test_config_defaults_and_errors():
    ours, theirs = Phi3Config(), transformers.Phi3Config()
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_key_value_heads",
                "max_position_embeddings", "original_max_position_embeddings", "rms_norm_eps", "pad_token_id",
                "eos_token_id", "sliding_window", "resid_pdrop", "rope_parameters"):
        assert getattr(ours, key) == getattr(theirs, key), key
    assert Phi3Config(eos_token_id=[32000, 32007]).eos_token_id == [32000, 32007]
    with pytest.raises(ConfigError, match="short_factor"):
        Phi3Config(hidden_size=32, num_attention_heads=4,
                   rope_scaling={"type": "longrope", "short_factor": [1.0], "long_factor": [1.0] * 4})
    with pytest.raises(ConfigError, match="'default' or 'longrope'"):
        Phi3Config(rope_scaling={"type": "linear", "factor": 2.0})


PHI3_SPECIALS = ["<|endoftext|>", "<|assistant|>", "<|system|>", "<|end|>", "<|user|>"]


def phi3_style_folder(folder):
    """Phi-3-mini's tokenizer layout on a small trained vocabulary: SentencePiece BPE in tokenizers form (Prepend /
    Replace normalizer, byte fallback, `<s> $A`), chat tokens added after the vocabulary (rstrip as in the repo),
    tokenizer_config naming LlamaTokenizer."""
    from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tokenizer.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                           decoders.Strip(" ", 1, 0)])
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<unk>", "<s>", "</s>",
                                                                  *[f"<0x{b:02X}>" for b in range(256)]])
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                             special_tokens=[("<s>", 1)])
    data = json.loads(tokenizer.to_str())
    n = len(data["model"]["vocab"])
    data["added_tokens"] += [{"id": n + i, "content": t, "single_word": False, "lstrip": False,
                              "rstrip": t != "<|endoftext|>", "normalized": False, "special": True}
                             for i, t in enumerate(PHI3_SPECIALS)]
    template = ("{% for message in messages %}{{'<|' + message['role'] + '|>' + '\\n' + message['content'] + "
                "'<|end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' + '\\n' }}"
                "{% endif %}")
    config = {"tokenizer_class": "LlamaTokenizer", "legacy": False, "add_bos_token": False, "add_eos_token": False,
              "bos_token": "<s>", "eos_token": "<|endoftext|>", "unk_token": "<unk>", "pad_token": "<|endoftext|>",
              "model_max_length": 4096, "chat_template": template}
    return write_folder(folder, {"tokenizer.json": data, "tokenizer_config.json": config,
                                 "config.json": {"model_type": "phi3", "architectures": ["Phi3ForCausalLM"]}})


def test_auto_tokenizer_reads_the_phi3_tokenizer_json_as_it_is(tmp_path):
    folder = phi3_style_folder(tmp_path / "phi3")
    ours, theirs = autoload.AutoTokenizer.from_pretrained(folder), transformers_auto(folder)
    assert type(theirs).__name__ == "TokenizersBackend" and type(ours).__name__ == "TokenizersBackend"
    assert_same_attributes(ours, theirs)
    assert_same_decoding(ours, theirs)
    chat = ["<|user|>\nHello there<|end|>\n<|assistant|>\n", "a<|end|>b c", "<|system|> two  spaces<|end|>"]
    for text in chat + TEXTS[:4]:
        assert_same_call(ours, theirs, text)
    assert_same_call(ours, theirs, chat, padding=True, return_tensors="pt")
    messages = [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": "Hi"}]
    for tokenize in (False, True):
        a = ours.apply_chat_template(messages, add_generation_prompt=True, tokenize=tokenize)
        b = theirs.apply_chat_template(messages, add_generation_prompt=True, tokenize=tokenize)
        assert (a if not tokenize else a["input_ids"]) == (b if not tokenize else b["input_ids"])
