"""Zero-cost proxies in Lightning and in the multi-trial search: the scoring callback, the
evaluator, the pre-filter and the sampler warm-up."""

from __future__ import annotations

import math
import random

import lightning as L
import pytest
import torch

from lightning_nas.callbacks.zero_cost import ZeroCostScoring, first_batch
from lightning_nas.data.synthetic import SyntheticDataModule
from lightning_nas.estimation.zero_cost import compute_proxies
from lightning_nas.search.samplers import RandomSampler, RegularizedEvolution
from lightning_nas.search.zero_cost_evaluator import (
    ScoreTable,
    ZeroCostEvaluator,
    ZeroCostWarmup,
    zero_cost_prefilter,
)
from lightning_nas.spaces.nb201 import NB201Space
from lightning_nas.strategies.fixed import FixedArchitecture

TINY = dict(channels=4, cells_per_stage=1)
ARCH = "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"


def _datamodule():
    return SyntheticDataModule(num_classes=10, image_size=8, train_size=32, test_size=16,
                               batch_size=16, seed=0)


def test_callback_scores_at_fit_start_without_changing_training():
    def run(callbacks):
        dm = _datamodule()
        model = FixedArchitecture(arch=ARCH, space=NB201Space(**TINY), seed=0,
                                  drop_path_prob=0.0)
        trainer = L.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1,
                            callbacks=callbacks, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False,
                            num_sanity_val_steps=0, deterministic=True)
        torch.manual_seed(0)
        trainer.fit(model, datamodule=dm)
        return model, trainer

    scorer = ZeroCostScoring(proxies=("synflow", "naswot", "snip"))
    scored, trainer = run([scorer])
    plain, _ = run([])
    assert set(scorer.scores) == {"synflow", "naswot", "snip"}
    assert all(math.isfinite(v) for v in scorer.scores.values())
    assert float(trainer.callback_metrics["zero_cost/synflow"]) == pytest.approx(
        scorer.scores["synflow"], rel=1e-6)
    # training is exactly the same with and without the scoring
    for a, b in zip(scored.net.state_dict().values(), plain.net.state_dict().values()):
        assert torch.equal(a, b)


def test_callback_scores_equal_direct_computation():
    dm = _datamodule()
    dm.setup("fit")
    x, y = first_batch(dm)
    assert x.dtype == torch.float32 and x.shape == (16, 3, 8, 8)
    space = NB201Space(**TINY)
    torch.manual_seed(0)
    net = space.build(space.parse(ARCH))
    direct = compute_proxies(net, x, y, proxies=("grad_norm", "jacob_cov"))
    assert all(math.isfinite(v) for v in direct.values())
    with pytest.raises(ValueError, match="unknown"):
        ZeroCostScoring(proxies=("zen",))


def test_evaluator_deterministic_per_arch_and_picklable():
    import pickle

    space = NB201Space(**TINY)
    evaluator = ZeroCostEvaluator(space, datamodule=_datamodule(),
                                  proxies=("synflow", "naswot", "jacob_cov"))
    assert evaluator.primary_metric == "synflow"
    rng = random.Random(0)
    a, b = space.sample(rng), space.sample(rng)
    first = evaluator(a)
    evaluator(b)
    again = pickle.loads(pickle.dumps(evaluator))(a)
    for k in ("synflow", "naswot", "jacob_cov"):
        assert again[k] == first[k]  # same arch -> same init -> same scores, in any order
    assert first["zero_cost_seconds"] > 0
    with pytest.raises(ValueError, match="exactly one"):
        ZeroCostEvaluator(space, proxies=("synflow",))
    with pytest.raises(ValueError, match="primary_metric"):
        ZeroCostEvaluator(space, batch=(torch.zeros(2, 3, 8, 8), torch.zeros(2).long()),
                          proxies=("synflow",), primary_metric="naswot")


def _fake_scorer(arch):
    # a stand-in proxy: number of conv edges (cheap, deterministic)
    return float(sum(op.startswith("nor_conv") for op in arch.values()))


def test_prefilter_keeps_the_best_candidates():
    space = NB201Space()
    top = zero_cost_prefilter(space, _fake_scorer, n_candidates=200, keep=5, seed=0)
    assert len(top) == 5
    scores = [s for _, s in top]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] >= 5


def test_prefilter_rank_sum_of_several_proxies():
    space = NB201Space()

    def scorer(arch):
        return {"synflow": _fake_scorer(arch), "naswot": -float(arch["3<-0"] == "none")}

    top = zero_cost_prefilter(space, scorer, n_candidates=50, keep=3, seed=1)
    assert all(arch["3<-0"] != "none" for arch, _ in top)


def test_warmup_serves_pool_top_then_hands_over_and_resumes():
    space = NB201Space()
    base = RegularizedEvolution(space, population_size=5, sample_size=2, seed=0)
    sampler = ZeroCostWarmup(base, _fake_scorer, pool_size=100, seed=0)
    assert sampler.warmup == 5
    warm = [sampler.ask() for _ in range(5)]
    for arch in warm:
        assert _fake_scorer(arch) >= 4  # the best of 100 random cells
        sampler.tell(arch, _fake_scorer(arch))
    assert len(base.population) == 5 and base.n_asked == 5
    assert all(a.digest in base.seen for a in warm)
    state = sampler.state_dict()
    nxt = sampler.ask()  # from the evolution now: a mutation of a warm-up member
    assert nxt.digest not in {a.digest for a in warm}
    restored = ZeroCostWarmup(RegularizedEvolution(space, population_size=5, sample_size=2),
                              _fake_scorer, pool_size=100)
    restored.load_state_dict(state)
    assert restored.ask() == nxt  # same state, same next proposal, no re-scoring needed


def test_warmup_in_the_search_loop(tmp_path):
    from lightning_nas.search.loop import run_search

    space = NB201Space()
    sampler = ZeroCostWarmup(RandomSampler(space, seed=0), _fake_scorer, pool_size=50,
                             warmup=3, seed=0)

    def evaluator(arch):
        return {"acc": _fake_scorer(arch)}

    result = run_search(space, sampler, evaluator, run_dir=tmp_path / "run", budget_trials=6,
                        objective="acc", progress=False)
    assert result is not None
    assert len(sampler.history) == 6
    assert [r for _, r in sampler.history[:3]] == sorted(
        [r for _, r in sampler.history[:3]], reverse=True)


def _score_file(tmp_path, space, n=40):
    """A JSON-lines score file as scripts/zero_cost_recent_nb201.py writes: n cells, score
    a = _fake_scorer, score b = its negation (so the rank sum of a and b ties everything)."""
    import json

    rng = random.Random(0)
    cells = {space.sample(rng).digest: None for _ in range(200)}
    archs, seen = [], set()
    while len(archs) < n:
        arch = space.sample(rng)
        if arch.digest not in seen:
            seen.add(arch.digest)
            archs.append(arch)
    del cells
    path = tmp_path / "scores.jsonl"
    path.write_text("".join(json.dumps({"arch_str": space.to_string(a), "index": k,
                                        "scores": {"a": _fake_scorer(a),
                                                   "b": -_fake_scorer(a)}}) + "\n"
                            for k, a in enumerate(archs)) + '{"arch_str": "|cut')
    return path, archs


def test_score_table_reads_scores_and_gives_nan_for_unknown_cells(tmp_path):
    space = NB201Space()
    path, archs = _score_file(tmp_path, space)
    table = ScoreTable(space, str(path), proxies=["a"])
    assert len(table) == 40 and table.candidates() == archs  # the cut last line is skipped
    assert table(archs[3]) == {"a": _fake_scorer(archs[3])}
    other = next(a for a in (space.from_index(i) for i in range(100)) if a not in archs)
    assert math.isnan(table(other)["a"])
    with pytest.raises(ValueError, match=r"no scores for \['c'\]"):
        ScoreTable(space, str(path), proxies=["c"])
    with pytest.raises(FileNotFoundError, match="zero_cost_recent_nb201.py"):
        ScoreTable(space, str(tmp_path / "missing.jsonl"))


def test_warmup_draws_its_pool_among_the_scored_cells_and_resumes_without_history(tmp_path):
    space = NB201Space()
    path, archs = _score_file(tmp_path, space)
    table = ScoreTable(space, str(path), proxies=["a"])

    def make():
        return ZeroCostWarmup(RandomSampler(space, seed=0), table, pool_size=40, warmup=4,
                              seed=3)

    sampler = make()
    warm = [sampler.ask() for _ in range(4)]
    best = sorted(archs, key=lambda a: -_fake_scorer(a))
    # the pool is every scored cell: the warm-up is their top 4 by score a
    assert sorted(_fake_scorer(a) for a in warm) == sorted(_fake_scorer(a) for a in best[:4])
    for arch in warm[:3]:
        sampler.tell(arch, 1.0)
    compact = sampler.state_dict(history=False)
    restored = make()
    restored.load_state_dict(compact, history=list(sampler.history), asked=[warm[3]])
    for s in (sampler, restored):
        s.tell(warm[3], 2.0)
    assert [sampler.ask() for _ in range(5)] == [restored.ask() for _ in range(5)]
    # AZ-NAS aggregation of a and -a: every cell's log-rank sum is the same but one (ties)
    az = ZeroCostWarmup(RandomSampler(space), ScoreTable(space, str(path)), pool_size=40,
                        warmup=2, aggregate="az_nas")
    assert az.ask() in archs
    with pytest.raises(ValueError, match="aggregate must be one of"):
        ZeroCostWarmup(RandomSampler(space), table, aggregate="mean")
