"""GGUF loading on tiny files written by the `gguf` package (tests/gguf_files.py): block decoding against
`gguf.quants.dequantize`, config / tokenizer / logits against transformers' own gguf path on the same file,
the q/k un-permutation against the original weights, the quantized default load, and the failure paths.
The two real models: tests/test_gguf_models.py."""

from __future__ import annotations

import json
import sys

import gguf
import numpy as np
import pytest
import torch
import transformers
from gguf.quants import dequantize as gguf_dequantize
from gguf.quants import quantize

import autoload
from autoload.quant import gguf_blocks
from autoload.quant.gguf import GGUFDependencyError, GGUFError, GGUFFile
from tests.gguf_files import Q, random_blocks, to_tensor, vocab_size, write_gguf, write_model_gguf

BLOCK_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q8_0", "Q4_K", "Q5_K", "Q6_K"]
QUANTIZABLE = ["Q4_0", "Q4_1", "Q5_0", "Q8_0", "BF16"]  # the types gguf.quants.quantize implements


def _blocks(type_name: str, rows: int = 6, cols: int = 512, seed: int = 0) -> np.ndarray:
    if type_name in QUANTIZABLE:
        x = np.random.default_rng(seed).standard_normal((rows, cols)).astype(np.float32)
        return quantize(x, Q[type_name]).view(np.uint8)
    return random_blocks(type_name, rows, cols, seed)


@pytest.mark.parametrize("type_name", BLOCK_TYPES + ["F32", "F16", "BF16"])
def test_dequantize_is_bit_identical_to_gguf(type_name):
    if type_name in ("F32", "F16"):
        x = np.random.default_rng(1).standard_normal((6, 64)).astype(np.float32 if type_name == "F32" else np.float16)
        raw = x.view(np.uint8)
    else:
        raw = _blocks(type_name)
    expected = gguf_dequantize(raw, Q[type_name])
    got = gguf_blocks.dequantize(to_tensor(raw), Q[type_name].value).numpy()
    assert got.shape == expected.shape and got.dtype == np.float32
    assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))


@pytest.mark.parametrize("type_name", BLOCK_TYPES)
def test_affine_form(type_name):
    """W = scale * q + offset per group: exact for every type but Q6_K (d*sc*q can need 25 bits: 1 ulp)."""
    raw = _blocks(type_name, seed=2)
    affine = gguf_blocks.to_affine(to_tensor(raw), Q[type_name].value)
    expected = torch.from_numpy(gguf_dequantize(raw, Q[type_name]))
    g = affine.group_size
    assert affine.scale.shape == (raw.shape[0], expected.shape[1] // g) and affine.scale.dtype == torch.float32
    assert int(affine.q.min()) >= (-128 if type_name == "Q8_0" else 0)
    assert int(affine.q.max()) < (128 if type_name == "Q8_0" else 2 ** affine.bits)
    w = affine.scale.repeat_interleave(g, 1) * affine.q.float()
    if affine.offset is not None:
        w = w + affine.offset.repeat_interleave(g, 1)
    if type_name == "Q6_K":
        torch.testing.assert_close(w, expected, rtol=1e-6, atol=0)
    else:
        assert torch.equal(w, expected)
    if type_name in ("Q4_0", "Q4_1", "Q4_K"):
        assert affine.bits == 4 and g == 32 and affine.q.dtype == torch.uint8


def test_header_reader_matches_gguf_reader(tmp_path):
    """autoload's struct-based header reader against gguf.GGUFReader: every metadata value, every tensor's
    name, shape, type and bytes."""
    torch.manual_seed(0)
    path = write_model_gguf(tmp_path / "m.gguf", "llama", _tiny("llama").eval(), linear_type=Q.Q4_1,
                            embed_type=Q.Q8_0, tokenizer="llama")
    ours, theirs = GGUFFile(path), gguf.GGUFReader(path)
    assert set(ours.metadata) == set(theirs.fields) - {"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count"}
    for key, value in ours.metadata.items():
        expected = theirs.fields[key].contents()
        assert (value if isinstance(value, (str, int, float)) else list(value)) == pytest.approx(expected), key
    assert list(ours.tensors) == [t.name for t in theirs.tensors]
    for tensor in theirs.tensors:
        info = ours.tensors[tensor.name]
        assert info.shape == tuple(int(d) for d in reversed(tensor.shape)) and info.type_id == tensor.tensor_type
        assert np.array_equal(ours.raw(tensor.name).numpy().reshape(-1), tensor.data.view(np.uint8).reshape(-1))


# -- tiny models of each architecture, against transformers' gguf path ----------------------------------------
def _tiny(arch: str):
    common = dict(vocab_size=vocab_size("gpt2"), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    if arch == "llama":
        return transformers.LlamaForCausalLM(transformers.LlamaConfig(**common, tie_word_embeddings=False))
    if arch == "qwen2":
        return transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**common, tie_word_embeddings=True))
    if arch == "qwen3":
        # head_dim 128: transformers' gguf path ignores qwen3.attention.key_length and keeps its default 128
        return transformers.Qwen3ForCausalLM(transformers.Qwen3Config(**common, head_dim=128))
    if arch == "gemma2":
        return transformers.Gemma2ForCausalLM(transformers.Gemma2Config(**common, head_dim=8, sliding_window=16))
    if arch == "gemma3":
        return transformers.Gemma3ForCausalLM(transformers.Gemma3TextConfig(**common, head_dim=8,
                                                                            sliding_window=16))
    return transformers.Phi3ForCausalLM(transformers.Phi3Config(**common, pad_token_id=0))


CONFIG_FIELDS = ["model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                 "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps",
                 "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id", "sliding_window"]


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3"])
def test_architecture_matches_transformers_gguf(tmp_path, arch):
    torch.manual_seed(0)
    write_model_gguf(tmp_path / "m.gguf", arch, _tiny(arch).eval())
    ours = autoload.AutoConfig.from_pretrained(tmp_path, gguf_file="m.gguf")
    theirs = transformers.AutoConfig.from_pretrained(tmp_path, gguf_file="m.gguf")
    for field in CONFIG_FIELDS:  # every field the reference sets (its qwen2/phi3 configs have no head_dim)
        if getattr(theirs, field, None) is not None:
            assert getattr(ours, field, None) == getattr(theirs, field), field
    assert ours.rope_parameters == theirs.rope_parameters
    ids = torch.tensor([[5, 17, 42, 99, 3, 250, 7]])
    model = autoload.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf", dtype=torch.float32)
    reference = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf",
                                                                  dtype=torch.float32).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, reference(ids).logits, rtol=1e-4, atol=1e-4)


def test_llama_qk_unpermuted_and_mistral_name(tmp_path):
    """llama.cpp stores llama q/k rows permuted; loading gives the original weights back (not only agreement
    with transformers). A llama-arch file named Mistral loads as model_type mistral."""
    torch.manual_seed(0)
    original = _tiny("llama").eval()
    write_model_gguf(tmp_path / "m.gguf", "llama", original, name="Mistral Tiny")
    model = autoload.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf", dtype=torch.float32)
    assert model.config.model_type == "mistral"
    for key in ("model.layers.1.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight"):
        assert torch.equal(model.state_dict()[key], original.state_dict()[key])
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, original(ids).logits, rtol=1e-4, atol=1e-4)


def test_dtype_bfloat16_and_config_overrides(tmp_path):
    torch.manual_seed(0)
    write_model_gguf(tmp_path / "m.gguf", "qwen2", _tiny("qwen2").eval(), linear_type=Q.Q8_0)
    model = autoload.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf", dtype=torch.bfloat16,
                                                          rms_norm_eps=1e-5)
    assert model.dtype == torch.bfloat16 and model.config.rms_norm_eps == 1e-5
    reference = autoload.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf", dtype=torch.float32)
    key = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(model.state_dict()[key], reference.state_dict()[key].to(torch.bfloat16))


@pytest.mark.parametrize("linear_type", ["Q4_0", "Q4_1", "Q4_K", "Q5_0", "Q5_K", "Q8_0", "Q6_K"])
def test_quantized_default_load(tmp_path, linear_type):
    """No dtype: Linear weights in groups of 32 stay quantized with the file's own codes, scales and offsets
    (Int4Linear, bf16 matmuls; 5- and 8-bit codes split into nibbles, twice as wide); Q6_K's groups of 16 are
    re-quantized to 8-bit codes in groups of 32 (its bound: test_q6_k_as_8bit); weights equal the dequantized
    float32 model's, and logits match it (to bf16 precision with bf16 matmuls, to 1e-4 with fp32 ones)."""
    from autoload.quant.linear import Int4Linear
    torch.manual_seed(0)
    if linear_type.endswith("_K"):  # gguf cannot quantize k-quants: random blocks of the right shapes
        path = _with_random_blocks(tmp_path, linear_type)
    else:
        path = write_model_gguf(tmp_path / "m.gguf", "llama", _tiny("llama").eval(), linear_type=Q[linear_type])
    quantized = autoload.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name)
    floats = autoload.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name, dtype=torch.float32)
    for name in ("self_attn.q_proj", "self_attn.k_proj", "mlp.down_proj"):  # q/k: rows un-permuted too
        layer = quantized.model.layers[0].get_submodule(name)
        expected = floats.model.layers[0].get_submodule(name).weight
        assert isinstance(layer, Int4Linear) and layer.compute_dtype == torch.bfloat16
        assert layer.in_features == expected.shape[1] * (1 if linear_type.startswith("Q4") else 2)
        if linear_type == "Q6_K":  # re-quantized: within a quarter of the group's largest Q6_K step
            assert float((layer.dequantize() - expected).abs().max()) <= float(expected.abs().max()) / 64
        else:
            torch.testing.assert_close(layer.dequantize(), expected, rtol=1e-6, atol=1e-7)
    ids = torch.tensor([[5, 17, 42, 99, 3]])
    with torch.no_grad():
        a, b = quantized(ids).logits, floats(ids).logits
        tolerance = 2e-2  # bf16 activations in the int4 matmuls
        torch.testing.assert_close(a, b, rtol=tolerance, atol=tolerance * float(b.abs().max()))
        if linear_type != "Q6_K":  # to fp32 precision with fp32 matmuls (the kernel's slow fp32 variant)
            from autoload.quant.quantize import set_compute_dtype
            set_compute_dtype(quantized, None)
            torch.testing.assert_close(quantized(ids).logits, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))


def test_q6_k_as_8bit():
    """Q6_K's groups of 16 as 8-bit codes per 32: the half with the larger scale exact, the other within half a
    step (step = the larger |scale| / 4), both exact with equal scales; the clamped edge (equal magnitudes,
    opposite signs) within one step; all-zero scales give zeros."""
    from autoload.quant import gguf_blocks
    g = torch.Generator().manual_seed(0)
    rows, cols = 64, 256
    q = torch.randint(0, 64, (rows, cols), generator=g, dtype=torch.uint8)
    d = (torch.rand(rows, 1, generator=g) * 1e-2).half().float()  # fp16, as in the file
    sc = torch.randint(-128, 128, (rows, cols // 16), generator=g).float()
    sc[0] = 7.0  # equal scales: exact
    sc[1, 0::2], sc[1, 1::2] = 9.0, -9.0  # equal magnitudes, opposite signs (the clamped edge)
    sc[1, 2:4] = 0.0  # a group of zeros
    scale = d * sc
    w = (scale.repeat_interleave(16, dim=1) * (q.float() - 32)).reshape(rows, -1, 2, 16)
    codes, step, offset, group, bits = gguf_blocks.q6_k_as_8bit(q, scale)
    assert (group, bits, codes.dtype, tuple(step.shape)) == (32, 8, torch.uint8, (rows, cols // 32))
    back = (step.repeat_interleave(32, dim=1) * codes.float() + offset.repeat_interleave(32, dim=1))
    back = back.reshape(rows, -1, 2, 16)
    error = (back - w).abs()
    s = scale.reshape(rows, -1, 2)
    larger = s.abs().argmax(-1)
    bound = step.reshape(rows, -1, 1, 1)
    rounding = 1e-6 * (w.abs() + 256 * bound)  # d * sc * code can need more than float32's 24 bits, as in gguf
    exact_half = (error - rounding).gather(2, larger[..., None, None].expand(-1, -1, 1, 16))
    assert exact_half.max() <= 0
    assert (error[0] <= rounding[0]).all() and (error[1, 1] == 0).all()
    assert (error[2:] <= bound[2:] / 2 + rounding[2:]).all()
    assert (error[1] <= bound[1] + rounding[1]).all()
    top = s.gather(-1, larger[..., None])  # the larger half's codes are 4 * (q - 32) from 128 (127 if negative)
    codes4 = codes.reshape(rows, -1, 2, 16).gather(2, larger[..., None, None].expand(-1, -1, 1, 16)).squeeze(2)
    q4 = q.reshape(rows, -1, 2, 16).gather(2, larger[..., None, None].expand(-1, -1, 1, 16)).squeeze(2).float()
    assert torch.equal(codes4.float()[2:], torch.where(top[2:] < 0, 127 - 4 * (q4[2:] - 32), 128 + 4 * (q4[2:] - 32)))


@pytest.mark.parametrize("arch, embed_type", [("qwen2", "Q5_0"), ("llama", "Q8_0")])
def test_block_embeddings_stay_in_the_file(tmp_path, arch, embed_type):
    """Default load of a file whose token embeddings are in blocks: a GGUFEmbedding decodes the looked-up rows
    from the memory map (equal to the dequantized table); a head tied to them (qwen2 here) becomes its own
    Int4Linear on the same codes; state_dict() holds the decoded table, so the model saves and reloads;
    .to(bfloat16) gives bf16 rows."""
    from autoload.quant.gguf_load import GGUFEmbedding
    from autoload.quant.linear import Int4Linear
    torch.manual_seed(0)
    path = write_model_gguf(tmp_path / "m.gguf", arch, _tiny(arch).eval(), linear_type=Q.Q8_0,
                            embed_type=Q[embed_type])
    model = autoload.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name)
    floats = autoload.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name, dtype=torch.float32)
    embed = model.get_input_embeddings()
    assert isinstance(embed, GGUFEmbedding) and isinstance(model.lm_head, Int4Linear)
    assert model.config.tie_word_embeddings is False and not list(embed.parameters())
    table = floats.get_input_embeddings().weight
    assert torch.equal(embed.weight, table)
    ids = torch.tensor([[5, 17, 42, 99, 3], [0, 1, 2, 3, 4]])
    assert torch.equal(embed(ids), table[ids])
    torch.testing.assert_close(model.lm_head.dequantize(), floats.lm_head.weight, rtol=1e-6, atol=1e-7)
    with torch.no_grad():
        before, expected = model(ids).logits, floats(ids).logits
    torch.testing.assert_close(before, expected, rtol=2e-2, atol=2e-2 * float(expected.abs().max()))
    assert torch.equal(model.state_dict()["model.embed_tokens.weight"], table)
    assert "model.embed_tokens.weight" not in model.state_dict(keep_vars=True)
    model.save_pretrained(tmp_path / "saved")
    loaded = autoload.AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    assert type(loaded.get_input_embeddings()) is torch.nn.Embedding
    assert loaded.lm_head.compute_dtype == torch.bfloat16  # saved with the layer
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, before)
    assert model.to(torch.bfloat16).get_input_embeddings()(ids).dtype == torch.bfloat16


def test_quantized_default_saves_and_reloads(tmp_path):
    """A default GGUF load (Q5_0: nibble-split Int4Linear layers) saved in autoload's quantized format and read
    back: the same layers, weights and logits."""
    torch.manual_seed(0)
    write_model_gguf(tmp_path / "m.gguf", "qwen2", _tiny("qwen2").eval(), linear_type=Q.Q5_0)
    model = autoload.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf")
    ids = torch.tensor([[5, 17, 42, 99, 3]])
    with torch.no_grad():
        before = model(ids).logits
    model.save_pretrained(tmp_path / "saved")
    loaded = autoload.AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    layer = loaded.model.layers[1].mlp.up_proj
    torch.testing.assert_close(layer.dequantize(), model.model.layers[1].mlp.up_proj.dequantize(), rtol=0, atol=0)
    assert layer.compute_dtype == torch.bfloat16  # the layers' compute dtype is saved with them
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, before)
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    name = next(iter(config["quantization_config"]["layers"]))
    config["quantization_config"]["layers"][name]["compute_dtype"] = "float8"  # a hostile or damaged config
    (tmp_path / "saved" / "config.json").write_text(json.dumps(config))
    from autoload.quant.gptq import QuantizationConfigError
    with pytest.raises(QuantizationConfigError, match="compute_dtype 'float8'"):
        autoload.AutoModelForCausalLM.from_pretrained(tmp_path / "saved")


def _with_random_blocks(tmp_path, type_name: str):
    """A llama file whose 2-D projection weights are random blocks of a k-quant (rows of 256 values)."""
    cfg = dict(hidden=256, ffn=512, heads=4, kv=2, layers=1, vocab=vocab_size("gpt2"))
    meta = {"llama.context_length": 64, "llama.block_count": 1, "llama.feed_forward_length": cfg["ffn"],
            "llama.embedding_length": cfg["hidden"], "llama.attention.head_count": 4,
            "llama.attention.head_count_kv": 2, "llama.attention.layer_norm_rms_epsilon": 1e-5,
            "llama.rope.freq_base": 10000.0, "llama.rope.dimension_count": 64}
    rng = np.random.default_rng(0)
    shapes = {"attn_q": (256, 256), "attn_k": (128, 256), "attn_v": (128, 256), "attn_output": (256, 256),
              "ffn_gate": (512, 256), "ffn_up": (512, 256), "ffn_down": (256, 512)}
    tensors = {f"blk.0.{n}.weight": (random_blocks(type_name, *s, seed=i), Q[type_name])
               for i, (n, s) in enumerate(shapes.items())}
    tensors.update({"blk.0.attn_norm.weight": (np.ones(256, np.float32), Q.F32),
                    "blk.0.ffn_norm.weight": (np.ones(256, np.float32), Q.F32),
                    "output_norm.weight": (np.ones(256, np.float32), Q.F32),
                    "token_embd.weight": (rng.standard_normal((cfg["vocab"], 256)).astype(np.float32), Q.F32)})
    return write_gguf(tmp_path / "k.gguf", "llama", meta, tensors)


# -- tokenizers -------------------------------------------------------------------------------------------------
TEXTS = ["hello world", " hello  world\n", "hi 你好 <|im_end|> world<think>", "<s>hello</s> wor", "héllo ll"]


@pytest.mark.parametrize("arch,kind,add_bos", [("llama", "gpt2", None), ("qwen2", "gpt2", None),
                                               ("llama", "llama", None), ("llama", "llama", False),
                                               ("gemma2", "llama", None), ("phi3", "llama", None)])
def test_tokenizer_matches_transformers(tmp_path, arch, kind, add_bos):
    meta = {f"{arch}.block_count": 1, f"{arch}.embedding_length": 8, f"{arch}.attention.head_count": 1}
    write_gguf(tmp_path / "t.gguf", arch, meta, {"output_norm.weight": (np.ones(8, np.float32), Q.F32)},
               tokenizer=kind, add_bos=add_bos)
    ours = autoload.AutoTokenizer.from_pretrained(tmp_path, gguf_file="t.gguf")
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path, gguf_file="t.gguf")
    for text in TEXTS:
        assert ours(text).input_ids == theirs(text).input_ids, text
        assert ours.decode(ours(text).input_ids) == theirs.decode(theirs(text).input_ids), text
    for name in ("bos_token", "eos_token", "unk_token", "pad_token", "add_bos_token", "chat_template"):
        assert getattr(ours, name) == getattr(theirs, name), name
    messages = [{"role": "user", "content": "你好 hello"}]
    assert ours.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == \
        theirs.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ours.save_pretrained(tmp_path / "saved")  # an ordinary tokenizer folder from then on
    again = autoload.AutoTokenizer.from_pretrained(tmp_path / "saved")
    assert [again(t).input_ids for t in TEXTS] == [theirs(t).input_ids for t in TEXTS]


# -- failure paths ----------------------------------------------------------------------------------------------
@pytest.fixture()
def small_file(tmp_path):
    torch.manual_seed(0)
    return write_model_gguf(tmp_path / "m.gguf", "qwen2", _tiny("qwen2").eval(), linear_type=Q.Q8_0)


def _files(folder):
    return sorted(p.name for p in folder.rglob("*"))


def test_truncated_file(small_file, tmp_path):
    data = small_file.read_bytes()
    for size, where in ((len(data) - 100, "runs past the end"), (200, "truncated or corrupt")):
        (tmp_path / "cut.gguf").write_bytes(data[:size])
        before = _files(tmp_path)
        with pytest.raises(GGUFError, match=where) as err:
            autoload.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="cut.gguf", dtype=torch.float32)
        assert "cut.gguf" in str(err.value) and _files(tmp_path) == before


def test_bad_magic_unknown_arch_unsupported_type(small_file, tmp_path):
    (tmp_path / "bad.gguf").write_bytes(b"GGML" + small_file.read_bytes()[4:])
    with pytest.raises(GGUFError, match="not a GGUF file.*magic"):
        autoload.AutoConfig.from_pretrained(tmp_path, gguf_file="bad.gguf")
    write_gguf(tmp_path / "arch.gguf", "rwkv7", {"rwkv7.block_count": 1}, {})
    with pytest.raises(GGUFError, match="arch.gguf.*general.architecture is 'rwkv7'"):
        autoload.AutoConfig.from_pretrained(tmp_path, gguf_file="arch.gguf")
    meta = {"llama.block_count": 1, "llama.embedding_length": 256, "llama.attention.head_count": 1}
    q2k = np.zeros((4, gguf.GGML_QUANT_SIZES[Q.Q2_K][1]), np.uint8)
    write_gguf(tmp_path / "q2.gguf", "llama", meta, {"output.weight": (q2k, Q.Q2_K)})
    with pytest.raises(GGUFError, match="q2.gguf.*'output.weight'.*Q2_K"):
        autoload.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="q2.gguf", dtype=torch.float32)
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob(".*"))


def test_missing_file_and_missing_package(small_file, tmp_path, monkeypatch):
    with pytest.raises(OSError, match="nope.gguf"):
        autoload.AutoConfig.from_pretrained(tmp_path, gguf_file="nope.gguf")
    monkeypatch.setitem(sys.modules, "gguf", None)  # `import gguf` now raises ImportError
    with pytest.raises(GGUFDependencyError, match=r"pip install 'autoload\[gguf\]'"):
        GGUFFile(small_file)


def test_repo_id_through_the_hub(tmp_path, hub, hub_root, cache_dir):
    """A repo id: the .gguf file is downloaded through the cache like any other file, then read in place."""
    from conftest import write_repo
    torch.manual_seed(0)
    path = write_model_gguf(tmp_path / "m.Q8_0.gguf", "qwen2", _tiny("qwen2").eval(), linear_type=Q.Q8_0)
    write_repo(hub_root / "org" / "tiny-gguf", {"m.Q8_0.gguf": path.read_bytes(), "README.md": "tiny"})
    config = autoload.AutoConfig.from_pretrained("org/tiny-gguf", gguf_file="m.Q8_0.gguf")
    tokenizer = autoload.AutoTokenizer.from_pretrained("org/tiny-gguf", gguf_file="m.Q8_0.gguf")
    model = autoload.AutoModelForCausalLM.from_pretrained("org/tiny-gguf", gguf_file="m.Q8_0.gguf",
                                                          dtype=torch.float32)
    local = autoload.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.Q8_0.gguf", dtype=torch.float32)
    assert config.model_type == "qwen2" and tokenizer.eos_token == "<|im_end|>"
    assert str(cache_dir) in model.config.name_or_path or any(cache_dir.rglob("m.Q8_0.gguf"))
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, local(ids).logits)


def test_dequantized_model_saves_and_reloads(tmp_path):
    """Unlike the reference's gguf path, a dequantized model saves as an ordinary checkpoint."""
    torch.manual_seed(0)
    write_model_gguf(tmp_path / "m.gguf", "llama", _tiny("llama").eval(), linear_type=Q.Q4_0)
    model = autoload.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf", dtype=torch.float32)
    model.save_pretrained(tmp_path / "saved")
    again = autoload.AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    ids = torch.tensor([[3, 1, 4, 1, 5]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again(ids).logits)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("linear_type", ["Q4_0", "Q8_0"])
def test_cuda_quantized_and_dequantized(tmp_path, linear_type):
    """On a GPU: the default load (Int4Linear packed for CUDA; Q8_0's codes split into nibbles; the Q8_0 embedding
    table left on the CPU, its rows sent to the GPU) and the bf16 dequantized load against the float32 CPU
    model."""
    torch.manual_seed(0)
    write_model_gguf(tmp_path / "m.gguf", "llama", _tiny("llama").eval(), linear_type=Q[linear_type],
                     embed_type=Q.Q8_0)
    cpu = autoload.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf", dtype=torch.float32)
    ids = torch.tensor([[5, 17, 42, 99, 3]])
    with torch.no_grad():
        expected = cpu(ids).logits
        for options in ({}, {"dtype": torch.bfloat16}):
            gpu = autoload.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf", device="cuda", **options)
            got = gpu(ids.cuda()).logits.float().cpu()
            torch.testing.assert_close(got, expected, rtol=0, atol=0.05 * float(expected.abs().max()))


def test_requantize_at_load(tmp_path):
    """dtype= with quantize="int8": the dequantized weights re-quantized per channel on torch's int8 kernel."""
    from autoload.quant.linear import Int8Linear
    torch.manual_seed(0)
    write_model_gguf(tmp_path / "m.gguf", "qwen2", _tiny("qwen2").eval(), linear_type=Q.Q5_0)
    floats = autoload.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf", dtype=torch.float32)
    model = autoload.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf", dtype=torch.float32,
                                                          quantize="int8")
    layer = model.model.layers[1].mlp.up_proj
    assert isinstance(layer, Int8Linear) and layer.group_size is None
    weight = floats.model.layers[1].mlp.up_proj.weight.detach()
    torch.testing.assert_close(layer.dequantize(), weight, rtol=0, atol=float(weight.abs().max()) / 127)
