"""CUDA paths: mixed precision steps of DARTS and OFA, channels_last, the latency profiler's
cuda target, pinned streaming batches. Marked ``gpu`` and skipped without CUDA;
``scripts/gpu_check.sh`` runs them on a GPU machine (``pytest -m gpu``)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from ofa_helpers import tiny_data, tiny_space
from streaming_helpers import make_image_folder

from lightning_nas.data import StreamingImageDataModule, SyntheticDataModule
from lightning_nas.spaces.darts import DartsSpace
from lightning_nas.spaces.nb201 import NB201Space
from lightning_nas.strategies.darts import DartsSearch
from lightning_nas.strategies.ofa import OnceForAll
from lightning_nas.strategies.pc_darts import PCDarts

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

PRECISIONS = ["32-true", "bf16-mixed", "16-mixed"]


def gpu_trainer(steps: int, precision: str = "32-true") -> L.Trainer:
    return L.Trainer(max_steps=steps, accelerator="gpu", devices=1, precision=precision,
                     logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, limit_val_batches=1, num_sanity_val_steps=0)


def search_data(size: int = 32) -> SyntheticDataModule:
    return SyntheticDataModule(num_classes=10, image_size=size, train_size=128, test_size=32,
                               batch_size=16, search=True, seed=0, pin_memory=True)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("space", ["darts", "nb201"])
def test_darts_mixed_precision_steps_on_cuda(precision, space):
    if precision == "bf16-mixed" and not torch.cuda.is_bf16_supported():
        pytest.skip("no bf16 on this GPU")
    if space == "darts":
        model = DartsSearch(space=DartsSpace(), channels=8, layers=5, num_classes=10, seed=0)
    else:
        model = DartsSearch(space=NB201Space(channels=8, cells_per_stage=1, num_classes=10),
                            num_classes=10, seed=0)
    alphas = [a.detach().clone() for a in model.alphas]
    t = gpu_trainer(16, precision)  # 8 batches: 8 architecture and 8 weight steps
    t.fit(model, datamodule=search_data())
    assert t.global_step == 16
    moved = [not torch.equal(a, b.detach().cpu()) for a, b in zip(alphas, model.alphas)]
    assert any(moved)  # at most a few 16-mixed steps are skipped while the scale settles
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("precision", PRECISIONS)
def test_pc_darts_and_ofa_mixed_precision_steps_on_cuda(precision):
    if precision == "bf16-mixed" and not torch.cuda.is_bf16_supported():
        pytest.skip("no bf16 on this GPU")
    pc = PCDarts(channels=8, layers=5, partial_channels=4, num_classes=10, seed=0)
    gpu_trainer(6, precision).fit(pc, datamodule=search_data())
    assert all(torch.isfinite(p).all() for p in pc.parameters())
    ofa = OnceForAll(num_classes=4, in_channels=3, space=tiny_space(), seed=0,
                     phases=[{"name": "full", "epochs": 1, "lr": 0.1, "resolutions": [6, 8]}],
                     eval_subnets={"largest": "largest"}, bn_calibration_batches=1)
    before = [p.detach().clone() for p in ofa.supernet.parameters()]
    t = gpu_trainer(4, precision)
    t.fit(ofa, datamodule=tiny_data())
    assert t.global_step == 4
    after = [p.detach().cpu() for p in ofa.supernet.parameters()]
    assert sum(not torch.equal(a, b) for a, b in zip(before, after)) > len(before) // 2
    assert all(torch.isfinite(p).all() for p in after)


def test_channels_last_supernet_equals_nchw_on_cuda():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32, device="cuda")
    outs = []
    for channels_last in (False, True):
        model = DartsSearch(space=DartsSpace(), channels=8, layers=5, num_classes=10, seed=0,
                            channels_last=channels_last).cuda()
        with torch.no_grad():
            outs.append(model(x))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-3, atol=1e-3)


def test_latency_profiler_measures_on_cuda():
    from lightning_nas.callbacks.latency import measure_on_target

    space = tiny_space()
    net = space.build(space.largest(), num_classes=4)
    result = measure_on_target(net, (3, 8, 8), "cuda", batch_size=8, warmup=2, repeats=5)
    assert result.device.startswith("cuda") and result.median_ms > 0
    assert next(net.parameters()).device.type == "cpu"  # the model comes back


def test_streaming_batches_pinned_to_cuda(tmp_path):
    root = make_image_folder(tmp_path, classes=3, per_class=6)
    dm = StreamingImageDataModule(root=str(root), image_size=8, batch_size=4, num_workers=2,
                                  pin_memory=True)
    ofa = OnceForAll(num_classes=3, in_channels=3, space=tiny_space(num_classes=3), seed=0,
                     phases=[{"name": "full", "epochs": 1, "lr": 0.1}],
                     eval_subnets={"largest": "largest"}, bn_calibration_batches=1)
    t = gpu_trainer(3, "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed")
    t.fit(ofa, datamodule=dm)
    assert t.global_step == 3
