"""Small synthetic samples and worker functions for the storage tests (importable by spawned processes)."""

from __future__ import annotations

import json
import time

import numpy as np

from tfus.storage import DatasetSpec, SampleRecord, create_dataset, write_sample

SHAPE = (8, 9, 10)
POINTS = 12
SPEC = DatasetSpec(SHAPE, 0.5, POINTS)


def key_of(i: int) -> str:
    return f"key{i:04d}"


def record(i: int, split: str = "train", subject: str | None = None) -> SampleRecord:
    return SampleRecord(key=key_of(i), sample_id=f"s{i:04d}", subject_id=subject or f"subj{i % 3}", split=split,
                        position_mm=(i, 0.0, 1.0), target_mm=(0.0, i, 2.0), frequency_hz=500e3,
                        config_json=json.dumps({"i": i, "preset": "test"}))


def sample_arrays(i: int) -> dict:
    """Deterministic, distinct arrays for sample ``i``."""
    rng = np.random.default_rng(i)
    affine = np.diag([0.5, 0.5, 0.5, 1.0])
    affine[:3, 3] = (i, -i, 2 * i)
    return {"ct_hu": rng.normal(0, 500, SHAPE).astype(np.float32),
            "pressure_pa": (rng.random(SHAPE) * 1e5 * (i + 1)).astype(np.float32),
            "affine": affine, "transducer_points": rng.random((POINTS, 3)).astype(np.float32)}


def meta(i: int) -> dict:
    arrays = sample_arrays(i)
    return {"focal_point_mm": [1.0, 2.0, float(i)], "peak_pressure_pa": float(arrays["pressure_pa"].max()),
            "runtime_s": 0.5 + i, "summary": {"i": i, "grid_shape": list(SHAPE)}}


def make_store(url, n: int = 6, write=range(4), commit: bool = True, splits=("train", "train", "val", "test")):
    """A store with ``n`` reserved samples of which ``write`` are complete."""
    ds = create_dataset(url, SPEC, {"sim_config": {"preset": "test"}, "frequency_hz": 500e3})
    ds.reserve([record(i, split=splits[i % len(splits)]) for i in range(n)])
    for i in write:
        write_sample(url, key_of(i), **sample_arrays(i), meta=meta(i))
    if commit:
        ds.commit()
    return ds


def write_many(url: str, indices: list[int]) -> list[bool]:
    """Worker body for the multi-process test: write each sample, as the Dask workers do."""
    return [write_sample(url, key_of(i), **sample_arrays(i), meta=meta(i)) for i in indices]


def write_then_hang(url: str, i: int, flag_path: str) -> None:
    """Write sample ``i``'s chunks, then stall just before its completion record (to be killed there)."""
    from tfus.storage.store import Location

    def stall(self, key, rec, sub=""):
        open(flag_path, "w").close()
        time.sleep(600)

    Location.write_record = stall
    write_sample(url, key_of(i), **sample_arrays(i), meta=meta(i))
