"""Quantized weights: weight-only int4/int8 Linear layers on torch's kernels (`linear.py`), GPTQ/AWQ checkpoints
(`gptq.py`) and GGUF files (`gguf.py`). Nothing here is imported by `import autoload`."""
