"""Per-op latency tables of the DARTS and NB201 spaces, the expected latency of a search's
distribution, the latency term of DARTS/GDAS/PC-DARTS and ENAS. Timings come from a fake
clock that charges 1 ns per FLOP (deterministic): a whole network's FLOPs are exactly the sum
of its parts', so the table must predict the network exactly."""

from __future__ import annotations

import itertools
import random

import lightning as L
import pytest
import torch

from lightning_nas.data import SyntheticDataModule
from lightning_nas.hardware.cell_latency import (
    CellLatencyHook,
    CellLatencyTable,
    LatencyLoss,
    enumerate_parts,
    main,
)
from lightning_nas.hardware.latency import measure_latency
from lightning_nas.hardware.metrics import count_flops
from lightning_nas.spaces.darts import DartsSpace
from lightning_nas.spaces.nb201 import NB201Space
from lightning_nas.strategies.darts import DartsSearch
from lightning_nas.strategies.enas import ENAS

SHAPE = (3, 8, 8)


def flop_measure(model, input_shape, *, batch_size=1, **kwargs):
    """measure_latency with a clock that advances 1 ns per FLOP of each forward pass."""
    flops = count_flops(model, input_shape, batch_size=batch_size).flops
    ticks = itertools.count(0, flops)
    return measure_latency(model, input_shape, batch_size=batch_size,
                           clock=lambda: next(ticks), **kwargs)


def spaces():
    return {"darts": DartsSpace(channels=4, layers=5, num_classes=4),
            "nb201": NB201Space(channels=4, cells_per_stage=2, num_classes=4)}


@pytest.fixture(scope="module")
def tables():
    return {name: CellLatencyTable.build(space, SHAPE, warmup=0, repeats=1, rounds=1,
                                         calibrate=5, measure=flop_measure)
            for name, space in spaces().items()}


@pytest.mark.parametrize("name", ["darts", "nb201"])
def test_every_part_runs_on_its_input(name):
    for part in enumerate_parts(spaces()[name], SHAPE).values():
        part.build().eval()(torch.randn(2, *part.input_shape))


@pytest.mark.parametrize("name", ["darts", "nb201"])
def test_prediction_equals_the_whole_network(tables, name):
    """A missing part, a wrong size, channel count or stride would change the FLOPs."""
    table, space = tables[name], spaces()[name]
    assert table.scale == pytest.approx(1.0) and abs(table.overhead_ms) < 1e-9
    rng = random.Random(7)
    for _ in range(10):
        arch = space.sample(rng)
        whole = count_flops(space.build(arch), SHAPE).flops / 1e6  # 1 ns per FLOP -> ms
        assert table.predict(arch) == pytest.approx(whole, rel=1e-9)


def test_expected_latency_of_a_path_is_its_prediction(tables):
    nb, darts = tables["nb201"], tables["darts"]
    arch = spaces()["nb201"].sample(random.Random(1))
    net = spaces()["nb201"].supernet()
    weights, _ = net.path_weights(arch)
    assert float(nb.expected({"cell": weights})) == pytest.approx(nb.predict(arch))
    arch = spaces()["darts"].sample(random.Random(2))
    dnet = spaces()["darts"].supernet(channels=4, layers=3)
    weights, _ = dnet.path_weights(arch)
    kept = {c: 0.5 * (w.sum(-1) > 0).float() for c, w in weights.items()}  # x2 = 1 per kept
    assert float(darts.expected(weights, kept)) == pytest.approx(darts.predict(arch))


def test_expected_latency_is_differentiable_and_ranks_ops(tables):
    table = tables["nb201"]
    alpha = torch.zeros(6, 5, requires_grad=True)
    latency = table.expected({"cell": alpha.softmax(-1)})
    (grad,) = torch.autograd.grad(latency, alpha)
    ops = NB201Space.ops  # none, skip, conv1x1, conv3x3, avgpool: conv3x3 costs most
    assert (grad[:, ops.index("nor_conv_3x3")] > grad[:, ops.index("nor_conv_1x1")]).all()
    assert (grad[:, ops.index("nor_conv_1x1")] > grad[:, ops.index("none")]).all()


def test_save_load_and_refusals(tables, tmp_path):
    path = tables["nb201"].save(tmp_path / "nb201.json")
    loaded = CellLatencyTable.load(path, spaces()["nb201"], device="cpu")
    arch = spaces()["nb201"].sample(random.Random(3))
    assert loaded.predict(arch) == pytest.approx(tables["nb201"].predict(arch))
    with pytest.raises(ValueError, match="built for another space or input .*channels"):
        CellLatencyTable.load(path, NB201Space(channels=8, cells_per_stage=2, num_classes=4))
    with pytest.raises(ValueError, match="class: table 'NB201Space', here 'DartsSpace'"):
        CellLatencyTable.load(path, spaces()["darts"])
    with pytest.raises(ValueError, match="input_shape"):
        CellLatencyTable.load(path, spaces()["nb201"], (3, 16, 16))
    with pytest.raises(ValueError, match="measured on 'cpu', not on the target 'cuda'"):
        CellLatencyTable.load(path, spaces()["nb201"], device="cuda")
    with pytest.raises(FileNotFoundError, match="build it on the target device"):
        CellLatencyTable.load(tmp_path / "none.json", spaces()["nb201"])
    hook = CellLatencyHook(str(path), spaces()["nb201"])
    assert hook(arch)["latency_ms"] == pytest.approx(loaded.predict(arch))


def test_latency_loss_settings_are_checked():
    with pytest.raises(ValueError, match="target_ms must be a number > 0"):
        LatencyLoss(table="t.json", target_ms=0)
    with pytest.raises(ValueError, match="form must be 'mnasnet' or 'linear'"):
        LatencyLoss(table="t.json", target_ms=1, form="cubic")
    loss = LatencyLoss(table="t.json", target_ms=2.0, weight=0.5)
    assert float(loss.combine(torch.tensor(1.0), torch.tensor(8.0))) == pytest.approx(2.0)
    assert loss.reward(0.9, 8.0) == pytest.approx(0.45)
    with pytest.raises(ValueError, match="first-order"):
        DartsSearch(num_classes=4, space=spaces()["nb201"], order=2,
                    latency=LatencyLoss(table="t.json", target_ms=1.0))


def search(tmp_path, tables, weight, cls=DartsSearch, **kw):
    path = tables["nb201"].save(tmp_path / "table.json")
    model = cls(num_classes=4, in_channels=3, space=spaces()["nb201"], seed=0,
                latency=LatencyLoss(table=str(path), target_ms=0.05, weight=weight), **kw)
    data = SyntheticDataModule(num_classes=4, in_channels=3, image_size=8, train_size=64,
                               test_size=8, batch_size=16, search=True, seed=0)
    L.Trainer(max_epochs=3, logger=L.pytorch.loggers.CSVLogger(tmp_path, name=str(weight)),
              enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
              limit_val_batches=1, log_every_n_steps=1).fit(model, data)
    return model


def test_a_heavier_latency_weight_gives_a_faster_distribution(tmp_path, tables):
    """Same seed, data and steps: the latency term moves the alphas to cheaper ops."""
    plain = search(tmp_path, tables, 0.0, arch_optimizer=lambda p: torch.optim.Adam(p, lr=0.05))
    heavy = search(tmp_path, tables, 2.0, arch_optimizer=lambda p: torch.optim.Adam(p, lr=0.05))
    assert float(heavy.expected_latency()) < 0.8 * float(plain.expected_latency())
    metrics = heavy.trainer.callback_metrics
    assert {"latency/table_ms", "latency/measured_ms", "latency/expected_ms"} <= set(metrics)


def test_enas_takes_the_latency_into_its_reward(tmp_path, tables, monkeypatch):
    model = search(tmp_path, tables, 0.5, cls=ENAS, controller_steps=1, controller_aggregate=2,
                   eval_samples=2, final_samples=2, hidden=8)
    latency = model.latency_table.predict(model.best_arch)
    monkeypatch.setattr(model, "_accuracy", lambda arch, batches: 0.8)
    assert model._reward(model.best_arch, []) == pytest.approx(0.8 * (latency / 0.05) ** -0.5)


def test_cli_builds_a_table(tmp_path, capsys):
    table = main(["--space", "nb201", "--channels", "4", "--cells-per-stage", "1",
                  "--input-shape", "3", "8", "8", "--warmup", "0", "--repeats", "1",
                  "--rounds", "1", "--calibrate", "3", "--out", str(tmp_path / "t.json")])
    assert (tmp_path / "t.json").is_file() and len(table.entries) == 1 + 3 * 5 + 2 + 1
    assert "19 entries" in capsys.readouterr().out  # stem, 3 stages x 5 ops, 2 res, head


def test_latency_config_runs_a_few_steps(tmp_path):
    """configs/darts/digits_latency.yaml with a table of its space (FLOP clock)."""
    from pathlib import Path

    from lightning_nas.cli import main as cli_main

    root = Path(__file__).resolve().parents[1]
    space = DartsSpace(channels=16, layers=5, in_channels=1)
    table = CellLatencyTable.build(space, (1, 8, 8), warmup=0, repeats=1, rounds=1,
                                   calibrate=3, measure=flop_measure).save(tmp_path / "t.json")
    run = tmp_path / "run"
    cli_main(["fit", "--config", str(root / "configs/darts/digits_latency.yaml"),
              "--model.init_args.latency.table", str(table), "--trainer.default_root_dir",
              str(run), "--trainer.logger.init_args.save_dir", str(run),
              "--trainer.enable_progress_bar", "false", "--trainer.max_epochs", "1",
              "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
              "--model.init_args.channels", "4", "--model.init_args.layers", "3",
              "--model.init_args.warmup_epochs", "0"])
    text = (run / "metrics.csv").read_text()
    assert "latency/table_ms" in text and "latency/measured_ms" in text


def test_spos_trains_only_paths_within_a_table_latency_limit(tmp_path, tables):
    from lightning_nas.hardware.objective import Constraints
    from lightning_nas.strategies.spos import SPOS

    space = spaces()["nb201"]
    path = tables["nb201"].save(tmp_path / "t.json")
    hook = CellLatencyHook(str(path), space, SHAPE)
    rng = random.Random(0)
    limit = sorted(hook(space.sample(rng))["latency_ms"] for _ in range(40))[20]  # ~median
    model = SPOS(num_classes=4, in_channels=3, space=space, metric_hooks=[hook],
                 constraints=Constraints(max_latency_ms=limit), eval_paths=2, seed=0)
    data = SyntheticDataModule(num_classes=4, in_channels=3, image_size=8, train_size=40,
                               test_size=8, batch_size=8, seed=0, val_fraction=0.2)
    L.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
              enable_checkpointing=False, limit_val_batches=1).fit(model, data)
    trained = [space.parse(s) for s in model.sampled]
    assert trained and all(hook(a)["latency_ms"] <= limit for a in trained)
    assert model.rejected > 0


@pytest.mark.parametrize("name", ["darts", "nb201"])
def test_per_op_fit_recovers_in_network_op_costs(tables, name, tmp_path):
    """Networks whose ops cost known multiples of their isolated timings (plus an overhead):
    the per-op fit on the single-op networks and a few random ones finds the multiples, and
    predicts other networks, the expected latency of a path and a reloaded table exactly."""
    from lightning_nas.hardware.cell_latency import calibration_archs

    space = spaces()[name]
    # every part its own positive isolated time (the FLOP clock gives pools and skips 0)
    table = CellLatencyTable(space, SHAPE, {key: 0.01 * (1 + i % 7) for i, key in
                                            enumerate(sorted(tables[name].entries))})
    truth = {op: 1.0 + 0.25 * k for k, op in enumerate(space.ops)}
    overhead = 0.7 if name == "darts" else 0.0

    def network_ms(arch):
        totals = table.op_totals(arch)
        return overhead + table.skeleton_ms() + sum(truth[op] * t for op, t in totals.items())

    archs = calibration_archs(space, 6, random.Random(3))
    assert len(archs) == 6 + len(space.search_ops if name == "darts" else space.ops)
    table.calibrate(archs, [network_ms(a) for a in archs], fit="per_op")
    # DARTS: the factors themselves ('none' is free). NB201 runs all 6 edges, so its
    # overhead cannot be told from a share of every op: only the predictions are unique.
    for op in (space.search_ops if name == "darts" else ()):
        assert table.op_scales[op] == pytest.approx(truth[op], rel=1e-6), op
    rng = random.Random(11)
    others = [space.sample(rng) for _ in range(10)]
    for arch in others:
        assert table.predict(arch) == pytest.approx(network_ms(arch), rel=1e-6)
    arch = others[0]
    net = space.supernet(**({"channels": 4, "layers": 5} if name == "darts" else {}))
    weights, _ = net.path_weights(arch)
    if name == "nb201":
        assert float(table.expected({"cell": weights})) == pytest.approx(network_ms(arch),
                                                                         rel=1e-5)
    loaded = CellLatencyTable.load(table.save(tmp_path / "t.json"), space, SHAPE)
    assert loaded.op_scales == table.op_scales
    assert loaded.predict(arch) == pytest.approx(table.predict(arch), rel=1e-12)
    with pytest.raises(ValueError, match="per_op.*needs at least"):
        table.calibrate(archs[:3], [network_ms(a) for a in archs[:3]], fit="per_op")
