"""device_map='auto' planning: units in forward order, budgets filled in order, tied modules kept together,
inputs moved by hooks. Planned here with CPU stand-ins for the GPUs; the CUDA run is marked."""

import pytest
import torch
from torch import nn

from autoload import placement


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.layers = nn.ModuleList(nn.Linear(8, 8) for _ in range(4))
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 10, bias=False)
        self.head.weight = self.embed.weight  # tied

    def forward(self, ids):
        h = self.embed(ids)
        for layer in self.layers:
            h = layer(h)
        return self.head(self.norm(h))


def test_units_in_forward_order():
    names = [n for n, _ in placement.units(Net())]
    assert names == ["embed", "layers.0", "layers.1", "layers.2", "layers.3", "norm", "head"]


def test_plan_fills_devices_in_order_and_keeps_tied_together():
    a, b, cpu = torch.device("cpu", 0), torch.device("cpu", 1), torch.device("cpu")
    layer = 8 * 8 * 4 + 8 * 4
    plan = placement.plan(Net(), [(a, 320 + 2 * layer), (b, 2 * layer), (cpu, float("inf"))])
    assert plan["embed"] == a and plan["layers.0"] == a and plan["layers.1"] == a
    assert plan["layers.2"] == b and plan["layers.3"] == b
    assert plan["norm"] == cpu
    assert plan["head"] == a  # shares its weight with the embeddings


def test_apply_runs_across_devices_with_hooks():
    torch.manual_seed(0)
    net = Net()
    ids = torch.tensor([[1, 2, 3]])
    expected = net(ids)
    plan = placement.plan(net, [(torch.device("cpu"), 100), (torch.device("cpu"), float("inf"))])
    placement.apply(net, plan)
    torch.testing.assert_close(net(ids), expected)
    assert set(net.hf_device_map) == set(plan)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_dispatch_auto_on_gpu():
    torch.manual_seed(0)
    net = Net()
    ids = torch.tensor([[1, 2, 3]])
    expected = net(ids)
    placement.dispatch_auto(net)
    assert next(net.layers[0].parameters()).device.type == "cuda"
    torch.testing.assert_close(net(ids).cpu(), expected, atol=1e-5, rtol=1e-5)
