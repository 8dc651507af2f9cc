"""PredictorEvaluator: an accuracy predictor trained on a slower evaluator's results (OFA's
specialisation fitness), with a resumable training set and a hold-out quality report."""

from __future__ import annotations

import json
import pickle
import random

import pytest
from ofa_helpers import tiny_space
from scipy.stats import kendalltau

from lightning_nas.estimation.predictors import GradientBoosting
from lightning_nas.search.evaluators import Evaluator
from lightning_nas.search.predictor_evaluator import PredictorEvaluator
from lightning_nas.spaces.base import Arch


class KnownAccuracy(Evaluator):
    """A stand-in for the supernet evaluator: accuracy (%) is a fixed function of the active
    blocks (bigger kernels and expands, more blocks, higher resolution are better)."""

    primary_metric = "accuracy"

    def __init__(self, fail_after: int | None = None):
        self.space = tiny_space()
        self.calls: list[Arch] = []
        self.fail_after = fail_after

    def truth(self, arch: Arch) -> float:
        s = self.space
        value = 30.0 + 4.0 * s.resolutions.index(arch["resolution"])
        for i, j in s.block_keys:
            if j <= arch[f"stage{i}.depth"]:
                value += 1.0 + 2.0 * s.kernels.index(arch[f"stage{i}.block{j}.kernel"]) \
                    + 1.5 * s.expands.index(arch[f"stage{i}.block{j}.expand"])
        return value

    def __call__(self, arch: Arch) -> dict[str, float]:
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise RuntimeError("interrupted")
        self.calls.append(arch)
        return {"accuracy": self.truth(arch), "loss": 1.0}

    def export(self, arch, out_dir):
        return {"arch": f"{out_dir}/arch.json"}


def _unseen(ev: PredictorEvaluator, n: int) -> list[Arch]:
    seen = {a for a, _ in ev.training_set}
    rng, out = random.Random(99), []
    while len(out) < n:
        arch = ev.space.canonical(ev.space.sample(rng))
        if arch not in seen and arch not in out:
            out.append(arch)
    return out


def test_learns_the_ranking_and_reports_held_out_quality():
    inner = KnownAccuracy()
    ev = PredictorEvaluator(inner, train_archs=80, holdout_fraction=0.25, progress=False)
    ev.prepare()
    assert len(inner.calls) == 80 and len(set(inner.calls)) == 80  # distinct networks
    assert all(inner.space.canonical(a) == a for a in inner.calls)
    report = ev.fit_report["holdout"]
    assert report["train"] == 60 and report["holdout"] == 20
    assert report["kendall_tau"] > 0.85 and report["mae"] < report["target_std"]
    # on networks it never saw, the final predictor ranks them like the truth
    archs = _unseen(ev, 30)
    predicted = [ev(a)["accuracy"] for a in archs]
    assert kendalltau(predicted, [inner.truth(a) for a in archs]).statistic > 0.85
    out = ev(archs[0])
    assert set(out) == {"accuracy", "accuracy_std"} and out["accuracy_std"] > 0
    assert len(inner.calls) == 80  # predictions cost no evaluations
    assert ev.verify(archs[0])["accuracy"] == inner.truth(archs[0])
    assert len(inner.calls) == 81


def test_training_set_is_kept_on_disk_and_an_interrupted_collection_resumes(tmp_path):
    path = tmp_path / "inherited.jsonl"
    with pytest.raises(RuntimeError, match="interrupted"):
        PredictorEvaluator(KnownAccuracy(fail_after=7), train_archs=20, data_file=str(path),
                           progress=False).prepare()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 7 and set(rows[0]["metrics"]) == {"accuracy", "loss"}

    inner = KnownAccuracy()
    ev = PredictorEvaluator(inner, train_archs=20, data_file=str(path), progress=False)
    ev.prepare()
    assert len(inner.calls) == 13  # only the missing ones
    assert len(path.read_text().splitlines()) == 20

    again = KnownAccuracy()
    same = PredictorEvaluator(again, train_archs=20, data_file=str(path), progress=False)
    arch = tiny_space().largest()
    assert same(arch) == ev(arch) and again.calls == []  # deterministic fit, nothing evaluated


def test_a_corrupt_training_record_names_the_line(tmp_path):
    path = tmp_path / "inherited.jsonl"
    path.write_text('{"arch": "not-an-arch", "metrics": {"accuracy": 1}}\n')
    with pytest.raises(ValueError, match=r"inherited.jsonl:1 is not a predictor training "
                                         r"record .* delete the line"):
        PredictorEvaluator(KnownAccuracy(), train_archs=5, data_file=str(path),
                           progress=False).prepare()


def test_delegates_export_pickles_and_takes_any_predictor():
    inner = KnownAccuracy()
    ev = PredictorEvaluator(inner, predictor=GradientBoosting(members=2, n_estimators=50),
                            train_archs=15, holdout_fraction=0.0, progress=False)
    assert ev.primary_metric == "accuracy" and ev.space is inner.space
    assert ev.export(None, "out") == {"arch": "out/arch.json"}
    arch = tiny_space().smallest()
    # the wrapped evaluator builds no network of its own: the space's, as Evaluator's default
    assert type(ev.network(arch)) is type(inner.space.build(arch))
    first = ev(arch)
    assert ev.fit_report["holdout"] is None and ev.fit_report["networks"] == 15
    clone = pickle.loads(pickle.dumps(ev))
    assert clone(arch) == first and len(clone.evaluator.calls) == 15


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="train_archs must be an int >= 2"):
        PredictorEvaluator(KnownAccuracy(), train_archs=1)
    with pytest.raises(ValueError, match=r"holdout_fraction must be in \[0, 1\)"):
        PredictorEvaluator(KnownAccuracy(), holdout_fraction=1.0)
    one_network = tiny_space(kernels=(3,), expands=(3,), depths=(1,), resolutions=(8,))
    with pytest.raises(ValueError, match=r"fewer than train_archs=3 distinct networks \(found "
                                         r"1\)"):
        PredictorEvaluator(KnownAccuracy(), space=one_network, train_archs=3,
                           progress=False).prepare()


class Retrained(KnownAccuracy):
    def fingerprint(self) -> str:
        return "supernet v2"


def test_records_of_another_source_are_not_reused(tmp_path):
    path = tmp_path / "inherited.jsonl"
    PredictorEvaluator(KnownAccuracy(), train_archs=5, data_file=str(path),
                       progress=False).prepare()
    assert json.loads(path.read_text().splitlines()[0])["source"] == \
        "test_predictor_evaluator.KnownAccuracy"
    with pytest.raises(ValueError, match=r"inherited.jsonl:1 was measured by .*KnownAccuracy.*"
                                         r"not by this evaluator \('supernet v2'\).*delete"):
        PredictorEvaluator(Retrained(), train_archs=5, data_file=str(path),
                           progress=False).prepare()
