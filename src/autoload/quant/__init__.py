"""Quantized weights: weight-only int4/int8 Linear layers on torch's kernels (`linear.py`), whole-model
quantization and autoload's saved format (`quantize.py`), GPTQ/AWQ checkpoints and the loading hooks (`gptq.py`)
and GGUF files (`gguf.py`). Nothing here is imported by `import autoload`."""
