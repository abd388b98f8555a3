"""Timings of the geometry side of sim/: phantom generation, window (resampling), placement planning.

Run: .venv/bin/python benchmarks/bench_geometry.py   (prints wall and CPU seconds per step)
"""

from __future__ import annotations

import argparse
import time

from tfus.sim.config import get_preset
from tfus.sim.phantom import make_phantom
from tfus.sim.placement import plan_placements
from tfus.sim.window import make_window


def _timed(label: str, fn, repeat: int = 3):
    best_wall, best_cpu, out = float("inf"), float("inf"), None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        best_wall, best_cpu = min(best_wall, time.perf_counter() - w), min(best_cpu, time.process_time() - c)
    print(f"{label:55s} wall {best_wall:6.2f} s   cpu {best_cpu:6.2f} s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-fine", action="store_true", help="skip the 0.5 mm phantom (65 M voxels)")
    args = parser.parse_args()
    head = _timed("make_phantom(seed, 1.0 mm) adult", lambda: make_phantom(0, spacing_mm=1.0))
    print(f"  shape {head.shape} = {head.hu.size / 1e6:.1f} M voxels")
    if not args.skip_fine:
        _timed("make_phantom(seed, 0.5 mm) adult", lambda: make_phantom(0, spacing_mm=0.5), repeat=1)
    for preset in ("demo", "tfuscapes"):
        cfg = get_preset(preset)
        plans = _timed(f"plan_placements(adult 1 mm, n=8, {preset})", lambda: plan_placements(head, 8, 0, cfg))
        p = plans[0]
        _timed(f"make_window(adult 1 mm, {preset} {cfg.window_shape})",
               lambda: make_window(head, p.position_mm, p.target_mm, cfg))


if __name__ == "__main__":
    main()
