"""Latency of a prediction requested through the flow API against the same prediction in process.

Builds a small 64³ store (real windows of phantoms, Gaussian stand-in fields), trains `deeptfus-tiny` for one
epoch, then measures side by side in one run:
  * in process: ``flows.predict.run_prediction`` with the model cached (what the server does per request);
  * flow API: ``flows.client.request_prediction`` (run_deployment + artifact read) against a real Prefect
    server and ``tfus serve`` on 127.0.0.1;
alternating one of each, so that the shared machine's changing load affects both alike. ``api_overhead`` is
the client's end-to-end time minus the server's own ``request_s`` for the same run (poll wait, state
changes, artifacts, the client's polling).

    .venv/bin/python benchmarks/bench_serving.py [--requests 20] [--window 64] [--poll-s 0.5]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tfus.flows.runtime import PrefectServer, prefect_environment  # noqa: E402
from tests.flows import serving_helpers as helpers  # noqa: E402

POSITION, TARGET = [-43.0, 1.0, -2.0], [0.0, 3.0, 2.0]


def percentiles(values: list[float]) -> dict:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]  # noqa: E731
    return {"p50": statistics.median(ordered), "p95": pick(0.95), "min": ordered[0], "max": ordered[-1]}


def measure(api: str, ct: Path, run: Path, out_root: Path, n: int, poll_s: float, log: Path) -> dict:
    """Alternate in-process and flow-API requests (the machine's load changes both alike)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tfus.flows.client import request_prediction, wait_for_deployment
    from tfus.flows.predict import PredictionRequest, run_prediction

    local_request = PredictionRequest(ct=str(ct), position_mm=POSITION, target_mm=TARGET, model=str(run),
                                      out_dir="in-process")
    params = {"ct": str(ct), "position_mm": POSITION, "target_mm": TARGET}
    env = {**os.environ, "PREFECT_API_URL": api}
    times = {"in_process": [], "in_process_inference": [], "api": [], "api_in_server": [], "api_overhead": []}
    with open(log, "wb") as fh, temporary_settings({PREFECT_API_URL: api}):
        proc = subprocess.Popen([str(Path(sys.executable).with_name("tfus")), "serve", "--model", str(run),
                                 "--output-root", str(out_root), "--poll-s", str(poll_s)], env=env,
                                stdout=fh, stderr=subprocess.STDOUT)
        try:
            wait_for_deployment(timeout_s=300, proc=proc)
            request_prediction(params, timeout_s=300)  # first run and local model load: not timed
            run_prediction(local_request)
            for _ in range(n):
                t0 = time.perf_counter()
                local = run_prediction(local_request)
                times["in_process"].append(time.perf_counter() - t0)
                times["in_process_inference"].append(local["inference_s"])
                t0 = time.perf_counter()
                summary = request_prediction(params, timeout_s=120)
                times["api"].append(time.perf_counter() - t0)
                times["api_in_server"].append(summary["request_s"])
                times["api_overhead"].append(times["api"][-1] - summary["request_s"])
            assert summary["model_load_number"] == 1, "the server reloaded the model"
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
    return {name: percentiles(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--poll-s", type=float, default=0.5)
    parser.add_argument("--config", default="deeptfus-tiny", help="model config (default deeptfus-tiny)")
    args = parser.parse_args()
    prefect_environment()
    with tempfile.TemporaryDirectory(prefix="tfus-bench-serving-") as tmp:
        base = Path(tmp)
        t0 = time.perf_counter()
        store = helpers.make_store(base / "ds.zarr", window=args.window, n_subjects=2)
        run = helpers.train_tiny(store, base / "run", epochs=1, config=args.config)
        ct = helpers.write_ct(base / "ct.nii.gz")
        print(f"setup (store + 1 training epoch): {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        os.environ["TFUS_OUTPUT_ROOT"] = str(base / "out")
        server = PrefectServer(home=base / "prefect").start()
        try:
            times = measure(server.api_url, ct, run, base / "out", args.requests, args.poll_s,
                            base / "serve.log")
        finally:
            server.stop()
    result = {"window": args.window, "config": args.config, "requests": args.requests, "poll_s": args.poll_s,
              "seconds": times, "ratio_p50_api_vs_in_process": times["api"]["p50"] / times["in_process"]["p50"]}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
