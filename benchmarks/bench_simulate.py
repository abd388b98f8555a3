"""End to end: ``tfus simulate --preset P`` on a phantom with ``--engine tfus`` vs ``--engine kwave``, same run.

One adult phantom (seed 0, CT at the preset's spacing), its first planned placement; each engine runs the
whole command in a fresh process (CT load, resampling, bowl weights, time loop, outputs). ``--repeat``
alternates the order and keeps each engine's fastest wall time. Both runs use the preset's settings
(steady state detected with ``steady_tol``), so the step counts are reported too.

    .venv/bin/python benchmarks/bench_simulate.py [--preset demo] [--repeat 1] [--fft-workers K]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TFUS = str(Path(sys.executable).with_name("tfus"))


def _setup(preset: str, work: Path) -> tuple[Path, list[float], list[float]]:
    from tfus.sim.config import get_preset
    from tfus.sim.ingest import save_nifti
    from tfus.sim.phantom import make_phantom
    from tfus.sim.placement import plan_placements

    config = get_preset(preset)
    head = make_phantom(0, spacing_mm=min(1.0, config.spacing_mm))
    placement = plan_placements(head, 1, 0, config)[0]
    ct = save_nifti(head.hu, head.affine, work / "head.nii.gz")
    return ct, [float(x) for x in placement.position_mm], [float(x) for x in placement.target_mm]


def _run(engine: str, preset: str, ct: Path, position, target, out: Path, env: dict) -> dict:
    cmd = [TFUS, "simulate", "--ct", str(ct), "--position", *map(str, position), "--target", *map(str, target),
           "--preset", preset, "--engine", engine, "--no-progress", "--out", str(out)]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    wall = time.perf_counter() - started
    s = json.loads((out / "summary.json").read_text())
    return {"engine": engine, "wall_s": wall, "runtime_s": s["runtime_s"], "time_steps": s["time_steps"],
            "solver_seconds_per_step": s["solver_seconds_per_step"], "peak_pressure_pa": s["peak_pressure_pa"],
            "load": os.getloadavg()[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--fft-workers", type=int, default=None, help="TFUS_FFT_WORKERS for the tfus engine")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    env = {**os.environ, **({"TFUS_FFT_WORKERS": str(args.fft_workers)} if args.fft_workers else {})}
    best: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="tfus-bench-sim-") as tmp:
        work = Path(tmp)
        ct, position, target = _setup(args.preset, work)
        for r in range(args.repeat):
            for engine in (("tfus", "kwave") if r % 2 == 0 else ("kwave", "tfus")):
                row = _run(engine, args.preset, ct, position, target, work / f"{engine}-{r}", env)
                print(f"{engine:5s} wall {row['wall_s']:7.1f} s  solver {row['runtime_s']:7.1f} s  "
                      f"{row['time_steps']} steps  {row['solver_seconds_per_step'] * 1e3:7.1f} ms/step  "
                      f"peak {row['peak_pressure_pa'] / 1e3:.1f} kPa  load {row['load']:.2f}", flush=True)
                if engine not in best or row["wall_s"] < best[engine]["wall_s"]:
                    best[engine] = row
    ratio = best["kwave"]["wall_s"] / best["tfus"]["wall_s"]
    print(f"tfus simulate --preset {args.preset}: kwave/tfus wall {ratio:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"best": best, "ratio_wall": ratio}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
