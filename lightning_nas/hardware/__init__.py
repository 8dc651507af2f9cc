"""Hardware-aware NAS: model costs, latency, objectives, Pareto analysis and reports.

Modules (one job each, no Lightning dependency):

* :mod:`~lightning_nas.hardware.metrics`: parameter count, FLOPs/MACs (``FlopCounterMode``).
* :mod:`~lightning_nas.hardware.latency`: measured latency, ``LatencyModel`` protocol.
* :mod:`~lightning_nas.hardware.latency_lut`: Once-for-All's per-layer latency lookup table
  of the MobileNetV3 space (``LatencyTable``) and its search hook ``LatencyTableHook``.
* :mod:`~lightning_nas.hardware.costs`: ``CostHook`` ``(arch, model) -> metrics dict``.
* :mod:`~lightning_nas.hardware.objective`: accuracy, MnasNet reward, cost ``Constraints``.
* :mod:`~lightning_nas.hardware.pareto`: non-dominated sorting, crowding, hypervolume.
* :mod:`~lightning_nas.hardware.report`: ``pareto.json`` / ``pareto.png`` writer.
"""

from lightning_nas.hardware.costs import CostHook, model_costs
from lightning_nas.hardware.latency import (
    LatencyModel,
    LatencyResult,
    MeasuredLatency,
    measure_latency,
)
from lightning_nas.hardware.latency_lut import LatencyTable, LatencyTableHook, MissingEntryError
from lightning_nas.hardware.metrics import FlopCount, count_flops, count_parameters
from lightning_nas.hardware.objective import (
    AccuracyObjective,
    Constraints,
    MnasNetReward,
    get_metric,
    mnasnet_reward,
)
from lightning_nas.hardware.pareto import (
    crowding_distance,
    dominates,
    front_ranks,
    hypervolume,
    non_dominated_sort,
    pareto_front,
)
from lightning_nas.hardware.report import pareto_summary, write_pareto

__all__ = [
    "AccuracyObjective", "Constraints", "CostHook", "FlopCount", "LatencyModel",
    "LatencyResult", "LatencyTable", "LatencyTableHook", "MeasuredLatency", "MissingEntryError", "MnasNetReward", "count_flops", "count_parameters",
    "crowding_distance", "dominates", "front_ranks", "get_metric", "hypervolume",
    "measure_latency", "mnasnet_reward", "model_costs", "non_dominated_sort", "pareto_front",
    "pareto_summary", "write_pareto",
]
