#!/usr/bin/env bash
# The GPU check of the solver, one short script (a few minutes on a CUDA machine), run from the repository
# root on the GPU machine after benchmarks/gpu_prepare.sh has filled .gpu-wheels/ here:
#   1. install tfus (no deps) and the carried wheels into the image's python3 (CuPy is in the image; else
#      `pip install 'tfus[gpu]'` where a registry is reachable);
#   2. step for step on CUDA: the CuPy engine vs k-wave-python's Simulation.step, 200 steps (< 1e-4 of peak);
#   3. O'Neil in water on the GPU (tfus validate --device gpu, both cases);
#   4. seconds per step at 256³ and 384³ (benchmarks/bench_solver.py, tfus engine, --device gpu);
#   5. one `tfuscapes`-preset simulation end to end on a phantom (tfus simulate --device gpu).
# Results go to ${OUT:-gpu-results}/ (logs + JSON).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-results}"; mkdir -p "$out"
py="${PYTHON:-python3}"
export PIP_NO_INDEX=1 PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
"$py" -m pip install --quiet --no-deps --find-links .gpu-wheels .gpu-wheels/*.whl
"$py" -m pip install --quiet --no-deps --no-build-isolation -e .
"$py" -c "import cupy, tfus.sim.engine as e; print('cupy', cupy.__version__, cupy.cuda.runtime.getDeviceCount())"
"$py" -m pytest -q -p no:cacheprovider tests/sim/test_engine.py -k gpu 2>&1 | tee "$out/step_for_step.log"
for case in small default; do
  "$py" -m tfus validate --case "$case" --device gpu --no-progress --out "$out/oneil-$case" \
    2>&1 | tee "$out/oneil-$case.log"
done
"$py" benchmarks/bench_solver.py --device gpu --methods tfus --sizes 236 364 --max-steps 200 \
  --json "$out/bench_gpu.json" 2>&1 | tee "$out/bench_gpu.log"
"$py" - "$out" <<'PY' 2>&1 | tee "$out/tfuscapes.log"
import json, sys, time
from tfus.sim import get_preset, make_phantom, plan_placements, simulate, write_simulation
cfg = get_preset("tfuscapes")
head = make_phantom(0, spacing_mm=0.5)
p = plan_placements(head, 1, 0, cfg)[0]
t = time.perf_counter()
r = simulate(head, p.position_mm, p.target_mm, cfg, device="gpu", progress=False)
write_simulation(r, f"{sys.argv[1]}/tfuscapes-sim")
keys = ("peak_pressure_pa", "time_steps", "time_steps_saved", "solver_seconds_per_step", "runtime_s", "grid_shape")
print(json.dumps({"wall_s": time.perf_counter() - t, **{k: r.summary.get(k) for k in keys}}, indent=2))
PY
