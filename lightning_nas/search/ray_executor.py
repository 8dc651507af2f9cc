"""Trials as Ray tasks: a ``concurrent.futures.Executor`` for :func:`run_search`.

The search loop only needs ``submit(fn, *args) -> Future`` and ``shutdown``; this executor
runs every call as one Ray task with its own resources (``num_cpus``, ``num_gpus``), on a
local Ray instance started here or on an existing cluster (``address="auto"`` or
``"ray://host:10001"``). The journal, resume, constraints and failed-trial records are the
loop's, exactly as with a process pool:

* a trial whose worker process dies (killed, out of memory, a segfault in a kernel) comes
  back as Ray's ``WorkerCrashedError`` from ``future.result()``, which the loop records as a
  failed trial before it goes on; tasks are never retried (``max_retries=0``), so a trial is
  evaluated once, as it is journaled;
* a killed driver loses only the trials in flight: ``--resume`` re-runs them from the
  journal's snapshot.

Ray is an optional dependency: ``pip install 'lightning-nas[ray]'``.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any


def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The task body (module level, so workers import it instead of unpickling a closure)."""
    return fn(*args, **kwargs)


class RayExecutor(Executor):
    """Run submitted calls as Ray tasks.

    Args:
        max_workers: trials in flight at once (the search loop reads ``_max_workers``, as
            for a process pool); Ray queues tasks beyond the cluster's free resources.
        address: ``None`` starts a local Ray instance (``num_cpus`` of the machine, or
            ``local_cpus``) and stops it on :meth:`shutdown`; ``"auto"`` or a ``ray://``
            address joins an existing cluster, which is left running.
        num_cpus, num_gpus: resources of one trial (a Ray task's ``num_cpus`` /
            ``num_gpus``; fractions share a device).
        local_cpus: CPUs of the local instance (default: all of this machine's).
        init_kwargs: more ``ray.init`` arguments (e.g. ``runtime_env``).
    """

    def __init__(self, max_workers: int = 1, *, address: str | None = None,
                 num_cpus: float = 1.0, num_gpus: float = 0.0, local_cpus: int | None = None,
                 init_kwargs: dict[str, Any] | None = None):
        try:
            import ray
        except ImportError as err:  # pragma: no cover - depends on the install
            raise ImportError("--executor ray needs Ray: pip install 'lightning-nas[ray]' "
                              "(or pip install ray)") from err
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        if num_cpus < 0 or num_gpus < 0:
            raise ValueError(f"num_cpus and num_gpus must be >= 0, got {num_cpus}, {num_gpus}")
        self._ray = ray
        self._max_workers = int(max_workers)
        self._owns_ray = False
        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, "log_to_driver": False,
                      **(init_kwargs or {})}
            if address is None:
                if local_cpus is not None:
                    kwargs["num_cpus"] = int(local_cpus)
                ray.init(**kwargs)
                self._owns_ray = True
            else:
                ray.init(address=address, **kwargs)
        self._task = ray.remote(_call).options(num_cpus=num_cpus, num_gpus=num_gpus,
                                               max_retries=0)
        self._refs: dict[Future, Any] = {}

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        ref = self._task.remote(fn, args, kwargs)
        future = ref.future()
        self._refs[future] = ref
        future.add_done_callback(lambda f: self._refs.pop(f, None))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures:
            for ref in list(self._refs.values()):
                self._ray.cancel(ref, force=True)
        elif wait:
            for future in list(self._refs):
                try:
                    future.result()
                except Exception:  # noqa: BLE001 - the loop already recorded it
                    pass
        self._refs.clear()
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()
            self._owns_ray = False
