"""The rank side of tests/test_distributed.py: functions torch.multiprocessing.spawn runs in each rank. Kept apart
from the test module so that a rank imports neither transformers nor pytest (seconds per rank on 2 cores)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch

# the Auto class of each checkpoint name (default AutoModelForCausalLM)
AUTO = {"bert": "AutoModelForMaskedLM", "roberta": "AutoModelForMaskedLM"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(worker, world: int, folders: dict, out_dir, *extra) -> list[dict]:
    torch.multiprocessing.spawn(worker, args=(world, free_port(), folders, str(out_dir), *extra), nprocs=world)
    return [json.loads((out_dir / f"rank{r}.json").read_text()) for r in range(world)]


def _init(rank: int, world: int, port: int, backend: str = "gloo") -> None:
    import torch.distributed as dist
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_RANK=str(rank))
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, rank=rank, world_size=world)


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))


def _rss_growth(load) -> tuple[int, object]:
    """(peak resident-set growth in bytes while `load()` runs, what it returned). The peak (VmHWM) is reset first
    through /proc/self/clear_refs: the process's earlier peak (imports) may be above anything the load reaches."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status("VmRSS:")
    kept = load()
    return _status("VmHWM:") - before, kept


def _ids():
    return torch.tensor([[5, 7, 9, 11, 3, 4, 8, 6], [12, 4, 6, 8, 10, 13, 21, 30]])


def tp_worker(rank, world, port, folders, out_dir, names, tp_size=None, backend="gloo"):
    """Every family's logits and greedy ids under tensor parallel vs one process, in this rank."""
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    import autoload
    from autoload.distributed.tensor_parallel import rank_device
    _init(rank, world, port, backend)
    result = {}
    if "rss" in folders and tp_size is None:  # first, before any other model raises the peak
        def load(folder=folders["rss"], **kw):
            model = autoload.AutoModelForCausalLM.from_pretrained(folder, **kw)
            with torch.no_grad():
                model(_ids())
            return model
        load(folders["warm"], tp_plan="auto")  # a tiny model first: DTensor's lazy imports and caches
        # the split model stays alive while the whole one loads: freed memory the allocator kept would hide growth
        result["rss_tp"], kept = _rss_growth(lambda: load(tp_plan="auto"))
        result["rss_one"], _ = _rss_growth(load)
        del kept
        result["rss_checkpoint"] = os.path.getsize(os.path.join(folders["rss"], "model.safetensors"))
    device = rank_device()
    ids = _ids().to(device)
    mask = torch.ones_like(ids)
    mask[0, :2] = 0  # left padding in the first row
    for entry_name in names:  # "llama@2": llama over tensor-parallel groups of 2 ranks (a (dp, tp) mesh)
        name, _, size = entry_name.partition("@")
        auto = getattr(autoload, AUTO.get(name, "AutoModelForCausalLM"))
        ref = auto.from_pretrained(folders[name], device=device, dtype=torch.float32)
        ours = auto.from_pretrained(folders[name], tp_plan="auto", tp_size=int(size) if size else tp_size,
                                    dtype=torch.float32)
        split = {n: list(p.to_local().shape) for n, p in ours.named_parameters() if isinstance(p, DTensor)
                 and p.placements[0].is_shard()}
        full = {n: list(p.shape) for n, p in ref.named_parameters()}
        with torch.no_grad():
            a, b = ref(ids, attention_mask=mask).logits, ours(ids, attention_mask=mask).logits
        entry = {"logits": (a - b).abs().max().item(), "split": split, "full": full}
        if name in ("bert", "roberta"):  # the unpadded path too (packed real tokens, nn/packing.py)
            ref.config.unpad_inputs = ours.config.unpad_inputs = True
            with torch.no_grad():
                a, b = ref(ids, attention_mask=mask).logits, ours(ids, attention_mask=mask).logits
            entry["logits"] = max(entry["logits"], (a - b).abs().max().item())
        else:
            kw = dict(attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0)
            entry["greedy_equal"] = torch.equal(ref.generate(ids, **kw), ours.generate(ids, **kw))
        if name in ("llama", "gpt2", "qwen3") and not size:  # gathered and saved by rank 0, read by one process
            entry["saved"] = saved_equal(ours, ref, ids, mask, Path(out_dir, f"saved-{name}"), auto, device)
        result[entry_name] = entry
    if "one_kv_head" in folders:
        result["errors"] = refused(folders)
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


def saved_equal(ours, ref, ids, mask, folder: Path, auto, device) -> float:
    """full_state_dict on every rank, save_pretrained on rank 0, then a one-process load of what it wrote: the
    largest logit difference with the reference."""
    import torch.distributed as dist

    from autoload.distributed import full_state_dict
    state = full_state_dict(ours)
    if dist.get_rank() == 0:
        ours.save_pretrained(folder, state_dict=state)
    dist.barrier()
    back = auto.from_pretrained(folder, device=device, dtype=torch.float32)
    with torch.no_grad():
        return (back(ids, attention_mask=mask).logits - ref(ids, attention_mask=mask).logits).abs().max().item()


def refused(folders) -> dict:
    """The errors a rank gets for sizes that do not divide: the world, the kv heads, the (tied) vocabulary; and for
    tp_plan with device_map."""
    import autoload
    errors = {}
    for case, folder, kw in [("tp_size", folders["llama"], {"tp_size": 3}),
                             ("kv_heads", folders["one_kv_head"], {}),
                             ("vocab", folders["odd_vocab"], {}),
                             ("device_map", folders["llama"], {"device_map": "auto"})]:
        try:
            autoload.AutoModelForCausalLM.from_pretrained(folder, tp_plan="auto", **kw)
            errors[case] = None
        except Exception as err:  # noqa: BLE001 - the type is checked by the test
            errors[case] = [type(err).__name__, str(err)]
    return errors


def fsdp_worker(rank, world, port, folders, out_dir, names, backend="gloo"):
    """One training step under FSDP2 on this rank's half of the batch vs one process on the whole batch; then,
    with folders["chat"], the torchrun entry point `autoload.cli.tp_generate` (rank 0's printout)."""
    import torch.distributed as dist

    import autoload
    from autoload.distributed import from_pretrained_fsdp
    from autoload.distributed.tensor_parallel import rank_device
    _init(rank, world, port, backend)
    device = rank_device()
    torch.manual_seed(0)
    ids = torch.randint(3, 96, (2 * world, 8)).to(device)
    result = {}
    for name in names:
        auto = getattr(autoload, AUTO.get(name, "AutoModelForCausalLM"))
        ref = auto.from_pretrained(folders[name], device=device)  # the checkpoints have no dropout
        ref.train()
        ref_loss = ref(input_ids=ids, labels=ids).loss
        ref_loss.backward()
        model = from_pretrained_fsdp(auto, folders[name])
        model.train()
        part = ids[rank::world]  # each rank its rows: the average of the rank losses is the batch loss
        loss = model(input_ids=part, labels=part).loss
        from torch.distributed.fsdp import FSDPModule
        # between forward and backward: the blocks resharded, the root (embeddings, head) still gathered (torch's
        # rule for the root; passing reshard_after_forward=True to it broke the backward over nccl)
        block = next(m for m in model.modules() if isinstance(m, FSDPModule) and m is not model)
        between = [type(model.get_input_embeddings().weight).__name__, type(next(block.parameters())).__name__]
        loss.backward()
        mean = loss.detach().clone()
        dist.all_reduce(mean)
        grads = dict(ref.named_parameters())
        worst, count = 0.0, 0
        for n, p in model.named_parameters():
            worst = max(worst, (p.grad.full_tensor() - grads[n].grad).abs().max().item())
            count += 1
        result[name] = {"loss": abs(mean.item() / world - ref_loss.item()), "grad": worst, "params": count,
                        "ref_params": len(grads), "sharded": type(p).__name__, "between": between}
        result[name]["saved"] = fsdp_saved_equal(model, ref, ids, Path(out_dir, f"fsdp-{name}"), auto, device)
    if "chat" in folders:
        result["cli"] = cli_generate(folders["chat"])
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    if dist.is_initialized():
        dist.destroy_process_group()


def fsdp_saved_equal(model, ref, ids, folder: Path, auto, device) -> float:
    """The FSDP2 model's full state dict (torch.distributed.checkpoint) saved by rank 0 with save_pretrained,
    reloaded in one process: the largest logit difference with the reference (no optimizer step was taken)."""
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if dist.get_rank() == 0:
        model.save_pretrained(folder, state_dict=state)
    dist.barrier()
    back = auto.from_pretrained(folder, device=device, dtype=torch.float32).eval()
    ref.eval()
    with torch.no_grad():
        return (back(input_ids=ids).logits - ref(input_ids=ids).logits).abs().max().item()


CLI_PROMPT, CLI_NEW_TOKENS = "Hello world, this is", 6


def cli_generate(folder: str) -> dict:
    """What `torchrun -m autoload.cli.tp_generate FOLDER --prompt ...` prints on this rank (the test compares rank
    0's text with one process's generate). The entry point ends the process group."""
    import contextlib
    import io

    from autoload.cli import tp_generate
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = tp_generate.main([folder, "--prompt", CLI_PROMPT, "--max-new-tokens", str(CLI_NEW_TOKENS),
                                 "--dtype", "float32"])
    return {"code": code, "printed": printed.getvalue()}
