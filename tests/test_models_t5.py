"""T5 and mT5 against the reference (transformers, test-only): tiny random checkpoints saved by the reference and
loaded through autoload's real loading path. v1.0 (relu, tied, d_model**-0.5 scaling), v1.1/flan (gated-gelu, an
untied lm_head in the checkpoint) and mT5; padded encoder masks; logits, losses (labels with -100), hidden states,
eager attentions; every head; step-by-step decoding with the cache against the full forward; gradient
checkpointing; resize_token_embeddings; Auto classes; save -> transformers load; the fp16 clamp and fp32 `wo`."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file
from torch.testing import assert_close

import autoload
from autoload.errors import ConfigError
from autoload.models import t5
from autoload.nn.cache import EncoderDecoderCache
from model_cases import assert_outputs_close

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

VOCAB = 64
TINY = dict(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_decoder_layers=3, num_heads=4,
            relative_attention_num_buckets=8, relative_attention_max_distance=16, initializer_factor=1.0,
            decoder_start_token_id=0)  # as in the hub config.json files (transformers 5.24 has no default for t5)
VARIANTS = {  # name -> (config class, config values, untie lm_head in the checkpoint)
    "t5-v1_0": ("T5Config", {}, False),
    "t5-v1_1": ("T5Config", dict(feed_forward_proj="gated-gelu"), True),
    "mt5": ("MT5Config", {}, True),
}
B, S, T = 3, 9, 6
SEQ2SEQ_KEYS = ("loss", "logits", "last_hidden_state", "start_logits", "end_logits", "encoder_last_hidden_state")


def prefix(variant: str) -> str:
    return "MT5" if variant == "mt5" else "T5"


def reference_config(variant: str, **overrides):
    name, values, _ = VARIANTS[variant]
    return getattr(transformers, name)(**{**TINY, **values, **overrides})


def make_pair(folder, variant="t5-v1_0", head="ForConditionalGeneration", attn="sdpa", dtype=None, **overrides):
    """(reference, ours) loaded from one folder written by the reference (weights moved off their init; with the
    variant's untie, a separate lm_head.weight and tie_word_embeddings=false, as flan-t5 / mt5 checkpoints)."""
    config = reference_config(variant, **overrides)
    config._attn_implementation = attn
    torch.manual_seed(0)
    ref = getattr(transformers, prefix(variant) + head)(config)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    ref.save_pretrained(folder)
    if VARIANTS[variant][2] and head == "ForConditionalGeneration":
        untie(folder)
    kwargs = {"attn_implementation": attn, **({} if dtype is None else {"dtype": dtype})}
    ref = type(ref).from_pretrained(folder, **kwargs)
    ours = getattr(t5, prefix(variant) + head).from_pretrained(folder, **kwargs)
    return ref.eval(), ours


def untie(folder) -> None:
    weights = load_file(folder / "model.safetensors")
    weights["lm_head.weight"] = torch.randn(VOCAB, TINY["d_model"], generator=torch.Generator().manual_seed(5))
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    config["tie_word_embeddings"] = False
    config.pop("scale_decoder_outputs", None)
    (folder / "config.json").write_text(json.dumps(config))


def batch(seed=1, eos=False):
    """Source ids (B, S) with 0, 3 and 5 right pads (pad id 0), decoder ids (B, T), labels with -100."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, VOCAB, (B, S), generator=g)
    mask = torch.ones(B, S, dtype=torch.long)
    for row, pads in enumerate((0, 3, 5)):
        if pads:
            mask[row, S - pads:] = 0
    if eos:  # one EOS (id 1) per row, before the padding
        ids[torch.arange(B), mask.sum(1) - 1] = 1
    ids = ids.masked_fill(mask == 0, 0)
    labels = torch.randint(2, VOCAB, (B, T), generator=g)
    labels[1, 4:] = -100
    labels[2, 2] = -100
    return {"input_ids": ids, "attention_mask": mask}, labels


@pytest.mark.parametrize("variant", VARIANTS)
def test_conditional_generation_matches_the_reference(tmp_path, variant):
    ref, ours = make_pair(tmp_path, variant)
    assert ours.config.tie_word_embeddings is not VARIANTS[variant][2]
    assert (ours.lm_head.weight is ours.shared.weight) is not VARIANTS[variant][2]
    assert ours.encoder.embed_tokens.weight is ours.shared.weight is ours.decoder.embed_tokens.weight
    inputs, labels = batch()
    for extra in ({"labels": labels}, {"decoder_input_ids": labels.clamp(min=0), "output_hidden_states": True}):
        with torch.no_grad():
            got, expected = ours(**inputs, **extra), ref(**inputs, **extra)
        assert_outputs_close(got, expected, keys=SEQ2SEQ_KEYS)
        for key in ("encoder_hidden_states", "decoder_hidden_states"):
            assert (getattr(got, key) is None) == (expected.get(key) is None)
            assert len(getattr(got, key) or ()) == len(expected.get(key) or ())
            for a, b in zip(getattr(got, key) or (), expected.get(key) or ()):
                assert_close(a, b, atol=1e-4, rtol=0)
    assert_close(got.logits, expected.logits, atol=1e-4, rtol=0)
    assert ours.prepare_decoder_input_ids_from_labels(labels).tolist() == ref._shift_right(labels).tolist()


def test_eager_attentions_match_and_sdpa_equals_eager(tmp_path):
    ref, ours = make_pair(tmp_path, "t5-v1_1", attn="eager")
    inputs, labels = batch()
    with torch.no_grad():
        got = ours(**inputs, labels=labels, output_attentions=True)
        expected = ref(**inputs, labels=labels, output_attentions=True)
    for key in ("encoder_attentions", "decoder_attentions", "cross_attentions"):
        assert len(got[key]) == len(expected[key]) > 0
        for a, b in zip(got[key], expected[key]):
            assert_close(a, b, atol=1e-5, rtol=0)
    ours.config._attn_implementation = "sdpa"
    with torch.no_grad():
        sdpa = ours(**inputs, labels=labels)
    assert_close(sdpa.logits, got.logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("head", ["Model", "EncoderModel", "ForSequenceClassification", "ForTokenClassification",
                                  "ForQuestionAnswering"])
@pytest.mark.parametrize("variant", ["t5-v1_0", "mt5"])
def test_other_heads_match_the_reference(tmp_path, variant, head):
    ref, ours = make_pair(tmp_path, variant, head, num_labels=2)
    inputs, labels = batch(eos=True)
    extra = {}
    if head == "Model":
        extra = {"decoder_input_ids": labels.clamp(min=0)}
    elif head == "ForSequenceClassification":
        extra = {"labels": torch.tensor([1, 0, 1])}
    elif head == "ForTokenClassification":
        extra = {"labels": torch.randint(0, 2, (B, S)).masked_fill(inputs["attention_mask"] == 0, -100)}
    elif head == "ForQuestionAnswering":
        extra = {"start_positions": torch.tensor([1, S + 3, 2]), "end_positions": torch.tensor([[4], [5], [S]])}
    with torch.no_grad():
        got, expected = ours(**inputs, **extra), ref(**inputs, **extra)
    assert_outputs_close(got, expected, keys=SEQ2SEQ_KEYS)
    assert (got.get("loss") is None) == (head in ("Model", "EncoderModel"))


def test_encoder_model_loads_a_seq2seq_checkpoint_and_auto_classes_pick_the_classes(tmp_path):
    ref, _ = make_pair(tmp_path, "t5-v1_1")
    encoder = autoload.AutoModelForTextEncoding.from_pretrained(tmp_path)
    assert type(encoder) is t5.T5EncoderModel
    inputs, _ = batch()
    with torch.no_grad():
        expected = ref.get_encoder()(**inputs).last_hidden_state
        assert_close(encoder(**inputs).last_hidden_state, expected, atol=1e-4, rtol=0)
        assert_close(autoload.AutoModelForSeq2SeqLM.from_pretrained(tmp_path).get_encoder()(**inputs).last_hidden_state,
                     expected, atol=1e-4, rtol=0)
    assert type(autoload.AutoModelForSeq2SeqLM.from_pretrained(tmp_path)) is t5.T5ForConditionalGeneration
    assert type(autoload.AutoModel.from_pretrained(tmp_path)) is t5.T5Model
    ref_mt5, _ = make_pair(tmp_path / "mt5", "mt5")
    assert type(autoload.AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "mt5")) is t5.MT5ForConditionalGeneration
    assert type(autoload.AutoConfig.from_pretrained(tmp_path / "mt5")) is autoload.MT5Config


@pytest.mark.parametrize("variant", ["t5-v1_0", "t5-v1_1"])
def test_decoding_step_by_step_with_the_cache_equals_the_full_forward(tmp_path, variant):
    ref, ours = make_pair(tmp_path, variant)
    inputs, labels = batch()
    decoder_ids = ours._shift_right(labels)  # (B, T), starts with decoder_start_token_id
    with torch.no_grad():
        full = ours(**inputs, decoder_input_ids=decoder_ids)
        expected = ref(**inputs, decoder_input_ids=decoder_ids).logits
        encoder_outputs = ours.get_encoder()(**inputs)
        cache, steps = None, []
        for t in range(T):  # prefill 2 tokens, then one at a time
            if t == 1:
                continue
            new = decoder_ids[:, :2] if t == 0 else decoder_ids[:, t:t + 1]
            out = ours(encoder_outputs=encoder_outputs, attention_mask=inputs["attention_mask"],
                       decoder_input_ids=new, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            steps.append(out.logits)
    assert isinstance(cache, EncoderDecoderCache) and cache.get_seq_length() == T
    assert all(cache.is_updated.values()) and len(cache.is_updated) == TINY["num_decoder_layers"]
    with torch.no_grad():  # the reference, stepped the same way
        cache, reference_steps = None, []
        for t in range(T):
            if t == 1:
                continue
            new = decoder_ids[:, :2] if t == 0 else decoder_ids[:, t:t + 1]
            out = ref(encoder_outputs=ref.get_encoder()(**inputs), attention_mask=inputs["attention_mask"],
                      decoder_input_ids=new, cache=cache, use_cache=True)  # transformers 5.24's name
            cache = out.cache
            reference_steps.append(out.logits)
    assert_close(torch.cat(steps, dim=1), torch.cat(reference_steps, dim=1), atol=1e-5, rtol=0)
    assert_close(torch.cat(steps, dim=1), full.logits, atol=1e-4, rtol=1e-4)  # fp32 noise at logits ~10
    assert_close(full.logits, expected, atol=1e-4, rtol=0)
    assert full.past_key_values.get_seq_length() == T  # use_cache defaults to config.use_cache
    with torch.no_grad():  # the encoder output as a tuple; the cache reordered like a beam search does
        tupled = ours(encoder_outputs=(encoder_outputs.last_hidden_state,), attention_mask=inputs["attention_mask"],
                      decoder_input_ids=decoder_ids, use_cache=False)
    assert_close(tupled.logits, full.logits, atol=1e-6, rtol=0)
    assert tupled.past_key_values is None


def test_gradient_checkpointing_gives_the_reference_gradients(tmp_path):
    ref, ours = make_pair(tmp_path, "t5-v1_1", dropout_rate=0.0)
    inputs, labels = batch()
    grads = []
    for model, checkpointing in ((ours, False), (ours, True), (ref, False)):
        model.zero_grad()
        model.train()
        if checkpointing:
            model.gradient_checkpointing_enable()
        out = model(**inputs, labels=labels)
        assert out.past_key_values is None or not checkpointing
        out.loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert ours.is_gradient_checkpointing
    assert set(grads[0]) == set(grads[1]) and len(grads[0]) > 20
    for name, grad in grads[0].items():
        assert_close(grads[1][name], grad, atol=1e-6, rtol=0)
        assert_close(grad, grads[2][name], atol=1e-4, rtol=1e-4, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("variant", ["t5-v1_0", "t5-v1_1"])
def test_resize_token_embeddings_equals_the_reference(tmp_path, variant):
    """Tied: the reference's weights. Untied (flan-t5 / mt5 checkpoints): transformers 5 re-ties lm_head to the
    resized `shared` (the trained head is lost); autoload keeps it and appends mean-initialised rows."""
    ref, ours = make_pair(tmp_path, variant)
    old_head = ours.lm_head.weight.detach().clone()
    for model in (ref, ours):
        torch.manual_seed(3)
        model.resize_token_embeddings(VOCAB + 7)
    assert ours.config.vocab_size == ref.config.vocab_size == VOCAB + 7
    assert_close(ours.shared.weight, ref.shared.weight, atol=1e-6, rtol=0)
    assert ours.encoder.embed_tokens.weight is ours.shared.weight is ours.decoder.embed_tokens.weight
    assert ours.encoder.embed_tokens.weight.shape == (VOCAB + 7, TINY["d_model"])
    inputs, labels = batch()
    inputs["input_ids"][0, 0] = VOCAB + 5
    if VARIANTS[variant][2]:
        assert ours.lm_head.weight is not ours.shared.weight and torch.equal(ours.lm_head.weight[:VOCAB], old_head)
        assert_close(ours.lm_head.weight[VOCAB:], old_head.mean(0).expand(7, -1), atol=1e-3, rtol=0)
        with torch.no_grad():
            ours.lm_head.weight.copy_(ref.lm_head.weight)  # then the rest of the model must agree
    else:
        assert ours.lm_head.weight is ours.shared.weight
    with torch.no_grad():
        assert_close(ours(**inputs, labels=labels).logits, ref(**inputs, labels=labels).logits, atol=1e-4, rtol=0)


@pytest.mark.parametrize("variant", ["t5-v1_0", "t5-v1_1", "mt5"])
def test_save_pretrained_loads_in_transformers(tmp_path, variant):
    ref, ours = make_pair(tmp_path / "ref", variant)
    ours.save_pretrained(tmp_path / "ours")
    back = type(ref).from_pretrained(tmp_path / "ours").eval()
    inputs, labels = batch()
    with torch.no_grad():
        assert_close(back(**inputs, labels=labels).logits, ours(**inputs, labels=labels).logits, atol=1e-5, rtol=0)
    # a config built here: untied really unties (and does not scale), tied scales; both reload in transformers
    config = t5.T5Config(**TINY, tie_word_embeddings=False)
    torch.manual_seed(0)
    fresh = t5.T5ForConditionalGeneration(config).eval()
    assert fresh.lm_head.weight is not fresh.shared.weight and not config.scale_decoder_outputs
    fresh.save_pretrained(tmp_path / "fresh")
    back = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "fresh").eval()
    with torch.no_grad():
        assert_close(back(**inputs, labels=labels).logits, fresh(**inputs, labels=labels).logits, atol=1e-5, rtol=0)


def test_config_defaults_and_errors():
    for ours, theirs in ((autoload.T5Config(), transformers.T5Config()), (autoload.MT5Config(), transformers.MT5Config())):
        for key in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads",
                    "relative_attention_num_buckets", "relative_attention_max_distance", "dropout_rate",
                    "layer_norm_epsilon", "feed_forward_proj", "dense_act_fn", "is_gated_act", "is_encoder_decoder",
                    "pad_token_id", "eos_token_id", "hidden_size", "num_attention_heads", "num_hidden_layers"):
            assert getattr(ours, key) == getattr(theirs, key), key
        assert ours.decoder_start_token_id == 0 and ours.tie_word_embeddings
    assert autoload.T5Config().scale_decoder_outputs and not autoload.MT5Config().scale_decoder_outputs
    assert autoload.T5Config(feed_forward_proj="gated-gelu").dense_act_fn == "gelu_new"
    with pytest.raises(ConfigError, match="feed_forward_proj"):
        autoload.T5Config(feed_forward_proj="double-gated-gelu")
    with pytest.raises(ConfigError, match="num_decoder_layers"):
        autoload.T5Config(num_decoder_layers=10**9)


def test_fp16_clamp_and_fp32_wo_as_the_reference(tmp_path):
    h = torch.tensor([[1.0, 65000.0, -65504.0]], dtype=torch.float16)
    assert torch.equal(t5.clamp_fp16(h), h)  # no inf: a no-op
    h[0, 0] = float("inf")
    limit = torch.tensor(65504.0 - 1000).half().item()  # 64504 rounds to 64512 in float16
    assert t5.clamp_fp16(h).tolist() == [[limit, limit, -limit]]
    assert torch.equal(t5.clamp_fp16(h.float()), h.float())  # other dtypes untouched
    ref, ours = make_pair(tmp_path, "t5-v1_1", dtype=torch.float16)
    assert ours.encoder.block[0].layer[1].DenseReluDense.wo.weight.dtype == torch.float32
    assert ours.shared.weight.dtype == torch.float16
    inputs, labels = batch()
    with torch.no_grad():
        got, expected = ours(**inputs, labels=labels), ref(**inputs, labels=labels)
    assert got.logits.dtype == expected.logits.dtype
    assert_close(got.logits.float(), expected.logits.float(), atol=2e-2, rtol=1e-2)


@pytest.mark.parametrize("variant", VARIANTS)
def test_generate_matches_the_reference(tmp_path, variant):
    """Greedy and beam-4 ids (symmetric stacks: transformers' generate sizes its cache by num_layers)."""
    ref, ours = make_pair(tmp_path, variant, num_decoder_layers=TINY["num_layers"])
    inputs, _ = batch()
    for options in ({}, {"num_beams": 4}):
        expected = ref.generate(**inputs, max_new_tokens=7, do_sample=False, **options)
        assert ours.generate(**inputs, max_new_tokens=7, do_sample=False, **options).tolist() == expected.tolist()


def test_left_padding_decoder_mask_embeddings_and_tuples(tmp_path):
    ref, ours = make_pair(tmp_path, "t5-v1_0")
    inputs, labels = batch()
    left = inputs["attention_mask"].flip(1)
    decoder_mask = torch.ones(B, T, dtype=torch.long)
    decoder_mask[1, 4:] = 0
    embeds, decoder_embeds = ours.shared(inputs["input_ids"]), ours.shared(labels.clamp(min=0))
    cases = [{"input_ids": inputs["input_ids"].masked_fill(left == 0, 0), "attention_mask": left, "labels": labels},
             {**inputs, "decoder_input_ids": labels.clamp(min=0), "decoder_attention_mask": decoder_mask},
             {"inputs_embeds": embeds, "attention_mask": inputs["attention_mask"], "decoder_inputs_embeds": decoder_embeds}]
    with torch.no_grad():
        for case in cases:
            assert_outputs_close(ours(**case), ref(**case), keys=SEQ2SEQ_KEYS)
        as_tuple = ours(**inputs, labels=labels, return_dict=False)
    assert_close(as_tuple[1], ours(**inputs, labels=labels).logits)
    with pytest.raises(ValueError, match="exactly one"):
        ours.get_encoder()(input_ids=inputs["input_ids"], inputs_embeds=embeds)
