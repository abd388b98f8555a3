"""Solver time per step and peak memory: sim.engine vs k-wave-python's ``Simulation.step`` vs the FFT floor.

Same problem for all: a focused bowl (R = D = 0.6 of the box) in water, 250 kHz, 1.2 mm (5 PPW), CFL 0.5,
the same time axis (``sim.solver.make_time_axis``), the same PML-padded grid (the PML size is chosen per
box so that box + 2·PML is FFT-friendly), float32, one fresh process per measurement.

* ``tfus``: ``sim.solver.solve_steady_state(engine="tfus")`` (``sim.engine.KSpaceEngine``).
* ``kwave``: ``sim.solver.solve_steady_state(engine="kwave")`` (k-wave-python's ``Simulation.step`` with
  the streaming source ``sim.source.StreamingPressureSource``).
* ``fft-floor``: what a step cannot go below: 10 real 3D transforms (1 forward of p, 3 inverse gradients,
  3 forward + 3 inverse divergences) = 5 × the median of one measured forward + inverse pair on the padded
  grid, same thread count as the engine, with the faster of FFTW (planned, the engine's default) and
  ``scipy.fft``.
* ``interleaved``: the engine's step and the floor in *one* process, alternating: rounds of 10 engine steps
  (``KSpaceEngine.step``, the bowl driving) then 10 forward + inverse pairs on the engine's own FFTW plans
  (hot cache), the floor = 5 pairs. On this shared machine the separate ``fft-floor`` process can land in
  a quieter or busier minute than the ``tfus`` one (its pair measured 5.8 to 10.9 ms at 128³ within an
  hour), so this ratio, per round and as the median of the rounds, is the one that compares like with like.
* ``plain`` (only with ``--methods``): a plain ``kwave.kspaceFirstOrder(..., backend="python")`` recording
  ``p_max`` (kWaveArray source via ``get_distributed_source_signal``), the pre-streaming baseline.

Reported per run: seconds per time step (loop only), peak traced allocation (tracemalloc, started after the
imports: the simulation's own NumPy buffers, set-up included) and peak RSS (``ru_maxrss``, which also counts
the interpreter and the imported libraries, ~200 MB), plus the load average when the run ended.

    nice -n 10 .venv/bin/python benchmarks/bench_solver.py --sizes 64 96 [--max-steps N] [--fft-workers K]

``--max-steps`` truncates the settle phase (all methods alike) to bound the run time on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc

F_HZ, DX_M, C0 = 250e3, 1.2e-3, 1500.0


def _problem(n: int, max_steps: int | None):
    from tfus.sim.config import SimConfig
    from tfus.sim.solver import MediumArrays, TimeAxis, make_time_axis, padded_layout
    from tfus.sim.source import BowlSource

    pml = next(p for p in range(10, 24) if padded_layout((n,) * 3, p)[0][0] == n + 2 * p)
    cfg = SimConfig(cfl=0.5, pml_size=pml, extra_cycles=2.0, ramp_cycles=2.0, lockin_periods=2,
                    steady_tol=0.0)  # fixed length: the same steps for every method
    roc = 0.6 * n * DX_M
    bowl = BowlSource((2.0, n / 2, n / 2), (2.0 + roc / DX_M, n / 2, n / 2), roc, roc)
    ta = make_time_axis((n,) * 3, DX_M, C0, C0, F_HZ, cfg)
    if max_steps and ta.n_steps > max_steps:
        keep = max(max_steps // ta.points_per_period, 2 * cfg.lockin_periods + 1) * ta.points_per_period
        ta = TimeAxis(ta.dt, ta.points_per_period, keep, ta.window_steps, ta.cfl_actual)
    return cfg, bowl, ta, MediumArrays.water((n,) * 3, C0, 1000.0)


def run_engine(n: int, max_steps: int | None, engine: str, fft_workers: int | None = None,
               device: str = "cpu") -> dict:
    import tfus.sim.solver as solver

    cfg, bowl, ta, medium = _problem(n, max_steps)
    solver.make_time_axis = lambda *a, **k: ta  # the (possibly truncated) axis shared by all methods
    state = solver.solve_steady_state(medium, bowl, F_HZ, 60e3, DX_M, cfg, progress=False, engine=engine,
                                      fft_workers=fft_workers, device=device)
    return {"n_steps": state.info["steps_run"], "loop_s": state.info["loop_s"],
            "peak_pa": float(state.amplitude_pa.max()),
            "fft_workers": state.info.get("fft_workers"), "fft_backend": state.info.get("fft_backend")}


def run_fft_floor(n: int, max_steps: int | None, fft_workers: int | None = None) -> dict:
    import numpy as np

    from tfus.sim.engine import Transforms, default_fft_workers
    from tfus.sim.solver import padded_layout

    cfg, _, ta, _ = _problem(n, max_steps)
    padded, _ = padded_layout((n,) * 3, cfg.pml_size)
    workers = fft_workers or default_fft_workers()
    best = None
    for library in ("fftw", "scipy"):
        fft = Transforms(padded, np.float32, "cpu", workers, library)
        x = fft.empty(padded, np.float32)
        x[...] = np.random.default_rng(0).standard_normal(padded)
        pairs = []
        for _ in range(25):
            t0 = time.perf_counter()
            fft.inverse(fft.forward(x))
            pairs.append(time.perf_counter() - t0)
        pair = float(np.median(pairs[5:]))
        if best is None or pair < best[0]:
            best = (pair, fft.backend)
    floor = 5 * best[0]  # 10 transforms = 5 pairs
    return {"n_steps": ta.n_steps, "loop_s": floor * ta.n_steps, "peak_pa": float("nan"),
            "fft_workers": workers, "fft_backend": best[1]}


def run_interleaved(n: int, max_steps: int | None, fft_workers: int | None = None, rounds: int = 9,
                    per_round: int = 10) -> dict:
    import numpy as np

    from tfus.sim.solver import _build_stepper, padded_layout
    from tfus.sim.source import bowl_grid_weights, drive_signal

    cfg, bowl, ta, medium = _problem(n, None)  # the full drive: the source is on in every round
    padded, _ = padded_layout((n,) * 3, cfg.pml_size)
    weights = bowl_grid_weights(bowl, padded, cfg.pml_size, DX_M)
    signal = drive_signal(ta.n_steps, ta.dt, F_HZ, 60e3, cfg.ramp_cycles)
    eng, _, info = _build_stepper("tfus", medium, ta, DX_M, cfg, "cpu", weights, signal, fft_workers)
    fft = eng.fft
    x = fft.empty(padded, np.float32)
    x[...] = np.random.default_rng(0).standard_normal(padded)
    eng.run(5)
    steps, pairs = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        eng.run(per_round)
        steps.append((time.perf_counter() - t0) / per_round)
        t0 = time.perf_counter()
        for _ in range(per_round):
            fft.inverse(fft.forward(x))  # the engine's plans and buffers, refilled by its next step
        pairs.append((time.perf_counter() - t0) / per_round)
    ratios = [a / (5 * b) for a, b in zip(steps, pairs)]
    step = float(np.median(steps))
    return {"n_steps": 5 + rounds * per_round, "loop_s": step * (5 + rounds * per_round),
            "peak_pa": float(np.abs(eng.p).max()), "step_s": step, "pair_s": float(np.median(pairs)),
            "ratio_median": float(np.median(ratios)), "ratio_min": float(min(ratios)),
            "ratio_max": float(max(ratios)), "fft_workers": info["fft_workers"], "fft_backend": info["fft_backend"]}


def run_plain(n: int, max_steps: int | None) -> dict:
    import numpy as np

    from tfus.sim.kwave_import import kwave_modules
    from tfus.sim.solver import padded_layout
    from tfus.sim.source import drive_signal, vox_to_grid_m

    kw = kwave_modules()
    from kwave.kmedium import kWaveMedium
    from kwave.ksensor import kSensor
    from kwave.ksource import kSource
    from kwave.kspaceFirstOrder import kspaceFirstOrder

    cfg, bowl, ta, medium = _problem(n, max_steps)
    kgrid = kw.kgrid([n] * 3, [DX_M] * 3)
    kgrid.setTime(ta.n_steps, ta.dt)
    karray = kw.karray(bli_tolerance=0.05, upsampling_rate=10)
    # same bowl position as the streaming run (which places it on the padded grid)
    padded, _ = padded_layout((n,) * 3, cfg.pml_size)
    shift = np.array([(p // 2) - cfg.pml_size - n // 2 for p in padded], float) * DX_M
    apex = np.array(vox_to_grid_m(bowl.apex_vox, padded, cfg.pml_size, DX_M)) + shift
    focus = np.array(vox_to_grid_m(bowl.focus_vox, padded, cfg.pml_size, DX_M)) + shift
    karray.add_bowl_element(apex.tolist(), bowl.roc_m, bowl.diameter_m, focus.tolist())
    source = kSource()
    source.p_mask = karray.get_array_binary_mask(kgrid)
    signal = drive_signal(ta.n_steps, ta.dt, F_HZ, 60e3, cfg.ramp_cycles)[None, :]
    source.p = karray.get_distributed_source_signal(kgrid, signal, order="C").astype(np.float32)
    sensor = kSensor(mask=np.ones((n,) * 3, bool))
    sensor.record = ["p_max"]
    sensor.record_start_index = ta.n_steps - 2 * ta.window_steps + 1  # 1-based: the same two windows
    t0 = time.perf_counter()
    out = kspaceFirstOrder(kgrid, kWaveMedium(sound_speed=medium.sound_speed, density=medium.density),
                           source, sensor,
                                    pml_size=cfg.pml_size, pml_alpha=cfg.pml_alpha, backend="python",
                                    dtype=np.float32, quiet=True)
    loop_s = time.perf_counter() - t0
    return {"n_steps": ta.n_steps, "loop_s": loop_s, "peak_pa": float(np.max(out["p_max"]))}


def _worker(method: str, n: int, max_steps: int | None, fft_workers: int | None, device: str = "cpu") -> None:
    import tfus.sim.engine  # noqa: F401  (imports are not the simulation's memory: trace after them)
    import tfus.sim.solver  # noqa: F401
    from tfus.sim.kwave_import import kwave_modules

    kwave_modules()
    from kwave.kspaceFirstOrder import kspaceFirstOrder  # noqa: F401

    tracemalloc.start()
    t0 = time.perf_counter()
    if method in ("tfus", "kwave"):
        res = run_engine(n, max_steps, method, fft_workers, device)
    elif method == "fft-floor":
        res = run_fft_floor(n, max_steps, fft_workers)
    elif method == "interleaved":
        res = run_interleaved(n, max_steps, fft_workers)
    else:
        res = run_plain(n, max_steps)
    res["wall_s"] = time.perf_counter() - t0
    res["traced_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
    res["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["s_per_step"] = res["loop_s"] / res["n_steps"]
    res["load_avg_1min"] = os.getloadavg()[0]
    print("RESULT " + json.dumps({"method": method, "n": n, **res}))


def _measure(method: str, n: int, max_steps: int | None, fft_workers: int | None, device: str = "cpu") -> dict:
    cmd = [sys.executable, __file__, "--worker", method, str(n), "--device", device]
    if max_steps:
        cmd += ["--max-steps", str(max_steps)]
    if fft_workers:
        cmd += ["--fft-workers", str(fft_workers)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[7:])


def _print_row(r: dict) -> None:
    from tfus.sim.solver import padded_layout

    pml = next(p for p in range(10, 24) if padded_layout((r["n"],) * 3, p)[0][0] == r["n"] + 2 * p)
    m = r["n"] + 2 * pml
    peak = "" if r["method"] == "fft-floor" else f"  peak {r['peak_pa'] / 1e3:7.1f} kPa"
    if r["method"] == "interleaved":
        peak = (f"  floor {5 * r['pair_s']:.4f} s  step/floor {r['ratio_median']:.2f}x "
                f"(rounds {r['ratio_min']:.2f}-{r['ratio_max']:.2f})")
    print(f"{r['n']:>4}³ (padded {m}³) {r['method']:<9} steps {r['n_steps']:>4}  {r['s_per_step']:.4f} s/step  "
          f"traced peak {r['traced_peak_mb']:8.1f} MB  max RSS {r['max_rss_mb']:8.1f} MB{peak}  "
          f"fft {r.get('fft_backend') or '-'} x{r.get('fft_workers') or '-'}  load {r['load_avg_1min']:.2f}",
          flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 96], help="box edges (cells, before the PML)")
    ap.add_argument("--methods", nargs="+", default=["tfus", "kwave", "fft-floor", "interleaved"],
                    choices=["tfus", "kwave", "fft-floor", "interleaved", "plain"])
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--fft-workers", type=int, default=None, help="threads per transform (default: affinity)")
    ap.add_argument("--repeat", type=int, default=1, help="alternate the order and keep each method's fastest")
    ap.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="tfus/kwave engines on CuPy (gpu)")
    ap.add_argument("--worker", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    if args.worker:
        _worker(args.worker[0], int(args.worker[1]), args.max_steps, args.fft_workers, args.device)
        return 0
    rows = []
    for n in args.sizes:
        best = {}
        for rep in range(args.repeat):
            for method in (args.methods if rep % 2 == 0 else args.methods[::-1]):
                r = _measure(method, n, args.max_steps, args.fft_workers, args.device)
                rows.append(r)
                if method not in best or r["s_per_step"] < best[method]["s_per_step"]:
                    best[method] = r
                _print_row(r)
        ratios = [f"{a}/{b} {best[a]['s_per_step'] / best[b]['s_per_step']:.2f}x"
                  for a, b in (("kwave", "tfus"), ("tfus", "fft-floor"), ("plain", "tfus"))
                  if a in best and b in best]
        if ratios:
            print(f"{n:>4}³ time per step: " + ", ".join(ratios), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
