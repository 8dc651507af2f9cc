"""Regularized evolution seeded with known architectures (published presets, the arch.json of
an earlier search, a scaled network): their results form the first members of the population,
so mutation starts from them instead of from random architectures only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lightning_nas.search.samplers import RegularizedEvolution
from lightning_nas.spaces.base import Arch, SearchSpace

__all__ = ["SeededEvolution"]


class SeededEvolution(RegularizedEvolution):
    """:class:`~lightning_nas.search.samplers.RegularizedEvolution` whose first asks are
    ``initial`` (in order, then random architectures until the population is full).

    Args:
        space: the search space.
        initial: seeds, each what ``space.load`` takes: a preset name (e.g.
            ``EfficientNet-B0``, ``MnasNet-A1`` in the mobile space; ``DARTS_V2`` in the DARTS
            space), an ``arch.json`` path, the string form or an ``Arch``. Seeds need not be
            in the space's categorical view (``space.mutate`` must accept them, as the
            mobile space's does for any stage table).
        population_size, sample_size, seed, dedup: as in ``RegularizedEvolution``; seeds
            count towards the population.
    """

    def __init__(self, space: SearchSpace, *, initial: Sequence[str | Arch] = (),
                 population_size: int = 20, sample_size: int = 5, seed: int = 0,
                 dedup: bool = True):
        self.initial = [space.load(a) for a in initial]
        if len(self.initial) > population_size:
            raise ValueError(f"{len(self.initial)} seeds do not fit a population of "
                             f"{population_size}; raise population_size or give fewer seeds")
        super().__init__(space, population_size=population_size, sample_size=sample_size,
                         seed=seed, dedup=dedup)

    def _reset(self) -> None:
        super()._reset()
        self.next_initial = 0

    def _ask(self) -> Arch:
        while self.next_initial < len(self.initial):
            arch = self.initial[self.next_initial]
            self.next_initial += 1
            if self.dedup and arch.digest in self.seen:
                continue
            self.pending_initial.add(arch.digest)
            return arch
        return super()._ask()

    def _extra_state(self) -> dict[str, Any]:
        return {**super()._extra_state(), "next_initial": self.next_initial}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        super()._load_extra_state(state)
        self.next_initial = int(state.get("next_initial", 0))

    def __repr__(self) -> str:
        return (f"SeededEvolution({len(self.initial)} seeds, population_size="
                f"{self.population_size}, sample_size={self.sample_size})")
