"""Transcranial transmission of a head: focal peak through the skull / the same transducer in water.

For ``n`` placements planned on a CT (or pseudo-CT) with a config, each placement is simulated through the
head and, on the very same grid, in water (``simulate_free_field``). The transmission is the ratio of the
intracranial focal peaks (``sim.fieldstats``: beyond the rim, outside bone) — the quantity published as
transcranial pressure transmission or insertion loss (dB = −20·log10 T). Writes ``transmission.json`` and a
PNG (through-skull field of the first placement, planes through its focus).

    python -m tfus.sim.transmission --ct colin.nii.gz --preset practice --n 4 --out DIR
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np


def transmission_study(ct, config, n: int, seed: int, out_dir: str | os.PathLike, progress: bool = False) -> dict:
    """Per-placement transmission and its summary (module docstring); JSON + PNG in ``out_dir``."""
    from tfus.sim.ingest import load_volume  # noqa: PLC0415
    from tfus.sim.placement import plan_placements  # noqa: PLC0415
    from tfus.sim.preview import render_preview  # noqa: PLC0415
    from tfus.sim.simulation import simulate, simulate_free_field  # noqa: PLC0415

    volume = load_volume(ct)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, p in enumerate(plan_placements(volume, n, seed, config)):
        head = simulate(volume, p.position_mm, p.target_mm, config, progress=progress)
        water = simulate_free_field(p.position_mm, p.target_mm, config, head.window.affine, head.window.shape,
                                    progress=progress)
        t = head.summary["peak_pressure_pa"] / water.summary["peak_pressure_pa"]
        rows.append({"placement": p.to_dict(), "peak_skull_pa": head.summary["peak_pressure_pa"],
                     "peak_water_pa": water.summary["peak_pressure_pa"], "transmission": t,
                     "insertion_loss_db": -20 * math.log10(t),
                     "focus_shift_mm": float(np.linalg.norm(np.subtract(head.summary["focal_point_mm"],
                                                                        water.summary["focal_point_mm"])))})
        if i == 0:
            render_preview(head.window.ct_hu, head.pressure_pa, head.summary["focal_index"], out / "transmission.png",
                           spacing_mm=head.window.spacing_mm,
                           title=f"{Path(str(ct)).name}: through the skull, T = {t:.2f}")
    ts = np.array([r["transmission"] for r in rows])
    report = {"ct": str(ct), "config": config.to_dict(), "frequency_hz": config.transducer.frequency_hz,
              "placements": rows, "transmission_mean": float(ts.mean()), "transmission_min": float(ts.min()),
              "transmission_max": float(ts.max()),
              "insertion_loss_db_mean": float(np.mean([r["insertion_loss_db"] for r in rows]))}
    (out / "transmission.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv=None) -> int:
    from tfus.sim.config import load_sim_config  # noqa: PLC0415

    ap = argparse.ArgumentParser(prog="python -m tfus.sim.transmission", description=__doc__.splitlines()[0])
    ap.add_argument("--ct", required=True, help="CT or pseudo-CT (NIfTI, ...)")
    ap.add_argument("--preset", default="practice", help="preset or config file (default practice)")
    ap.add_argument("--n", type=int, default=4, help="placements (default 4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        report = transmission_study(args.ct, load_sim_config(args.preset), args.n, args.seed, args.out)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for r in report["placements"]:
        print(f"T = {r['transmission']:.3f} ({r['insertion_loss_db']:.1f} dB), focus shift {r['focus_shift_mm']:.1f} mm")
    print(f"mean T = {report['transmission_mean']:.3f} ({report['insertion_loss_db_mean']:.1f} dB) at "
          f"{report['frequency_hz'] / 1e3:g} kHz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
