"""One simulation in the plain process against the same simulation inside a Dask worker, per worker setting.

Why: the generation flow's simulations ran 17–30 % slower inside a Dask worker than in a plain process.
The task runs in a worker *thread*; this script separates the worker's settings that could matter and
reports wall time, user/sys CPU time and minor page faults of the call itself (``getrusage`` in the process
that runs it). Every Dask variant starts its own 1-worker LocalCluster (``flows.runtime.local_cluster``,
i.e. tfus's settings) with one setting changed:

* ``main``: ``sim.simulate`` in this process, twice (the first call pays for the imports);
* ``tfus``: tfus's worker settings as shipped;
* ``arenas``: as shipped but without ``MALLOC_ARENA_MAX=1`` (glibc's per-thread arenas, Dask's default);
* ``arenas-noprofile``: the same with Dask's statistical profiler off.

``arenas*`` run before ``tfus``: the nanny writes its pre-spawn environment into this process's
``os.environ`` too, and later clusters would inherit it.

``--ceiling``: the hardware ceiling for this workload without Dask or Prefect: 4 placements simulated by one
plain process, then split over two plain processes running at the same time (each process simulates once
to warm up first; the warm-up is not timed). Throughput ratio = what 2 workers can reach at best.

    .venv/bin/python benchmarks/bench_worker_env.py [--preset small] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path


def simulate_once(ct: str, position, target, preset: str) -> dict:
    from tfus import sim

    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    sim.simulate(ct, position, target, sim.get_preset(preset), progress=False)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    return {"wall_s": round(wall, 2), "user_s": round(r1.ru_utime - r0.ru_utime, 2),
            "sys_s": round(r1.ru_stime - r0.ru_stime, 2), "minor_faults": r1.ru_minflt - r0.ru_minflt,
            "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX")}


VARIANTS = {
    "arenas": {"distributed.nanny.pre-spawn-environ.MALLOC_ARENA_MAX": None},
    "arenas-noprofile": {"distributed.nanny.pre-spawn-environ.MALLOC_ARENA_MAX": None,
                         "distributed.worker.profile.enabled": False},
    "tfus": {},
}


def _in_worker(settings: dict, *args) -> dict:
    import dask
    from distributed import Client, LocalCluster

    from tfus.flows.runtime import configure_dask

    configure_dask()  # tfus's settings, then the variant's change on top
    with tempfile.TemporaryDirectory() as scratch, dask.config.set(settings):
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address="127.0.0.1:0", local_directory=scratch) as cluster:
            with Client(cluster) as client:
                return client.submit(simulate_once, *args, pure=False).result()


_CHILD = """
import json, sys, time
sys.path.insert(0, {bench!r})
from bench_worker_env import simulate_once
calls = json.loads(sys.argv[1])
simulate_once(*calls[0])  # warm-up: imports, first-call costs
sys.stdout.write("ready\\n"); sys.stdout.flush(); sys.stdin.readline()
t0 = time.perf_counter()
for call in calls:
    simulate_once(*call)
print(time.perf_counter() - t0)
"""


def _plain_processes(groups: list[list]) -> float:
    """Wall seconds for plain processes simulating ``groups`` (one list of calls each) at the same time."""
    import subprocess

    code = _CHILD.format(bench=str(Path(__file__).resolve().parent))
    procs = [subprocess.Popen([sys.executable, "-c", code, json.dumps(g)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for g in groups]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    t0 = time.perf_counter()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        p.communicate()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--seed", type=int, default=0, help="phantom and placement seed")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    parser.add_argument("--ceiling", action="store_true", help="only the two-plain-processes ceiling")
    args = parser.parse_args()

    from tfus.sim import get_preset, load_volume, plan_placements, write_phantom

    work = Path(tempfile.mkdtemp(prefix="tfus-bench-worker-"))
    ct = str(write_phantom(args.seed, work / "head.nii.gz"))
    placement = plan_placements(load_volume(ct), 1, seed=args.seed, config=get_preset(args.preset))[0]
    call = (ct, list(placement.position_mm), list(placement.target_mm), args.preset)
    rows = {"load_at_start": os.getloadavg()}
    if args.ceiling:
        calls = [[ct, list(p.position_mm), list(p.target_mm), args.preset]
                 for p in plan_placements(load_volume(ct), 4, seed=args.seed, config=get_preset(args.preset))]
        one = _plain_processes([calls])
        two = _plain_processes([calls[:2], calls[2:]])
        rows.update({"one_process_4_sims_s": one, "two_processes_2_sims_each_s": two,
                     "ceiling_2_vs_1": one / two, "load_at_end": os.getloadavg()})
        print(json.dumps(rows, indent=2))
        return
    rows["main (first call)"] = simulate_once(*call)
    rows["main (second call)"] = simulate_once(*call)
    for name, settings in VARIANTS.items():
        rows[f"worker: {name}"] = _in_worker(settings, *call)
        print(name, rows[f"worker: {name}"], file=sys.stderr, flush=True)
    rows["load_at_end"] = os.getloadavg()
    text = json.dumps(rows, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
