"""Where the CPU goes during a dataset-generation flow: per-process (and per-thread) CPU time.

Runs ``generate_dataset`` once on a LocalCluster of ``--workers`` workers and samples, every ``--interval``
seconds, the CPU times of this process (the flow, the Dask scheduler and the nannies live here), of each of
its threads, and of every descendant process (Prefect server, Dask worker processes and their threads).
Threads that exited before the last sample (a Dask worker runs each task's simulation in such a thread)
are not in the per-thread lists, but their time is in the process totals.
Prints CPU seconds per role, so that what the processes *around* the simulations cost when both cores are
busy can be read off directly (docs/PERFORMANCE.md, issue "2 workers vs 1").

    .venv/bin/python benchmarks/bench_flow_cpu.py [--preset small] [--subjects 2] [--placements 4]
        [--workers 2] [--json out.json]

A Prefect server is started on 127.0.0.1 unless PREFECT_API_URL is set (then it is not measured).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import psutil


def _role(proc: psutil.Process, me: int) -> str:
    try:
        cmd = " ".join(proc.cmdline())
    except psutil.Error:
        return "gone"
    if "prefect" in cmd and "server" in cmd:
        return "prefect server"
    if "resource_tracker" in cmd:
        return "multiprocessing resource tracker"
    if "multiprocessing" in cmd or "forkserver" in cmd:
        return "dask worker"
    if proc.pid == me:
        return "flow process"
    return f"other ({cmd[:60]})"


class CpuSampler(threading.Thread):
    """Keeps the last CPU times seen of every process in this process's tree (processes may exit)."""

    def __init__(self, interval_s: float):
        super().__init__(daemon=True, name="cpu-sampler")
        self.interval_s = interval_s
        self.me = psutil.Process()
        self.procs: dict[int, dict] = {}
        self.history: list[tuple[float, dict[str, float]]] = []  # (time, CPU s by role so far)
        self._halt = threading.Event()

    def sample(self) -> None:
        for proc in [self.me, *self.me.children(recursive=True)]:
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    threads = {t.id: t.user_time + t.system_time for t in proc.threads()}
                    entry = self.procs.setdefault(proc.pid, {"role": _role(proc, self.me.pid)})
                    entry.update(user=times.user, system=times.system, threads=threads)
            except psutil.Error:
                continue
        by_role: dict[str, float] = defaultdict(float)
        for e in self.procs.values():
            by_role[e["role"]] += e["user"] + e["system"]
        self.history.append((time.perf_counter(), dict(by_role)))

    def run(self) -> None:
        while not self._halt.wait(self.interval_s):
            self.sample()

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.sample()


def middle_rates(history: list, t0: float, t1: float) -> dict[str, float]:
    """CPU use by role (in cores) over the middle half of [t0, t1]: the workers are simulating then."""
    lo, hi = t0 + 0.25 * (t1 - t0), t0 + 0.75 * (t1 - t0)
    inside = [(t, r) for t, r in history if lo <= t <= hi]
    if len(inside) < 2:
        return {}
    (ta, a), (tb, b) = inside[0], inside[-1]
    return {role: round((b.get(role, 0.0) - a.get(role, 0.0)) / (tb - ta), 3) for role in b}


def _thread_names() -> dict[int, str]:
    return {t.native_id: t.name for t in threading.enumerate()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--placements", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from tfus.flows.generate import generate_dataset
    from tfus.flows.runtime import local_prefect_server

    work = Path(tempfile.mkdtemp(prefix="tfus-bench-flow-cpu-"))
    try:
        with local_prefect_server():
            subjects = f"phantom:{args.subjects}"
            sampler = CpuSampler(args.interval)
            sampler.sample()
            base = {pid: dict(e, threads=dict(e["threads"])) for pid, e in sampler.procs.items()}
            sampler.start()
            t0 = time.perf_counter()
            summary = generate_dataset(subjects=subjects, store=str(work / "bench.zarr"),
                                       placements=args.placements, preset=args.preset, seed=args.seed,
                                       workers=args.workers, phantom_options={"spacing_mm": 1.0})
            t1 = time.perf_counter()
            wall = t1 - t0
            names = _thread_names()
            sampler.stop()
        assert summary["failed"] == 0, summary["failures"]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    roles: dict[str, float] = defaultdict(float)
    detail = []
    for pid, e in sampler.procs.items():
        b = base.get(pid, {"user": 0.0, "system": 0.0, "threads": {}})
        cpu = e["user"] + e["system"] - b["user"] - b["system"]
        roles[e["role"]] += cpu
        threads = sorted(((tid, t - b["threads"].get(tid, 0.0)) for tid, t in e["threads"].items()),
                         key=lambda x: -x[1])
        top = [{"tid": tid, "name": names.get(tid, "") if pid == sampler.me.pid else "", "cpu_s": round(c, 2)}
               for tid, c in threads if c >= 0.05]
        detail.append({"pid": pid, "role": e["role"], "cpu_s": round(cpu, 2), "threads": top})
    sim_s = sum(r["sim_runtime_s"] for r in summary["samples"])
    figures = {
        "preset": args.preset, "workers": args.workers, "samples": summary["planned"], "wall_s": wall,
        "cpu_capacity_s": wall * (os.cpu_count() or 1), "sim_runtime_s_sum": sim_s,
        "cpu_s_by_role": {k: round(v, 2) for k, v in sorted(roles.items(), key=lambda x: -x[1])},
        "cores_by_role_middle_half": middle_rates(sampler.history, t0, t1),
        "processes": sorted(detail, key=lambda d: -d["cpu_s"]),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
