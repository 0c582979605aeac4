"""Sparse mixture-of-experts blocks of the Llama-family MoE decoders (mixtral, qwen2_moe, qwen3_moe): the top-k
router, SwiGLU experts stored as stacked 3-D tensors and run grouped, the auxiliary load-balancing loss, and the
two checkpoint layouts. The config hooks it reads: `models/configs.py`, `_MoeConfig`.

Routing, for each token x of size C: logits = gate(x) (E,); p = softmax(logits) in fp32; the k largest p and
their experts; with `normalize_top_k` (Mixtral always, Qwen with `norm_topk_prob`) the k weights are divided by
their sum. Output: sum_k w_k * expert_k(x), expert_e(x) = down_e(act(gate_e(x)) * up_e(x)); Qwen2-MoE adds
sigmoid(shared_expert_gate(x)) * shared_expert(x).

Grouped experts: the N*k (token, expert) pairs are sorted by expert and each expert runs once, on its contiguous
rows: `torch.nn.functional.grouped_mm` on CUDA in bf16 (no host sync), else one matmul pair per expert that got
rows (the counts read once). Under torch.compile (inference), a decode step's few (token, expert) pairs (at most
GATHER_PAIRS) each take their expert's weights by index (`gathered_experts`: fixed shapes, no host sync; inductor
fuses the pick into the products, so only the chosen experts' weights are read); more pairs run the grouped
computation as one opaque custom op with a fixed output shape, run eagerly inside the graph.

Checkpoint layouts. In memory (and in "fused" checkpoints, as transformers 5 holds them and writes them with
save_original_format=False): `mlp.gate.weight` (E, C), `mlp.experts.gate_up_proj` (E, 2I, C), gate rows first,
`mlp.experts.down_proj` (E, C, I). One module per expert, as the hub's files and transformers' save_pretrained
have them: `mlp.experts.N.{gate_proj,up_proj,down_proj}.weight` (Mixtral: `block_sparse_moe.experts.N.{w1,w3,w2}`
and `block_sparse_moe.gate`); `stack_experts` folds those into the stacked tensors while loading and
`unstack_experts` writes them back on save (`config.expert_keys` names them).

Shapes: N tokens (B*T), C hidden size, E experts, k experts per token, I expert size, S = N*k pairs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .activations import get_activation


class TopKRouter(nn.Module):
    """`weight` (E, C): (N, C) -> router logits (N, E), fp32 weights (N, k) and expert ids (N, k)."""

    def __init__(self, config):
        super().__init__()
        self.top_k, self.normalize = config.num_experts_per_tok, config.normalize_top_k
        self.weight = nn.Parameter(torch.empty(config.num_experts, config.hidden_size))

    def forward(self, x: torch.Tensor):
        logits = F.linear(x, self.weight)  # (N, E)
        probs = logits.softmax(dim=-1, dtype=torch.float32)  # (N, E)
        weights, experts = probs.topk(self.top_k, dim=-1)  # (N, k) each
        if self.normalize:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return logits, weights, experts


class Experts(nn.Module):
    """E SwiGLU experts as two stacked tensors: `gate_up_proj` (E, 2I, C) and `down_proj` (E, C, I)."""

    def __init__(self, config):
        super().__init__()
        e, i, c = config.num_experts, config.expert_size, config.hidden_size
        self.gate_up_proj = nn.Parameter(torch.empty(e, 2 * i, c))
        self.down_proj = nn.Parameter(torch.empty(e, c, i))
        self.act = config.hidden_act
        get_activation(self.act)  # an unknown name fails here, not at the first forward

    def forward(self, x: torch.Tensor, experts: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """(N, C) tokens, their (N, k) experts and (N, k) weights -> (N, C): the weighted sum of their outputs."""
        inference = not (torch.is_grad_enabled() and (x.requires_grad or self.gate_up_proj.requires_grad))
        if inference and _compiling() and experts.numel() <= GATHER_PAIRS:  # a decode step: few (token, expert) pairs
            y = gathered_experts(x, experts, self.gate_up_proj, self.down_proj, self.act)  # (N, k, C)
        elif _moe_op is not None and inference and _compiling():
            y = _moe_op(x, experts, self.gate_up_proj, self.down_proj, self.act)  # (N, k, C), opaque to compile
        else:
            y = grouped_experts(x, experts, self.gate_up_proj, self.down_proj, self.act)  # (N, k, C)
        return (y * weights.unsqueeze(-1)).sum(dim=1).to(x.dtype)  # (N, C)


GATHER_PAIRS = 64  # under torch.compile, up to this many (token, expert) pairs run gathered_experts


def gathered_experts(x: torch.Tensor, experts: torch.Tensor, gate_up: torch.Tensor, down: torch.Tensor,
                     act: str) -> torch.Tensor:
    """(N, C) tokens and their (N, k) expert ids -> (N, k, C), each pair against its own expert's weights picked by
    index: fixed shapes and no host sync, so inductor fuses the pick into the products and reads only the chosen
    experts' weights (a compiled decode step, where N*k is small)."""
    gate, up = torch.einsum("nc,nkic->nki", x, gate_up[experts]).chunk(2, dim=-1)  # (N, k, I) each
    return torch.einsum("nki,nkci->nkc", get_activation(act)(gate) * up, down[experts])  # (N, k, C)


def grouped_experts(x: torch.Tensor, experts: torch.Tensor, gate_up: torch.Tensor, down: torch.Tensor,
                    act: str) -> torch.Tensor:
    """(N, C) tokens and their (N, k) expert ids -> (N, k, C) expert outputs (unweighted): the pairs sorted by
    expert, each expert's rows through its gate/up and down projections in one go."""
    n, k = experts.shape
    act_fn = get_activation(act)
    flat = experts.reshape(-1)  # (S,), token-major
    order = flat.argsort(stable=True)  # (S,): the pairs grouped by expert
    rows = x[order // k]  # (S, C)
    counts = torch.bincount(flat, minlength=gate_up.shape[0])  # (E,)
    if _use_grouped_mm(x, gate_up):
        offsets = counts.cumsum(0).to(torch.int32)  # (E,) end of each expert's rows
        gate, up = F.grouped_mm(rows, gate_up.transpose(1, 2), offs=offsets).chunk(2, dim=-1)  # (S, I) each
        y = F.grouped_mm(act_fn(gate) * up, down.transpose(1, 2), offs=offsets)  # (S, C)
    else:
        outputs = []
        for e, part in enumerate(rows.split(counts.tolist())):  # the counts are read once
            if part.shape[0]:
                gate, up = F.linear(part, gate_up[e]).chunk(2, dim=-1)  # (S_e, I) each
                outputs.append(F.linear(act_fn(gate) * up, down[e]))  # (S_e, C)
        y = torch.cat(outputs) if outputs else x.new_zeros(0, down.shape[1])  # (S, C)
    back = torch.empty_like(order)
    back[order] = torch.arange(order.numel(), device=order.device)  # the inverse permutation
    return y[back].view(n, k, down.shape[1])  # (N, k, C)


def _use_grouped_mm(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return x.is_cuda and x.dtype == weight.dtype == torch.bfloat16 and hasattr(F, "grouped_mm")


def _compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and hasattr(compiler, "is_compiling") and compiler.is_compiling())


def _register_moe_op():
    """`grouped_experts` as the custom op autoload::grouped_experts (torch >= 2.4), for torch.compile."""
    if not hasattr(torch, "library") or not hasattr(torch.library, "custom_op"):
        return None

    @torch.library.custom_op("autoload::grouped_experts", mutates_args=())
    def op(x: torch.Tensor, experts: torch.Tensor, gate_up: torch.Tensor, down: torch.Tensor,
           act: str) -> torch.Tensor:
        return grouped_experts(x, experts, gate_up, down, act)

    @op.register_fake
    def _(x, experts, gate_up, down, act):
        return x.new_empty(experts.shape[0], experts.shape[1], down.shape[1])

    return op


_moe_op = _register_moe_op()


class SparseMoeBlock(nn.Module):
    """`gate` (the router) and `experts`; with a `shared_expert` module (Qwen2-MoE), also `shared_expert_gate`
    (C -> 1). (B, T, C) -> ((B, T, C), router logits (B*T, E))."""

    def __init__(self, config, shared_expert: nn.Module | None = None):
        super().__init__()
        if config.experts_first:  # registration order = the order seeded initialisation draws in
            self.experts, self.gate = Experts(config), TopKRouter(config)
        else:
            self.gate, self.experts = TopKRouter(config), Experts(config)
        self.jitter = getattr(config, "router_jitter_noise", 0.0) or 0.0  # Mixtral, training only
        if shared_expert is not None:
            self.shared_expert = shared_expert
            self.shared_expert_gate = nn.Linear(config.hidden_size, 1, bias=False)

    def forward(self, h: torch.Tensor):
        b, t, c = h.shape
        x = h.reshape(-1, c)  # (N, C)
        if self.training and self.jitter > 0:  # multiplicative noise on what the router and experts see
            x = x * torch.empty_like(x).uniform_(1.0 - self.jitter, 1.0 + self.jitter)
        logits, weights, experts = self.gate(x)  # (N, E), (N, k), (N, k)
        y = self.experts(x, experts, weights)  # (N, C)
        if hasattr(self, "shared_expert"):
            y = y + torch.sigmoid(self.shared_expert_gate(x)) * self.shared_expert(x)
        return y.view(b, t, c), logits


def load_balancing_loss(router_logits: tuple[torch.Tensor, ...], num_experts: int, top_k: int,
                        attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Switch Transformer's auxiliary loss, as the reference's load_balancing_loss_func: over the sparse layers'
    (N, E) router logits, E * sum_e (fraction of top-k assignments to e) * (mean router probability of e); a
    (B, T) attention mask leaves padding out of both averages."""
    device = router_logits[0].device
    assigned = torch.zeros(num_experts, dtype=torch.float32, device=device)  # (E,) top-k assignments
    probability = torch.zeros(num_experts, dtype=torch.float32, device=device)  # (E,) summed probabilities
    rows = 0.0
    keep = None
    if attention_mask is not None:
        keep = attention_mask.reshape(-1).to(device=device, dtype=torch.float32)  # (N,), the same every layer
    for logits in router_logits:
        probs = logits.to(device).softmax(dim=-1)  # (N, E)
        _, chosen = probs.topk(top_k, dim=-1)  # (N, k)
        if keep is None:
            assigned = assigned + torch.histc(chosen.reshape(-1).float(), bins=num_experts, min=0, max=num_experts)
            probability = probability + probs.float().sum(dim=0)
            rows = rows + probs.shape[0]
        else:
            assigned = assigned + torch.zeros_like(assigned).scatter_add_(0, chosen.reshape(-1),
                                                                          keep.repeat_interleave(top_k))
            probability = probability + (probs.float() * keep.unsqueeze(-1)).sum(dim=0)
            rows = rows + keep.sum()
    return (assigned / rows * (probability / rows)).sum() * num_experts


# -- the per-expert checkpoint layout ----------------------------------------------------------------------

def stack_experts(items: Iterable[tuple[str, torch.Tensor]], config) -> Iterator[tuple[str, torch.Tensor]]:
    """Checkpoint (key, tensor) pairs with each layer's per-expert tensors folded into `experts.gate_up_proj` and
    `experts.down_proj` (and Mixtral's `block_sparse_moe.gate` renamed `mlp.gate`); everything else passes as it
    is. A layer whose experts are incomplete keeps its keys (the loader reports them)."""
    block, gate, up, down = config.expert_keys
    per_expert = re.compile(rf"^(.*?)\b{re.escape(block)}\.experts\.(\d+)\.({gate}|{up}|{down})\.weight$")
    pending: dict[str, dict[tuple[str, int], tuple[str, torch.Tensor]]] = {}  # layer prefix -> parts
    wanted = 3 * config.num_experts
    for key, tensor in items:
        match = per_expert.match(key)
        if match is None:
            if block != "mlp" and key.endswith(f".{block}.gate.weight"):
                key = key[:-len(f"{block}.gate.weight")] + "mlp.gate.weight"
            yield key, tensor
            continue
        prefix, expert, name = match[1], int(match[2]), match[3]
        if expert >= config.num_experts:
            yield key, tensor  # an expert the config does not have: reported as unexpected
            continue
        parts = pending.setdefault(prefix, {})
        parts[(name, expert)] = (key, tensor)
        if len(parts) == wanted:
            del pending[prefix]
            yield from _stacked(prefix, parts, config.num_experts, gate, up, down)
    for parts in pending.values():
        yield from parts.values()


def _stacked(prefix: str, parts: dict, n: int, gate: str, up: str, down: str):
    first_key, first = parts[(gate, 0)]
    i, c = first.shape
    gate_up = first.new_empty(n, 2 * i, c)  # (E, 2I, C)
    down_proj = first.new_empty(n, c, i)  # (E, C, I)
    for (name, e), (key, tensor) in parts.items():
        target = gate_up[e, :i] if name == gate else gate_up[e, i:] if name == up else down_proj[e]
        if tensor.shape != target.shape:
            raise ValueError(f"Checkpoint tensor '{key}' has shape {tuple(tensor.shape)}; the other experts of its "
                             f"layer ('{first_key}': {tuple(first.shape)}) imply {tuple(target.shape)}.")
        target.copy_(tensor)
    yield f"{prefix}mlp.experts.gate_up_proj", gate_up
    yield f"{prefix}mlp.experts.down_proj", down_proj


def unstack_experts(state: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """A state dict with the stacked expert tensors split back into one tensor per expert and projection
    (copies: safetensors refuses views of one storage), in the layout of `config.expert_keys`."""
    block, gate, up, down = config.expert_keys
    out = {}
    for key, tensor in state.items():
        head, sep, name = key.rpartition("mlp.experts.")
        if sep and name in ("gate_up_proj", "down_proj"):
            experts = f"{head}{block}.experts"
            i = tensor.shape[1] // 2
            for e in range(tensor.shape[0]):
                if name == "down_proj":
                    out[f"{experts}.{e}.{down}.weight"] = tensor[e].clone()
                else:
                    out[f"{experts}.{e}.{gate}.weight"] = tensor[e, :i].clone()
                    out[f"{experts}.{e}.{up}.weight"] = tensor[e, i:].clone()
        elif block != "mlp" and key.endswith(".mlp.gate.weight"):
            out[key[:-len("mlp.gate.weight")] + f"{block}.gate.weight"] = tensor
        else:
            out[key] = tensor
    return out
