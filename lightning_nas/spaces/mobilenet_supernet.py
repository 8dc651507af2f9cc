"""Once-for-All's elastic MobileNetV3 supernet (Cai et al., ICLR 2020, Sec. 3.2).

One network holds every subnet of a :class:`~lightning_nas.spaces.mobilenet.MobileNetV3Space`:

* **elastic depth**: stage ``i`` runs its first ``stage{i}.depth`` blocks (Fig. 3 of the paper);
* **elastic kernel**: one depthwise weight of the largest kernel per block; a smaller kernel is
  the centre crop of the next larger one passed through a learned ``k^2 x k^2`` *kernel
  transformation matrix* shared by all channels of the block, one matrix per
  (larger -> smaller) pair (7 -> 5, 5 -> 3; initialised to the identity; Sec. 3.2, Fig. 4);
* **elastic width**: the expanded channels of a block are a prefix of the largest block's
  ``make_divisible(round(c_in * max(expands)), 8)`` channels; :meth:`OFASupernet.sort_channels`
  reorders them by importance (L1 norm of the project weights, Fig. 5) so a narrow subnet keeps
  the most important ones; the squeeze-excite bottleneck shrinks with the width
  (``make_divisible(mid // 4, 8)``), also a prefix after sorting;
* **elastic resolution**: the network is fully convolutional up to a global pool; the caller
  resizes its input (:func:`resize_to`).

The elastic block :class:`ElasticMBConv` has the *same submodule names and parameter layout*
as :class:`~lightning_nas.spaces.mobilenet.MBConv` at its largest setting, so extracting a
subnet (:meth:`OFASupernet.extract`) slices every tensor to the standalone block's shape
(a prefix along each dimension) and only the depthwise kernel needs its transformation.
Batch-norm layers of a narrower block use the first channels of the statistics
(``F.batch_norm`` on views, so running statistics of the active channels update in place).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.spaces.base import Arch
from lightning_nas.spaces.mobilenet import (
    ConvBNAct,
    MBConv,
    MobileNetV3Network,
    MobileNetV3Space,
    SqueezeExcite,
    _act,
    make_divisible,
)
from lightning_nas.spaces.supernet import Decision


def expanded_width(c_in: int, expand: float) -> int:
    """Channels after the 1x1 expansion of an MBConv block (OFA / MobileNetV3 rounding)."""
    return make_divisible(round(c_in * expand), 8) if expand != 1 else c_in


def _batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """``bn`` applied to the first ``x.shape[1]`` channels (statistics updated in place)."""
    c = x.shape[1]
    if c == bn.num_features or getattr(bn, "accepts_fewer_channels", False):
        return bn(x)  # e.g. GlobalBatchNorm2d (statistics over all DDP ranks) slices itself
    if bn.training and bn.track_running_stats:
        bn.num_batches_tracked.add_(1)
        momentum = (1.0 / float(bn.num_batches_tracked) if bn.momentum is None
                    else bn.momentum)
    else:
        momentum = 0.0 if bn.momentum is None else bn.momentum
    use_batch_stats = bn.training or bn.running_mean is None
    return F.batch_norm(x, bn.running_mean[:c] if bn.running_mean is not None else None,
                        bn.running_var[:c] if bn.running_var is not None else None,
                        bn.weight[:c], bn.bias[:c], use_batch_stats, momentum, bn.eps)


class ElasticMBConv(nn.Module):
    """An MBConv block whose kernel size and expand ratio are chosen per forward call.

    Shapes: (B, c_in, H, W) -> (B, c_out, H / stride, W / stride). Parameters are those of
    ``MBConv(c_in, c_out, max(kernels), stride, max(expands), se, act)`` (same names) plus
    ``kernel_transforms["7to5"]`` etc. Set ``active_kernel`` / ``active_expand`` before
    calling (:meth:`OFASupernet.set_active` does it).
    """

    def __init__(self, c_in: int, c_out: int, kernels: Sequence[int], expands: Sequence[int],
                 stride: int, se: bool, act: str):
        super().__init__()
        self.kernels, self.expands = tuple(sorted(kernels)), tuple(sorted(expands))
        self.c_in, self.c_out, self.stride = c_in, c_out, stride
        self.max_mid = expanded_width(c_in, self.expands[-1])
        k_max = self.kernels[-1]
        self.expand = ConvBNAct(c_in, self.max_mid, 1, act=act)
        self.depthwise = ConvBNAct(self.max_mid, self.max_mid, k_max, stride, groups=self.max_mid,
                                   act=act)
        self.se = SqueezeExcite(self.max_mid) if se else None
        self.project = ConvBNAct(self.max_mid, c_out, 1, act=None)
        self.act = _act(act)
        self.residual = stride == 1 and c_in == c_out
        # one (k_small^2 x k_small^2) matrix per consecutive kernel pair, identity at start
        self.kernel_transforms = nn.ParameterDict({
            f"{big}to{small}": nn.Parameter(torch.eye(small * small))
            for big, small in zip(self.kernels[::-1], self.kernels[-2::-1])
        })
        self.active_kernel, self.active_expand = k_max, self.expands[-1]

    def mid_channels(self, expand: float | None = None) -> int:
        return expanded_width(self.c_in, self.active_expand if expand is None else expand)

    def depthwise_weight(self, kernel: int, channels: int | None = None) -> torch.Tensor:
        """The (channels, 1, kernel, kernel) depthwise weight of kernel size ``kernel``:
        centre crops of the largest kernel, each passed through its transformation matrix."""
        channels = self.max_mid if channels is None else channels
        weight = self.depthwise[0].weight[:channels]  # (C, 1, K, K)
        current = weight.shape[-1]
        for small in reversed(self.kernels):
            if small >= current or small < kernel:
                continue
            start = (current - small) // 2
            crop = weight[:, :, start:start + small, start:start + small]
            matrix = self.kernel_transforms[f"{current}to{small}"]
            # (C, small^2) x (small^2, small^2)^T; OFA applies F.linear on the flattened crop
            weight = F.linear(crop.reshape(channels, small * small), matrix)
            weight = weight.reshape(channels, 1, small, small)
            current = small
        if current != kernel:
            raise ValueError(f"kernel {kernel} is not a choice of this block ({self.kernels})")
        return weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mid, k = self.mid_channels(), self.active_kernel
        y = F.conv2d(x, self.expand[0].weight[:mid])
        y = self.act(_batch_norm(self.expand[1], y))  # (B, mid, H, W)
        y = F.conv2d(y, self.depthwise_weight(k, mid), None, self.stride, k // 2, 1, mid)
        y = self.act(_batch_norm(self.depthwise[1], y))  # (B, mid, H/s, W/s)
        if self.se is not None:
            se_mid = make_divisible(mid // 4, 8)
            s = y.mean((2, 3), keepdim=True)  # (B, mid, 1, 1)
            s = F.relu(F.conv2d(s, self.se.reduce.weight[:se_mid, :mid],
                                self.se.reduce.bias[:se_mid]))
            s = F.conv2d(s, self.se.expand.weight[:mid, :se_mid], self.se.expand.bias[:mid])
            y = y * F.hardsigmoid(s)
        y = F.conv2d(y, self.project[0].weight[:, :mid])
        y = _batch_norm(self.project[1], y)  # (B, c_out, H/s, W/s)
        return x + y if self.residual else y

    # -- extraction and channel sorting ------------------------------------------------------
    def export_state(self, kernel: int, expand: float, target: MBConv) -> dict[str, torch.Tensor]:
        """State dict of ``target`` (a standalone MBConv with this kernel/expand) holding the
        supernet's weights: every tensor a prefix slice, the depthwise kernel transformed."""
        mid = self.mid_channels(expand)
        own, state = self.state_dict(), {}
        for name, tensor in target.state_dict().items():
            if name == "depthwise.0.weight":
                state[name] = self.depthwise_weight(kernel, mid).detach().clone()
                continue
            source = own[name]
            if source.dim() == 0:
                state[name] = source.detach().clone()
                continue
            index = tuple(slice(0, n) for n in tensor.shape)
            state[name] = source[index].detach().clone()
        return state

    @torch.no_grad()
    def sort_channels(self) -> None:
        """Reorder the expanded channels by importance, most important first (OFA Sec. 3.2,
        "elastic width"): importance of channel c = sum |project weight[:, c]| (L1 norm).

        The permutation is applied consistently to the expansion conv and BN, the depthwise
        conv and BN, squeeze-excite and the projection's input, so the largest setting computes
        the same function (up to summation order). The squeeze-excite bottleneck is sorted the
        same way (importance = L1 norm of its expand weights).
        """
        importance = self.project[0].weight.abs().sum(dim=(0, 2, 3))  # (max_mid,)
        order = torch.argsort(importance, descending=True, stable=True)
        self.project[0].weight.copy_(self.project[0].weight[:, order])
        for conv in (self.expand[0], self.depthwise[0]):
            conv.weight.copy_(conv.weight[order])
        for bn in (self.expand[1], self.depthwise[1]):
            for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
                t.copy_(t[order])
        if self.se is not None:
            se = self.se
            se.expand.weight.copy_(se.expand.weight[order])
            se.expand.bias.copy_(se.expand.bias[order])
            se.reduce.weight.copy_(se.reduce.weight[:, order])
            se_order = torch.argsort(se.expand.weight.abs().sum(dim=(0, 2, 3)), descending=True,
                                     stable=True)
            se.expand.weight.copy_(se.expand.weight[:, se_order])
            se.reduce.weight.copy_(se.reduce.weight[se_order])
            se.reduce.bias.copy_(se.reduce.bias[se_order])


class OFASupernet(nn.Module):
    """All subnets of ``space`` in one network; ``forward(x)`` runs the active subnet.

    ``x``: (B, in_channels, r, r) -> logits (B, num_classes). The input is *not* resized:
    resize it to the active resolution with :func:`resize_to` (the strategy does).

    Args:
        space: the elastic space (kernels, expands, depths, stage table).
        num_classes, in_channels, dropout: default to the space's build defaults.
    """

    def __init__(self, space: MobileNetV3Space, *, num_classes: int | None = None,
                 in_channels: int | None = None, dropout: float | None = None):
        super().__init__()
        defaults = space.build_defaults
        self.space = space
        self.num_classes = defaults["num_classes"] if num_classes is None else num_classes
        self.in_channels = defaults["in_channels"] if in_channels is None else in_channels
        self.dropout_p = defaults["dropout"] if dropout is None else dropout
        widths = space.widths
        self.stem = ConvBNAct(self.in_channels, widths["stem_width"], 3, space.stem_stride,
                              act="hswish")
        self.first_block = MBConv(widths["stem_width"], widths["stem_width"], 3, 1, 1, se=False,
                                  act="relu")
        blocks, c = [], widths["stem_width"]
        for i, j in space.block_keys:
            spec = space.stages[i - 1]
            blocks.append(ElasticMBConv(c, spec.width, space.kernels, space.expands,
                                        spec.stride if j == 1 else 1, spec.se, spec.act))
            c = spec.width
        self.blocks = nn.ModuleList(blocks)
        self.block_labels = tuple(space.block_keys)
        self.final_expand = ConvBNAct(c, widths["final_width"], 1, act="hswish")
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_mix = nn.Sequential(nn.Conv2d(widths["final_width"],
                                                   widths["feature_width"], 1, bias=False),
                                         nn.Hardswish(inplace=True))
        self.dropout = nn.Dropout(self.dropout_p)
        self.classifier = nn.Linear(widths["feature_width"], self.num_classes)
        self.active: Arch = space.largest()
        self._active_blocks: list[int] = list(range(len(self.blocks)))
        self.set_active(self.active)

    def set_active(self, arch: Arch) -> None:
        """Select the subnet ``arch`` (validated against the space) for the next forwards."""
        self.space.validate(arch)
        active = []
        for n, (block, (i, j)) in enumerate(zip(self.blocks, self.block_labels)):
            block.active_kernel = int(arch[f"stage{i}.block{j}.kernel"])
            block.active_expand = arch[f"stage{i}.block{j}.expand"]
            if j <= int(arch[f"stage{i}.depth"]):
                active.append(n)
        self.active, self._active_blocks = arch, active

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_block(self.stem(x))
        for n in self._active_blocks:
            x = self.blocks[n](x)
        x = self.pool(self.final_expand(x))  # (B, final_width, 1, 1)
        x = self.feature_mix(x).flatten(1)  # (B, feature_width)
        return self.classifier(self.dropout(x))

    @torch.no_grad()
    def sort_channels(self) -> None:
        """Sort the expanded channels of every block by importance (before elastic width)."""
        for block in self.blocks:
            block.sort_channels()

    @torch.no_grad()
    def extract(self, arch: Arch) -> MobileNetV3Network:
        """The standalone network of ``arch`` with the supernet's weights (and batch-norm
        statistics; recalibrate them with :func:`recalibrate_bn` before evaluating).

        Its outputs equal the supernet's with ``arch`` active, in eval mode (tested).
        """
        self.space.validate(arch)
        net = self.space.build(arch, num_classes=self.num_classes, in_channels=self.in_channels,
                               dropout=self.dropout_p)
        for name in ("stem", "first_block", "final_expand", "feature_mix", "classifier"):
            getattr(net, name).load_state_dict(getattr(self, name).state_dict())
        index = {label: n for n, label in enumerate(self.block_labels)}
        for target, (i, j) in zip(net.blocks, net.block_labels):
            source = self.blocks[index[(i, j)]]
            target.load_state_dict(source.export_state(target.kernel, target.expand_ratio,
                                                       target))
        return net.to(self.classifier.weight.device).train(self.training)


    # -- the supernet interface (lightning_nas.spaces.supernet) ------------------------------
    def decisions(self) -> list[Decision]:
        """The space's decisions: resolution, stage depths, then every block's kernel and
        expansion (a block beyond its stage's depth is inactive; its choices are free)."""
        return [Decision(label, tuple(options)) for label, options in self.space.decisions()]

    def arch_of(self, choices: Mapping[str, Any]) -> Arch:
        return self.space.validate(Arch(self.space.name, dict(choices)))

    def choices_of(self, arch: Arch) -> dict[str, Any]:
        self.space.validate(arch)
        return {label: arch[label] for label, _ in self.space.decisions()}

    def forward_path(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        """Logits of subnet ``arch``: makes it active and resizes ``x`` to its resolution."""
        self.set_active(arch)
        return self(resize_to(x, int(arch["resolution"])))

    def subnet(self, arch: Arch) -> MobileNetV3Network:
        """The extracted standalone subnet (:meth:`extract`)."""
        return self.extract(arch)


def resize_to(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, resolution, resolution), bilinear (identity when equal)."""
    if x.shape[-1] == resolution and x.shape[-2] == resolution:
        return x
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)


@torch.no_grad()
def recalibrate_bn(net: nn.Module, batches: Iterable[torch.Tensor], *,
                   resolution: int | None = None) -> int:
    """Re-estimate every batch-norm layer's running mean and variance of ``net`` from
    ``batches`` (OFA's ``set_running_statistics``: a subnet inherits weights, not statistics).

    Statistics are reset and accumulated as an exact average over the batches (cumulative
    moving average, ``momentum=None``); the net's mode and momenta are restored. Inputs are
    resized to ``resolution`` when given (else to ``net.resolution`` if it has one).

    Returns:
        The number of images used.
    """
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    was_training = net.training
    resolution = resolution or getattr(net, "resolution", None)
    seen = 0
    try:
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
        net.train()
        for x in batches:
            net(resize_to(x, resolution) if resolution else x)
            seen += x.shape[0]
    finally:
        for bn, m in zip(bns, momenta):
            bn.momentum = m
        net.train(was_training)
    if seen == 0:
        raise ValueError("recalibrate_bn got no batches; pass a few batches of training images")
    return seen


__all__ = ["ElasticMBConv", "OFASupernet", "expanded_width", "recalibrate_bn", "resize_to"]
