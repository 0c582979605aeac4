"""The two real GGUF models (tests/gguf_data.py) against transformers' gguf path and the `gguf` package:
config, tokenizer (ids and chat template), dequantized weights bit-identical to gguf's, greedy generations
equal in float32. transformers loads each file once per module (about 25 s and 55 s: it dequantizes
everything to float32 through numpy)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import transformers
from gguf.quants import dequantize as gguf_dequantize

import autoload
from autoload.quant import gguf_blocks
from autoload.quant.gguf import GGUFFile
from tests.gguf_data import qwen_gguf, smollm2_gguf

pytestmark = pytest.mark.slow
TEXTS = ["Hello world! How are you?", "你好，世界。晚上睡不着应该怎么办？", "<|im_start|>user\nhi<|im_end|>\n",
         "def f(x):\n    return x ** 2  # 平方"]
CHATS = [[{"role": "user", "content": "你好"}], [{"role": "user", "content": "What is 2 + 3?"}]]
NEW_TOKENS = 16


def _reference(path):
    """What transformers' gguf path gives: config, tokenizer, greedy continuations of CHATS (model then freed)."""
    folder, name = path.parent, path.name
    config = transformers.AutoConfig.from_pretrained(folder, gguf_file=name)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    outputs = []
    for chat in CHATS:
        ids = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=NEW_TOKENS, do_sample=False)
        outputs.append(out[0].tolist())
    return config, tokenizer, outputs


@pytest.fixture(scope="module", params=["smollm2", "qwen"])
def path(request):
    return smollm2_gguf() if request.param == "smollm2" else qwen_gguf()


@pytest.fixture(scope="module")
def case(path):
    return path, _reference(path)


def test_config_matches_transformers(case):
    path, (reference, _, _) = case
    config = autoload.AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    for field in ("model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                  "num_attention_heads", "num_key_value_heads", "max_position_embeddings", "rms_norm_eps",
                  "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id", "rope_parameters"):
        assert getattr(config, field) == getattr(reference, field), field


def test_tokenizer_matches_transformers(case):
    path, (_, reference, _) = case
    tokenizer = autoload.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    for text in TEXTS:
        assert tokenizer(text).input_ids == reference(text).input_ids, text
        ids = reference(text).input_ids
        assert tokenizer.decode(ids) == reference.decode(ids)
        assert tokenizer.decode(ids, skip_special_tokens=True) == reference.decode(ids, skip_special_tokens=True)
    for name in ("bos_token", "eos_token", "unk_token", "pad_token", "add_bos_token", "chat_template"):
        assert getattr(tokenizer, name) == getattr(reference, name), name
    for chat in CHATS:
        assert tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == \
            reference.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)


def test_dequantized_weights_bit_identical_to_gguf(path):
    """Two tensors of every ggml type in the file, decoded here and by gguf.quants.dequantize."""
    gf = GGUFFile(path)
    by_type: dict[int, list[str]] = {}
    for name, info in gf.tensors.items():
        by_type.setdefault(info.type_id, []).append(name)
    assert len(by_type) >= 3
    for type_id, names in by_type.items():
        for name in names[:2]:
            raw = gf.raw(name)
            expected = gguf_dequantize(raw.numpy(), type_id)
            got = gguf_blocks.dequantize(raw, type_id).numpy()
            assert np.array_equal(got.view(np.uint32), expected.reshape(got.shape).view(np.uint32)), name


def test_greedy_generation_matches_transformers_float32(case):
    path, (_, _, expected) = case
    start = time.perf_counter()
    model = autoload.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    print(f"\nautoload float32 load of {path.name}: {time.perf_counter() - start:.1f} s")
    tokenizer = autoload.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    for chat, reference in zip(CHATS, expected):
        ids = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        out = model.generate(**ids, max_new_tokens=NEW_TOKENS, do_sample=False)
        assert out[0].tolist() == reference, tokenizer.decode(out[0])


def test_quantized_default_load(path):
    """No dtype: the Linear layers hold the file's codes (bf16 matmuls; Q6_K re-quantized to 8 bits); logits close
    to the float32 model's (bf16 precision; with fp32 matmuls, exact on the layers' own weights, and within the
    re-quantization's error of the file's)."""
    start = time.perf_counter()
    model = autoload.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    print(f"\nautoload quantized load of {path.name}: {time.perf_counter() - start:.1f} s")
    floats = autoload.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    assert sum(getattr(m, "is_quantized", False) for m in model.modules()) >= 1
    ids = torch.tensor([[9707, 11, 1879, 0, 220, 109, 13]])
    with torch.no_grad():
        a, b = model(ids).logits, floats(ids).logits
        # bf16 activations through every int4 matmul (30 layers for SmolLM2): a relative error of a few percent
        assert float((a - b).norm() / b.norm()) < 0.2  # Qwen: ~0.12 with its 5/8-bit layers in bf16 too
        assert float((a.argmax(-1) == b.argmax(-1)).float().mean()) >= 0.7
        from autoload.quant.quantize import set_compute_dtype
        set_compute_dtype(model, None)
        c = model(ids).logits
        # fp32 matmuls: the file's own weights, except Q6_K's re-quantized ones (Qwen's ffn_down in 12 layers)
        print(f"{path.name}: logits' relative error with fp32 matmuls {float((c - b).norm() / b.norm()):.2e}")
        assert float((c - b).norm() / b.norm()) < 0.08  # Qwen 0.046 (its bf16 matmuls alone: 0.12); SmolLM2 4e-5
        for name, layer in model.named_modules():  # the float model on the quantized layers' own weights
            if getattr(layer, "is_quantized", False):
                floats.get_submodule(name).weight.data = layer.dequantize()
        b = floats(ids).logits
        torch.testing.assert_close(c, b, rtol=1e-3, atol=1e-3 * float(b.abs().max()))
