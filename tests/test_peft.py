"""PEFT (LoRA) on autoload models, against the same PEFT setup on the transformers model with the same weights:
`get_peft_model` for every task type, a few AdamW steps (equal losses step by step), the adapter's
`save_pretrained` + `PeftModel.from_pretrained` on a fresh autoload model, `merge_and_unload`, and `generate`
on the PEFT causal LM (ids equal to the reference's)."""

from __future__ import annotations

import pytest
import torch
import transformers
from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from torch.testing import assert_close

import autoload.models.bert as our_bert
import autoload.models.gpt2 as our_gpt2
import autoload.models.llama as our_llama
import model_cases

SMALL = {"vocab_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
BERT = dict(SMALL, hidden_size=32, intermediate_size=64, max_position_embeddings=32, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0)
LLAMA = dict(SMALL, hidden_size=32, intermediate_size=64, num_key_value_heads=2, max_position_embeddings=64,
             pad_token_id=0)
GPT2 = {"vocab_size": 64, "n_layer": 2, "n_head": 4, "n_embd": 32, "n_positions": 64, "resid_pdrop": 0.0,
        "embd_pdrop": 0.0, "attn_pdrop": 0.0, "tie_word_embeddings": False}  # lm_head is the LoRA target (below)

# (task type, reference class, autoload class, config class, config, LoRA target modules, output key)
CASES = {
    "llama-causal": (TaskType.CAUSAL_LM, "LlamaForCausalLM", our_llama, "LlamaConfig", LLAMA,
                     ["q_proj", "v_proj"], "logits"),
    # lm_head here (untied: merging LoRA into a tied lm_head would change the input embeddings too, in both
    # libraries); the attention and MLP projections: test_gpt2_lora_on_the_projections_matches_reference
    "gpt2-causal": (TaskType.CAUSAL_LM, "GPT2LMHeadModel", our_gpt2, "GPT2Config", GPT2, ["lm_head"], "logits"),
    "bert-seq-cls": (TaskType.SEQ_CLS, "BertForSequenceClassification", our_bert, "BertConfig", BERT,
                     ["query", "value"], "logits"),
    "llama-seq-cls": (TaskType.SEQ_CLS, "LlamaForSequenceClassification", our_llama, "LlamaConfig", LLAMA,
                      ["q_proj", "v_proj"], "logits"),
    "bert-token-cls": (TaskType.TOKEN_CLS, "BertForTokenClassification", our_bert, "BertConfig", BERT,
                       ["query", "value"], "logits"),
    "bert-features": (TaskType.FEATURE_EXTRACTION, "BertModel", our_bert, "BertConfig", BERT,
                      ["query", "value"], "last_hidden_state"),
    "bert-qa": (TaskType.QUESTION_ANS, "BertForQuestionAnswering", our_bert, "BertConfig", BERT,
                ["query", "value"], "start_logits"),
}


def lora(task_type, targets) -> LoraConfig:
    return LoraConfig(task_type=task_type, r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets)


def batch(class_name: str):
    ids, mask = model_cases.padded_batch(2, 8, "right", [0, 3], 64)
    labels = model_cases.labels_for(class_name, ids, mask)
    if class_name.endswith("QuestionAnswering"):
        labels = {"start_positions": torch.tensor([1, 2]), "end_positions": torch.tensor([4, 5])}
    return {"input_ids": ids, "attention_mask": mask}, labels


def loss_of(out, key):
    return out.loss if out.get("loss") is not None else out[key][..., 0].mean()  # BertModel: no loss, push one feature down


def train(model, inputs, labels, key, steps=3) -> list[float]:
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(steps):
        loss = loss_of(model(**inputs, **labels), key)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("case", list(CASES))
def test_lora_train_save_reload_merge(case, tmp_path):
    task_type, ref_name, our_module, config_name, config, targets, key = CASES[case]
    ref_base, ours_base = model_cases.make_pair(
        tmp_path / "base", getattr(transformers, ref_name), getattr(our_module, ref_name),
        getattr(transformers, config_name)(**config))
    torch.manual_seed(0)
    ref = get_peft_model(ref_base, lora(task_type, targets))
    torch.manual_seed(0)
    ours = get_peft_model(ours_base, lora(task_type, targets))
    assert ours.get_nb_trainable_parameters() == ref.get_nb_trainable_parameters()

    inputs, labels = batch(ref_name)
    ref_losses, our_losses = train(ref, inputs, labels, key), train(ours, inputs, labels, key)
    assert_close(torch.tensor(our_losses), torch.tensor(ref_losses), atol=1e-4, rtol=0)
    assert our_losses[-1] < our_losses[0]  # the adapter learned something

    ref.eval(), ours.eval()
    with torch.no_grad():
        expected = ref(**inputs)[key]
        assert_close(ours(**inputs)[key], expected, atol=1e-4, rtol=0)
    ours.save_pretrained(tmp_path / "adapter")
    fresh = getattr(our_module, ref_name).from_pretrained(tmp_path / "base")
    reloaded = PeftModel.from_pretrained(fresh, tmp_path / "adapter").eval()
    merged = reloaded.merge_and_unload()
    assert type(merged) is getattr(our_module, ref_name)
    assert not any("lora" in name for name, _ in merged.named_parameters())
    with torch.no_grad():
        assert_close(merged(**inputs)[key], expected, atol=1e-4, rtol=0)
    ref.save_pretrained(tmp_path / "reference-adapter")  # the reference's adapter on a fresh autoload model
    fresh = getattr(our_module, ref_name).from_pretrained(tmp_path / "base")
    crossed = PeftModel.from_pretrained(fresh, tmp_path / "reference-adapter").eval()
    with torch.no_grad():
        assert_close(crossed(**inputs)[key], expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("case", ["llama-causal", "gpt2-causal"])
def test_peft_causal_lm_generate_matches_reference(case, tmp_path):
    task_type, ref_name, our_module, config_name, config, targets, key = CASES[case]
    ref_base, ours_base = model_cases.make_pair(
        tmp_path, getattr(transformers, ref_name), getattr(our_module, ref_name),
        getattr(transformers, config_name)(**config))
    peft_models = []
    for base in (ref_base, ours_base):
        torch.manual_seed(0)
        model = get_peft_model(base, lora(task_type, targets))
        for name, param in model.named_parameters():  # move lora_B off zero so that the adapter changes the ids
            if "lora_B" in name:
                param.data = torch.linspace(-0.5, 0.5, param.numel()).reshape(param.shape)
        peft_models.append(model.eval())
    ref, ours = peft_models
    ids, mask = model_cases.padded_batch(2, 6, "left", [0, 2], 64)
    kwargs = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
    expected = ref.generate(input_ids=ids, attention_mask=mask, **kwargs)
    assert torch.equal(ours.generate(input_ids=ids, attention_mask=mask, **kwargs), expected)
    with ours.disable_adapter():  # the base model alone generates something else
        assert not torch.equal(ours.generate(input_ids=ids, attention_mask=mask, **kwargs), expected)


def test_prepare_inputs_for_generation_keeps_uncached_tokens(tmp_path):
    _, ours = model_cases.make_pair(tmp_path, transformers.LlamaForCausalLM, our_llama.LlamaForCausalLM,
                                    transformers.LlamaConfig(**LLAMA))
    ids, mask = model_cases.padded_batch(2, 6, "left", [0, 2], 64)
    first = ours.prepare_inputs_for_generation(ids, attention_mask=mask)
    assert torch.equal(first["input_ids"], ids) and first["past_key_values"] is None
    assert first["position_ids"].tolist()[1] == [0, 0, 0, 1, 2, 3]
    out = ours(**first)
    step = torch.cat([ids, out.logits[:, -1:].argmax(-1)], 1)
    mask = torch.cat([mask, torch.ones(2, 1, dtype=mask.dtype)], 1)
    second = ours.prepare_inputs_for_generation(step, past_key_values=out.past_key_values, attention_mask=mask)
    assert second["input_ids"].shape == (2, 1) and second["position_ids"].tolist() == [[6], [4]]
    with torch.no_grad():
        assert_close(ours(**second).logits[:, -1], ours(input_ids=step, attention_mask=mask).logits[:, -1],
                     atol=1e-4, rtol=0)


def test_peft_rejects_a_missing_target_module(tmp_path):
    _, ours = model_cases.make_pair(tmp_path, transformers.BertModel, our_bert.BertModel,
                                    transformers.BertConfig(**BERT))
    with pytest.raises(ValueError, match="not found"):
        get_peft_model(ours, lora(TaskType.FEATURE_EXTRACTION, ["no_such_module"]))


@pytest.mark.parametrize("use_reentrant", [True, False])
def test_lora_with_gradient_checkpointing_matches_reference(use_reentrant, tmp_path):
    """Reentrant checkpointing needs inputs that require grad: peft calls `enable_input_require_grads`."""
    models = model_cases.make_pair(tmp_path, transformers.LlamaForCausalLM, our_llama.LlamaForCausalLM,
                                   transformers.LlamaConfig(**LLAMA))
    inputs, labels = batch("LlamaForCausalLM")
    losses, grads = [], []
    for model in models:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": use_reentrant})
        torch.manual_seed(0)
        peft_model = get_peft_model(model, lora(TaskType.CAUSAL_LM, ["q_proj", "v_proj"]))
        losses.append(train(peft_model, inputs, labels, "logits"))
        peft_model(**inputs, **labels).loss.backward()
        grads.append({name: p.grad for name, p in peft_model.named_parameters() if p.requires_grad})
    assert_close(torch.tensor(losses[1]), torch.tensor(losses[0]), atol=1e-4, rtol=0)
    assert grads[1].keys() == grads[0].keys() and all(g is not None for g in grads[1].values())
    for name, grad in grads[0].items():
        assert_close(grads[1][name], grad, atol=1e-4, rtol=0, msg=lambda m: f"{name}: {m}")


def test_gpt2_lora_on_the_projections_matches_reference(tmp_path):
    """c_attn / c_proj / c_fc are nn.Linear here (transformers' are Conv1D, which peft handles with fan_in_fan_out):
    the same adapter either way. Training, the adapter round trip, merging, generate, and the reference's adapter
    on autoload's model all give the reference's numbers."""
    targets = ["c_attn", "c_proj", "c_fc"]
    config = transformers.GPT2Config(**dict(GPT2, tie_word_embeddings=True))
    ref_base, ours_base = model_cases.make_pair(tmp_path / "base", transformers.GPT2LMHeadModel,
                                                our_gpt2.GPT2LMHeadModel, config)
    c_attn = ours_base.transformer.h[0].attn.c_attn
    assert isinstance(c_attn, torch.nn.Linear) and c_attn.weight.shape == (96, 32)  # (out, in) in memory ...
    assert c_attn.weight.t().is_contiguous()  # ... as a view of the checkpoint's [in, out] tensor, not a copy
    torch.manual_seed(0)
    ref = get_peft_model(ref_base, lora(TaskType.CAUSAL_LM, targets))
    torch.manual_seed(0)
    ours = get_peft_model(ours_base, lora(TaskType.CAUSAL_LM, targets))
    assert ours.get_nb_trainable_parameters() == ref.get_nb_trainable_parameters()
    lora_names = sorted(n for n, p in ours.named_parameters() if p.requires_grad)
    assert len(lora_names) == 2 * 4 * 2  # lora_A and lora_B on four projections in each of two blocks
    assert lora_names == sorted(n for n, p in ref.named_parameters() if p.requires_grad)

    inputs, labels = batch("GPT2LMHeadModel")
    ref_losses, our_losses = train(ref, inputs, labels, "logits"), train(ours, inputs, labels, "logits")
    assert_close(torch.tensor(our_losses), torch.tensor(ref_losses), atol=1e-4, rtol=0)
    assert our_losses[-1] < our_losses[0]

    ref.eval(), ours.eval()
    ids, mask = model_cases.padded_batch(2, 6, "left", [0, 2], 64)
    generate = {"input_ids": ids, "attention_mask": mask, "max_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
    with torch.no_grad():
        expected = ref(**inputs).logits
        expected_ids = ref.generate(**generate)
        assert_close(ours(**inputs).logits, expected, atol=1e-4, rtol=0)
        with ours.disable_adapter():  # the adapter matters
            assert not torch.allclose(ours(**inputs).logits, expected, atol=1e-3)
    ours.save_pretrained(tmp_path / "adapter")
    fresh = our_gpt2.GPT2LMHeadModel.from_pretrained(tmp_path / "base")
    reloaded = PeftModel.from_pretrained(fresh, tmp_path / "adapter").eval()
    with torch.no_grad():
        assert_close(reloaded(**inputs).logits, expected, atol=1e-4, rtol=0)
    merged = reloaded.merge_and_unload()
    assert type(merged) is our_gpt2.GPT2LMHeadModel
    assert not any("lora" in name for name, _ in merged.named_parameters())
    with torch.no_grad():
        assert_close(merged(**inputs).logits, expected, atol=1e-4, rtol=0)
        assert torch.equal(merged.generate(**generate), expected_ids)
    merged.save_pretrained(tmp_path / "merged")  # the merged weights, written in GPT-2's [in, out] layout
    state = merged.state_dict()
    assert state["transformer.h.1.mlp.c_fc.weight"].shape == (32, 128)
    back = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        assert_close(back(**inputs).logits, expected, atol=1e-4, rtol=0)

    ref.save_pretrained(tmp_path / "reference-adapter")  # trained on transformers' Conv1D (fan_in_fan_out=True)
    fresh = our_gpt2.GPT2LMHeadModel.from_pretrained(tmp_path / "base")
    crossed = PeftModel.from_pretrained(fresh, tmp_path / "reference-adapter").eval()
    with torch.no_grad():
        assert_close(crossed(**inputs).logits, expected, atol=1e-4, rtol=0)
        assert torch.equal(crossed.generate(**generate), expected_ids)
