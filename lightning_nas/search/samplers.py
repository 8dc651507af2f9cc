"""Multi-trial samplers with an ask/tell interface.

A sampler proposes architectures (``ask() -> Arch``) and learns from their results
(``tell(arch, result)``, ``result`` a float to maximise, or ``None`` for a failed or
rejected candidate). It owns its random state, and ``state_dict()`` holds everything it
knows (RNG state, history, population, surrogate, policy and optimiser), so a search
restored with ``load_state_dict`` asks exactly what the uninterrupted one would have.

``state_dict(history=False)`` leaves out what grows with the search (the results told and
the architectures asked) and keeps only the fixed-size rest: the search loop snapshots
that, because its journal already holds every result, and passes the journal's results
back to ``load_state_dict(state, history=..., asked=...)`` on resume.

Samplers only use the space's generic interface: ``sample``/``mutate`` and the categorical
view ``decisions``/``encode``/``decode``/``one_hot``, so they run on every space that has it
(NAS-Bench-201, DARTS, ...).

By default (``dedup=True``) no sampler proposes an architecture it proposed before, until
the space is exhausted: on a tabular benchmark a repeated query would spend budget on a
known answer. A draw that keeps hitting known architectures (100 tries) falls back to a
uniformly random unseen one.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import torch

from lightning_nas.search.surrogate import MLPEnsemble, PredictorSurrogate
from lightning_nas.spaces.base import Arch, SearchSpace

#: Spaces up to this size are enumerated to find an unseen architecture when random draws
#: keep hitting seen ones.
_ENUMERATE_LIMIT = 2_000_000


def space_size(space: SearchSpace) -> int | None:
    """Number of architectures in the categorical view, or ``None`` without one."""
    try:
        decisions = space.decisions()
    except NotImplementedError:
        return None
    return math.prod(len(options) for _, options in decisions)


def one_hot_batch(space: SearchSpace, archs: Sequence[Arch]) -> torch.Tensor:
    """``space.one_hot`` of every arch stacked: (N, sum of option counts)."""
    return _one_hot_rows(space, [space.encode(a) for a in archs])


def _one_hot_rows(space: SearchSpace, rows: Sequence[Sequence[int]]) -> torch.Tensor:
    """One-hot rows from option indices (``space.encode`` of each arch): (N, sum of
    option counts)."""
    sizes = [len(options) for _, options in space.decisions()]
    offsets = torch.tensor([0, *itertools.accumulate(sizes)][:-1])
    index = torch.tensor(rows, dtype=torch.long).reshape(-1, len(sizes))
    out = torch.zeros(len(rows), sum(sizes))
    out.scatter_(1, index + offsets, 1.0)
    return out


def _clean(result: float | None) -> float | None:
    if result is None:
        return None
    result = float(result)
    return result if math.isfinite(result) else None


def mixed_radix(indices: Sequence[int], sizes: Sequence[int]) -> int:
    """The position of option ``indices`` in the enumeration of ``itertools.product`` over
    ``range(size)`` per decision (the last decision fastest)."""
    pos = 0
    for index, size in zip(indices, sizes):
        pos = pos * size + int(index)
    return pos


class _UnseenIndex:
    """Which positions of the space's enumeration are still unseen, as a Fenwick tree.

    Position ``p`` is the ``p``-th combination of ``itertools.product`` over the decisions'
    option indices (the last decision fastest). :meth:`kth` finds the ``k``-th unseen
    position in enumeration order in O(log N), and :meth:`remove` marks one seen in
    O(log N): drawing uniformly among the unseen no longer lists them all per draw, which
    made a random search over the whole space quadratic (15,625 NB201 cells: ~15,625
    decodes per draw near the end)."""

    def __init__(self, sizes: Sequence[int], unseen: Sequence[bool]):
        self.sizes = [int(s) for s in sizes]
        self.flags = bytearray(1 if u else 0 for u in unseen)
        n = len(self.flags)
        self.tree = [0] * (n + 1)  # 1-based Fenwick tree of the flags
        for i in range(1, n + 1):
            self.tree[i] += self.flags[i - 1]
            parent = i + (i & -i)
            if parent <= n:
                self.tree[parent] += self.tree[i]
        self.count = sum(self.flags)

    def position(self, combo: Sequence[int]) -> int:
        return mixed_radix(combo, self.sizes)

    def combo(self, pos: int) -> list[int]:
        out = []
        for size in reversed(self.sizes):
            pos, index = divmod(pos, size)
            out.append(index)
        return out[::-1]

    def remove(self, pos: int) -> None:
        if not self.flags[pos]:
            return
        self.flags[pos] = 0
        self.count -= 1
        i = pos + 1
        while i < len(self.tree):
            self.tree[i] -= 1
            i += i & -i

    def kth(self, k: int) -> int:
        """The position of the ``k``-th (0-based) unseen combination."""
        pos, step = 0, 1 << (len(self.tree) - 1).bit_length()
        while step:
            nxt = pos + step
            if nxt < len(self.tree) and self.tree[nxt] <= k:
                pos = nxt
                k -= self.tree[nxt]
            step >>= 1
        return pos  # 1-based index pos + 1 holds it: 0-based position pos


class Sampler(ABC):
    """Base of the samplers: RNG, de-duplication, history and the state protocol.

    Args:
        space: the space to propose from.
        seed: seed of the sampler's own ``random.Random`` (torch randomness is derived
            from it, so one seed fixes the whole search).
        dedup: never propose an architecture twice until the space is exhausted.
    """

    def __init__(self, space: SearchSpace, *, seed: int = 0, dedup: bool = True):
        if not isinstance(space, SearchSpace):
            raise TypeError(f"space must be a SearchSpace, got {type(space).__name__}")
        self.space = space
        self.dedup = dedup
        self.size = space_size(space)
        self.reset(seed)

    # -- lifecycle -------------------------------------------------------------------------
    def reset(self, seed: int) -> None:
        """Forget everything and start over with ``seed``."""
        self.seed = int(seed)
        self.rng = random.Random(self.seed)
        self.seen: set[str] = set()
        self.history: list[tuple[Arch, float | None]] = []
        self.n_asked = 0
        self._unseen: _UnseenIndex | None = None  # built on first need, from `seen`
        self._reset()

    def _reset(self) -> None:
        """Reset the subclass's own state (called by :meth:`reset`)."""

    #: True for samplers that also choose each trial's budget (multi_fidelity.py)
    multi_fidelity = False

    # -- ask / tell ------------------------------------------------------------------------
    def ask_trial(self) -> tuple[Arch, float | None]:
        """The next architecture and its budget (``None``: the evaluator's own); the search
        loop asks through this. Multi-fidelity samplers override it."""
        return self.ask(), None

    def ask(self) -> Arch:
        """The next architecture to evaluate."""
        arch = self._ask()
        self.seen.add(arch.digest)
        if self._unseen is not None:
            self._unseen.remove(self._unseen.position(self.space.encode(arch)))
        self.n_asked += 1
        return arch

    def tell(self, arch: Arch, result: float | None) -> None:
        """Report the objective of an asked architecture (``None``: failed or rejected)."""
        result = _clean(result)
        self.history.append((arch, result))
        self._tell(arch, result)

    @abstractmethod
    def _ask(self) -> Arch: ...

    def _tell(self, arch: Arch, result: float | None) -> None:
        """Learn from one result (``None`` for failed or rejected)."""

    @property
    def exhausted(self) -> bool:
        return self.size is not None and len(self.seen) >= self.size

    def _fresh(self, draw: Callable[[], Arch], tries: int = 100) -> Arch:
        """``draw()`` until it gives an unseen architecture (with ``dedup``)."""
        if not self.dedup:
            return draw()
        for _ in range(tries):
            arch = draw()
            if arch.digest not in self.seen:
                return arch
        return self._random_unseen()

    def _random_unseen(self) -> Arch:
        """A uniformly random architecture not proposed before (any one when exhausted)."""
        if not self.dedup or self.exhausted:
            return self.space.sample(self.rng)
        for _ in range(64):
            arch = self.space.sample(self.rng)
            if arch.digest not in self.seen:
                return arch
        if self.size is not None and self.size <= _ENUMERATE_LIMIT:
            if self._unseen is None:
                sizes = [len(options) for _, options in self.space.decisions()]
                self._unseen = _UnseenIndex(sizes, [
                    self.space.decode(list(c)).digest not in self.seen
                    for c in itertools.product(*(range(n) for n in sizes))])
            if self._unseen.count:
                # uniform among the unseen in enumeration order (the same draw as
                # rng.choice over the list of them)
                k = self.rng.randrange(self._unseen.count)
                return self.space.decode(self._unseen.combo(self._unseen.kth(k)))
        return self.space.sample(self.rng)

    # -- state -----------------------------------------------------------------------------
    def state_dict(self, *, history: bool = True) -> dict[str, Any]:
        """Everything needed to continue: plain Python values and tensors (``torch.save``
        with ``weights_only`` loading works).

        Args:
            history: include the results told and the architectures asked. Without them
                the state has a fixed size however long the search ran (the RNG, counters
                and the subclass's model: population, surrogate, policy); whoever loads it
                passes the history back (the search loop: from its journal).
        """
        version, internal, gauss = self.rng.getstate()
        state = {
            "class": type(self).__name__,
            "space": self.space.name,
            "seed": self.seed,
            "rng": [version, list(internal), gauss],
            "n_told": len(self.history),
            "n_asked": self.n_asked,
            "extra": self._extra_state(),
        }
        if history:
            state["seen"] = sorted(self.seen)
            state["history"] = [[a.to_dict(), r] for a, r in self.history]
        return state

    def load_state_dict(self, state: dict[str, Any], *,
                        history: Sequence[tuple[Arch, float | None]] | None = None,
                        asked: Sequence[Arch] = ()) -> None:
        """Restore :meth:`state_dict`.

        Args:
            state: a saved state.
            history: for a state saved without history: the ``(arch, result)`` pairs told
                before it was saved, in order (``result`` None for failed or rejected),
                e.g. the journal's records.
            asked: for a state saved without history: the architectures asked but not told
                when it was saved (trials in flight).
        """
        if state.get("class") != type(self).__name__ or state.get("space") != self.space.name:
            raise ValueError(f"state of a {state.get('class')} sampler on the "
                             f"{state.get('space')!r} space cannot be loaded into a "
                             f"{type(self).__name__} on {self.space.name!r}")
        self.reset(state["seed"])
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        if "history" in state:
            self.history = [(Arch.from_dict(a), r) for a, r in state["history"]]
            self.seen = set(state["seen"])
        else:
            if history is None:
                raise ValueError("this sampler state was saved without its history; pass "
                                 "history= (the results told before it was saved)")
            if len(history) != int(state["n_told"]):
                raise ValueError(f"the sampler state was saved after {state['n_told']} "
                                 f"results but history= holds {len(history)}")
            self.history = [(arch, _clean(result)) for arch, result in history]
            self.seen = {a.digest for a, _ in self.history} | {a.digest for a in asked}
        self.n_asked = int(state["n_asked"])
        self._restore_history()
        self._load_extra_state(state["extra"])

    def _restore_history(self) -> None:
        """Rebuild what the subclass derives from ``self.history`` (called on load, before
        :meth:`_load_extra_state`)."""

    def _extra_state(self) -> dict[str, Any]:
        """The subclass's state; of a size that does not grow with the history."""
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}(space={self.space.name!r}, seed={self.seed})"


# ---------------------------------------------------------------------------------------
class RandomSampler(Sampler):
    """Uniform random search (Li & Talwalkar 2019); no repeats until the space is exhausted."""

    def _ask(self) -> Arch:
        return self._random_unseen()


# ---------------------------------------------------------------------------------------
class RegularizedEvolution(Sampler):
    """Regularized (aging) evolution, Real et al., AAAI 2019, Algorithm 1.

    The first ``population_size`` results come from random architectures. Then every child
    is ``space.mutate`` of the best of ``sample_size`` population members drawn without
    replacement, and when the child's result comes back it joins the population and the
    oldest member dies (aging), whatever its accuracy. Failed candidates never join.

    Args:
        population_size: P (the paper's NB201 runs use small populations; 10-20 here).
        sample_size: S, the tournament size (1 <= S <= P).
    """

    def __init__(self, space: SearchSpace, *, population_size: int = 20, sample_size: int = 5,
                 seed: int = 0, dedup: bool = True):
        if population_size < 1 or not 1 <= sample_size <= population_size:
            raise ValueError(f"need population_size >= 1 and 1 <= sample_size <= population_size, "
                             f"got population_size={population_size}, sample_size={sample_size}")
        self.population_size = population_size
        self.sample_size = sample_size
        super().__init__(space, seed=seed, dedup=dedup)

    def _reset(self) -> None:
        self.population: deque[tuple[Arch, float]] = deque()  # oldest first
        self.pending_initial: set[str] = set()  # digests of random asks not yet told

    def _ask(self) -> Arch:
        if len(self.population) + len(self.pending_initial) < self.population_size:
            arch = self._random_unseen()
            self.pending_initial.add(arch.digest)
            return arch
        if not self.population:  # more workers than population slots: keep exploring
            return self._random_unseen()
        members = list(self.population)
        contenders = self.rng.sample(range(len(members)), min(self.sample_size, len(members)))
        parent = members[max(contenders, key=lambda i: (members[i][1], i))][0]
        return self._fresh(lambda: self.space.mutate(parent, self.rng))

    def _tell(self, arch: Arch, result: float | None) -> None:
        self.pending_initial.discard(arch.digest)
        if result is None:
            return
        self.population.append((arch, result))
        while len(self.population) > self.population_size:
            self.population.popleft()

    def _extra_state(self) -> dict[str, Any]:
        return {"population": [[a.to_dict(), r] for a, r in self.population],
                "pending_initial": sorted(self.pending_initial)}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.population = deque((Arch.from_dict(a), float(r)) for a, r in state["population"])
        self.pending_initial = set(state["pending_initial"])


# ---------------------------------------------------------------------------------------
class BayesianOptimization(Sampler):
    """BANANAS-style Bayesian optimisation with a neural-ensemble surrogate.

    White, Neiswanger & Savani, "BANANAS", AAAI 2021: an ensemble of MLPs on an
    architecture encoding (here ``space.one_hot``) predicts the objective; the mean and spread
    of the members give an acquisition, maximised over a candidate pool of mutations of the
    best architectures so far plus random ones.

    Args:
        initial_random: asks drawn at random before the surrogate is used.
        ensemble_size, hidden, epochs, learning_rate, weight_decay: the :class:`MLPEnsemble`.
        acquisition: ``"its"`` (independent Thompson sampling: one draw from N(mean, std) per
            candidate, the BANANAS default), ``"ucb"`` (mean + ``ucb_beta`` * std), ``"ei"``
            (expected improvement over the best result) or ``"mean"``.
        num_parents: best architectures mutated to make candidates.
        mutations_per_parent: candidates per parent (one ``space.mutate`` each; a second
            mutation is applied with probability 1/2).
        random_candidates: uniformly random candidates added to the pool.
        retrain_every: refit the surrogate when this many new results have arrived since the
            last fit (1 = before every model-based ask; larger is cheaper).
        retrain_growth: also wait until the results have grown by this fraction since the
            last fit (0 = off). A fit costs time in proportion to the results, so refitting
            after a fixed count makes the search quadratic; with a fraction g the refits
            come at geometrically spaced sizes and the refit cost per trial stays about
            ``(1 + g) / g`` times one result's share of a fit, however long the search
            (0.1: every result up to 10 results, every 10th at 100, every 1,000th at 10,000).
        surrogate: ``None`` (default) for the :class:`MLPEnsemble` above, or a factory
            called on every reset with the one-hot width ``in_dim``, returning an object with
            ``fitted``, ``fit(x, y, generator)``, ``predict(x) -> (E, N)`` (E >= 1 samples
            whose mean and std over dim 0 are the prediction), ``state_dict`` and
            ``load_state_dict``; ``x`` holds one-hot rows (:func:`one_hot_batch`). A
            :class:`~lightning_nas.search.surrogate.PredictorSurrogate` (a predictor of
            :mod:`lightning_nas.estimation.predictors` with an encoding, choosable in YAML)
            is called as ``factory(in_dim, space)``. With a factory the ensemble arguments
            are ignored.
    """

    ACQUISITIONS = ("its", "ucb", "ei", "mean")

    def __init__(self, space: SearchSpace, *, initial_random: int = 10, ensemble_size: int = 5,
                 hidden: Sequence[int] = (32, 32), epochs: int = 200,
                 learning_rate: float = 0.01, weight_decay: float = 0.0,
                 acquisition: str = "its", ucb_beta: float = 1.0, num_parents: int = 10,
                 mutations_per_parent: int = 10, random_candidates: int = 50,
                 retrain_every: int = 1, retrain_growth: float = 0.0,
                 surrogate: PredictorSurrogate | Callable[[int], Any] | None = None,
                 seed: int = 0, dedup: bool = True):
        if surrogate is not None and not callable(surrogate):
            raise TypeError(f"surrogate must be a factory called with in_dim, got "
                            f"{type(surrogate).__name__}")
        if acquisition not in self.ACQUISITIONS:
            raise ValueError(f"acquisition must be one of {self.ACQUISITIONS}, got {acquisition!r}")
        if initial_random < 2:
            raise ValueError(f"initial_random must be >= 2 (the surrogate needs data), got "
                             f"{initial_random}")
        for name, value in (("num_parents", num_parents), ("retrain_every", retrain_every),
                            ("mutations_per_parent", mutations_per_parent)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if random_candidates < 0:
            raise ValueError(f"random_candidates must be >= 0, got {random_candidates}")
        if not 0 <= retrain_growth < math.inf:
            raise ValueError(f"retrain_growth must be a fraction >= 0, got {retrain_growth}")
        self.initial_random = initial_random
        self.acquisition = acquisition
        self.ucb_beta = ucb_beta
        self.num_parents = num_parents
        self.mutations_per_parent = mutations_per_parent
        self.random_candidates = random_candidates
        self.retrain_every = retrain_every
        self.retrain_growth = float(retrain_growth)
        self.model_options = {"members": ensemble_size, "hidden": tuple(hidden),
                              "epochs": epochs, "learning_rate": learning_rate,
                              "weight_decay": weight_decay}
        self.surrogate = surrogate
        super().__init__(space, seed=seed, dedup=dedup)

    def _reset(self) -> None:
        in_dim = sum(len(options) for _, options in self.space.decisions())
        if self.surrogate is None:
            self.model = MLPEnsemble(in_dim, **self.model_options)
        elif isinstance(self.surrogate, PredictorSurrogate):
            self.model = self.surrogate(in_dim, self.space)
        else:
            self.model = self.surrogate(in_dim)
        self.trained_on = -1  # number of results the model was fitted on
        # kept as results arrive, so that an ask does not scan the history:
        self._results: list[tuple[Arch, float]] = []  # successful results, in order
        self._encoded: list[list[int]] = []            # space.encode of each, same order
        self._top: list[tuple[float, int, Arch]] = []   # (-result, order, arch): best first

    def _restore_history(self) -> None:
        for arch, result in self.history:
            self._add_result(arch, result)

    def _tell(self, arch: Arch, result: float | None) -> None:
        self._add_result(arch, result)

    def _add_result(self, arch: Arch, result: float | None) -> None:
        if result is None:
            return
        key = (-result, len(self._results), arch)
        self._results.append((arch, result))
        self._encoded.append(self.space.encode(arch))
        if len(self._top) < self.num_parents or key < self._top[-1]:
            # ties keep the earlier result first (the order of a stable sort by result)
            bisect.insort(self._top, key)  # (-result, order) is unique: archs never compared
            del self._top[self.num_parents:]

    def _data(self) -> list[tuple[Arch, float]]:
        """The successful results so far, in order (the surrogate's training data)."""
        return self._results

    def refit_due(self) -> bool:
        """Whether the next model-based ask refits the surrogate."""
        n = len(self._results)
        if not self.model.fitted or self.trained_on < 0:
            return True
        wait = max(self.retrain_every, math.ceil(self.retrain_growth * self.trained_on))
        return n - self.trained_on >= wait

    def _fit(self, data: Sequence[tuple[Arch, float]]) -> None:
        """Fit the surrogate on the successful results so far (one draw of the RNG)."""
        x = _one_hot_rows(self.space, self._encoded)
        y = torch.tensor([r for _, r in data])
        self.model.fit(x, y, torch.Generator().manual_seed(self.rng.getrandbits(62)))
        self.trained_on = len(data)

    def _ask(self) -> Arch:
        data = self._data()
        if self.n_asked < self.initial_random or len(data) < 2:
            return self._random_unseen()
        if self.refit_due():
            self._fit(data)
        pool = self._candidates()
        if not pool:
            return self._random_unseen()
        score = self._acquisition(self.model.predict(one_hot_batch(self.space, pool)))
        return pool[int(torch.argmax(score))]

    def _acquisition(self, preds: torch.Tensor) -> torch.Tensor:
        """The acquisition of every candidate from the surrogate's predictions ``preds``
        (E, N): (N,), larger = ask first. Draws from the sampler's RNG (one seed per call)."""
        n = preds.shape[1]
        mean, std = preds.mean(0), preds.std(0) if preds.shape[0] > 1 else torch.zeros(n)
        gen = torch.Generator().manual_seed(self.rng.getrandbits(62))
        if self.acquisition == "its":
            return mean + std * torch.randn(n, generator=gen)
        if self.acquisition == "ucb":
            return mean + self.ucb_beta * std
        if self.acquisition == "ei":
            best = -self._top[0][0]
            s = std.clamp_min(1e-9)
            z = (mean - best) / s
            normal = torch.distributions.Normal(0.0, 1.0)
            return (mean - best) * normal.cdf(z) + s * normal.log_prob(z).exp()
        return mean

    def _candidates(self) -> list[Arch]:
        parents = [arch for _, _, arch in self._top]
        pool: dict[str, Arch] = {}
        for parent in parents:
            for _ in range(self.mutations_per_parent):
                child = self.space.mutate(parent, self.rng)
                if self.rng.random() < 0.5:
                    child = self.space.mutate(child, self.rng)
                pool.setdefault(child.digest, child)
        for _ in range(self.random_candidates):
            arch = self.space.sample(self.rng)
            pool.setdefault(arch.digest, arch)
        if self.dedup:
            return [a for d, a in pool.items() if d not in self.seen]
        return list(pool.values())

    def _extra_state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict() if self.model.fitted else None,
                "trained_on": self.trained_on}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        if state["model"] is not None:
            self.model.load_state_dict(state["model"])
        self.trained_on = int(state["trained_on"])


# ---------------------------------------------------------------------------------------
class Reinforce(Sampler):
    """REINFORCE (Williams 1992) on independent categorical decisions.

    The policy holds one logit vector per decision of ``space.decisions()`` (uniform at the
    start). Each result ``r`` updates it by Adam on ``-(r - b) * log p(arch)`` where ``b`` is
    a bias-corrected exponential moving average of earlier rewards with decay
    ``baseline_decay`` (the NB201 paper's REINFORCE baseline uses a moving-average baseline;
    momentum 0.9). The first reward only sets the baseline.

    Args:
        learning_rate: Adam learning rate of the logits.
        baseline_decay: EMA decay of the baseline (0 = previous reward only).
        entropy_weight: weight of an entropy bonus (0 = plain REINFORCE).
        reward_scale: rewards are multiplied by this before the update (e.g. 0.01 for
            accuracies in percent); Adam makes the step size nearly scale-free anyway.
    """

    def __init__(self, space: SearchSpace, *, learning_rate: float = 0.05,
                 baseline_decay: float = 0.9, entropy_weight: float = 0.0,
                 reward_scale: float = 1.0, seed: int = 0, dedup: bool = True):
        if learning_rate <= 0 or not 0 <= baseline_decay < 1:
            raise ValueError(f"need learning_rate > 0 and 0 <= baseline_decay < 1, got "
                             f"{learning_rate}, {baseline_decay}")
        self.learning_rate = learning_rate
        self.baseline_decay = baseline_decay
        self.entropy_weight = entropy_weight
        self.reward_scale = reward_scale
        super().__init__(space, seed=seed, dedup=dedup)

    def _reset(self) -> None:
        self._sizes = [len(options) for _, options in self.space.decisions()]
        self._asked_positions: set[int] = set()  # option indices asked, as one number
        self.logits = [torch.zeros(len(options), requires_grad=True)
                       for _, options in self.space.decisions()]
        self.optimizer = torch.optim.Adam(self.logits, lr=self.learning_rate)
        self.baseline_num = 0.0
        self.baseline_den = 0.0

    @property
    def baseline(self) -> float | None:
        return self.baseline_num / self.baseline_den if self.baseline_den > 0 else None

    def probabilities(self) -> list[torch.Tensor]:
        """Current policy: one probability vector per decision."""
        return [torch.softmax(l.detach(), 0) for l in self.logits]

    def _draw(self, cumulative: list[list[float]]) -> list[int]:
        """Option indices of one architecture from the policy; ``cumulative``: per decision
        the running sums of its probabilities (one uniform draw per decision, the first
        option whose running sum exceeds it; the last one when rounding leaves the sum
        below the draw)."""
        return [min(bisect.bisect_right(cum, self.rng.random()), len(cum) - 1)
                for cum in cumulative]

    def _position(self, indices: Sequence[int]) -> int:
        return mixed_radix(indices, self._sizes)

    def _ask(self) -> Arch:
        # A converged policy mostly repeats seen cells, and up to 100 draws per ask look for
        # an unseen one (Sampler._fresh): the policy's running sums are computed once per
        # ask, and a draw whose option indices were asked before is skipped without
        # building its Arch. The draws and the result are those of _fresh(draw).
        cumulative = [list(itertools.accumulate(p.tolist())) for p in self.probabilities()]
        arch = None
        if not self.dedup:
            arch = self.space.decode(self._draw(cumulative))
        else:
            for _ in range(100):
                indices = self._draw(cumulative)
                if self._position(indices) in self._asked_positions:
                    continue  # the same indices decode to an architecture already seen
                candidate = self.space.decode(indices)
                if candidate.digest not in self.seen:
                    arch = candidate
                    break
            if arch is None:
                arch = self._random_unseen()
        self._asked_positions.add(self._position(self.space.encode(arch)))
        return arch

    def _tell(self, arch: Arch, result: float | None) -> None:
        if result is None:
            return
        reward = result * self.reward_scale
        baseline = self.baseline
        if baseline is not None:
            indices = self.space.encode(arch)
            log_prob = sum(torch.log_softmax(l, 0)[i] for l, i in zip(self.logits, indices))
            loss = -(reward - baseline) * log_prob
            if self.entropy_weight:
                entropy = sum(-(torch.softmax(l, 0) * torch.log_softmax(l, 0)).sum()
                              for l in self.logits)
                loss = loss - self.entropy_weight * entropy
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        d = self.baseline_decay
        self.baseline_num = d * self.baseline_num + (1 - d) * reward
        self.baseline_den = d * self.baseline_den + (1 - d)

    def _extra_state(self) -> dict[str, Any]:
        return {"logits": [l.detach().clone() for l in self.logits],
                "optimizer": self.optimizer.state_dict(),
                "baseline": [self.baseline_num, self.baseline_den]}

    def _restore_history(self) -> None:
        # a shortcut only (a missing position costs one decode): rebuilt from the history
        self._asked_positions = {self._position(self.space.encode(a)) for a, _ in self.history}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            for l, saved in zip(self.logits, state["logits"]):
                l.copy_(saved)
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline_num, self.baseline_den = (float(v) for v in state["baseline"])


# ---------------------------------------------------------------------------------------
def neighbours(space: SearchSpace, arch: Arch) -> list[Arch]:
    """Every architecture one decision away from ``arch`` (one op changed), in decision
    order: for NB201 the 6 edges x 4 other ops = 24 cells. Uses the categorical view
    (``decisions``/``encode``/``decode``); raises ``NotImplementedError`` without one."""
    indices = space.encode(arch)
    out = []
    for d, (_, options) in enumerate(space.decisions()):
        for option in range(len(options)):
            if option != indices[d]:
                out.append(space.decode([*indices[:d], option, *indices[d + 1:]]))
    return out


class LocalSearch(Sampler):
    """Local search with random restarts (White, Zela, Ru, Liu & Hutter, "Local Search is
    State of the Art for Neural Architecture Search Benchmarks", 2020, Algorithm 1).

    The first ``initial_random`` asks are uniformly random; the best result so far becomes
    the *anchor*. Then every ask is an unevaluated neighbour of the anchor (one decision
    changed, :func:`neighbours`), in a random order drawn when the anchor is set; as soon
    as a neighbour's result beats the anchor's, it becomes the anchor (first improvement:
    the remaining neighbours of the old anchor are dropped). When every neighbour of the
    anchor has been asked without improvement (a local optimum), the next ask is a
    uniformly random unseen architecture, which becomes the anchor when its result comes
    back, whatever its value (the restart of Algorithm 1).

    Asynchronous use (several trials in flight): a result better than the anchor moves the
    anchor whichever ask it came from, and a restart is drawn as soon as the neighbour
    queue is empty, even if neighbours are still being evaluated.

    On a space without a categorical view, the neighbours are ``num_mutations`` distinct
    ``space.mutate`` draws of the anchor.

    Args:
        initial_random: random asks before the first anchor (White et al. use 1 random
            start; NASLib's ``num_init`` is 10).
        num_mutations: neighbourhood size on spaces without ``decisions()``.
    """

    def __init__(self, space: SearchSpace, *, initial_random: int = 10, num_mutations: int = 30,
                 seed: int = 0, dedup: bool = True):
        if initial_random < 1:
            raise ValueError(f"initial_random must be >= 1 (the first anchor is a random "
                             f"architecture), got {initial_random}")
        if num_mutations < 1:
            raise ValueError(f"num_mutations must be >= 1, got {num_mutations}")
        self.initial_random = initial_random
        self.num_mutations = num_mutations
        super().__init__(space, seed=seed, dedup=dedup)

    def _reset(self) -> None:
        self.anchor: Arch | None = None
        self.anchor_value = -math.inf
        self.queue: list[Arch] = []     # neighbours of the anchor not yet asked, next first
        self.restart: str | None = None  # digest of the random restart in flight
        self.n_restarts = 0
        self.n_moves = 0

    def _neighbourhood(self, arch: Arch) -> list[Arch]:
        if self.size is not None:
            found = neighbours(self.space, arch)
        else:
            pool: dict[str, Arch] = {}
            for _ in range(self.num_mutations):
                child = self.space.mutate(arch, self.rng)
                pool.setdefault(child.digest, child)
            found = list(pool.values())
        self.rng.shuffle(found)
        return found

    def _set_anchor(self, arch: Arch, value: float) -> None:
        self.anchor, self.anchor_value = arch, value
        self.queue = self._neighbourhood(arch)
        self.n_moves += 1

    def _ask(self) -> Arch:
        if self.n_asked < self.initial_random or self.anchor is None:
            return self._random_unseen()
        while self.queue:
            arch = self.queue.pop(0)
            if not self.dedup or arch.digest not in self.seen:
                return arch
        arch = self._random_unseen()  # local optimum: restart from a random architecture
        self.restart = arch.digest
        self.n_restarts += 1
        return arch

    def _tell(self, arch: Arch, result: float | None) -> None:
        restart = self.restart is not None and arch.digest == self.restart
        if restart:
            self.restart = None
        if result is None:
            return
        if restart or result > self.anchor_value:
            self._set_anchor(arch, result)

    def _extra_state(self) -> dict[str, Any]:
        # at most one neighbourhood: a fixed size, however long the search
        return {"anchor": None if self.anchor is None else self.anchor.to_dict(),
                "anchor_value": self.anchor_value,
                "queue": [a.to_dict() for a in self.queue], "restart": self.restart,
                "n_restarts": self.n_restarts, "n_moves": self.n_moves}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.anchor = None if state["anchor"] is None else Arch.from_dict(state["anchor"])
        self.anchor_value = float(state["anchor_value"])
        self.queue = [Arch.from_dict(a) for a in state["queue"]]
        self.restart = state["restart"]
        self.n_restarts = int(state["n_restarts"])
        self.n_moves = int(state["n_moves"])


# ---------------------------------------------------------------------------------------
class NPENAS(BayesianOptimization):
    """Neural-predictor-guided evolution (Wei, Niu, Tang, Wang, Hu & Li, "NPENAS: Neural
    Predictor Guided Evolution for Neural Architecture Search", IEEE TNNLS 2022).

    After ``initial_random`` random results, every iteration refits the predictor on all
    results, mutates the parents (the ``num_parents`` best results so far) into candidates
    (``mutations_per_parent`` one-to-many mutations each: one ``space.mutate``, a second
    with probability 1/2), ranks the unseen candidates by the acquisition of the predictor
    and queues the top ``queries_per_iteration`` for evaluation. ``acquisition="mean"`` is
    NPENAS-NP (the predictor's prediction alone), ``"its"`` NPENAS-BO (one Thompson draw
    from N(mean, std) per candidate). No random candidates are added (evolution: every
    candidate is a child of a good parent), unless ``random_candidates`` > 0.

    The predictor is any surrogate of :class:`BayesianOptimization` (the default MLP
    ensemble on the one-hot encoding, or a
    :class:`~lightning_nas.search.surrogate.PredictorSurrogate`: Gaussian process, gradient
    boosting, path encoding); the paper's is a graph network on the cell's DAG.

    Args:
        queries_per_iteration: candidates queued per refit (the paper evaluates a batch
            per iteration; 1 refits before every model-based ask).
        (the rest): as :class:`BayesianOptimization`, with NPENAS-NP defaults.
    """

    def __init__(self, space: SearchSpace, *, initial_random: int = 10,
                 queries_per_iteration: int = 1, acquisition: str = "mean",
                 num_parents: int = 10, mutations_per_parent: int = 20,
                 random_candidates: int = 0, ensemble_size: int = 5,
                 hidden: Sequence[int] = (32, 32), epochs: int = 200,
                 learning_rate: float = 0.01, weight_decay: float = 0.0,
                 ucb_beta: float = 1.0,
                 surrogate: PredictorSurrogate | Callable[[int], Any] | None = None,
                 seed: int = 0, dedup: bool = True):
        if queries_per_iteration < 1:
            raise ValueError(f"queries_per_iteration must be >= 1, got {queries_per_iteration}")
        self.queries_per_iteration = queries_per_iteration
        super().__init__(space, initial_random=initial_random, ensemble_size=ensemble_size,
                         hidden=hidden, epochs=epochs, learning_rate=learning_rate,
                         weight_decay=weight_decay, acquisition=acquisition,
                         ucb_beta=ucb_beta, num_parents=num_parents,
                         mutations_per_parent=mutations_per_parent,
                         random_candidates=random_candidates, retrain_every=1,
                         retrain_growth=0.0, surrogate=surrogate, seed=seed, dedup=dedup)

    def _reset(self) -> None:
        super()._reset()
        self.queue: list[Arch] = []  # the current iteration's top candidates, next first

    def _ask(self) -> Arch:
        while self.queue:
            arch = self.queue.pop(0)
            if not self.dedup or arch.digest not in self.seen:
                return arch
        data = self._data()
        if self.n_asked < self.initial_random or len(data) < 2:
            return self._random_unseen()
        self._fit(data)
        pool = self._candidates()
        if not pool:
            return self._random_unseen()
        score = self._acquisition(self.model.predict(one_hot_batch(self.space, pool)))
        order = torch.argsort(score, descending=True, stable=True)
        top = [pool[int(i)] for i in order[: self.queries_per_iteration]]
        self.queue = top[1:]
        return top[0]

    def _extra_state(self) -> dict[str, Any]:
        return {**super()._extra_state(), "queue": [a.to_dict() for a in self.queue]}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        super()._load_extra_state(state)
        self.queue = [Arch.from_dict(a) for a in state["queue"]]
