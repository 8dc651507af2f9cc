"""Successive halving, Hyperband and BOHB (search/multi_fidelity.py) in the search loop:
the published bracket schedule, promotions of the best, replacement of failed new cells,
parallel trials, resume, the incumbent at the largest budget, BOHB's model, and a real
training search through the CLI with each config."""

from __future__ import annotations

import functools
import json
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from test_search_loop import OP_VALUE, SPACE

from lightning_nas.search import TabularEvaluator, read_journal, run_search, without_timing
from lightning_nas.search.cli import main_search
from lightning_nas.search.multi_fidelity import (
    BOHB,
    Hyperband,
    SuccessiveHalving,
    hyperband_brackets,
)
from lightning_nas.search.training import TrainingEvaluator
from lightning_nas.spaces.base import Arch
from lightning_nas.spaces.nb201 import NB201Space

ROOT = Path(__file__).resolve().parents[1]


class FidelityEvaluator:
    """A fake accuracy that rises with the budget (epochs) and with the cell's ops; fails
    for cells that are all 'none' at the first ask (picklable, module level)."""

    primary_metric = "acc"
    supports_fidelity = True

    def __init__(self, fail_digests: frozenset[str] = frozenset()):
        self.fail_digests = fail_digests
        self.calls: list[tuple[str, float]] = []

    def __call__(self, arch: Arch, fidelity: float | None = None) -> dict[str, float]:
        self.calls.append((arch.digest, fidelity))
        if arch.digest in self.fail_digests:
            raise RuntimeError("diverged")
        noise = random.Random(f"{arch.digest}|{fidelity}").random()
        acc = 50 + sum(OP_VALUE[op] for op in arch.values()) + 2 * fidelity + noise
        return {"acc": acc, "epochs": fidelity}


def test_brackets_are_hyperbands_table():
    """Li et al. 2018, Table 1 (R = 81, eta = 3), and the digits configs' R = 9."""
    table = hyperband_brackets(1, 81, 3)
    assert [(b["s"], b["sizes"], b["fidelities"]) for b in table] == [
        (4, [81, 27, 9, 3, 1], [1, 3, 9, 27, 81]), (3, [34, 11, 3, 1], [3, 9, 27, 81]),
        (2, [15, 5, 1], [9, 27, 81]), (1, [8, 2], [27, 81]), (0, [5], [81])]
    assert [(b["sizes"], b["fidelities"]) for b in hyperband_brackets(1, 9, 3)] == [
        ([9, 3, 1], [1, 3, 9]), ([5, 1], [3, 9]), ([3], [9])]
    with pytest.raises(ValueError, match="eta must be > 1"):
        hyperband_brackets(1, 9, 1)
    with pytest.raises(ValueError, match="min_fidelity <= max_fidelity"):
        hyperband_brackets(9, 1, 3)


def test_hyperband_promotes_the_best_of_each_rung_and_the_incumbent_is_at_full_budget(
        tmp_path):
    result = run_search(SPACE, Hyperband(SPACE, seed=1), FidelityEvaluator(),
                        run_dir=tmp_path, budget_trials=13 + 6 + 3 + 13, progress=False)
    recs = result.records
    assert [r["fidelity"] for r in recs] == [1] * 9 + [3] * 3 + [9] + [3] * 5 + [9] + \
        [9] * 3 + [1] * 9 + [3] * 3 + [9]
    rung0 = sorted(recs[:9], key=lambda r: -r["objective"])
    assert [r["arch"] for r in recs[9:12]] == [r["arch"] for r in rung0[:3]]
    best_of_rung1 = max(recs[9:12], key=lambda r: r["objective"])
    assert recs[12]["arch"] == best_of_rung1["arch"]
    assert recs[18]["arch"] == max(recs[13:18], key=lambda r: r["objective"])["arch"]
    # new cells are never repeated; promoted ones are the same cells again
    assert len({r["arch"] for r in recs[:9] + recs[13:18] + recs[19:31]}) == 26
    # the incumbent: the best at 9 epochs, not the best score of any budget
    at_full = [r for r in recs if r["fidelity"] == 9]
    assert result.best == max(at_full, key=lambda r: r["objective"])
    assert json.loads((tmp_path / "arch.json").read_text())["trial"] == result.best["trial"]


def test_successive_halving_repeats_the_most_aggressive_bracket(tmp_path):
    result = run_search(SPACE, SuccessiveHalving(SPACE, min_fidelity=1, max_fidelity=4, eta=2),
                        FidelityEvaluator(), run_dir=tmp_path, budget_trials=2 * 15,
                        progress=False)
    # s_max = 2, n = ceil(3 / 3 * 2^2) = 4: 4 cells x 1 epoch, the best 2 x 2, the best 1 x 4
    one_round = [1] * 4 + [2] * 2 + [4]
    assert [r["fidelity"] for r in result.records][:14] == one_round * 2


def test_a_failed_new_cell_is_replaced_and_a_failed_promotion_is_dropped(tmp_path):
    probe = run_search(SPACE, Hyperband(SPACE, seed=2), FidelityEvaluator(),
                       run_dir=tmp_path / "probe", budget_trials=9, progress=False)
    first = Arch.from_dict(probe.records[0]["arch_json"])
    result = run_search(SPACE, Hyperband(SPACE, seed=2),
                        FidelityEvaluator(frozenset({first.digest})),
                        run_dir=tmp_path / "run", budget_trials=14, progress=False)
    statuses = [(r["status"], r["fidelity"]) for r in result.records]
    assert statuses[0] == ("failed", 1)
    assert statuses[1:10] == [("ok", 1)] * 9  # a tenth new cell took its place
    assert [f for _, f in statuses[10:14]] == [3, 3, 3, 9]


def test_parallel_trials_start_the_next_bracket_and_the_search_is_reproducible(tmp_path):
    def search(run_dir):
        with ThreadPoolExecutor(4) as pool:
            return run_search(SPACE, Hyperband(SPACE, seed=3), FidelityEvaluator(),
                              run_dir=run_dir, budget_trials=30, executor=pool,
                              progress=False)

    a, b = search(tmp_path / "a"), search(tmp_path / "b")
    assert without_timing(a.records) == without_timing(b.records)
    fidelities = [r["fidelity"] for r in a.records]
    assert len(fidelities) == 30 and fidelities[:9] == [1] * 9
    # while bracket 2's first rung finishes, bracket 1 starts (3 epochs) before any promotion
    assert fidelities[9] == 3 and set(fidelities) == {1, 3, 9}


class Interrupt(BaseException):
    """Stands for a killed process (the loop catches only Exception)."""


class InterruptingEvaluator(FidelityEvaluator):
    def __init__(self, at: int):
        super().__init__()
        self.at = at

    def __call__(self, arch, fidelity=None):
        if len(self.calls) + 1 == self.at:
            raise Interrupt
        return super().__call__(arch, fidelity)


@pytest.mark.parametrize("kind", ["hyperband", "bohb"])
def test_a_killed_search_resumes_to_the_uninterrupted_journal(tmp_path, kind):
    def sampler():
        return Hyperband(SPACE, seed=4) if kind == "hyperband" else BOHB(SPACE, seed=4)

    whole = run_search(SPACE, sampler(), FidelityEvaluator(), run_dir=tmp_path / "whole",
                       budget_trials=40, progress=False)
    broken = tmp_path / "broken"
    with pytest.raises(Interrupt):  # snapshots every 8 records; killed at call 22
        run_search(SPACE, sampler(), InterruptingEvaluator(22), run_dir=broken,
                   budget_trials=40, progress=False, save_seconds=float("inf"), save_every=8)
    assert len(read_journal(broken)) == 21
    run_search(SPACE, sampler(), FidelityEvaluator(), run_dir=broken, budget_trials=40,
               resume=True, progress=False)
    assert without_timing(read_journal(broken)) == without_timing(whole.records)


def test_bohb_density_is_the_aitchison_aitken_average():
    bohb = BOHB(SPACE, bandwidth=0.2)
    points = [[0, 1, 2, 3, 4, 0], [0, 2, 2, 3, 4, 1]]
    # decision 0: both points agree -> 0.8; decision 1: one of two -> 0.5 * 0.8 + 0.5 * 0.05;
    # decisions 2-4: 0.8; decision 5 (x = 0): one of two -> 0.425
    x = [0, 1, 2, 3, 4, 0]
    expected = 0.8 * 0.425 * 0.8 ** 3 * 0.425
    assert bohb._density(points, x, 0.2) == pytest.approx(expected)
    assert bohb._density(points, [1, 1, 2, 3, 4, 0], 0.2) == pytest.approx(
        expected / 0.8 * 0.05)


def test_bohb_model_proposes_better_new_cells_than_random(tmp_path):
    """On the fake objective (3x3 convs best), BOHB's model-drawn new cells beat
    Hyperband's random ones in mean objective at 1 epoch, with the same seeds."""
    def new_cell_scores(sampler, run_dir):
        result = run_search(SPACE, sampler, FidelityEvaluator(), run_dir=run_dir,
                            budget_trials=120, progress=False)
        seen, scores = set(), []
        for r in result.records:  # new cells only: first appearance of a cell
            if r["arch"] not in seen and r["status"] == "ok":
                seen.add(r["arch"])
                scores.append(r["objective"] - 2 * r["fidelity"])
        return scores[20:]  # after the model has data

    bohb = BOHB(SPACE, seed=5, random_fraction=0.0)
    model = new_cell_scores(bohb, tmp_path / "bohb")
    rand = new_cell_scores(Hyperband(SPACE, seed=5), tmp_path / "hb")
    assert bohb.model_asks > 20
    assert sum(model) / len(model) > sum(rand) / len(rand) + 2.0


def test_bad_inputs_get_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="takes no fidelity"):
        run_search(SPACE, Hyperband(SPACE), TabularEvaluator(), run_dir=tmp_path,
                   budget_trials=2, progress=False)
    from lightning_nas.search.zero_cost_evaluator import ZeroCostWarmup

    with pytest.raises(ValueError, match="cannot wrap Hyperband, which chooses each trial's"):
        ZeroCostWarmup(Hyperband(SPACE), scorer=lambda archs: [0.0] * len(archs))
    with pytest.raises(ValueError, match="0 < min_bandwidth <= bandwidth < 1"):
        BOHB(SPACE, bandwidth=1.5)
    with pytest.raises(ValueError, match="whole number of epochs"):
        from lightning_nas.data import DigitsDataModule

        TrainingEvaluator(DigitsDataModule(val_fraction=0.2), space=SPACE)(
            SPACE.sample(random.Random(0)), fidelity=1.5)


@pytest.mark.parametrize("config,promoted_trains",
                         [("configs/search/digits_hyperband.yaml", 2),  # continues 1 -> 3
                          ("configs/search/digits_bohb.yaml", 3)])     # retrains from scratch
def test_multi_fidelity_configs_train_real_cells_at_their_budgets(tmp_path, config,
                                                                  promoted_trains):
    """Budgets 1..3 epochs (eta 3): bracket 1 trains 3 cells for 1 epoch and the best for 3,
    through the CLI with the TrainingEvaluator on digits (2 batches an epoch)."""
    summary = main_search([
        "--config", str(ROOT / config), "--run_dir", str(tmp_path), "--budget_trials", "4",
        "--progress", "false", "--wandb.enabled", "false",
        "--sampler.init_args.max_fidelity", "3",
        "--evaluator.init_args.trainer", '{"accelerator": "cpu", "devices": 1, '
        '"limit_train_batches": 2, "limit_val_batches": 2}'])
    recs = read_journal(tmp_path)
    assert [(r["status"], r["fidelity"], r["metrics"]["epochs"],
             r["metrics"]["epochs_trained"]) for r in recs] == \
        [("ok", 1, 1, 1)] * 3 + [("ok", 3, 3, promoted_trains)]
    assert recs[3]["arch"] == max(recs[:3], key=lambda r: r["objective"])["arch"]
    assert summary["best"]["trial"] == 3


def test_a_resumed_cli_search_continues_the_checkpoints_in_its_run_dir(tmp_path):
    """digits_hyperband.yaml (1..3 epochs) stopped after the three 1-epoch runs, then
    resumed: the promoted cell continues its 1-epoch run from run_dir/continue."""
    args = ["--config", str(ROOT / "configs/search/digits_hyperband.yaml"),
            "--run_dir", str(tmp_path), "--progress", "false", "--wandb.enabled", "false",
            "--sampler.init_args.max_fidelity", "3",
            "--evaluator.init_args.trainer", '{"accelerator": "cpu", "devices": 1, '
            '"limit_train_batches": 2, "limit_val_batches": 2}']
    main_search([*args, "--budget_trials", "3"])
    assert len(list(tmp_path.glob("continue/*/1ep.ckpt"))) == 3
    main_search([*args, "--budget_trials", "4", "--resume", "true"])
    recs = read_journal(tmp_path)
    assert [(r["fidelity"], r["metrics"]["epochs_trained"],
             r["metrics"]["resumed_from_epoch"]) for r in recs] == \
        [(1, 1, 0)] * 3 + [(3, 2, 1)]
    assert len(list(tmp_path.glob("continue/*/3ep.ckpt"))) == 1


TINY = NB201Space(channels=8, cells_per_stage=1)  # trains in well under a second


def _continuing_evaluator(save_dir=None, *, epochs=3, seed=0):
    import torch

    from lightning_nas.data import DigitsDataModule

    return TrainingEvaluator(
        DigitsDataModule(batch_size=32, val_fraction=0.2, seed=0), space=TINY, epochs=epochs,
        weight_optimizer=functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9),
        model={"drop_path_prob": 0.0}, trainer={"accelerator": "cpu", "limit_train_batches": 4,
                                                "limit_val_batches": 3},
        seed=seed, num_threads=1, save_dir=save_dir, continue_training=True)


def _net_weights(folder: Path) -> dict:
    from lightning_nas.checkpoints import load_checkpoint

    (ckpt,) = folder.glob("continue/*/*ep.ckpt")
    return {k: v for k, v in load_checkpoint(ckpt)["state_dict"].items()
            if k.startswith("net.")}


def test_continued_training_is_the_exact_prefix_of_the_full_run(tmp_path):
    """1 epoch, then continued to 3, equals 3 epochs straight: the same weights, metrics and
    validation curve; only the 2 new epochs count as trained."""
    arch = TINY.sample(random.Random(5))
    stepwise = _continuing_evaluator(tmp_path / "a")
    first = stepwise(arch, fidelity=1)
    continued = stepwise(arch, fidelity=3)
    straight = _continuing_evaluator(tmp_path / "b")(arch, fidelity=3)
    assert (first["epochs"], first["epochs_trained"], first["resumed_from_epoch"]) == (1, 1, 0)
    assert (continued["epochs"], continued["epochs_trained"],
            continued["resumed_from_epoch"]) == (3, 2, 1)
    assert (straight["epochs_trained"], straight["resumed_from_epoch"]) == (3, 0)
    for key in ("accuracy", "val_loss", "train_loss", "best_accuracy"):
        assert continued[key] == straight[key], key
    assert continued["accuracy"] != first["accuracy"]  # it did train on
    a, b = _net_weights(tmp_path / "a"), _net_weights(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch_equal(a[k], b[k]) for k in a)
    # one checkpoint per architecture: the 1-epoch one was replaced by the 3-epoch one
    assert [p.name for p in (tmp_path / "a").glob("continue/*/*ep.ckpt")] == ["3ep.ckpt"]


def torch_equal(x, y) -> bool:
    import torch

    return bool(torch.equal(x, y))


def test_continued_training_falls_back_to_a_fresh_run_and_checks_its_files(tmp_path):
    arch = TINY.sample(random.Random(6))
    evaluator = _continuing_evaluator(tmp_path)
    assert evaluator(arch, fidelity=2)["resumed_from_epoch"] == 0
    # the same or a smaller budget again: trained afresh (nothing to continue)
    assert evaluator(arch, fidelity=2)["epochs_trained"] == 2
    # another seed never continues this seed's run
    other = _continuing_evaluator(tmp_path, seed=1)
    assert other(arch, fidelity=3)["resumed_from_epoch"] == 0
    from lightning_nas.strategies.fixed import FixedArchitecture

    with pytest.raises(ValueError, match="schedule_epochs must be an int >= 1"):
        FixedArchitecture(arch=TINY.to_string(arch), space=TINY, schedule_epochs=0)
    # a fidelity past the schedule is refused; a crafted checkpoint is refused unread
    with pytest.raises(ValueError, match="exceeds the evaluator's epochs=3"):
        evaluator(arch, fidelity=4)
    fresh = _continuing_evaluator(tmp_path / "c")
    fresh(arch, fidelity=1)
    (ckpt,) = (tmp_path / "c").glob("continue/*/1ep.ckpt")
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(Exception, match="continued-training checkpoint"):
        fresh(arch, fidelity=2)
    # without save_dir the checkpoints live in a private folder, removed with the evaluator
    private = _continuing_evaluator()
    folder = Path(private.continue_dir)
    assert folder.is_dir()
    del private
    import gc

    gc.collect()
    assert not folder.exists()


def test_a_run_dir_holds_the_checkpoints_and_only_the_same_tag_continues_them(tmp_path):
    arch = TINY.sample(random.Random(7))
    first = _continuing_evaluator()
    private = Path(first.continue_dir)
    first.use_run_dir(tmp_path, "search-a")
    assert not private.exists() and first.continue_dir == str(tmp_path / "continue")
    assert first(arch, fidelity=1)["resumed_from_epoch"] == 0
    same = _continuing_evaluator()
    same.use_run_dir(tmp_path, "search-a")
    assert same(arch, fidelity=2)["resumed_from_epoch"] == 1
    other = _continuing_evaluator()  # another search's checkpoint is not continued
    other.use_run_dir(tmp_path, "search-b")
    assert other(arch, fidelity=3)["resumed_from_epoch"] == 0
    kept = _continuing_evaluator(tmp_path / "mine")  # an explicit save_dir stays
    kept.use_run_dir(tmp_path, "search-a")
    assert kept.continue_dir == str(tmp_path / "mine" / "continue")


def test_hyperband_with_continued_training_counts_only_new_epochs(tmp_path):
    """Bracket 1 of 1..3 epochs, eta 3: 3 cells x 1 epoch, the best continued to 3 (2 new
    epochs); the loop's epoch budget (time_key="epochs_trained") stops after 5 epochs."""
    evaluator = _continuing_evaluator(tmp_path / "ckpt")
    result = run_search(TINY, Hyperband(TINY, min_fidelity=1, max_fidelity=3, seed=2),
                        evaluator, run_dir=tmp_path / "run", budget_seconds=5,
                        time_key="epochs_trained", progress=False)
    recs = result.records
    assert [(r["fidelity"], r["metrics"]["epochs_trained"],
             r["metrics"]["resumed_from_epoch"]) for r in recs] == \
        [(1, 1, 0)] * 3 + [(3, 2, 1)]
    assert recs[3]["arch"] == max(recs[:3], key=lambda r: r["objective"])["arch"]
    assert result.best["trial"] == 3
