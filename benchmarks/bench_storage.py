"""Dataset storage benchmark: sample read throughput and time to list a large sample table.

    .venv/bin/python benchmarks/bench_storage.py [--window 128] [--samples 8] [--table 10000] [--workers 2]

1. Read throughput of one sample (ct + pressure, float32) at ``--window``³ from local disk, warm cache,
   through ``Dataset.sample`` and ``SampleReader``, side by side with ``np.load`` of the same arrays as
   uncompressed .npy files (the ratio shows what the format costs), and a full scan of ``--samples``.
2. Time to list the table of ``--table`` samples (8³ windows, built through the public API: reserve,
   write_sample from ``--workers`` processes, commit), before and after commit.
Targets (issue 3): ≥ 200 MB/s for one 128³ sample; listing 10,000 samples in < 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from tfus.storage import DatasetSpec, SampleReader, SampleRecord, create_dataset, open_dataset, write_sample


def _best(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _sample(i: int, n: int) -> dict:
    """A head-like CT (bone shell, soft tissue, water outside) and a smooth focused field."""
    rng = np.random.default_rng(i)
    g = (np.arange(n) - n / 2) / (n / 2)
    x, y, z = np.meshgrid(g, g, g, indexing="ij", sparse=True)
    r = np.sqrt(x ** 2 + y ** 2 + z ** 2)
    ct = np.where(r < 0.8, 40.0, 0.0) + np.where((r > 0.7) & (r < 0.8), 1200.0, 0.0)
    ct = (ct + rng.normal(0, 20, ct.shape) * (r < 0.8)).astype(np.float32)
    p = (5e5 * np.exp(-((x - 0.1) ** 2 + y ** 2 + (z + 0.2) ** 2) / 0.01) * (1 + 0.05 * np.cos(40 * r)))
    return {"ct_hu": ct, "pressure_pa": p.astype(np.float32), "affine": np.diag([0.5, 0.5, 0.5, 1.0]),
            "transducer_points": rng.random((64, 3)).astype(np.float32) * n}


def _record(i: int) -> SampleRecord:
    return SampleRecord(f"k{i:06d}", f"s{i:06d}", f"subj{i % 100:03d}", ("train", "val", "test")[i % 3],
                        (float(i), 0.0, 0.0), (0.0, 0.0, 0.0), 500e3, json.dumps({"preset": "bench", "i": i}))


def bench_read(root: Path, n: int, k: int) -> dict:
    url = str(root / "read.zarr")
    ds = create_dataset(url, DatasetSpec((n, n, n), 0.5, 64), {})
    ds.reserve([_record(i) for i in range(k)])
    t0 = time.perf_counter()
    for i in range(k):
        s = _sample(i, n)
        write_sample(url, f"k{i:06d}", **s, meta={"peak_pressure_pa": float(s["pressure_pa"].max())})
        np.save(root / f"ct{i}.npy", s["ct_hu"])
        np.save(root / f"p{i}.npy", s["pressure_pa"])
    write_s = time.perf_counter() - t0
    ds.commit()
    mb = 2 * 4 * n ** 3 / 1e6   # ct + pressure, float32, uncompressed
    reader = SampleReader(url, fields=("ct_hu", "pressure_pa"))
    reader[0]
    store_bytes = sum(f.stat().st_size for f in (root / "read.zarr").rglob("c.*"))
    opened = open_dataset(url)
    opened.sample("s000000")
    one_sample = _best(lambda: opened.sample("s000000"))
    open_and_read = _best(lambda: open_dataset(url).sample("s000000"))
    one_reader = _best(lambda: reader[0])
    one_npy = _best(lambda: (np.load(root / "ct0.npy"), np.load(root / "p0.npy")))
    scan = _best(lambda: [reader[i] for i in range(len(reader))], repeat=2)
    return {"window": n, "samples": k, "sample_mb": mb, "write_mb_s": k * mb / write_s,
            "compression_ratio": k * mb * 1e6 / store_bytes,
            "one_sample_mb_s": mb / one_sample, "open_and_read_s": open_and_read, "one_reader_mb_s": mb / one_reader,
            "one_npy_mb_s": mb / one_npy, "scan_mb_s": k * mb / scan}


def _write_part(url: str, indices: list[int]) -> int:
    ct = np.zeros((8, 8, 8), np.float32)
    pts = np.zeros((4, 3), np.float32)
    for i in indices:
        write_sample(url, f"k{i:06d}", ct_hu=ct, pressure_pa=ct + i, affine=np.eye(4), transducer_points=pts,
                     meta={"peak_pressure_pa": float(i), "focal_point_mm": [0, 0, 0], "runtime_s": 1.0})
    return len(indices)


def bench_table(root: Path, n: int, workers: int) -> dict:
    url = str(root / "table.zarr")
    ds = create_dataset(url, DatasetSpec((8, 8, 8), 0.5, 4), {})
    t0 = time.perf_counter()
    ds.reserve([_record(i) for i in range(n)])
    reserve_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pool = mp.get_context("spawn").Pool(workers)
    pool.starmap(_write_part, [(url, list(range(w, n, workers))) for w in range(workers)])
    pool.close()
    pool.join()
    write_s = time.perf_counter() - t0
    list_uncommitted = _best(lambda: open_dataset(url).table, repeat=3)
    t0 = time.perf_counter()
    folded = ds.commit()
    commit_s = time.perf_counter() - t0
    list_committed = _best(lambda: open_dataset(url).table, repeat=5)
    table = open_dataset(url).table
    assert len(table) == n and folded == n and (table["status"] == "complete").all()
    query_s = _best(lambda: open_dataset(url).query(split="test", where="peak_pressure_pa > 5000"))
    return {"table_samples": n, "reserve_s": reserve_s, "write_samples_per_s": n / write_s,
            "commit_s": commit_s, "list_uncommitted_s": list_uncommitted, "list_committed_s": list_committed,
            "query_s": query_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--table", type=int, default=10000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tfus-bench-storage-"))
    try:
        result = {**bench_read(root, args.window, args.samples), **bench_table(root, args.table, args.workers)}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for key, value in result.items():
        print(f"{key:22s} {value:.3f}" if isinstance(value, float) else f"{key:22s} {value}")
    ok = result["one_sample_mb_s"] >= 200 and result["list_committed_s"] < 0.5
    print("targets (>= 200 MB/s one sample, < 0.5 s listing):", "met" if ok else "NOT met")


if __name__ == "__main__":
    main()
