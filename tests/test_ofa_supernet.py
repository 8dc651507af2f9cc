"""The elastic supernet: extracted subnets compute what the supernet computes."""

from __future__ import annotations

import random

import pytest
import torch
from ofa_helpers import tiny_space

from lightning_nas.spaces.base import ArchError
from lightning_nas.spaces.mobilenet import MobileNetV3Space
from lightning_nas.spaces.mobilenet_supernet import OFASupernet, recalibrate_bn, resize_to


def _randomise(supernet: OFASupernet) -> None:
    """Non-trivial BN statistics/affines and kernel transforms, so slicing errors show."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in supernet.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.uniform_(-0.2, 0.2, generator=gen)
        for block in supernet.blocks:
            for matrix in block.kernel_transforms.values():
                matrix.add_(0.1 * torch.randn(matrix.shape, generator=gen))
        supernet.classifier.weight.mul_(30)  # logits of order 1, not 1e-2


@pytest.fixture(scope="module")
def cifar_supernet():
    torch.manual_seed(0)
    space = MobileNetV3Space.cifar()
    supernet = space.supernet()
    _randomise(supernet)
    return space, supernet.eval()


def test_extracted_subnets_equal_the_supernet_cifar(cifar_supernet):
    space, supernet = cifar_supernet
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    rng = random.Random(0)
    archs = [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(3)]
    for arch in archs:
        supernet.set_active(arch)
        expected = supernet(x)
        net = supernet.extract(arch).eval()
        assert type(net).__name__ == "MobileNetV3Network"
        assert sum(p.numel() for p in net.parameters()) == space.count_params(arch)
        got = net(x)
        assert expected.abs().max() > 0.1
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_extracted_subnets_equal_the_supernet_imagenet_resolutions():
    torch.manual_seed(0)
    space = MobileNetV3Space(resolutions=(128, 160), num_classes=7)
    supernet = space.supernet()
    _randomise(supernet)
    supernet.eval()
    rng = random.Random(3)
    for arch in [space.smallest(), space.sample(rng)]:
        x = torch.randn(1, 3, arch["resolution"], arch["resolution"])
        supernet.set_active(arch)
        torch.testing.assert_close(supernet.extract(arch).eval()(x), supernet(x), rtol=1e-5,
                                   atol=1e-5)


def test_largest_kernel_is_the_weight_smaller_kernels_are_transformed_crops():
    space = tiny_space()
    block = space.supernet().blocks[0]
    full = block.depthwise[0].weight
    assert torch.equal(block.depthwise_weight(7), full)
    # identity transforms: the 3x3 kernel is the centre of the 7x7 one
    torch.testing.assert_close(block.depthwise_weight(3), full[:, :, 2:5, 2:5])
    with torch.no_grad():
        block.kernel_transforms["7to5"].mul_(2.0)  # 5x5 = 2 * centre; 3x3 = 2 * centre of that
    torch.testing.assert_close(block.depthwise_weight(5), 2 * full[:, :, 1:6, 1:6])
    torch.testing.assert_close(block.depthwise_weight(3), 2 * full[:, :, 2:5, 2:5])
    with pytest.raises(ValueError, match="not a choice"):
        block.depthwise_weight(4)


def test_kernel_transforms_get_gradients_only_for_smaller_kernels():
    space = tiny_space()
    supernet = space.supernet()
    x = torch.randn(4, 3, 8, 8)
    n = len(space.block_keys)
    arch = space.make(8, [2, 2], [5] * n, [6] * n)
    supernet.set_active(arch)
    supernet(x).sum().backward()
    block = supernet.blocks[0]
    assert block.kernel_transforms["7to5"].grad is not None
    assert block.kernel_transforms["5to3"].grad is None


def test_sort_channels_keeps_the_full_network_and_orders_by_importance(cifar_supernet):
    space, _ = cifar_supernet
    torch.manual_seed(5)
    supernet = space.supernet()
    _randomise(supernet)
    supernet.eval()
    x = torch.randn(2, 3, 32, 32)
    supernet.set_active(space.largest())
    before = supernet(x)
    supernet.sort_channels()
    torch.testing.assert_close(supernet(x), before, rtol=1e-4, atol=1e-5)
    for block in supernet.blocks:
        importance = block.project[0].weight.abs().sum(dim=(0, 2, 3))
        assert bool((importance[:-1] >= importance[1:]).all())
    # extraction after sorting still matches
    arch = space.smallest()
    supernet.set_active(arch)
    torch.testing.assert_close(supernet.extract(arch).eval()(x), supernet(x), rtol=1e-5,
                               atol=1e-5)


def test_narrow_batch_norm_updates_only_the_active_statistics():
    space = tiny_space()
    supernet = space.supernet().train()
    n = len(space.block_keys)
    arch = space.make(8, [1, 1], [3] * n, [3] * n)
    supernet.set_active(arch)
    bn = supernet.blocks[0].expand[1]
    mid = supernet.blocks[0].mid_channels()
    assert mid < bn.num_features
    supernet(torch.randn(8, 3, 8, 8) * 3 + 1)
    assert not torch.allclose(bn.running_mean[:mid], torch.zeros(mid))
    assert torch.equal(bn.running_mean[mid:], torch.zeros(bn.num_features - mid))


def test_subnet_outside_the_supernet_is_a_clear_error():
    space = tiny_space()
    supernet = space.supernet()
    arch = space.largest()
    with pytest.raises(ArchError, match="kernel: 9 is not a choice"):
        supernet.set_active(arch.replace(**{"stage1.block1.kernel": 9}))
    other = MobileNetV3Space.cifar()
    with pytest.raises(ArchError, match="labels"):
        supernet.extract(other.largest())
    with pytest.raises(ArchError, match="resolution: 32 is not a choice"):
        supernet.set_active(arch.replace(resolution=32))


def test_recalibrate_bn_gives_the_exact_statistics_of_the_batches():
    space = tiny_space()
    supernet = space.supernet()
    net = supernet.extract(space.smallest()).eval()
    batches = [torch.randn(5, 3, 6, 6) * 2 + 3 for _ in range(3)]
    assert recalibrate_bn(net, batches) == 15
    stem_bn = net.stem[1]
    conv_out = net.stem[0](torch.cat(batches))  # the stem sees the raw images
    torch.testing.assert_close(stem_bn.running_mean, conv_out.mean((0, 2, 3)), rtol=1e-4,
                               atol=1e-5)
    assert stem_bn.momentum == 0.1 and not net.training
    with pytest.raises(ValueError, match="no batches"):
        recalibrate_bn(net, [])


def test_resize_to():
    x = torch.randn(2, 3, 8, 8)
    assert resize_to(x, 8) is x
    assert resize_to(x, 6).shape == (2, 3, 6, 6)


def test_channels_last_gradients_match_contiguous():
    torch.manual_seed(0)
    space = tiny_space()
    a = space.supernet()
    b = space.supernet()
    b.load_state_dict(a.state_dict())
    b.to(memory_format=torch.channels_last)
    n = len(space.block_keys)
    arch = space.make(8, [2, 2], [5, 3, 7, 3], [4, 3, 6, 4])
    assert n == 4
    x = torch.randn(4, 3, 8, 8)
    for net, inp in ((a, x), (b, x.contiguous(memory_format=torch.channels_last))):
        net.train().set_active(arch)
        torch.manual_seed(1)  # same dropout mask
        net(inp).pow(2).sum().backward()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        if pa.grad is None:
            assert pb.grad is None, name
        else:
            torch.testing.assert_close(pb.grad, pa.grad, rtol=1e-4, atol=1e-5, msg=name)
