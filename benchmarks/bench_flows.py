"""Benchmark the dataset-generation flow (one run, side by side on this machine).

(a) orchestration overhead: ``generate_dataset`` on a 1-worker LocalCluster against calling
    ``sim.simulate`` directly in a loop on the same samples (same placements) — per-sample wall time;
(b) scaling: the same samples on 2 workers against 1 worker — throughput ratio.

    .venv/bin/python benchmarks/bench_flows.py [--preset demo] [--subjects 2] [--placements 2]

A Prefect server is started on 127.0.0.1 unless PREFECT_API_URL is set (its start-up is not timed).
Flow times are the whole flow call: validation, cluster start, planning, simulations, commit, artifacts.
Each flow run also reports its CPU use by process role over its middle half (``bench_flow_cpu.py``): with
2 workers, what the processes around the simulations take is what the simulations do not get.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path


def _flow(subjects, store, args, workers) -> tuple[float, dict, dict]:
    """Wall seconds, the flow's summary, and CPU use by process role (cores) over the run's middle half."""
    from bench_flow_cpu import CpuSampler, middle_rates

    from tfus.flows.generate import generate_dataset

    sampler = CpuSampler(interval_s=1.0)
    sampler.start()
    started = time.perf_counter()
    summary = generate_dataset(subjects=subjects, store=str(store), placements=args.placements,
                               preset=args.preset, seed=args.seed, workers=workers)
    ended = time.perf_counter()
    sampler.stop()
    assert summary["failed"] == 0 and summary["done"] == summary["planned"], summary["failures"]
    return ended - started, summary, middle_rates(sampler.history, started, ended)


def _direct(subjects_by_id: dict, store: Path, preset: str) -> tuple[float, float]:
    """tfus.sim.simulate on every sample of ``store`` (its placements), in this process, one after another."""
    from tfus import sim
    from tfus.storage import open_dataset

    config = sim.get_preset(preset)
    table = open_dataset(str(store)).table
    started, cpu = time.perf_counter(), time.process_time()
    for row in table.itertuples():
        sim.simulate(subjects_by_id[row.subject_id], list(row.position_mm), list(row.target_mm), config,
                     progress=False)
    return time.perf_counter() - started, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--placements", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()

    from tfus.flows.runtime import local_prefect_server
    from tfus.flows.subjects import resolve_subjects

    load_start = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="tfus-bench-flows-"))
    try:
        with local_prefect_server():
            subjects = resolve_subjects(f"phantom:{args.subjects}", str(work / "one.zarr"), args.seed,
                                        {"spacing_mm": 1.0})
            paths = [s.path for s in subjects]
            t_one, summary, cores_one = _flow(paths, work / "one.zarr", args, workers=1)
            n = summary["planned"]
            t_direct, cpu_direct = _direct({s.subject_id: s.path for s in subjects}, work / "one.zarr",
                                           args.preset)
            t_two, summary_two, cores_two = _flow(paths, work / "two.zarr", args, workers=2)
        task_s = sum(r["runtime_s"] for r in summary["samples"])
        sim_s = sum(r["sim_runtime_s"] for r in summary["samples"])
        figures = {
            "preset": args.preset, "samples": n, "cpus": os.cpu_count(),
            "direct_s_per_sample": t_direct / n, "direct_cpu_s_per_sample": cpu_direct / n,
            "flow_1_worker_s_per_sample": t_one / n,
            "overhead_pct": 100 * (t_one - t_direct) / t_direct,
            # The same 1-worker flow run, decomposed (robust to load drift between runs):
            "flow_outside_tasks_s_per_sample": (t_one - task_s) / n,
            "task_around_simulate_s_per_sample": (task_s - sim_s) / n,
            "simulate_in_worker_s_per_sample": sim_s / n,
            "overhead_within_flow_run_pct": 100 * (t_one - sim_s) / sim_s,
            "flow_2_workers_s_per_sample": t_two / n, "speedup_2_vs_1": t_one / t_two,
            # The 2-worker run decomposed: simulations slower when both cores are busy, or time around them?
            "simulate_in_worker_2_workers_s_per_sample": sum(r["sim_runtime_s"] for r in summary_two["samples"]) / n,
            "samples_per_worker_2_workers": sorted(Counter(r["worker_pid"] for r in summary_two["samples"]).values()),
            "cores_by_role_middle_half_1_worker": cores_one, "cores_by_role_middle_half_2_workers": cores_two,
            "loadavg_at_start": load_start, "loadavg_at_end": os.getloadavg(),
        }
        print(json.dumps(figures, indent=2))
        if args.out:
            Path(args.out).write_text(json.dumps(figures, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
