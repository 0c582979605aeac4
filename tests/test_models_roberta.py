"""RoBERTa, XLM-RoBERTa and CamemBERT against the reference (transformers, test-only): tiny random checkpoints saved by
the reference and loaded through autoload's real loading path, every head of the three model types compared (fp32
atol 1e-4) with left and right padding (the positions count from pad_token_id + 1 over real tokens only), losses,
inputs_embeds positions, hidden states / attentions, the causal LM's cache and greedy generation, a bge-reranker
style cross-encoder (num_labels=1), the Auto classes, gradients and seeded init."""

from __future__ import annotations

import pytest
import torch
import transformers
from torch.testing import assert_close

import autoload
import model_cases
from autoload.models import roberta
from model_cases import assert_outputs_close

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

PREFIX = {"roberta": "Roberta", "xlm-roberta": "XLMRoberta", "camembert": "Camembert"}
HEADS = ["Model", "ForCausalLM", "ForMaskedLM", "ForSequenceClassification", "ForTokenClassification",
         "ForQuestionAnswering", "ForMultipleChoice"]
TINY = dict(vocab_size=99, hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=37,
            max_position_embeddings=40, type_vocab_size=1)
VARIANTS = {  # one shape per model type; camembert pads with id 3, so its positions start at 4
    "roberta": {},
    "xlm-roberta": dict(hidden_size=32, num_attention_heads=4, num_hidden_layers=3, hidden_act="gelu_new",
                        classifier_dropout=0.3, type_vocab_size=2),
    "camembert": dict(hidden_size=16, num_attention_heads=2, num_hidden_layers=1, hidden_act="relu", pad_token_id=3),
}
B, T = 3, 10


def perturb_(model: torch.nn.Module, seed: int = 0, scale: float = 0.1) -> None:
    """Move every parameter (tied ones once) off its init, so LayerNorm 1/0 and zero biases are tested too."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


def reference_config(model_type: str, head: str = "Model", **overrides):
    config = transformers.AutoConfig.for_model(model_type, **{**TINY, **VARIANTS[model_type], **overrides})
    config.is_decoder = config.is_decoder or head == "ForCausalLM"
    return config


def make_pair(folder, model_type="roberta", head="ForMaskedLM", attn="sdpa", dtype=torch.float32, **overrides):
    name = PREFIX[model_type] + head
    return model_cases.make_pair(folder, getattr(transformers, name), getattr(roberta, name),
                                 reference_config(model_type, head, **overrides), attn=attn, dtype=dtype,
                                 prepare=perturb_)


def batch(model_type="roberta", head="Model", padding="right", seed=1):
    """input_ids (B, T) (or (B, 2, T) for multiple choice) padded with the config's pad id on `padding`'s side
    (rows with 0, 3 and 6 pads), attention_mask, and labels for the head."""
    pad = VARIANTS[model_type].get("pad_token_id", 1)
    choices = head == "ForMultipleChoice"
    ids, mask = model_cases.padded_batch(2 * B if choices else B, T, padding, [0, 3, 6, 2, 5, 1], vocab=99, low=4,
                                         pad_id=pad, seed=seed)
    if choices:
        inputs = {"input_ids": ids.view(B, 2, T), "attention_mask": mask.view(B, 2, T)}
        return inputs, {"labels": torch.tensor([1, 0, 1])}
    if head == "ForMaskedLM":
        labels = {"labels": ids.masked_fill((mask == 0) | (torch.arange(T) % 3 != 0), -100)}
    else:
        labels = model_cases.labels_for(PREFIX[model_type] + head, ids, mask, num_labels=2, seed=seed)
    return {"input_ids": ids, "attention_mask": mask}, labels


@pytest.mark.parametrize("model_type", PREFIX)
@pytest.mark.parametrize("head", HEADS)
def test_every_head_matches_the_reference(tmp_path, model_type, head):
    ref, ours = make_pair(tmp_path, model_type, head)
    for padding in ("right", "left", None):
        inputs, labels = batch(model_type, head, padding)
        if head == "ForCausalLM" and padding == "left":  # pad rows see no key: garbage in both, compared on real rows
            with torch.no_grad():
                got, expected = ours(**inputs).logits, ref(**inputs).logits
            real = inputs["attention_mask"].bool()
            assert_close(got[real], expected[real], atol=1e-4, rtol=1e-4)
            continue
        with torch.no_grad():
            got, expected = ours(**inputs, **labels), ref(**inputs, **labels)
        assert_outputs_close(got, expected)
        assert (got.get("loss") is None) == (head == "Model")


def test_positions_skip_padding_on_both_sides(tmp_path):
    """Real tokens count from pad_token_id + 1 wherever the padding is; pads sit at pad_token_id (the zero row)."""
    ref, ours = make_pair(tmp_path, "camembert", "Model", attn="eager")
    captured = {}
    ours.embeddings.position_embeddings.register_forward_hook(lambda m, args, out: captured.update(ids=args[0]))
    left, _ = batch("camembert", "Model", "left")
    pads = (left["attention_mask"] == 0).sum(-1)  # (B,) 0, 3, 6
    right = {k: torch.stack([row.roll(-int(n)) for row, n in zip(v, pads)]) for k, v in left.items()}  # same tokens
    states = {}
    for padding, inputs in (("left", left), ("right", right)):
        mask = inputs["attention_mask"]
        with torch.no_grad():
            got, expected = ours(**inputs, output_hidden_states=True), ref(**inputs, output_hidden_states=True)
        assert_close(got.hidden_states[0], expected.hidden_states[0], atol=1e-5, rtol=0)
        assert_close(got.last_hidden_state, expected.last_hidden_state, atol=1e-4, rtol=1e-4)
        assert torch.equal(captured["ids"], torch.where(mask.bool(), mask.cumsum(-1) + 3, 3))
        assert captured["ids"][2].tolist() == ([3] * 6 + [4, 5, 6, 7] if padding == "left" else [4, 5, 6, 7] + [3] * 6)
        states[padding] = got.last_hidden_state[mask.bool()]  # (real tokens, H) in row order
    assert_close(states["left"], states["right"], atol=1e-5, rtol=0)  # the padding side changes nothing
    assert ours.embeddings.position_embeddings.weight.shape == (40, 16)


def test_inputs_embeds_positions_are_sequential_and_position_ids_are_used(tmp_path):
    ref, ours = make_pair(tmp_path, "roberta", "ForMaskedLM")
    inputs, _ = batch("roberta", "Model", "right")
    embeds = ours.get_input_embeddings()(inputs["input_ids"])  # (B, T, H)
    mask = inputs["attention_mask"]
    positions = torch.arange(T).flip(0)[None].expand(B, T) + 2
    with torch.no_grad():
        assert_outputs_close(ours(inputs_embeds=embeds, attention_mask=mask),
                             ref(inputs_embeds=embeds, attention_mask=mask))
        assert_outputs_close(ours(**inputs, position_ids=positions), ref(**inputs, position_ids=positions))
        token_types = torch.zeros(B, T, dtype=torch.long)
        assert_outputs_close(ours(**inputs, token_type_ids=token_types), ref(**inputs))
        # from embeddings the positions are 2..T+1 on every row, so padding changes the real tokens' states
        no_pad = ours(inputs_embeds=embeds[:1, :4]).logits
        assert_close(no_pad, ours(input_ids=inputs["input_ids"][:1, :4]).logits, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="exactly one"):
        ours(inputs["input_ids"], inputs_embeds=embeds)


@pytest.mark.parametrize("problem,num_labels", [("regression", 1), ("single", 3), ("multi", 3)])
def test_sequence_classification_problem_types(tmp_path, problem, num_labels):
    ref, ours = make_pair(tmp_path, "xlm-roberta", "ForSequenceClassification", num_labels=num_labels)
    inputs, _ = batch("xlm-roberta", "ForSequenceClassification", "right")
    g = torch.Generator().manual_seed(5)
    labels = {"regression": torch.randn(B, generator=g), "single": torch.randint(0, 3, (B,), generator=g),
              "multi": torch.randint(0, 2, (B, 3), generator=g).float()}[problem]
    with torch.no_grad():
        assert_outputs_close(ours(**inputs, labels=labels), ref(**inputs, labels=labels))
    assert ours.config.problem_type == ref.config.problem_type


def test_cross_encoder_reranker_scores(tmp_path):
    """bge-reranker layout: XLMRobertaForSequenceClassification, num_labels=1, a (query, passage) pair per row, one
    relevance logit per row from the <s> state."""
    ref, ours = make_pair(tmp_path, "xlm-roberta", "ForSequenceClassification", num_labels=1, type_vocab_size=1,
                          max_position_embeddings=24)
    pad, bos, eos = 1, 0, 2
    g = torch.Generator().manual_seed(4)
    rows = []
    for query_len, passage_len in ((2, 5), (3, 2), (1, 7)):  # <s> q </s></s> p </s>, right-padded to 12
        q, p = torch.randint(4, 99, (query_len,), generator=g), torch.randint(4, 99, (passage_len,), generator=g)
        row = torch.cat([torch.tensor([bos]), q, torch.tensor([eos, eos]), p, torch.tensor([eos])])
        rows.append(torch.cat([row, torch.full((12 - len(row),), pad)]))
    ids = torch.stack(rows)  # (3, 12)
    mask = (ids != pad).long()
    with torch.no_grad():
        got, expected = ours(input_ids=ids, attention_mask=mask), ref(input_ids=ids, attention_mask=mask)
    assert got.logits.shape == expected.logits.shape == (3, 1)
    assert_close(got.logits, expected.logits, atol=1e-4, rtol=1e-4)
    assert_close(torch.sigmoid(got.logits), torch.sigmoid(expected.logits), atol=1e-5, rtol=0)
    unpadded = ours(input_ids=ids[1:2, :int(mask[1].sum())]).logits
    assert_close(unpadded, got.logits[1:2], atol=1e-5, rtol=0)  # padding has no effect
    scores = torch.tensor([1.0, 0.0, 0.5])
    with torch.no_grad():
        assert_outputs_close(ours(input_ids=ids, attention_mask=mask, labels=scores),
                             ref(input_ids=ids, attention_mask=mask, labels=scores))
    assert ours.config.problem_type == "regression"


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_hidden_states_attentions_and_tuples(tmp_path, attn):
    ref, ours = make_pair(tmp_path, "roberta", "ForTokenClassification", attn=attn)
    inputs, labels = batch("roberta", "ForTokenClassification", "left")
    kwargs = dict(output_hidden_states=True, output_attentions=True)
    with torch.no_grad():
        got, expected = ours(**inputs, **labels, **kwargs), ref(**inputs, **labels, **kwargs)
        got_tuple = ours(**inputs, **labels, **kwargs, return_dict=False)
    assert len(got.hidden_states) == len(expected.hidden_states) == 3
    for a, b in zip(got.hidden_states, expected.hidden_states):
        assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert len(got.attentions) == len(expected.attentions) == (2 if attn == "eager" else 0)
    for a, b in zip(got.attentions, expected.attentions):
        assert_close(a, b, atol=1e-5, rtol=0)
        assert a[2, :, :, :6].max() < 1e-6  # left padding gets no weight
    assert isinstance(got_tuple, tuple) and len(got_tuple) == 4
    assert_close(got_tuple[1], expected.logits, atol=1e-4, rtol=1e-4)
    ours.config.return_dict = False  # the config default is honoured
    with torch.no_grad():
        assert isinstance(ours(**inputs), tuple)


@pytest.mark.parametrize("model_type", ["roberta", "camembert"])
def test_causal_lm_cache_and_greedy_generation(tmp_path, model_type):
    ref, ours = make_pair(tmp_path, model_type, "ForCausalLM")
    inputs, _ = batch(model_type, "ForCausalLM", None)
    ids = inputs["input_ids"]
    with torch.no_grad():
        full = ours(ids).logits  # (B, T, V)
        out = ours(ids[:, :4], use_cache=True)
        steps, cache = [out.logits], out.past_key_values
        for t in range(4, T):  # positions continue after the cached ones
            out = ours(ids[:, t:t + 1], past_key_values=cache, use_cache=True)
            steps.append(out.logits)
            assert out.past_key_values is cache and cache.get_seq_length() == t + 1
        assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)
        ref_cache = ref(ids[:, :4], use_cache=True).past_key_values
        assert_close(ours(ids[:, 4:6], past_key_values=ours(ids[:, :4]).past_key_values).logits,
                     ref(ids[:, 4:6], cache=ref_cache).logits, atol=1e-4, rtol=1e-4)
    for padding in (None, "left"):
        prompt, _ = batch(model_type, "ForCausalLM", padding, seed=7)
        prompt = {k: v[:, :6] if padding is None else v[:, 4:] for k, v in prompt.items()}
        kwargs = dict(max_new_tokens=4, do_sample=False, eos_token_id=None, pad_token_id=None)
        with torch.no_grad():
            expected = ref.generate(**prompt, **kwargs)
            got = ours.generate(**prompt, **kwargs)
        assert torch.equal(got, expected)
        assert got.shape == (B, prompt["input_ids"].shape[1] + 4)


def test_cross_attention_matches_the_reference(tmp_path):
    ref, ours = make_pair(tmp_path, "roberta", "ForCausalLM", attn="eager", add_cross_attention=True)
    inputs, _ = batch("roberta", "ForCausalLM", None)
    encoder_states = torch.randn(B, 5, 24, generator=torch.Generator().manual_seed(3))
    encoder_mask = torch.ones(B, 5, dtype=torch.long)
    encoder_mask[1, 3:] = 0
    kwargs = dict(encoder_hidden_states=encoder_states, encoder_attention_mask=encoder_mask, use_cache=False,
                  output_attentions=True)
    with torch.no_grad():
        got, expected = ours(**inputs, **kwargs), ref(**inputs, **kwargs)
    assert_outputs_close(got, expected)
    assert len(got.cross_attentions) == len(expected.cross_attentions) == 2
    for a, b in zip(got.cross_attentions, expected.cross_attentions):
        assert_close(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("model_type", PREFIX)
def test_auto_classes_load_the_folder(tmp_path, model_type):
    ref, _ = make_pair(tmp_path, model_type, "ForSequenceClassification")
    config = autoload.AutoConfig.from_pretrained(tmp_path)
    assert type(config).__name__ == PREFIX[model_type] + "Config" and config.model_type == model_type
    inputs, _ = batch(model_type, "Model", "right")
    for auto, head in (("AutoModelForSequenceClassification", "ForSequenceClassification"), ("AutoModel", "Model"),
                       ("AutoModelForMaskedLM", "ForMaskedLM")):
        model = getattr(autoload, auto).from_pretrained(tmp_path)
        assert type(model).__name__ == PREFIX[model_type] + head
    ours, expected = autoload.AutoModel.from_pretrained(tmp_path), transformers.AutoModel.from_pretrained(tmp_path)
    with torch.no_grad():
        assert_outputs_close(ours(**inputs), expected(**inputs), keys=("last_hidden_state",))  # a new pooler


def test_gradients_match_the_reference_with_checkpointing(tmp_path):
    ref, ours = make_pair(tmp_path, "xlm-roberta", "ForMaskedLM", hidden_dropout_prob=0.0,
                          attention_probs_dropout_prob=0.0)
    inputs, labels = batch("xlm-roberta", "ForMaskedLM", "left")
    ours.train()
    ours.gradient_checkpointing_enable()
    ref(**inputs, **labels).loss.backward()
    ours(**inputs, **labels).loss.backward()
    ref_grads = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        assert_close(p.grad, ref_grads[name].grad, atol=1e-4, rtol=1e-4, msg=name)
    assert ours.lm_head.decoder.weight is ours.roberta.embeddings.word_embeddings.weight
    assert ours.lm_head.decoder.bias is ours.lm_head.bias


@pytest.mark.parametrize("model_type", PREFIX)
def test_seeded_construction_equals_the_reference(model_type):
    config = reference_config(model_type, "Model", num_labels=3)
    ours_config = getattr(autoload, PREFIX[model_type] + "Config").from_dict(config.to_dict())
    for head in HEADS:
        name = PREFIX[model_type] + head
        torch.manual_seed(11)
        ref = getattr(transformers, name)(config)
        torch.manual_seed(11)
        ours = getattr(roberta, name)(ours_config)
        ref_state = ref.state_dict()
        for key, value in ours.state_dict().items():
            assert torch.equal(value, ref_state[key]), (name, key)
        assert set(ours.state_dict()) <= set(ref_state)


def test_resize_save_round_trip_and_bf16(tmp_path):
    ref, ours = make_pair(tmp_path / "a", "xlm-roberta", "ForMaskedLM")
    torch.manual_seed(0)
    ref.resize_token_embeddings(104)
    torch.manual_seed(0)
    ours.resize_token_embeddings(104)  # the same new rows, decoder and bias still tied
    assert ours.lm_head.decoder.weight is ours.roberta.embeddings.word_embeddings.weight
    assert ours.lm_head.bias is ours.lm_head.decoder.bias and ours.lm_head.bias.shape == (104,)
    inputs, labels = batch("xlm-roberta", "ForMaskedLM", "left")
    with torch.no_grad():
        assert_outputs_close(ours(**inputs, **labels), ref(**inputs, **labels))
    ours.save_pretrained(tmp_path / "ours")  # autoload's folder loads in transformers with the same outputs
    back = transformers.XLMRobertaForMaskedLM.from_pretrained(tmp_path / "ours")
    with torch.no_grad():
        assert_close(back(**inputs).logits, ours(**inputs).logits, atol=1e-5, rtol=0)
    ref, ours = make_pair(tmp_path / "b", "roberta", "ForSequenceClassification", dtype=torch.bfloat16)
    assert ours.dtype == torch.bfloat16
    with torch.no_grad():
        got, expected = ours(**inputs).logits, ref(**inputs).logits
    assert got.dtype == torch.bfloat16
    assert_close(got.float(), expected.float(), atol=2e-2 * expected.float().abs().max().item(), rtol=0)
