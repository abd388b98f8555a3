"""Shared helpers for models tests: a small network config and tiny synthetic stores built through `storage`.

Synthetic samples: a 16³ window, a disk of transducer points on the x = 0 face centred at (y0, z0), and a
Gaussian focus at (10, y0, z0), so the field's focus follows the transducer – something to learn.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tfus.models.config import ModelConfig

torch.set_num_threads(2)

SHAPE = (16, 16, 16)
N_POINTS = 64


def small_config(**changes) -> ModelConfig:
    base = ModelConfig(name="test-small", base_width=4, depth=2, attention_levels=(1, 2), embed_dim=16,
                       n_fourier=3, n_points=32, n_tokens=2, heads=2, norm_groups=2)
    return base.replace(**changes) if changes else base


def synthetic_sample(rng: np.random.Generator, shape=SHAPE, n_points=N_POINTS):
    y0, z0 = rng.uniform(4, shape[1] - 5), rng.uniform(4, shape[2] - 5)
    angle = rng.uniform(0, 2 * np.pi, n_points)
    radius = 3.0 * np.sqrt(rng.uniform(0, 1, n_points))
    points = np.stack([np.zeros(n_points), y0 + radius * np.cos(angle), z0 + radius * np.sin(angle)], 1)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).astype(np.float32)
    focus = np.array([10.0, y0, z0])
    pressure = 2e5 * np.exp(-((grid - focus) ** 2).sum(-1) / (2 * 2.0 ** 2)) + 1e3
    ct = np.clip(rng.normal(300, 200, shape), -1000, 3000)
    ct[:2] = 1800.0  # a "skull" slab behind the transducer face
    return ct.astype(np.float32), pressure.astype(np.float32), points.astype(np.float32), focus


def make_store(path, n_subjects=4, per_subject=2, seed=0, splits=("train", "train", "val", "test")) -> str:
    """A complete store with ``n_subjects × per_subject`` synthetic samples; subject s gets splits[s % len]."""
    from tfus import storage
    from tfus.sim.config import get_preset
    url = str(path)
    sim_config = get_preset("test").replace(window_shape=SHAPE, n_transducer_points=N_POINTS).to_dict()
    spacing = float(sim_config["spacing_mm"])
    ds = storage.create_dataset(url, storage.DatasetSpec(SHAPE, spacing, N_POINTS), {"sim_config": sim_config})
    rng = np.random.default_rng(seed)
    records, arrays = [], {}
    for s in range(n_subjects):
        for k in range(per_subject):
            key = f"subj{s:02d}-exp{k}"
            ct, pressure, points, focus = synthetic_sample(rng)
            affine = np.diag([spacing, spacing, spacing, 1.0])
            records.append(storage.SampleRecord(key=key, sample_id=key, subject_id=f"subj{s:02d}",
                                                split=splits[s % len(splits)], position_mm=(0.0, 0.0, 0.0),
                                                target_mm=tuple(float(v) * spacing for v in focus),
                                                frequency_hz=5e5, config_json="{}"))
            arrays[key] = dict(ct_hu=ct, pressure_pa=pressure, affine=affine, transducer_points=points,
                               meta={"focal_point_mm": list(focus * spacing), "peak_pressure_pa": float(pressure.max()),
                                     "runtime_s": 12.5, "summary": {"runtime_s": 12.5}})
    ds.reserve(records)
    for key, a in arrays.items():
        storage.write_sample(url, key, **a)
    ds.commit()
    return url


@pytest.fixture(scope="session")
def synthetic_store(tmp_path_factory):
    """8 subjects × 2 samples: subjects 0,1,4,5 train, 2,6 val, 3,7 test."""
    return make_store(tmp_path_factory.mktemp("store") / "ds.zarr", n_subjects=8, per_subject=2)


FAST_TRAIN = dict(batch_size=4, lr=3e-3, num_workers=0, seed=0)


@pytest.fixture(scope="session")
def trained_runs(synthetic_store, tmp_path_factory):
    """One conditioned and one plain run (1 epoch each) on the synthetic store."""
    from tfus.models.config import TrainConfig, plain_unet_config
    from tfus.models.train import train
    root = tmp_path_factory.mktemp("runs")
    tc = TrainConfig(epochs=1, **FAST_TRAIN)
    train(synthetic_store, small_config(), root / "deeptfus", tc, progress=False)
    train(synthetic_store, plain_unet_config(small_config()), root / "plain", tc, progress=False)
    return {"deeptfus": root / "deeptfus", "plain": root / "plain", "store": synthetic_store}
