"""Parameter and FLOP counts against hand counts on tiny networks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_nas.hardware import CostHook, count_flops, count_parameters, model_costs


class TwoHead(nn.Module):
    """Returns (logits, aux) like DARTS networks with an auxiliary head."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1, bias=False)  # 1x1 conv: 4*3 MACs per pixel
        self.head = nn.Linear(4, 2)
        self.aux = nn.Linear(4, 5)

    def forward(self, x):
        h = self.conv(x).mean(dim=(2, 3))  # (B, 4)
        return self.head(h), self.aux(h)


def test_count_parameters_hand_counts_and_frozen():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Linear(5, 7))
    conv, bn, lin = 8 * 3 * 3 * 3 + 8, 8 + 8, 5 * 7 + 7  # 224, 16 (running stats are buffers), 42
    assert count_parameters(net) == conv + bn + lin == 282
    net[0].weight.requires_grad_(False)
    assert count_parameters(net) == 282 - 216
    assert count_parameters(net, trainable_only=False) == 282


def test_count_parameters_tied_weights_once():
    a = nn.Linear(4, 4, bias=False)
    net = nn.Sequential(a, a)
    assert count_parameters(net) == 16


def test_conv_flops_hand_count():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    res = count_flops(conv, (3, 8, 8))
    # out channels 8 x out pixels 8*8 x (3 in channels * 3*3 kernel) multiply-accumulates
    assert res.macs == 8 * 64 * 27 == 13824
    assert res.flops == 2 * 13824
    assert res.batch_size == 1
    assert res.by_operator == {"aten.convolution": 27648}


def test_batch_scales_and_example_tensor():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_flops(conv, (3, 8, 8), batch_size=4).macs == 4 * 13824
    res = count_flops(conv, torch.randn(2, 3, 8, 8))
    assert res.macs == 2 * 13824 and res.macs_per_sample == 13824


def test_depthwise_and_strided_conv():
    dw = nn.Conv2d(16, 16, 3, padding=1, stride=2, groups=16, bias=False)
    # 16 channels x 4*4 output pixels (8x8 input, stride 2) x 9 kernel taps, one input ch each
    assert count_flops(dw, (16, 8, 8)).macs == 16 * 16 * 9 == 2304


def test_linear_and_tuple_output_and_modes_restored():
    lin = nn.Linear(10, 5)
    assert count_flops(lin, (10,), batch_size=3).macs == 3 * 10 * 5  # bias adds not counted
    net = TwoHead().train()
    res = count_flops(net, (3, 6, 6))
    # conv: 4*3 per pixel * 36 pixels = 432; head 4*2 = 8; aux 4*5 = 20
    assert res.macs == 432 + 8 + 20
    assert res.by_module["conv"] == 2 * 432 and res.by_module["aux"] == 2 * 20
    assert net.training and all(m.training for m in net.modules())
    net.eval()
    count_flops(net, (3, 6, 6))
    assert not net.training


def test_meta_device_counts_without_memory():
    with torch.device("meta"):
        conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_flops(conv, (3, 8, 8)).macs == 13824
    assert count_parameters(conv) == 224


def test_bad_shapes_are_clear():
    conv = nn.Conv2d(3, 8, 3)
    with pytest.raises(ValueError, match="one sample without the batch"):
        count_flops(conv, (3, 0, 8))
    with pytest.raises(TypeError, match="nn.Module"):
        count_flops("net", (3, 8, 8))


def test_cost_hook_keys_and_cache():
    hook = CostHook((10,))
    lin = nn.Linear(10, 5)
    out = hook("arch-a", lin)
    assert out == {"params": 55, "flops": 100, "macs": 50}
    out["params"] = -1  # the caller's copy; the cache is untouched
    assert hook("arch-a", nn.Linear(10, 50))["params"] == 55  # cached per arch
    costs = model_costs(lin, (10,), latency=True, warmup=1, repeats=3, num_threads=1)
    assert costs["latency_ms"] > 0 and costs["latency_p90_ms"] >= costs["latency_p10_ms"]
