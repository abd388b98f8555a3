"""Torch dataset over a tfus store (read only through `storage`).

Each item: ``ct`` (1, X, Y, Z) float32 in [0, 1] (CT [0, 2000] HU → [0, 1], clipped), ``points`` (P, 3)
float32 transducer points scaled to [−1, 1] per axis, ``target`` (1, X, Y, Z) float32 = log(1 + p/max p),
``index`` (int, position in the dataset's id list), and with a free-field prior (``ModelConfig.prior``)
``prior`` (1, X, Y, Z) float32 = log(1 + A/max A) of the transducer's free-field beam A (``prior_channel``).
Augmentation (training only) flips axes of CT, field and
points together, so the transducer stays consistent with the field.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

HU_MAX = 2000.0


def normalise_ct(ct_hu: np.ndarray) -> np.ndarray:
    """[0, 2000] HU → [0, 1] (clipped)."""
    return np.clip(np.asarray(ct_hu, dtype=np.float32) / HU_MAX, 0.0, 1.0)


def normalise_pressure(pressure: np.ndarray, name: str = "pressure") -> np.ndarray:
    """log(1 + p / max p), peak = ln 2."""
    p = np.asarray(pressure, dtype=np.float32)
    if not np.isfinite(p).all():
        raise ValueError(f"{name} has non-finite values")
    p = np.abs(p)
    peak = float(p.max())
    if peak <= 0:
        raise ValueError(f"{name} is zero everywhere; cannot normalise")
    return np.log1p(p / peak).astype(np.float32)


def scale_points(points_vox: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Voxel coordinates (P, 3) on a grid of ``shape`` → [−1, 1] per axis (index 0 → −1, n−1 → +1)."""
    pts = np.asarray(points_vox, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
        raise ValueError(f"transducer points must have shape (P, 3) with P >= 1, got {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError("transducer points have non-finite values")
    size = np.asarray(shape, dtype=np.float32)
    return (2.0 * pts / (size - 1.0) - 1.0).astype(np.float32)


def drive_features(drive, n_points: int) -> np.ndarray:
    """(P, 2) float32 a·cos φ, a·sin φ of each point's ring from the stored ``transducer_drive`` (P, 3) (ring,
    amplitude, phase); None: a single in-phase bowl, (1, 0) everywhere."""
    if drive is None:
        return np.tile(np.array([[1.0, 0.0]], np.float32), (int(n_points), 1))
    d = np.asarray(drive, dtype=np.float64)
    if d.shape != (int(n_points), 3) or not np.isfinite(d).all():
        raise ValueError(f"transducer drive must be finite with shape ({n_points}, 3), got {d.shape}")
    return np.stack([d[:, 1] * np.cos(d[:, 2]), d[:, 1] * np.sin(d[:, 2])], axis=1).astype(np.float32)


def encode_transducer(points_vox: np.ndarray, drive, shape: Sequence[int]) -> np.ndarray:
    """What the model reads of the transducer: (P, 5) float32 rows of the point in [−1, 1] per axis
    (``scale_points``) and its ring drive (``drive_features``)."""
    pts = scale_points(points_vox, shape)
    return np.concatenate([pts, drive_features(drive, len(pts))], axis=1)


def subsample_points(points: np.ndarray, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Exactly ``n`` points: random without replacement (rng given) or evenly strided (deterministic)."""
    m = len(points)
    if rng is not None:
        idx = rng.choice(m, n, replace=m < n)
    else:
        idx = np.linspace(0, m - 1, n).round().astype(np.int64)
    return points[idx]


def flip_sample(ct: np.ndarray, target: np.ndarray, points: np.ndarray, axes: Sequence[int], *others: np.ndarray):
    """Flip spatial ``axes`` of (X, Y, Z) arrays (``ct``, ``target`` and any ``others``) and the matching
    coordinate of points in [−1, 1] (the first three columns; a drive column is not a coordinate)."""
    if not axes:
        return (ct, target, points, *others)
    points = points.copy()
    for a in axes:
        points[:, a] = -points[:, a]
    flipped = [np.flip(x, axes).copy() for x in (ct, target, *others)]
    return (flipped[0], flipped[1], points, *flipped[2:])


def store_spacing_mm(spacing) -> float:
    """The isotropic spacing (mm) of a store's or run's ``spacing_mm`` attribute (a number or three)."""
    values = np.atleast_1d(np.asarray(spacing, dtype=np.float64))
    if values.size not in (1, 3) or not np.all(values > 0) or not np.allclose(values, values[0]):
        raise ValueError(f"the free-field prior needs an isotropic positive spacing, got {spacing!r}")
    return float(values[0])


def beam_template(sim_config, shape: Sequence[int], spacing_mm):
    """The free-field template (``sim.beam_prior``) of the transducer in ``sim_config`` (a dict as stored in
    the store's attributes and the run config) for windows of ``shape`` at ``spacing_mm``."""
    from tfus.sim.beam_prior import template_for  # noqa: PLC0415
    from tfus.sim.config import SimConfig  # noqa: PLC0415

    if not sim_config:
        raise ValueError("the free-field prior needs the simulation config (sim_config) of the dataset")
    if isinstance(sim_config, str):
        sim_config = json.loads(sim_config)
    if not shape:
        raise ValueError("the free-field prior needs a fixed window shape (a store of windows, not whole CTs)")
    config = SimConfig.from_dict(sim_config)
    return template_for(config.transducer, tuple(int(n) for n in shape), store_spacing_mm(spacing_mm), config.grid)


def prior_channel(template, points_vox: np.ndarray, shape: Sequence[int], spacing_mm: float) -> np.ndarray:
    """log(1 + A/max A) (float32, ``shape``) of the free-field beam A of the transducer at ``points_vox``."""
    from tfus.sim.beam_prior import free_field_prior  # noqa: PLC0415

    amplitude = free_field_prior(template, points_vox, tuple(shape), float(spacing_mm))
    if not amplitude.max() > 0:
        raise ValueError("the transducer's free-field beam does not reach the window; check the placement")
    return np.log1p(amplitude / amplitude.max()).astype(np.float32)


class StoreDataset(Dataset):
    """Complete samples of one split of the store at ``url`` (wraps ``storage.SampleReader``)."""

    def __init__(self, url: str, split: str, n_points: int, augment: bool = False, seed: int = 0,
                 prior: bool = False):
        from tfus import storage
        self.url, self.split, self.n_points = str(url), split, int(n_points)
        self.augment, self.seed = augment, seed
        self.reader = storage.SampleReader(url, split)
        self.sample_ids = list(self.reader.sample_ids)
        if not self.sample_ids:
            raise ValueError(f"store {self.url} has no complete samples in split {split!r}")
        self.template = self.spacing_mm = None
        if prior:
            attrs = storage.open_dataset(url).attrs
            self.spacing_mm = store_spacing_mm(attrs.get("spacing_mm"))
            self.template = beam_template(attrs.get("sim_config"), attrs.get("window_shape"), self.spacing_mm)

    def __len__(self) -> int:
        return len(self.sample_ids)

    def load(self, i: int):
        """(ct [0,1], target, transducer encoding (P, 5): points in [−1, 1] and their drive (all of them),
        raw reader dict) of sample ``i``."""
        s = self.reader[i]
        sid = s["sample_id"]
        shape = s["ct_hu"].shape
        return (normalise_ct(s["ct_hu"]), normalise_pressure(s["pressure_pa"], f"sample {sid} pressure"),
                encode_transducer(s["transducer_points"], s.get("transducer_drive"), shape), s)

    def prior(self, s: dict) -> np.ndarray:
        """The free-field prior channel of a sample dict from ``load``."""
        return prior_channel(self.template, s["transducer_points"], s["ct_hu"].shape, self.spacing_mm)

    def __getitem__(self, i: int) -> dict:
        ct, target, points, s = self.load(i)
        extra = [self.prior(s)] if self.template is not None else []
        rng = None
        if self.augment:
            rng = np.random.default_rng([self.seed, i, int(torch.randint(0, 2 ** 31, ()).item())])
            ct, target, points, *extra = flip_sample(ct, target, points,
                                                     [a for a in range(3) if rng.random() < 0.5], *extra)
        points = subsample_points(points, self.n_points, rng)
        item = {"ct": torch.from_numpy(np.ascontiguousarray(ct[None])),
                "target": torch.from_numpy(np.ascontiguousarray(target[None])),
                "points": torch.from_numpy(points), "index": i}
        if extra:
            item["prior"] = torch.from_numpy(np.ascontiguousarray(extra[0][None]))
        return item
