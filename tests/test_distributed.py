"""Tensor parallel (`from_pretrained(tp_plan="auto")`) and FSDP2 (`from_pretrained_fsdp`) on CPU with gloo.

Each spawn starts real ranks (torch.multiprocessing, a free 127.0.0.1 port); every rank also loads the checkpoint
the ordinary way, in one process, as the reference, and writes what it measured to a JSON file the tests read:
logits of every family equal the one-process ones (fp32, 1e-5), greedy ids are equal, the split parameters are
local slices, FSDP2's loss and gathered gradients equal one process's, and a rank's peak RSS stays below a bound.
Spawns are module-scoped and shared by the tests (each costs a few seconds of imports and process-group setup).
"""

from __future__ import annotations

import demo_repos  # scripts/demo_repos.py (conftest puts scripts/ on sys.path)
import pytest
import torch
import transformers

from autoload.distributed.tensor_parallel import TensorParallelError
from distributed_workers import CLI_NEW_TOKENS, CLI_PROMPT, fsdp_worker, spawn, tp_worker

TOL = 1e-5
TP_ONLY = ["chatglm"]  # checkpoints made by scripts/demo_repos.py, not from FAMILIES
FAMILIES = {  # name: (transformers config class, overrides, Auto class name)
    "llama": ("LlamaConfig", {"tie_word_embeddings": False}, "AutoModelForCausalLM"),
    "mistral": ("MistralConfig", {"sliding_window": 4}, "AutoModelForCausalLM"),
    "qwen2": ("Qwen2Config", {}, "AutoModelForCausalLM"),
    "qwen3": ("Qwen3Config", {"head_dim": 8, "tie_word_embeddings": True}, "AutoModelForCausalLM"),
    "gemma": ("GemmaConfig", {"head_dim": 8}, "AutoModelForCausalLM"),
    "gemma2": ("Gemma2Config", {"head_dim": 8, "sliding_window": 4}, "AutoModelForCausalLM"),
    "gemma3_text": ("Gemma3TextConfig", {"head_dim": 8, "sliding_window": 4}, "AutoModelForCausalLM"),
    "phi3": ("Phi3Config", {}, "AutoModelForCausalLM"),
    "glm": ("GlmConfig", {"head_dim": 8}, "AutoModelForCausalLM"),
    "glm4": ("Glm4Config", {"head_dim": 8}, "AutoModelForCausalLM"),
    "mixtral": ("MixtralConfig", {"num_local_experts": 4, "num_experts_per_tok": 2}, "AutoModelForCausalLM"),
    "qwen2_moe": ("Qwen2MoeConfig", {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16,
                                     "shared_expert_intermediate_size": 32}, "AutoModelForCausalLM"),
    "qwen3_moe": ("Qwen3MoeConfig", {"head_dim": 8, "num_experts": 4, "num_experts_per_tok": 2,
                                     "moe_intermediate_size": 16, "mlp_only_layers": [1]}, "AutoModelForCausalLM"),
    "gpt2": ("GPT2Config", {"n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64, "bos_token_id": 1,
                            "eos_token_id": 2}, "AutoModelForCausalLM"),
    "bert": ("BertConfig", {}, "AutoModelForMaskedLM"),
    "roberta": ("RobertaConfig", {}, "AutoModelForMaskedLM"),
}
DECODER_SIZES = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, bos_token_id=1,
                     eos_token_id=2)
FOUR_RANKS = ["llama", "qwen3"]  # BERT's local head counts are checked with 2 ranks


def _config(name: str):
    cls, overrides, _ = FAMILIES[name]
    if name == "gpt2":  # no dropout: the FSDP2 training step is compared with one process's
        return transformers.GPT2Config(vocab_size=96, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **overrides)
    if name in ("bert", "roberta"):
        return getattr(transformers, cls)(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, max_position_embeddings=64, hidden_dropout_prob=0.0,
                                       attention_probs_dropout_prob=0.0)
    return getattr(transformers, cls)(**{**DECODER_SIZES, **overrides})


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """{name: folder} of tiny random checkpoints saved by transformers, plus the failure-path ones."""
    root = tmp_path_factory.mktemp("dist")
    out = {}
    for i, name in enumerate(FAMILIES):
        torch.manual_seed(i)
        config = _config(name)
        model = getattr(transformers, FAMILIES[name][2]).from_config(config)
        model.save_pretrained(root / name)
        out[name] = str(root / name)
    torch.manual_seed(0)
    cases = {"one_kv_head": transformers.LlamaConfig(**{**DECODER_SIZES, "num_key_value_heads": 1}),
             "odd_vocab": transformers.Qwen3Config(**{**DECODER_SIZES, "vocab_size": 95, "head_dim": 8,
                                                      "tie_word_embeddings": True}),
             "llama_kv4": transformers.LlamaConfig(**{**DECODER_SIZES, "num_key_value_heads": 4}),
             "qwen3_kv4": transformers.Qwen3Config(**{**DECODER_SIZES, "num_key_value_heads": 4, "head_dim": 8,
                                                      "tie_word_embeddings": True}),
             # RSS: about 40 MB of fp32 weights, nearly all split (tied vocab-parallel embedding and head)
             "rss": transformers.LlamaConfig(vocab_size=4096, hidden_size=512, intermediate_size=2048,
                                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                             tie_word_embeddings=True)}
    for name, config in cases.items():
        transformers.AutoModelForCausalLM.from_config(config).save_pretrained(root / name)
        out[name] = str(root / name)
    demo_repos.write_chatglm2_tiny(root / "chatglm")  # chatglm2's config keys at a tiny size, fp16 weights
    out["chatglm"] = str(root / "chatglm")
    out["warm"] = out["qwen3"]  # loaded split once before the RSS measurement: torch's lazy imports and caches
    return out


# -- tensor parallel, 2 ranks -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tp2(folders, tmp_path_factory):
    return spawn(tp_worker, 2, folders, tmp_path_factory.mktemp("tp2"), [*FAMILIES, *TP_ONLY])


@pytest.mark.slow
@pytest.mark.parametrize("name", [*FAMILIES, *TP_ONLY])
def test_tp2_logits_and_greedy_equal_one_process(tp2, name):
    for rank, result in enumerate(tp2):
        entry = result[name]
        assert entry["logits"] <= TOL, f"{name} rank {rank}: logits differ by {entry['logits']}"
        if name not in ("bert", "roberta"):
            assert entry["greedy_equal"], f"{name} rank {rank}: greedy ids differ from one process"
        if "saved" in entry:  # full_state_dict + save_pretrained on rank 0, reloaded in one process
            assert entry["saved"] == 0.0, f"{name} rank {rank}: the saved model's logits differ by {entry['saved']}"


@pytest.mark.slow
@pytest.mark.parametrize("name", [*FAMILIES, *TP_ONLY])
def test_tp2_parameters_are_local_slices(tp2, name):
    split, full = tp2[0][name]["split"], tp2[0][name]["full"]
    assert split, f"{name}: nothing was split"
    for key, shape in split.items():  # one dimension halved, the others whole
        halved = [i for i, (a, b) in enumerate(zip(shape, full[key])) if a != b]
        assert len(halved) == 1 and 2 * shape[halved[0]] == full[key][halved[0]], f"{name}: {key} {shape} {full[key]}"
    encoder_q = "encoder.layer.0.attention.self.query.weight"
    layer = {"bert": encoder_q, "roberta": encoder_q, "gpt2": "transformer.h.0.mlp.c_fc.weight",
             "phi3": "model.layers.0.self_attn.qkv_proj.weight",
             "chatglm": "transformer.encoder.layers.0.self_attention.query_key_value.weight"}.get(name, "model.layers.0.self_attn.q_proj.weight")
    if name in ("bert", "roberta"):
        layer = f"{name}.{layer}"
    assert layer in split, f"{name}: {layer} was not split ({sorted(split)[:4]}...)"
    if name == "qwen3_moe":  # the dense MLP of an mlp_only layer splits; the stacked experts stay whole
        assert "model.layers.1.mlp.down_proj.weight" in split
        assert not any("experts" in key for key in split), sorted(split)
    if name == "qwen2_moe":  # the shared expert splits as a dense MLP
        assert "model.layers.0.mlp.shared_expert.down_proj.weight" in split


@pytest.mark.slow
def test_tp2_peak_rss_per_rank_below_full_checkpoint(tp2):
    for rank, result in enumerate(tp2):
        tp, one, size = result["rss_tp"], result["rss_one"], result["rss_checkpoint"]
        report = f"rank {rank}: {tp / 1e6:.1f} MB with 2 ranks, {one / 1e6:.1f} MB alone, " \
                 f"checkpoint {size / 1e6:.1f} MB"
        assert tp < 0.7 * size, report
        assert tp < 0.7 * one, report


# -- 4 ranks, and 2 of 4 ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_tp4_and_2_of_4_logits_and_greedy_equal_one_process(folders, tmp_path_factory):
    four = {"llama": folders["llama_kv4"], "qwen3": folders["qwen3_kv4"]}  # 4 kv heads
    results = spawn(tp_worker, 4, four, tmp_path_factory.mktemp("tp4"), [*FOUR_RANKS, "llama@2"])
    for rank, result in enumerate(results):
        for name in FOUR_RANKS:
            assert result[name]["logits"] <= TOL, f"{name} rank {rank}: {result[name]['logits']}"
            assert result[name].get("greedy_equal", True), f"{name} rank {rank}: greedy ids differ"
            q = result[name]["split"]
            key = next(k for k in q if k.endswith(("q_proj.weight", "query.weight")))
            assert q[key][0] * 4 == result[name]["full"][key][0], f"{name}: {key} {q[key]} is not a quarter"
        two = result["llama@2"]  # tp_size=2 of 4 ranks: halves, on a (dp, tp) mesh
        assert two["logits"] <= TOL and two["greedy_equal"], f"llama tp_size=2 of 4, rank {rank}: {two}"
        key = "model.layers.0.self_attn.q_proj.weight"
        assert two["split"][key][0] * 2 == two["full"][key][0], two["split"][key]


# -- failures -----------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_tp_sizes_that_do_not_divide_are_refused(tp2):
    for result in tp2:
        errors = result["errors"]
        for case, words in [("tp_size", "tp_size=3"), ("kv_heads", "num_key_value_heads=1"),
                            ("vocab", "vocabulary"), ("device_map", "device_map")]:
            assert errors[case] is not None, f"{case}: no error"
            kind, message = errors[case]
            assert kind == "TensorParallelError" and words in message, f"{case}: {kind}: {message}"


def test_tp_without_process_group_is_refused(folders, monkeypatch):
    import autoload
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(TensorParallelError, match="torchrun"):
        autoload.AutoModelForCausalLM.from_pretrained(folders["llama"], tp_plan="auto")


def test_tp_plan_must_be_auto_or_a_dict(folders):
    from autoload.distributed.tensor_parallel import resolve_plan
    import autoload
    model = autoload.AutoModelForCausalLM.from_pretrained(folders["llama"])
    with pytest.raises(TensorParallelError, match="'auto'"):
        resolve_plan(model, "yes")
    with pytest.raises(TensorParallelError, match="unknown"):
        resolve_plan(model, {"lm_head": "diagonal"})
    plan, _ = resolve_plan(model, "auto")
    assert plan["model.layers.1.self_attn.o_proj"] == "rowwise" and plan["lm_head"] == "colwise_gather_output"
    assert "model.embed_tokens" not in plan  # untied: the embedding stays replicated, as the reference
    with pytest.raises(ValueError, match="tp_size=... needs tp_plan"):
        autoload.AutoModelForCausalLM.from_pretrained(folders["llama"], tp_size=2)


# -- FSDP2 ----------------------------------------------------------------------------------------------------------

FSDP_NAMES = ["llama", "gpt2", "bert"]  # bert: a tied embedding kept in the root unit


@pytest.fixture(scope="module")
def fsdp2(folders, tmp_path_factory):
    chat = tmp_path_factory.mktemp("chat") / "tiny-chat"
    demo_repos.write_tiny_chat(chat)  # a Qwen2-shaped model with the real Qwen BPE ranks and a ChatML template
    results = spawn(fsdp_worker, 2, {**folders, "chat": str(chat)}, tmp_path_factory.mktemp("fsdp"), FSDP_NAMES)
    results[0]["chat_folder"] = str(chat)
    return results


@pytest.mark.slow
def test_fsdp2_step_equals_one_process(fsdp2):
    for rank, result in enumerate(fsdp2):
        for name in FSDP_NAMES:
            entry = result[name]
            assert entry["sharded"] == "DTensor" and entry["params"] == entry["ref_params"], (name, entry)
            assert entry["between"] == ["Parameter", "DTensor"], (name, entry["between"])
            assert entry["loss"] <= TOL, f"{name} rank {rank}: loss differs by {entry['loss']}"
            assert entry["grad"] <= TOL, f"{name} rank {rank}: gradients differ by {entry['grad']}"
            assert entry["saved"] == 0.0, f"{name} rank {rank}: the saved model's logits differ by {entry['saved']}"


@pytest.mark.slow
def test_tp_generate_entry_point_prints_the_one_process_text_on_rank_0(fsdp2, tmp_path_factory):
    import autoload
    folder = fsdp2[0]["chat_folder"]
    tokenizer = autoload.AutoTokenizer.from_pretrained(folder)
    model = autoload.AutoModelForCausalLM.from_pretrained(folder, dtype="float32")
    inputs = tokenizer(CLI_PROMPT, return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=CLI_NEW_TOKENS, do_sample=False)
    expected = CLI_PROMPT + tokenizer.decode(out[0, inputs["input_ids"].shape[1]:].tolist(), skip_special_tokens=True)
    assert fsdp2[0]["cli"] == {"code": 0, "printed": expected + "\n"}
    assert fsdp2[1]["cli"] == {"code": 0, "printed": ""}  # only rank 0 prints


# -- CUDA / nccl (run by the lead on a GPU machine) ----------------------------------------------------------------

@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tp_nccl_logits_and_greedy(folders, tmp_path_factory):
    world = min(2, torch.cuda.device_count())
    names = ["llama", "qwen3", "bert"]
    results = spawn(tp_worker, world, {k: v for k, v in folders.items() if k != "rss"},
                     tmp_path_factory.mktemp("nccl"), names, None, "nccl")
    for rank, result in enumerate(results):
        for name in names:
            assert result[name]["logits"] <= 1e-4, f"{name} rank {rank}: {result[name]['logits']}"
            assert result[name].get("greedy_equal", True), f"{name} rank {rank}: greedy ids differ"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.xfail(reason="open bug: on the lent H200 (torch 2.11, one GPU, nccl world 1) backward failed with "
                   "'setStorage: sizes [96, 32] ... out of bounds for storage of size 0' (a resharded [vocab, hidden] "
                   "root parameter); the gloo runs pass. The root then got reshard_after_forward=True explicitly "
                   "(torch's root rule off); now left to torch, unverified on a GPU", strict=False)
def test_fsdp2_nccl_step_equals_one_process(folders, tmp_path_factory):
    world, names = min(2, torch.cuda.device_count()), ["llama", "bert"]
    results = spawn(fsdp_worker, world, {k: v for k, v in folders.items() if k != "rss"},
                    tmp_path_factory.mktemp("fsdp-nccl"), names, "nccl")
    for rank, result in enumerate(results):
        for name in names:
            assert result[name]["loss"] <= 1e-4 and result[name]["grad"] <= 1e-4, (name, rank, result[name])
