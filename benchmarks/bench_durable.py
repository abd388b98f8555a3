"""What durable writes cost: ``write_sample`` with fsync (the default) against ``TFUS_STORE_FSYNC=0``.

Side by side in one run, alternating rounds (on, off, on, off …) into fresh local stores in ``--dir``:
``--samples`` samples of a ``--window``³ window (ct + pressure float32, the dataset's real codecs), and
``--small`` samples of an 8³ window (where the per-sample fsyncs, not the bytes, dominate). Reported: the
median over rounds of MB/s (large) and samples/s (small) for each setting, and their ratio.

    .venv/bin/python benchmarks/bench_durable.py [--window 128] [--samples 6] [--small 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from tfus.storage import DatasetSpec, SampleRecord, create_dataset, write_sample


def _store(root: Path, name: str, n: int, k: int):
    url = root / name
    ds = create_dataset(url, DatasetSpec((n,) * 3, 1.0, 64))
    ds.reserve([SampleRecord(f"k{i:06d}", f"s{i:06d}", "subj", "train", (0.0, 0.0, 0.0), (0.0, 0.0, 1.0), 5e5,
                             "{}") for i in range(k)])
    return url


def _write(url: Path, n: int, k: int) -> float:
    rng = np.random.default_rng(0)
    ct = rng.normal(0, 300, (n,) * 3).astype(np.float32)
    pts = rng.random((64, 3)).astype(np.float32)
    t0 = time.perf_counter()
    for i in range(k):
        write_sample(url, f"k{i:06d}", ct_hu=ct, pressure_pa=ct + i, affine=np.eye(4), transducer_points=pts,
                     meta={"peak_pressure_pa": 1.0})
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--window", type=int, default=128)
    ap.add_argument("--samples", type=int, default=6)
    ap.add_argument("--small", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where the stores go (default: a temporary folder)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tfus-durable-", dir=args.dir))
    mb = 2 * args.window ** 3 * 4 / 1e6
    res = {"fsync": {"large_mb_s": [], "small_per_s": []}, "no-fsync": {"large_mb_s": [], "small_per_s": []}}
    try:
        for r in range(args.rounds):
            for mode in ("fsync", "no-fsync"):
                os.environ["TFUS_STORE_FSYNC"] = "1" if mode == "fsync" else "0"
                big = _store(root, f"{mode}-{r}-big.zarr", args.window, args.samples)
                res[mode]["large_mb_s"].append(args.samples * mb / _write(big, args.window, args.samples))
                small = _store(root, f"{mode}-{r}-small.zarr", 8, args.small)
                res[mode]["small_per_s"].append(args.small / _write(small, 8, args.small))
                shutil.rmtree(big)
                shutil.rmtree(small)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out = {m: {k: statistics.median(v) for k, v in d.items()} for m, d in res.items()}
    out["ratio_fsync_over_no_fsync"] = {k: out["fsync"][k] / out["no-fsync"][k] for k in out["fsync"]}
    out["rounds"] = res
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
