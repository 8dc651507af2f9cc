"""Regularized evolution seeded with known architectures (published presets, the arch.json of
an earlier search, a scaled network): their results form the first members of the population,
so mutation starts from them instead of from random architectures only.

In a Once-for-All space (OFA specialisation) a published network is not a subnet; such a
seed (a mobile preset name, a ``mobile`` arch.json or string) is projected to the nearest
subnet (:func:`~lightning_nas.spaces.mobile_blocks.project_to_ofa`) and what changed is
printed and kept in ``projections`` (the search CLI writes them to ``seed_projections.json``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning_nas.search.samplers import RegularizedEvolution
from lightning_nas.spaces.base import Arch, ArchError, SearchSpace

__all__ = ["SeededEvolution", "mobile_source"]


def mobile_source(source: str | Arch) -> Arch | None:
    """The ``mobile`` architecture ``source`` names (a preset, a mobile arch.json or string,
    a mobile Arch), or None when it names none."""
    from lightning_nas.spaces.mobile_blocks import PRESETS, MobileBlockSpace

    if isinstance(source, Arch):
        return source if source.space == "mobile" else None
    text = str(source)
    if text in PRESETS:
        return PRESETS[text]
    if text.endswith(".json") and Path(text).is_file():
        arch = Arch.load(text)
        return arch if arch.space == "mobile" else None
    if text.startswith("r") and "|stem_" in text:
        return MobileBlockSpace().parse(text)
    return None


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
        project: in a Once-for-All space (one with OFA's stage table, e.g.
            ``MobileNetV3CifarSpace``), project a seed that is a mobile network (a preset such
            as ``MobileNetV3-Large``, a ``mobile`` arch.json) to the nearest subnet
            (:func:`~lightning_nas.spaces.mobile_blocks.project_to_ofa`); its diff is printed
            to stderr and kept in :attr:`projections`. False: such a seed is an error.

    Attributes:
        projections: one JSON-ready record per projected seed: ``seed``, ``subnet`` (string
            form) and the :class:`~lightning_nas.spaces.mobile_blocks.Projection` fields.
    """

    def __init__(self, space: SearchSpace, *, initial: Sequence[str | Arch] = (),
                 population_size: int = 20, sample_size: int = 5, seed: int = 0,
                 dedup: bool = True, project: bool = True):
        self.projections: list[dict[str, Any]] = []
        self.initial = [self._load_seed(space, a, project) for a in initial]
        if len(self.initial) > population_size:
            raise ValueError(f"{len(self.initial)} seeds do not fit a population of "
                             f"{population_size}; raise population_size or give fewer seeds")
        super().__init__(space, population_size=population_size, sample_size=sample_size,
                         seed=seed, dedup=dedup)

    def _load_seed(self, space: SearchSpace, source: str | Arch, project: bool) -> Arch:
        try:
            return space.load(source)
        except (ArchError, FileNotFoundError) as err:
            is_ofa = hasattr(space, "stages") and hasattr(space, "depths") \
                and getattr(space, "name", "") == "mobilenetv3"
            mobile = mobile_source(source) if is_ofa else None
            if mobile is None:
                text = str(source)
                if is_ofa and "|" not in text and not text.endswith(".json"):
                    from lightning_nas.spaces.mobile_blocks import PRESETS

                    raise ArchError(f"seed {text!r} is not a {space.name} string, an arch.json "
                                    f"or a mobile preset (projected to its nearest subnet); "
                                    f"mobile presets: {', '.join(PRESETS)}") from err
                raise
            if not project:
                raise ArchError(f"seed {str(source)!r} is a mobile network, not a subnet of "
                                f"the {space.name} space; set project: true to use its "
                                f"nearest subnet") from err
        from lightning_nas.spaces.mobile_blocks import PRESETS, project_to_ofa

        name = str(source) if not isinstance(source, Arch) else None
        projection = project_to_ofa(mobile, space, name=name if name in PRESETS or name is None
                                    else Path(name).name)
        print(f"seed projected to the nearest subnet:\n{projection.diff()}", file=sys.stderr)
        record = {"seed": name or "Arch", "subnet": projection["string"],
                  **{k: v for k, v in projection.items() if k != "arch"}}
        self.projections.append(record)
        return projection.arch

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
