"""Tensor-parallel plans, one row per family: which module of a checkpoint is split how over the ranks.

The styles are the reference's names (transformers' `base_model_tp_plan` / `_tp_plan`), mapped onto
`torch.distributed.tensor.parallel` in `tensor_parallel.py`:

    style                   weight split       input          output
    colwise                 rows (out)         replicated     each rank's slice of the features (local heads)
    rowwise                 columns (in)       local slice    all-reduced sum, replicated
    colwise_gather_output   rows (out)         replicated     all-gathered, replicated (fused q|k|v, gate|up)
    rowwise_split_input     columns (in)       replicated     all-reduced sum, replicated (cut locally first)
    vocab_embedding         rows (vocab)       token ids      all-reduced, replicated (each rank its vocab range)

`base` patterns are relative to the backbone (`*` matches one path element: a layer index), `head` patterns to
the task model (`lm_head`); `local_heads` names the attributes of attention modules that count heads and must be
divided by the tensor-parallel size (modules that reshape with an explicit head count, BERT's). An LM head tied
to the input embedding is split together with it (`vocab_embedding`), so the two stay one tensor.

No torch here: the table is data.
"""

from __future__ import annotations

# Llama and everything built like it: q/k/v and gate/up split by output features (each rank its heads and its
# slice of the MLP), o/down by input features (one all-reduce each); qk norms act per head and stay replicated.
DECODER = {
    "layers.*.self_attn.q_proj": "colwise",
    "layers.*.self_attn.k_proj": "colwise",
    "layers.*.self_attn.v_proj": "colwise",
    "layers.*.self_attn.o_proj": "rowwise",
    "layers.*.mlp.gate_proj": "colwise",
    "layers.*.mlp.up_proj": "colwise",
    "layers.*.mlp.down_proj": "rowwise",
}
LM_HEAD = {"lm_head": "colwise_gather_output"}

# Mixture-of-experts members: attention as above; the dense MLP layers (qwen2_moe's mlp_only_layers) and the
# shared expert split too; the stacked experts and the router stay replicated on every rank.
MOE = {**DECODER,
       "layers.*.mlp.shared_expert.gate_proj": "colwise",
       "layers.*.mlp.shared_expert.up_proj": "colwise",
       "layers.*.mlp.shared_expert.down_proj": "rowwise"}

# Fused projections (Phi-3's qkv_proj and gate_up_proj, GLM's gate_up_proj): a contiguous row slice of the fused
# weight mixes q/k/v parts, so the output is gathered (the model then splits it as usual) and the projection
# after it cuts its replicated input itself. Weights are split; attention runs with every head on every rank.
PHI3 = {
    "layers.*.self_attn.qkv_proj": "colwise_gather_output",
    "layers.*.self_attn.o_proj": "rowwise_split_input",
    "layers.*.mlp.gate_up_proj": "colwise_gather_output",
    "layers.*.mlp.down_proj": "rowwise_split_input",
}
GLM = {**{k: v for k, v in DECODER.items() if "mlp" not in k},
       "layers.*.mlp.gate_up_proj": "colwise_gather_output",
       "layers.*.mlp.down_proj": "rowwise_split_input"}

# ChatGLM2/3, GLM-4 (remote-code layout, no plan in the reference): fused query_key_value and dense_h_to_4h as
# Phi-3's; the output layer lives in the backbone.
CHATGLM = {
    "encoder.layers.*.self_attention.query_key_value": "colwise_gather_output",
    "encoder.layers.*.self_attention.dense": "rowwise_split_input",
    "encoder.layers.*.mlp.dense_h_to_4h": "colwise_gather_output",
    "encoder.layers.*.mlp.dense_4h_to_h": "rowwise_split_input",
    "output_layer": "colwise_gather_output",
}

# GPT-2 (no plan in the reference): fused c_attn gathered as Phi-3's qkv, the MLP split as Llama's.
GPT2 = {
    "h.*.attn.c_attn": "colwise_gather_output",
    "h.*.attn.c_proj": "rowwise_split_input",
    "h.*.mlp.c_fc": "colwise",
    "h.*.mlp.c_proj": "rowwise",
}

# BERT, RoBERTa / XLM-R: the encoders built on nn/encoder.py (no plan in the reference): self-attention and the feed-forward
# split as Llama's; each attention module's head count becomes the local one.
BERT = {
    "encoder.layer.*.attention.self.query": "colwise",
    "encoder.layer.*.attention.self.key": "colwise",
    "encoder.layer.*.attention.self.value": "colwise",
    "encoder.layer.*.attention.output.dense": "rowwise",
    "encoder.layer.*.intermediate.dense": "colwise",
    "encoder.layer.*.output.dense": "rowwise",
}

# model_type -> (base plan, head plan, local head-count attributes {module pattern: (attribute, ...)})
PLANS: dict[str, tuple[dict, dict, dict]] = {
    "llama": (DECODER, LM_HEAD, {}),
    "mistral": (DECODER, LM_HEAD, {}),
    "qwen2": (DECODER, LM_HEAD, {}),
    "qwen3": (DECODER, LM_HEAD, {}),
    "mixtral": (MOE, LM_HEAD, {}),
    "qwen2_moe": (MOE, LM_HEAD, {}),
    "qwen3_moe": (MOE, LM_HEAD, {}),
    "gemma": (DECODER, LM_HEAD, {}),
    "gemma2": (DECODER, LM_HEAD, {}),
    "gemma3_text": (DECODER, LM_HEAD, {}),
    "phi3": (PHI3, LM_HEAD, {}),
    "glm": (GLM, LM_HEAD, {}),
    "glm4": (GLM, LM_HEAD, {}),
    "chatglm": (CHATGLM, {}, {}),
    "gpt2": (GPT2, LM_HEAD, {}),
    "bert": (BERT, {}, {"encoder.layer.*.attention.self": ("num_heads",)}),
    "roberta": (BERT, {}, {"encoder.layer.*.attention.self": ("num_heads",)}),
    "xlm-roberta": (BERT, {}, {"encoder.layer.*.attention.self": ("num_heads",)}),
}
