"""ChatGLM: autoload's native chatglm vs transformers' GLM port, on the same random weights.

    python bench/chatglm.py [--repeat 3] [--new-tokens 64] [--quick]

transformers cannot run the chatglm repos' own code any more (5.x), so the reference is its `GlmForCausalLM`, the
port of the same architecture. A ~140M random GlmForCausalLM (hidden 768, 12 layers, 12 heads of 64, 2 key/value
groups, ffn 2048, vocab 65024: chatglm2's vocabulary, rope_ratio 1) is made once with transformers and also written
in the chatglm checkpoint layout (fused query_key_value, `transformer.*` names, config.json with the repos' keys) under
.bench/checkpoints/. Each library runs in a fresh process: load time (from_pretrained to a ready model), then
greedy generate at batch 1 (prompt 32, `--new-tokens` new tokens, EOS off; one warm-up, median of `--repeat`);
autoload also with compile=True (its warm-up, which compiles, reported apart). Ratios are transformers time /
autoload time. The generated ids of the libraries are compared.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# the shared child runner (and checkpoint helpers) come from bench/load.py, imported as the package `bench`
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.load import ROOT, run  # noqa: E402

SHAPE = dict(vocab_size=65024, hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12,
             num_key_value_heads=2, head_dim=64, attention_bias=True, max_position_embeddings=32768,
             rms_norm_eps=1e-5, pad_token_id=0, eos_token_id=2)

MAKE = """
import json, torch, transformers
from safetensors.torch import save_file
torch.manual_seed(0)
shape = {shape!r}
model = transformers.GlmForCausalLM(transformers.GlmConfig(**shape))
model.save_pretrained({glm!r})
sd, out = model.state_dict(), {{}}
out["transformer.embedding.word_embeddings.weight"] = sd["model.embed_tokens.weight"]
for i in range(shape["num_hidden_layers"]):
    p, q = f"model.layers.{{i}}.", f"transformer.encoder.layers.{{i}}."
    for kind in ("weight", "bias"):
        out[q + f"self_attention.query_key_value.{{kind}}"] = torch.cat(
            [sd[p + f"self_attn.{{n}}_proj.{{kind}}"] for n in "qkv"])
    out[q + "self_attention.dense.weight"] = sd[p + "self_attn.o_proj.weight"]
    out[q + "input_layernorm.weight"] = sd[p + "input_layernorm.weight"]
    out[q + "post_attention_layernorm.weight"] = sd[p + "post_attention_layernorm.weight"]
    out[q + "mlp.dense_h_to_4h.weight"] = sd[p + "mlp.gate_up_proj.weight"]
    out[q + "mlp.dense_4h_to_h.weight"] = sd[p + "mlp.down_proj.weight"]
out["transformer.encoder.final_layernorm.weight"] = sd["model.norm.weight"]
out["transformer.output_layer.weight"] = sd["lm_head.weight"]
import os
os.makedirs({chatglm!r}, exist_ok=True)
save_file({{k: v.contiguous() for k, v in out.items()}}, {chatglm!r} + "/model.safetensors", metadata={{"format": "pt"}})
config = dict(model_type="chatglm", architectures=["ChatGLMModel"], num_layers=shape["num_hidden_layers"],
              padded_vocab_size=shape["vocab_size"], hidden_size=shape["hidden_size"],
              ffn_hidden_size=shape["intermediate_size"], kv_channels=shape["head_dim"],
              num_attention_heads=shape["num_attention_heads"], multi_query_attention=True,
              multi_query_group_num=shape["num_key_value_heads"], add_qkv_bias=True, seq_length=32768,
              layernorm_epsilon=shape["rms_norm_eps"], rmsnorm=True, post_layer_norm=True, torch_dtype="float32", eos_token_id=2,
              pad_token_id=0, rope_ratio_meaning="base")
json.dump(config, open({chatglm!r} + "/config.json", "w"), indent=2)
"""

CHILD = """
import json, statistics, time, warnings, torch
warnings.simplefilter("ignore")
t = time.perf_counter()
if {lib!r}.startswith("autoload"):
    from autoload import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained({chatglm!r})
    extra = dict(compile=True) if {lib!r} == "autoload-compiled" else {{}}
else:
    import transformers
    transformers.logging.set_verbosity_error()
    model = transformers.AutoModelForCausalLM.from_pretrained({glm!r}, dtype=torch.float32)
    extra = {{}}
load = time.perf_counter() - t
ids = torch.randint(5, 60000, (1, 32), generator=torch.Generator().manual_seed(0))
times = []
for i in range({repeat} + 1):
    t = time.perf_counter()
    out = model.generate(ids, max_new_tokens={new}, do_sample=False, eos_token_id=None, pad_token_id=None, **extra)
    times.append(time.perf_counter() - t)
print(json.dumps(dict(load=load, warmup=times[0], seconds=statistics.median(times[1:]), ids=out[0].tolist())))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="2 layers, 1 timed run, 16 new tokens")
    args = parser.parse_args()
    repeat, new = (1, 16) if args.quick else (args.repeat, args.new_tokens)
    suffix = "-quick" if args.quick else ""
    glm, chatglm = (ROOT / ".bench" / "checkpoints" / f"{name}{suffix}" for name in ("glm-140m", "chatglm-140m"))
    if not (chatglm / "config.json").exists():
        shape = dict(SHAPE, num_hidden_layers=2) if args.quick else SHAPE
        print(f"making {glm} and {chatglm} with transformers ...", flush=True)
        run(MAKE.format(shape=shape, glm=str(glm), chatglm=str(chatglm)))
    results = {lib: json.loads(run(CHILD.format(lib=lib, glm=str(glm), chatglm=str(chatglm), repeat=repeat,
                                                new=new)))
               for lib in ("transformers", "autoload", "autoload-compiled")}
    import torch
    print(f"torch {torch.__version__} | {os.cpu_count()} CPUs | chatglm-shaped {chatglm.name}, fp32 | greedy b1, "
          f"prompt 32 + {new} new tokens, median of {repeat}")
    print(f"\n{'library':28} {'load s':>7} {'tokens/s':>9} {'warm-up s':>10}")
    for lib, r in results.items():
        name = {"transformers": "transformers GlmForCausalLM", "autoload": "autoload chatglm",
                "autoload-compiled": "autoload chatglm compile=True"}[lib]
        print(f"{name:28} {r['load']:7.2f} {new / r['seconds']:9.1f} {r['warmup']:10.1f}")
    ref = results["transformers"]
    for lib in ("autoload", "autoload-compiled"):
        r = results[lib]
        print(f"ratio {lib:22} {ref['load'] / r['load']:6.2f}x {ref['seconds'] / r['seconds']:8.2f}x")
    print()
    for lib in ("autoload", "autoload-compiled"):
        ids, ref_ids = results[lib]["ids"], ref["ids"]
        first = next((i for i, (a, b) in enumerate(zip(ids, ref_ids)) if a != b), None)
        print(f"greedy ids of {lib} vs transformers' GLM: " + ("identical" if first is None else
              f"first differ at position {first} of {len(ids)} (near-tied logits of random weights)"))


if __name__ == "__main__":
    main()
