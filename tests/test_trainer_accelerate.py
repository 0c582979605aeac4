"""transformers.Trainer and accelerate driving autoload models, against the same run on the transformers model
with the same weights: losses equal step by step (with and without gradient checkpointing), the trained weights
equal, and the folders written by save_pretrained / accelerate reload in both libraries with equal logits."""

from __future__ import annotations

import os

import pytest
import torch
import transformers
from accelerate import Accelerator
from torch.testing import assert_close

import autoload.models.bert as our_bert
import autoload.models.llama as our_llama
import model_cases

BERT = {"vocab_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 32,
        "intermediate_size": 64, "max_position_embeddings": 32}
LLAMA = {"vocab_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 32,
         "intermediate_size": 64, "num_key_value_heads": 2, "max_position_embeddings": 64, "pad_token_id": 0}
CASES = {"bert-seq-cls": ("BertForSequenceClassification", our_bert, "BertConfig", BERT),
         "llama-causal": ("LlamaForCausalLM", our_llama, "LlamaConfig", LLAMA)}


def pair(folder, name):
    ref_name, module, config_name, config = CASES[name]
    cfg = getattr(transformers, config_name)(**config)
    return model_cases.make_pair(folder, getattr(transformers, ref_name), getattr(module, ref_name), cfg)


def rows(name, n=8, t=8):
    ids, mask = model_cases.padded_batch(n, t, "right", [0, 2, 0, 3, 1, 0, 0, 2], 64)
    labels = model_cases.labels_for(CASES[name][0], ids, mask)["labels"]
    return [{"input_ids": ids[i], "attention_mask": mask[i], "labels": labels[i]} for i in range(n)]


class RecordingTrainer(transformers.Trainer):
    """Keeps every step's loss at full precision (the logged ones are rounded)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        self.losses.append(float(loss[0] if return_outputs else loss))
        return loss


def train(model, data, folder, checkpointing: bool, resume=None, **overrides):
    args = transformers.TrainingArguments(
        output_dir=str(folder), use_cpu=True, report_to=[], max_steps=4, per_device_train_batch_size=2,
        # adam_epsilon 1e-3: Adam's first steps move each weight by about ±lr whatever the gradient's size, so a
        # gradient of ~1e-9 whose sign differs between two float implementations would flip a whole update
        learning_rate=1e-2, adam_epsilon=1e-3, seed=0, gradient_checkpointing=checkpointing, save_strategy="no",
        logging_steps=1,
        disable_tqdm=True, dataloader_num_workers=0)
    for key, value in overrides.items():
        setattr(args, key, value)
    trainer = RecordingTrainer(model=model, args=args, train_dataset=data)
    trainer.losses = []
    trainer.train(resume_from_checkpoint=resume)
    return trainer


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("name", ["bert-seq-cls", "llama-causal"])
def test_trainer_losses_and_saved_folder(tmp_path, name, checkpointing):
    ref, ours = pair(tmp_path / "init", name)
    data = rows(name)
    ref_trainer = train(ref, data, tmp_path / "ref-run", checkpointing)
    our_trainer = train(ours, data, tmp_path / "our-run", checkpointing)
    assert len(our_trainer.losses) == 4
    assert_close(torch.tensor(our_trainer.losses), torch.tensor(ref_trainer.losses), atol=1e-4, rtol=0)
    assert ours.is_gradient_checkpointing == checkpointing
    ref_state = ref.state_dict()
    for key, value in ours.state_dict().items():
        assert_close(value, ref_state[key], atol=1e-4, rtol=0, msg=lambda m: f"{key}: {m}")

    # the trained model saved: config.json with the weights; both libraries reload it with equal logits
    folder = tmp_path / "saved"
    our_trainer.model.save_pretrained(folder)
    assert (folder / "config.json").exists() and (folder / "model.safetensors").exists()
    inputs = {k: torch.stack([row[k] for row in data[:2]]) for k in ("input_ids", "attention_mask")}
    ref_name, module = CASES[name][:2]
    reloaded_ref = getattr(transformers, ref_name).from_pretrained(folder).eval()
    reloaded_ours = getattr(module, ref_name).from_pretrained(folder)
    expected = ref.eval()(**inputs).logits
    assert_close(reloaded_ref(**inputs).logits, expected, atol=1e-4, rtol=0)
    assert_close(reloaded_ours(**inputs).logits, expected, atol=1e-4, rtol=0)


def test_trainer_checkpoints_and_resume_with_tied_weights(tmp_path):
    """A tied-embedding model (lm_head = embed_tokens) under Trainer's default checkpointing, which writes the state
    dict of a model class it does not know with safetensors' save_file (refusing shared tensors): the checkpoints
    and save_model are written, the ties survive, and resuming from the step-2 checkpoint ends on the weights of
    the uninterrupted run."""
    cfg = transformers.LlamaConfig(**LLAMA, tie_word_embeddings=True)
    _, ours = model_cases.make_pair(tmp_path / "init", transformers.LlamaForCausalLM, our_llama.LlamaForCausalLM, cfg)
    fresh = our_llama.LlamaForCausalLM.from_pretrained(tmp_path / "init")
    assert ours.lm_head.weight is ours.model.embed_tokens.weight
    data = rows("llama-causal")
    trainer = train(ours, data, tmp_path / "run", False, save_strategy="steps", save_steps=2)
    assert (tmp_path / "run" / "checkpoint-2" / "model.safetensors").exists()
    trainer.save_model(str(tmp_path / "saved"))
    ours.config.save_pretrained(tmp_path / "saved")
    reloaded = our_llama.LlamaForCausalLM.from_pretrained(tmp_path / "saved")
    assert reloaded.lm_head.weight is reloaded.model.embed_tokens.weight
    state = ours.state_dict()
    assert state["lm_head.weight"] is not state["model.embed_tokens.weight"]  # a copy, equal: save_file takes it
    assert torch.equal(state["lm_head.weight"], state["model.embed_tokens.weight"])
    assert ours.state_dict(keep_vars=True)["lm_head.weight"] is ours.lm_head.weight
    for key, value in state.items():
        assert_close(reloaded.state_dict()[key], value, atol=0, rtol=0)
    resumed = train(fresh, data, tmp_path / "run", False, resume=str(tmp_path / "run" / "checkpoint-2"),
                    save_strategy="steps", save_steps=2)
    assert len(resumed.losses) == 2
    assert_close(torch.tensor(resumed.losses), torch.tensor(trainer.losses[2:]), atol=1e-5, rtol=0)
    for key, value in fresh.state_dict().items():
        assert_close(value, state[key], atol=1e-5, rtol=0, msg=lambda m: f"{key}: {m}")


def test_trainer_save_model_writes_the_weights(tmp_path):
    """Trainer.save_model calls save_pretrained only on transformers' own PreTrainedModel (an isinstance check in
    Trainer._save); for any other module it writes the state dict alone, as model.safetensors. The weights of an
    autoload model load from there; config.json comes from model.save_pretrained (docs/training.md)."""
    _, ours = pair(tmp_path / "init", "bert-seq-cls")
    trainer = train(ours, rows("bert-seq-cls"), tmp_path / "run", False)
    trainer.save_model(str(tmp_path / "saved"))
    assert (tmp_path / "saved" / "model.safetensors").exists()
    ours.config.save_pretrained(tmp_path / "saved")
    reloaded = our_bert.BertForSequenceClassification.from_pretrained(tmp_path / "saved")
    for key, value in ours.state_dict().items():
        assert_close(reloaded.state_dict()[key], value, atol=0, rtol=0)


def accelerate_step(model, data, seed=0):
    torch.manual_seed(seed)
    accelerator = Accelerator(cpu=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, eps=1e-3)  # see train()
    loader = torch.utils.data.DataLoader(data, batch_size=2, shuffle=False)
    model, optimizer, loader = accelerator.prepare(model.train(), optimizer, loader)
    losses = []
    for batch in loader:
        loss = model(**batch).loss
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return accelerator, model, losses


@pytest.mark.parametrize("safe", [True, False])
def test_accelerate_prepare_train_unwrap_save(tmp_path, safe):
    ref, ours = pair(tmp_path / "init", "llama-causal")
    data = rows("llama-causal")
    _, _, ref_losses = accelerate_step(ref, data)
    accelerator, model, losses = accelerate_step(ours, data)
    assert_close(torch.tensor(losses), torch.tensor(ref_losses), atol=1e-4, rtol=0)
    unwrapped = accelerator.unwrap_model(model)
    assert unwrapped is ours

    accelerator.save_model(model, tmp_path / "accelerate", safe_serialization=safe)
    unwrapped.config.save_pretrained(tmp_path / "accelerate")  # accelerate writes the weights only
    unwrapped.save_pretrained(tmp_path / "pretrained", is_main_process=accelerator.is_main_process,
                              save_function=accelerator.save, state_dict=accelerator.get_state_dict(model),
                              safe_serialization=safe)
    weights = "model.safetensors" if safe else "pytorch_model.bin"
    assert os.path.exists(tmp_path / "pretrained" / weights)
    inputs = {k: torch.stack([row[k] for row in data[:2]]) for k in ("input_ids", "attention_mask")}
    expected = ref.eval()(**inputs).logits
    for folder in ("accelerate", "pretrained"):
        for cls in (transformers.LlamaForCausalLM, our_llama.LlamaForCausalLM):
            reloaded = cls.from_pretrained(tmp_path / folder).eval()
            assert_close(reloaded(**inputs).logits, expected, atol=1e-4, rtol=0, msg=lambda m: f"{folder}: {m}")
