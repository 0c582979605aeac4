"""Shared torch building blocks of the model families (torch only: nothing here imports the rest of autoload).

- `norms`: RMSNorm (LayerNorm is torch's own `nn.LayerNorm`).
- `rope`: rotary embeddings, half-split (Llama family, every rope scaling type) and interleaved pairs (ChatGLM).
- `masks`: the one mask builder (causal or bidirectional, padding, sliding window, packed rows).
- `attention`: the one attention entry point (SDPA, or eager when weights are wanted; GQA, soft-capping, bias).
- `cache`: the KV caches (`DynamicCache`, `StaticCache`).
- `decoder`: what the Llama-style decoders share: positions and masks before the layers, the layer loop, the
  attention's tail (RoPE, cache update, attention, output projection).
- `encoder`: BERT's post-LayerNorm layer (self-/cross-attention, feed-forward), shared by BERT and RoBERTa.
- `heads`: what task heads share: argument defaults, kept positions, last-non-pad pooling, tuple-or-object.
- `losses`: causal-LM, token, sequence-classification and question-answering span losses.
- `outputs`: the output dataclasses; `activations`: activation functions by config name.
"""
