"""The mobile block space: published networks as presets (parameters and multiply-adds
against the papers' tables), string/JSON round trips, OFA subnets as mobile architectures,
search moves, bad input, and training a preset by name through `lightning-nas fit`."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from lightning_nas.cli import main
from lightning_nas.hardware.metrics import count_flops, count_parameters
from lightning_nas.spaces.base import Arch, ArchError
from lightning_nas.spaces.mobile_blocks import (
    EFFICIENTNET_B0,
    PRESETS,
    PUBLISHED,
    MobileBlockSpace,
    ScaleError,
    count_macs,
    from_ofa_arch,
    scale_mobile,
)
from lightning_nas.spaces.mobilenet import MobileNetV3Space
from lightning_nas.strategies.fixed import FixedArchitecture

ROOT = Path(__file__).resolve().parents[1]

#: Our parameter counts (1000 classes): equal to the reference implementations' documented
#: counts (torchvision: EfficientNet-B0..B7, MobileNetV3, MnasNet 1.0 = B1; the ProxylessNAS
#: authors' logs / pytorchcv: 4,080,512, 4,361,648, 7,119,848).
EXPECTED_PARAMS = {
    "EfficientNet-B0": 5_288_548, "EfficientNet-B1": 7_794_184, "EfficientNet-B2": 9_109_994,
    "EfficientNet-B3": 12_233_232, "EfficientNet-B4": 19_341_616,
    "EfficientNet-B5": 30_389_784, "EfficientNet-B6": 43_040_704,
    "EfficientNet-B7": 66_347_960, "MnasNet-A1": 3_887_038, "MnasNet-B1": 4_383_312,
    "MobileNetV3-Large": 5_483_032, "MobileNetV3-Small": 2_542_856,
    "ProxylessNAS-Mobile": 4_080_512, "ProxylessNAS-CPU": 4_361_648,
    "ProxylessNAS-GPU": 7_119_848,
}


@pytest.fixture(scope="module")
def counts():
    return {name: count_macs(arch) for name, arch in PRESETS.items()}


def test_every_preset_matches_its_published_parameters_and_multiply_adds(counts):
    """At the published resolution (224; EfficientNet-Bn its own): parameters within 2% of the
    table's rounded figure, multiply-adds within 5% (our counter counts convolutions and the
    classifier only, not SE products, activations or BN: MobileNetV3-Large 216.6 M vs 219 M;
    EfficientNet-B4 4.39 B vs 4.2 B, B5 10.3 B vs 9.9 B are the largest gaps)."""
    assert set(PRESETS) == set(PUBLISHED) == set(EXPECTED_PARAMS)
    for name, (params, macs) in counts.items():
        assert params == EXPECTED_PARAMS[name], name
        pub_params, pub_macs, _ = PUBLISHED[name]
        if pub_params is None:
            continue
        assert abs(params / pub_params - 1) < 0.02, (name, params, pub_params)
        assert abs(macs / pub_macs - 1) < 0.05, (name, macs, pub_macs)
    # the issue's headline figures, in the papers' units
    assert round(counts["EfficientNet-B0"][0] / 1e6, 1) == 5.3
    assert round(counts["EfficientNet-B0"][1] / 1e9, 2) == 0.39
    assert round(counts["MnasNet-A1"][1] / 1e6) == 312
    assert round(counts["ProxylessNAS-Mobile"][1] / 1e6) == 320


def test_efficientnet_b1_to_b7_are_b0_compound_scaled():
    """B2 = B0 with width 1.1 (channels rounded to 8s), depth 1.2 (repeats rounded up),
    resolution 260 (Tan & Le 2019, Table 2 / reference coefficients)."""
    b2 = PRESETS["EfficientNet-B2"]
    assert b2["resolution"] == 260 and b2["stem"][0] == 32 and b2["head"][0] == 1408
    assert [r[1] for r in b2["blocks"]] == [2, 3, 3, 4, 4, 5, 2]
    assert [r[5] for r in b2["blocks"]] == [16, 24, 48, 88, 120, 208, 352]
    b7 = PRESETS["EfficientNet-B7"]
    assert b7["resolution"] == 600 and b7["head"][0] == 2560
    assert [r[1] for r in b7["blocks"]] == [4, 7, 7, 10, 10, 13, 4]
    assert PRESETS["EfficientNet-B0"] == EFFICIENTNET_B0


def test_presets_round_trip_through_string_and_json():
    space = MobileBlockSpace()
    for name, arch in PRESETS.items():
        text = space.to_string(arch)
        assert space.parse(text) == arch, name
        assert Arch.from_json(arch.to_json()) == arch
        assert space.load(name) == arch
    assert "mbconv_r1_k3_s1_e3.67_c24_se0_relu" in space.to_string(PRESETS["MobileNetV3-Small"])


def test_unknown_preset_lists_the_known_ones():
    space = MobileBlockSpace()
    with pytest.raises(ArchError, match="unknown mobile preset 'EfficientNet-B9'") as err:
        space.load("EfficientNet-B9")
    assert all(name in str(err.value) for name in PRESETS)
    with pytest.raises(ArchError, match="known presets: .*MobileNetV3-Small"):
        FixedArchitecture(arch="MobileNetV3-Smal", space=space)
    text = space.to_string(EFFICIENTNET_B0)
    with pytest.raises(ArchError, match=r"stage 1\): need .* an odd kernel"):
        space.parse(text.replace("mbconv_r1_k3", "mbconv_r1_k4", 1))
    with pytest.raises(ArchError, match="block token 'mbconv_r1_kx"):
        space.parse(text.replace("mbconv_r1_k3", "mbconv_r1_kx", 1))
    with pytest.raises(ArchError, match="ds.*expand 1"):
        space.validate(EFFICIENTNET_B0.replace(
            blocks=[["ds", 1, 3, 1, 6, 16, 0, "relu"]]))


def test_a_zero_channel_layer_is_a_clear_error():
    with pytest.raises(ScaleError, match="stage 1 1.6 channels .* zero-channel layer.* "
                                        "smallest width that keeps every layer is 0.25"):
        scale_mobile(EFFICIENTNET_B0, width=0.1)
    small = scale_mobile(EFFICIENTNET_B0, width=0.25)  # 16 x 0.25 = 4 rounds to 8 channels
    assert small["blocks"][0][5] == 8


def test_an_ofa_subnet_is_the_same_network_in_the_mobile_space():
    rng = random.Random(0)
    for ofa in (MobileNetV3Space(), MobileNetV3Space.cifar()):
        mobile = MobileBlockSpace(num_classes=ofa.build_defaults["num_classes"])
        for _ in range(3):
            arch = ofa.sample(rng)
            converted = from_ofa_arch(ofa, arch)
            r = arch["resolution"]
            with torch.device("meta"):
                a, b = ofa.build(arch), mobile.build(converted)
            assert count_parameters(a) == count_parameters(b)
            assert count_flops(a, (3, r, r)).macs == count_flops(b, (3, r, r)).macs
            assert len(b.blocks) == 1 + ofa.depth(arch)


def test_sample_mutate_encode_decode():
    space = MobileBlockSpace()
    rng = random.Random(1)
    for _ in range(20):
        arch = space.sample(rng)
        assert space.decode(space.encode(arch)) == arch
        child = space.mutate(arch, rng)
        diff = [(i, f) for i, (r, s) in enumerate(zip(arch["blocks"], child["blocks"]))
                for f in range(8) if r[f] != s[f] and f != 0]
        assert len(diff) == 1
    # a preset of another layout mutates too (an evolution seed), but has no encoding
    child = space.mutate(PRESETS["MobileNetV3-Large"], rng)
    assert child != PRESETS["MobileNetV3-Large"] and child.space == "mobile"
    with pytest.raises(ArchError, match="layout of the base"):
        space.encode(PRESETS["MobileNetV3-Large"])


def test_cifar_build_trains_with_drop_connect():
    space = MobileBlockSpace(num_classes=10, input_size=32, stem_stride=1)
    net = space.build(PRESETS["EfficientNet-B0"])
    assert net.resolution == 32 and net.blocks[-1].drop_connect == pytest.approx(0.2 * 15 / 16)
    x = torch.randn(4, 3, 32, 32)
    loss = net(x).logsumexp(1).mean()
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())
    assert count_flops(net, (3, 32, 32)).macs == 31_979_392  # 32x32, stride-1 stem


def test_preset_trains_by_name_through_lightning_nas_fit(tmp_path):
    """configs/train/cifar10_mobile_preset.yaml, MnasNet-A1 by name, on synthetic 32x32
    images (the CIFAR-10 JPEGs may be absent), two steps."""
    main(["fit", "--config", str(ROOT / "configs/train/cifar10_mobile_preset.yaml"),
          "--trainer.default_root_dir", str(tmp_path), "--trainer.logger.init_args.save_dir",
          str(tmp_path), "--trainer.enable_progress_bar", "false", "--trainer.max_epochs", "1",
          "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
          "--model.init_args.arch", "MnasNet-A1",
          "--data", "lightning_nas.data.SyntheticDataModule", "--data.image_size", "32",
          "--data.train_size", "32", "--data.test_size", "8", "--data.batch_size", "8"])
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert Arch.from_dict(ckpt["lightning_nas"]["arch"]) == PRESETS["MnasNet-A1"]
    assert "train/loss" in (tmp_path / "metrics.csv").read_text()


def test_a_preset_fine_tunes_with_a_new_head(tmp_path):
    """Weights of a 1000-class MobileNetV3-Small initialise a 10-class one: everything but
    the classifier is copied, the classifier is new."""
    space = MobileBlockSpace(input_size=32, stem_stride=1)
    source = FixedArchitecture(arch="MobileNetV3-Small", space=space, num_classes=1000, seed=1)
    path = tmp_path / "imagenet.ckpt"
    torch.save({"state_dict": source.state_dict()}, path)
    target = FixedArchitecture(arch="MobileNetV3-Small", space=space, num_classes=10,
                               init_from=str(path), seed=2)
    own, saved = target.net.state_dict(), source.net.state_dict()
    assert own["classifier.weight"].shape == (10, 1024)
    copied = [k for k in own if not k.startswith("classifier.")]
    assert copied and all(torch.equal(own[k], saved[k]) for k in copied)
