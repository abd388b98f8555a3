"""Check an existing Dask cluster once before a flow plans work on it.

A lab's cluster, a managed Dask service or a colleague's workers carry none of tfus's settings and may run
another environment. Before anything is planned, every worker (and the scheduler, which unpickles the task
graphs) is asked, by a probe that needs only the standard library, whether the tfus task module imports, and
which versions of tfus and of the packages that shape results it runs. Any difference from this process,
or a worker whose memory limit is below one simulation's estimate, stops the flow with one line naming the
worker and what differs.

The probe is pickled *by value* (``cloudpickle.register_pickle_by_value``), so a worker without tfus can
still run it and say so.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

# Distributions whose version changes what a sample holds (the solver, its arrays, the store, the model).
RESULT_PACKAGES = ("k-wave-python", "numpy", "zarr", "torch")
# What a task needs on the worker: the module that defines the flow's tasks (imports tfus.sim, tfus.storage).
TASK_MODULE = "tfus.flows.generate"


def probe_environment() -> dict:
    """Runs on a worker: tfus importable (with the reason when not), versions, Python, host, pid.

    Standard library only, imports inside: it must run where tfus is missing or broken.
    """
    import importlib  # noqa: PLC0415
    import importlib.metadata as md  # noqa: PLC0415
    import os  # noqa: PLC0415
    import platform  # noqa: PLC0415

    found = {"host": platform.node(), "pid": os.getpid(), "python": platform.python_version(),
             "tfus": None, "import_error": None, "packages": {}}
    try:
        importlib.import_module(TASK_MODULE)
        found["tfus"] = str(sys.modules["tfus"].__version__)
    except Exception as exc:  # noqa: BLE001 - any failure to import is the finding
        found["import_error"] = f"{type(exc).__name__}: {exc}"
    for name in RESULT_PACKAGES:
        try:
            found["packages"][name] = md.version(name)
        except md.PackageNotFoundError:
            found["packages"][name] = None
    return found


@dataclass(frozen=True)
class ClusterReport:
    """What the check saw: the scheduler's probe, each worker's probe and memory limit (bytes, 0 = none)."""

    address: str
    scheduler: dict
    workers: dict[str, dict]
    memory_limits: dict[str, int]


def differences(local: dict, remote: dict) -> list[str]:
    """Human-readable differences between this process's probe and a remote one (empty: compatible)."""
    if remote.get("import_error"):
        return [f"cannot import {TASK_MODULE} ({remote['import_error']}); install tfus {local['tfus']} "
                "in its environment"]
    out = []
    if remote.get("tfus") != local.get("tfus"):
        out.append(f"tfus {remote.get('tfus')} (this client: {local.get('tfus')})")
    for name in RESULT_PACKAGES:
        theirs, ours = remote["packages"].get(name), local["packages"].get(name)
        if theirs != ours:
            out.append(f"{name} {theirs} (this client: {ours})")
    return out


def _probe_cluster(address: str, timeout_s: float) -> ClusterReport:
    import cloudpickle  # noqa: PLC0415
    from distributed import Client  # noqa: PLC0415

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        with Client(address, timeout=f"{timeout_s:.0f}s", set_as_default=False) as client:
            info = client.scheduler_info(n_workers=-1)["workers"]
            if not info:
                raise ValueError(f"dask scheduler {address} has no workers")
            workers = client.run(probe_environment)
            scheduler = client.run_on_scheduler(probe_environment)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    limits = {w: int(info.get(w, {}).get("memory_limit") or 0) for w in workers}
    return ClusterReport(address, scheduler, workers, limits)


def check_cluster(address: str, needed_bytes: int, timeout_s: float = 20.0) -> ClusterReport:
    """Refuse (``ValueError``, one line) a cluster whose scheduler or workers differ from this process or
    whose workers have less memory than ``needed_bytes`` (one simulation's estimate)."""
    import psutil  # noqa: PLC0415 - a distributed dependency

    report = _probe_cluster(address, timeout_s)
    local = probe_environment()
    bad = [(f"dask scheduler {address}", d) for d in [differences(local, report.scheduler)] if d]
    bad += [(f"dask worker {w} (host {p['host']}, pid {p['pid']})", d)
            for w, p in sorted(report.workers.items()) if (d := differences(local, p))]
    if bad:
        where, what = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ValueError(f"{where}: {'; '.join(what)}{more}")
    machine = psutil.virtual_memory().total
    for worker, limit in sorted(report.memory_limits.items()):
        available = limit or machine  # a worker without a limit may use its machine (assumed like this one)
        if needed_bytes > available:
            raise ValueError(f"dask worker {worker}: memory limit {available / 2**30:.2f} GiB, but one "
                             f"simulation needs about {needed_bytes / 2**30:.2f} GiB: give workers more "
                             "memory (dask worker --memory-limit) or use a smaller window_shape")
    return report
