"""autoload on torch.distributed: tensor parallel loading (`from_pretrained(..., tp_plan="auto")`, see
`tensor_parallel.py`, plans per family in `plans.py`) and FSDP2 training (`from_pretrained_fsdp`, `fsdp.py`).
`torchrun ... -m autoload.cli.tp_generate` is the entry point for tensor-parallel generation and chat."""

from .fsdp import from_pretrained_fsdp
from .tensor_parallel import TensorParallelError, full_state_dict

__all__ = ["TensorParallelError", "from_pretrained_fsdp", "full_state_dict"]
