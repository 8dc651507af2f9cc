"""The callbacks/ YAML fragments stacked onto real configs through the real CLI, and the
LatencyProfiler / ParetoCallback(from_strategy) pair: a digits DARTS search with
callbacks/latency.yaml and callbacks/wandb_pareto.yaml leaves an offline W&B run with the
per-epoch latency of the derived cell, the genotype text, the cell pictures and the Pareto
table and scatter; every other fragment runs a few steps (tiny overrides)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from lightning_nas.callbacks.latency import LatencyProfiler, measure_on_target
from lightning_nas.callbacks.pareto import ParetoCallback
from lightning_nas.cli import main

ROOT = Path(__file__).resolve().parents[1]
FRAGMENTS = sorted(p.name for p in (ROOT / "callbacks").glob("*.yaml"))
# the derived network the profiler builds: a small DARTS network for 8x8 grey digits
SMALL_SPACE = json.dumps({"class_path": "lightning_nas.spaces.darts.DartsSpace",
                          "init_args": {"channels": 4, "layers": 3, "in_channels": 1}})


@pytest.fixture
def cli_wandb(offline_wandb, tmp_path, monkeypatch):
    """Offline W&B (conftest) and the test's tmp folder as the working directory: the
    fragments' W&B save_dir "runs" and the configs' run folders are relative."""
    monkeypatch.chdir(tmp_path)
    yield offline_wandb


def fit(config: str, *fragments: str, epochs: int = 2, extra: list[str] = ()) -> Path:
    """``lightning-nas fit`` of a config with fragments stacked, from the test's tmp folder
    (the configs' relative run folders land there); returns the run folder."""
    args = ["fit", "--config", str(ROOT / config)]
    for name in fragments:
        args += ["--config", str(ROOT / "callbacks" / name)]
    main([*args, "--trainer.enable_progress_bar", "false", "--trainer.max_epochs", str(epochs),
          "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1", *extra])
    saved = yaml.safe_load((ROOT / config).read_text())["trainer"]["logger"]
    return Path.cwd() / saved["init_args"]["save_dir"]


TRAIN_TINY = ["--model.init_args.arch", "DARTS_V2", "--model.init_args.space.init_args.channels",
              "4", "--model.init_args.space.init_args.layers", "3"]
DARTS_TINY = ["--model.init_args.channels", "4", "--model.init_args.layers", "3",
              "--model.init_args.space", SMALL_SPACE]


def wandb_records(path: Path) -> list[bytes]:
    """The records of a W&B transaction log (``run-*.wandb``): a 7-byte header (":W&B",
    magic, version), then LevelDB-log framing in 32 KiB blocks: per chunk a 4-byte
    checksum, a 2-byte little-endian length and a type (1 full, 2 first, 3 middle, 4 last);
    a block's tail shorter than a chunk header is padding."""
    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B", path
    records, pos, pending = [], 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        if kind == 0:  # zero padding: the end of what was written
            break
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            records.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        else:
            records.append(pending + chunk)
    return records


def wandb_history(run_folder: Path) -> list[dict]:
    """The history rows of an offline W&B run (each logged dict, values JSON-decoded)."""
    from wandb.proto import wandb_internal_pb2

    rows = []
    for data in wandb_records(next(run_folder.glob("*.wandb"))):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})
    return rows


def test_darts_digits_with_latency_and_wandb_pareto_fragments(tmp_path, cli_wandb):
    run = fit("configs/darts/digits.yaml", "latency.yaml", "wandb_pareto.yaml",
              extra=DARTS_TINY)
    # the run folder: latency.json (one record per epoch), the front, pictures, arch.json
    latency = json.loads((run / "latency.json").read_text())
    records = latency["records"]
    assert latency["target"] == "cpu" and [r["epoch"] for r in records] == [0, 1]
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [r["arch"] for r in records] == [h["string"] for h in history]
    for r in records:
        assert r["batch_size"] == 1 and r["input_shape"] == [1, 8, 8] and r["runs"] == 20
        assert r["q1_ms"] <= r["median_ms"] <= r["q3_ms"] and r["params"] > 0 < r["flops"]
        assert 0.0 <= r["accuracy"] <= 1.0
    pareto = json.loads((run / "pareto.json").read_text())
    assert pareto["n_candidates"] == len({r["arch"] for r in records})
    for name in ("pareto.png", "cell_normal.png", "cell_reduce.png", "alphas.png"):
        assert (run / name).stat().st_size > 1000, name

    # the offline W&B run: latency per epoch, genotype text, pictures, Pareto table/scatter
    wandb_runs = sorted((tmp_path / "runs" / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 1, wandb_runs
    rows = wandb_history(wandb_runs[0])
    logged = [row["latency/derived_ms"] for row in rows if "latency/derived_ms" in row]
    assert logged == pytest.approx([r["latency_ms"] for r in records])
    assert [row["pareto/hypervolume"] for row in rows if "pareto/hypervolume" in row]
    media = wandb_runs[0] / "files" / "media"
    genotype = max((json.loads(p.read_text()) for p in
                    (media / "table" / "arch").glob("genotype_*.table.json")),
                   key=lambda t: len(t["data"]))
    assert genotype["data"] == [[h["epoch"], h["string"]] for h in history]
    for name in ("cell_normal", "cell_reduce"):
        assert len(list((media / "images" / "arch").glob(f"{name}_*.png"))) == 2
    candidates = max((json.loads(p.read_text()) for p in
                      (media / "table" / "pareto").glob("candidates_*.table.json")),
                     key=lambda t: len(t["data"]))
    assert {"arch", "accuracy", "latency_ms", "on_front"} <= set(candidates["columns"])
    arch_col = candidates["columns"].index("arch")
    assert {row[arch_col] for row in candidates["data"]} == {r["arch"] for r in records}
    # wandb.plot.scatter logs its table (the chart's spec goes to the run config)
    scatter = [row["pareto/scatter_table/nrows"] for row in rows
               if row.get("pareto/scatter_table/_type") == "table-file"]
    assert scatter and scatter[-1] == len({r["arch"] for r in records})


@pytest.mark.parametrize("config, fragment, extra, epochs, expect", [
    ("configs/train/digits.yaml", "zero_cost.yaml", TRAIN_TINY, 1, "zero_cost/synflow"),
    # the curve needs min_epochs (3) points before the first check
    ("configs/train/digits.yaml", "early_stopping.yaml", TRAIN_TINY, 4, "lc/"),
    ("configs/darts/digits.yaml", "export.yaml", DARTS_TINY, 1, "cell_normal.png"),
    ("configs/darts/digits.yaml", "wandb.yaml", DARTS_TINY, 1, "wandb"),
])
def test_each_fragment_runs_stacked_on_a_config(tmp_path, cli_wandb, config, fragment,
                                                 extra, epochs, expect):
    run = fit(config, fragment, extra=list(extra), epochs=epochs)
    if expect.endswith(".png"):
        assert (run / expect).stat().st_size > 1000
        assert (run / "arch.json").is_file()
    elif expect == "wandb":
        assert len(list((tmp_path / "runs" / "wandb").glob("offline-run-*"))) == 1
        assert (run / "metrics.csv").is_file()  # the config's own CSV logger stays
    else:
        assert expect in (run / "metrics.csv").read_text().splitlines()[0]


def test_every_fragment_is_run_by_a_test():
    tested = {"latency.yaml", "wandb_pareto.yaml", "zero_cost.yaml", "early_stopping.yaml",
              "export.yaml", "wandb.yaml"}
    assert set(FRAGMENTS) == tested


class FakeClock:
    """ns readings that advance by the next of ``steps_ms`` per timed run (start, end)."""

    def __init__(self, steps_ms):
        self.steps, self.now, self.calls = list(steps_ms), 0, 0

    def __call__(self) -> int:
        if self.calls % 2:  # the end of a timed run
            self.now += int(self.steps[(self.calls // 2) % len(self.steps)] * 1e6)
        self.calls += 1
        return self.now


@pytest.mark.parametrize("target", ["cpu", "torchscript", "onnxruntime"])
def test_measure_on_target_with_a_fake_clock(target):
    if target == "onnxruntime":
        pytest.importorskip("onnxruntime")
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(),
                              torch.nn.LazyLinear(3))
    net(torch.zeros(1, 1, 8, 8))
    result = measure_on_target(net, (1, 8, 8), target, batch_size=2, warmup=1, repeats=5,
                               clock=FakeClock([3.0, 1.0, 2.0, 5.0, 4.0]))
    assert result.median_ms == pytest.approx(3.0) and result.repeats == 5
    assert (result.p25_ms, result.p75_ms) == pytest.approx((2.0, 4.0))
    assert result.batch_size == 2


def test_bad_profiler_and_pareto_settings_are_clear_errors():
    with pytest.raises(ValueError, match="unknown latency target 'tpu'"):
        LatencyProfiler("tpu")
    with pytest.raises(ValueError, match="predict_only needs a latency table"):
        LatencyProfiler(predict_only=True)
    with pytest.raises(ValueError, match="repeats must be an int >= 1"):
        LatencyProfiler(repeats=0)

    class Trainer:
        callbacks: list = []

    pareto = ParetoCallback(from_strategy=True)  # latency_ms objective, no profiler
    with pytest.raises(ValueError, match="stack callbacks/latency.yaml"):
        pareto.on_fit_start(Trainer(), None)
    sized = ParetoCallback(from_strategy=True, objectives={"accuracy": "max", "params": "min"})
    sized.on_fit_start(Trainer(), None)  # params and FLOPs need no profiler
    odd = ParetoCallback(from_strategy=True, objectives={"accuracy": "max", "energy": "min"})
    with pytest.raises(ValueError, match=r"objectives \['energy'\] have no source"):
        odd.on_fit_start(Trainer(), None)


def test_spos_and_ofa_profile_every_scored_architecture(tmp_path):
    """SPOS lists its fixed evaluation paths (best first), OFA its tracked subnets; the
    profiler measures each with a fake clock and the front takes them with params/FLOPs."""
    import lightning as L

    from ofa_helpers import tiny_data, tiny_space

    from lightning_nas.spaces.nb201 import NB201Space
    from lightning_nas.strategies.ofa import OnceForAll, Phase
    from lightning_nas.strategies.spos import SPOS

    cases = [
        (SPOS(space=NB201Space(channels=4, cells_per_stage=1, num_classes=4), num_classes=4,
              in_channels=3, eval_paths=3, seed=0), tiny_data(), 3),
        (OnceForAll(space=tiny_space(), num_classes=4, in_channels=3, channels_last=False,
                    phases=[Phase("full", 1, 0.05, resolutions=[6, 8])],
                    bn_calibration_batches=1, seed=0), tiny_data(), 3),
    ]
    for module, dm, expected in cases:
        profiler = LatencyProfiler(repeats=3, warmup=0, clock=FakeClock([1.0, 2.0, 3.0]))
        presets = ["MobileNetV3-Small"] if isinstance(module, OnceForAll) else None
        pareto = ParetoCallback(from_strategy=True, dirpath=str(tmp_path / "p"),
                                objectives={"accuracy": "max", "latency_ms": "min"},
                                reference_presets=presets)
        trainer = L.Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1,
                            callbacks=[pareto, profiler], logger=False,
                            enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, num_sanity_val_steps=0,
                            default_root_dir=tmp_path / type(module).__name__)
        trainer.fit(module, dm)
        names = [r["name"] for r in profiler.records]
        assert len(names) == expected, names
        assert all(r["latency_ms"] == pytest.approx(2.0) for r in profiler.records)
        assert len(pareto) == len({r["arch"] for r in profiler.records})
        if isinstance(module, SPOS):
            acc = [r["accuracy"] for r in profiler.records]
            assert acc == sorted(acc, reverse=True)  # best first
            assert profiler.records[0]["arch"] == module.space.to_string(module.best_arch)
        else:
            assert names == list(module.eval_archs)
            shapes = {r["name"]: r["input_shape"] for r in profiler.records}
            assert shapes["largest"] == [3, 8, 8] and shapes["smallest"] == [3, 6, 6]
            # the preset, built for the 8x8 4-class data with the OFA space's stride-1 stem,
            # measured by the profiler's clock; drawn beside the front, never in it
            from lightning_nas.spaces.mobile_blocks import PRESETS, MobileBlockSpace, count_macs

            (ref,) = json.loads((tmp_path / "p" / "pareto.json").read_text())["references"]
            small = MobileBlockSpace(num_classes=4, input_size=8, stem_stride=1)
            assert ref["name"] == "MobileNetV3-Small" and ref["latency_ms"] == pytest.approx(2.0)
            assert ref["params"] == count_macs(PRESETS["MobileNetV3-Small"], space=small,
                                               resolution=8, num_classes=4)[0]


def test_predict_only_uses_the_latency_table_and_a_foreign_table_is_refused(tmp_path):
    """With a cell latency table of the strategy's space the profiler records the table's
    prediction and measures nothing; a table of another space is an error at fit start."""
    import lightning as L

    from lightning_nas.data import SyntheticDataModule
    from lightning_nas.hardware.cell_latency import CellLatencyTable
    from lightning_nas.spaces.darts import DartsSpace
    from lightning_nas.spaces.nb201 import NB201Space
    from lightning_nas.strategies.darts import DartsSearch
    from test_cell_latency import flop_measure

    space = NB201Space(channels=4, cells_per_stage=1, num_classes=4)
    table = CellLatencyTable.build(space, (3, 8, 8), warmup=0, repeats=1, rounds=1,
                                   calibrate=3, measure=flop_measure)
    table.save(tmp_path / "nb201.json")
    other = CellLatencyTable.build(DartsSpace(channels=4, layers=3, num_classes=4), (3, 8, 8),
                                   warmup=0, repeats=1, rounds=1, calibrate=3,
                                   measure=flop_measure)
    other.save(tmp_path / "darts.json")

    def fit(path):
        profiler = LatencyProfiler(table=str(path), predict_only=True, batch_size=1)
        trainer = L.Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1,
                            callbacks=[profiler], logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False,
                            num_sanity_val_steps=0, default_root_dir=tmp_path / "run")
        model = DartsSearch(space=space, num_classes=4, in_channels=3, seed=0)
        trainer.fit(model, SyntheticDataModule(num_classes=4, in_channels=3, image_size=8,
                                               train_size=16, test_size=8, batch_size=8,
                                               search=True, seed=0))
        return profiler, model

    profiler, model = fit(tmp_path / "nb201.json")
    record = profiler.records[-1]
    assert record["latency_ms"] == pytest.approx(table.predict(model.current_arch()))
    assert record["predicted_ms"] == record["latency_ms"] and "runs" not in record
    with pytest.raises(ValueError, match="latency table .*darts.json"):
        fit(tmp_path / "darts.json")
