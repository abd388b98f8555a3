"""Why k-Wave's transmitted peak through the bm3_small plate is low at 6 PPW: one change per run.

Each row is ``sim.layered_validation``'s bm3_small comparison with one thing changed (docs/VALIDATION.md,
"Through flat bone layers", table "candidate causes"): the water-only box (c_ref = c, or forced to the
plate's 2800 m/s on the plate run's time step), the CFL number, c_ref, the settle time and the lock-in
window, partial-volume faces, no absorption. Prints one line per row; ``--json`` writes them all.

    .venv/bin/python benchmarks/layered_causes.py [--ppw 6] [--rows baseline cfl_0.2 ...] [--json out.json]

About 5 min on one core for all rows at 6 PPW. c_ref and the time step are not options of ``sim.solver``:
the rows that change them patch ``sim.engine.EngineConfig`` / ``sim.solver.make_time_axis`` for that run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import time
from dataclasses import replace

import tfus.sim.engine as engine
import tfus.sim.solver as solver
from tfus.sim.layered import Layer, LayeredMedium
from tfus.sim.layered_validation import CASES, compare_with_reference, medium_arrays
from tfus.sim.source import BowlSource

BASE = CASES["bm3_small"]
PLATE = BASE.medium.layers[0]
WATER = LayeredMedium((Layer(PLATE.thickness_m, 1500.0, 1000.0),), BASE.medium.z_first_m)  # no contrast
LOSSLESS = replace(BASE.medium, layers=(replace(PLATE, alpha_db_mhz2_cm=0.0),), alpha_far_db_mhz2_cm=0.0)
PLATE_PPP_6 = 36  # points per period of the plate run at 6 PPW, CFL 0.5 (set by the absorption limit)

# name: (medium, cfl, c_ref, forced points per period, SimConfig overrides, partial volume)
ROWS = {
    "baseline": (BASE.medium, 0.5, None, None, {}, False),
    "water": (WATER, 0.5, None, None, {}, False),
    "water_dt_of_plate": (WATER, 0.5, None, PLATE_PPP_6, {}, False),
    "water_dt_of_plate_cref_2800": (WATER, 0.5, 2800.0, PLATE_PPP_6, {}, False),
    "cfl_0.2": (BASE.medium, 0.2, None, None, {}, False),
    "cfl_0.1": (BASE.medium, 0.1, None, None, {}, False),
    "cref_1500": (BASE.medium, 0.5, 1500.0, None, {}, False),
    "cref_2150": (BASE.medium, 0.5, 2150.0, None, {}, False),
    "settle_12_fixed": (BASE.medium, 0.5, None, None, {"extra_cycles": 12.0, "steady_tol": 0.0}, False),
    "lockin_6_settle_12_fixed": (BASE.medium, 0.5, None, None,
                                 {"extra_cycles": 12.0, "lockin_periods": 6, "steady_tol": 0.0}, False),
    "partial_volume": (BASE.medium, 0.5, None, None, {}, True),
    "lossless_cfl_0.5": (LOSSLESS, 0.5, None, None, {}, False),
    "lossless_cfl_0.2": (LOSSLESS, 0.2, None, None, {}, False),
}


@contextlib.contextmanager
def _patched(c_ref: float | None, ppp: int | None):
    orig_cfg, orig_axis = engine.EngineConfig, solver.make_time_axis
    if c_ref is not None:
        engine.EngineConfig = lambda **kw: orig_cfg(**{**kw, "c_ref_m_s": c_ref})
    if ppp is not None:  # the time axis of a medium whose c_max gives ``ppp`` at this CFL
        def axis(shape, spacing_m, c_min, c_max, frequency_hz, config, dt_limit=math.inf):
            c_eff = (ppp - 0.5) * config.cfl * spacing_m * frequency_hz
            return orig_axis(shape, spacing_m, c_min, c_eff, frequency_hz, config, dt_limit)
        solver.make_time_axis = axis
    try:
        yield
    finally:
        engine.EngineConfig, solver.make_time_axis = orig_cfg, orig_axis


def run_row(name: str, ppw: float) -> dict:
    medium, cfl, c_ref, ppp, overrides, partial = ROWS[name]
    case = replace(BASE, medium=medium, cfl=cfl, partial_volume=partial)
    grid = case.grid(ppw)
    config = replace(grid.config(), **overrides)
    c = grid.shape()[1] / 2
    bowl = BowlSource((grid.apex_index, c, c), (grid.apex_index + grid.roc_m / grid.spacing_m, c, c),
                      grid.roc_m, grid.aperture_m)
    t0 = time.perf_counter()
    with _patched(c_ref, ppp):
        state = solver.solve_steady_state(medium_arrays(medium, grid, partial), bowl, case.frequency_hz,
                                          case.amplitude_pa, grid.spacing_m, config, progress=False)
    report = compare_with_reference(state.amplitude_pa, case, ppw)
    report.pop("axis")
    report.update(row=name, c_ref_m_s=c_ref, points_per_period=state.time.points_per_period,
                  cfl_actual=state.time.cfl_actual, steps_run=state.info["steps_run"], n_steps=state.time.n_steps,
                  wall_s=time.perf_counter() - t0, overrides=overrides)
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ppw", type=float, default=6.0)
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    out = []
    for name in args.rows:
        r = run_row(name, args.ppw)
        n, v = r["nominal"], r["voxelised"]
        print(f"{name:28s} ppp {r['points_per_period']:3d} (CFL {r['cfl_actual']:.3f}) steps {r['steps_run']}/"
              f"{r['n_steps']}: peak {100 * n['peak_rel_error']:+.2f} %"
              f" (grid stack {100 * v['peak_rel_error']:+.2f} %),"
              f" z {r['peak_z_sim_mm']:.2f} (sub-voxel {r['peak_z_sim_subvoxel_mm']:.2f}) vs {n['peak_z_ref_mm']:.2f}"
              f" mm, L2 {100 * n['on_axis_rel_l2']:.2f} %, {r['wall_s']:.0f} s", flush=True)
        out.append(r)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
