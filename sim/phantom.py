"""Synthetic CT-like heads (no public head CT can ship with the project).

An ellipsoidal head in water (0 HU) with, from the outside in: skin/scalp (~40–60 HU), a cortical outer
table (~1600–1900 HU), a trabecular diploë (~600–1000 HU), a cortical inner table, a thin CSF layer and
brain (~30 HU). Layer thicknesses and bone HU vary smoothly over the head through seeded low-frequency
fields (sums of a few random plane waves evaluated on the unit direction from the head centre), so every
seed gives a different but plausible skull. Everything is deterministic from the seed and vectorised.

World frame (RAS, mm): x left→right (width), y posterior→anterior (length), z inferior→superior
(height); the head centre is at the origin of the affine's world coordinates.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sim.ingest import Volume, axis_aligned_affine, save_nifti

ADULT_SEMI_AXES_MM = (75.0, 90.0, 80.0)  # 150 × 180 × 160 mm head
SKIN_HU, CSF_HU, BRAIN_HU = 50.0, 10.0, 30.0
CSF_MM = 2.0
SHELL_MM = 20.0  # deepest possible layer boundary (skin + tables + diploë + CSF) stays below this


def _smooth_field(rng: np.random.Generator, dirs: list[np.ndarray], n_waves: int = 6,
                  max_cycles: float = 1.5) -> np.ndarray:
    """A smooth random field in [-1, 1] over unit directions (low-frequency plane waves on the sphere)."""
    out = np.zeros_like(dirs[0])
    for _ in range(n_waves):
        k = rng.normal(size=3)
        k *= rng.uniform(0.5, max_cycles) * 2 * np.pi / np.linalg.norm(k)
        phase = rng.uniform(0, 2 * np.pi)
        out += np.cos(np.float32(k[0]) * dirs[0] + np.float32(k[1]) * dirs[1] + np.float32(k[2]) * dirs[2]
                      + np.float32(phase))
    return out / np.float32(np.sqrt(n_waves / 2.0) * 1.8)


def _grid(semi_axes: np.ndarray, spacing_mm: float, margin_mm: float) -> tuple[np.ndarray, list]:
    shape = np.ceil((2 * semi_axes + 2 * margin_mm) / spacing_mm).astype(int) + 1
    origin = -(shape - 1) / 2 * spacing_mm
    affine = axis_aligned_affine(origin, spacing_mm)
    axes = [(origin[i] + spacing_mm * np.arange(shape[i])).astype(np.float32) for i in range(3)]
    return affine, axes


def make_phantom(seed: int, spacing_mm: float = 1.0, scale: float = 1.0, margin_mm: float = 20.0,
                 semi_axes_mm: tuple[float, float, float] = ADULT_SEMI_AXES_MM) -> Volume:
    """A CT-like head, deterministic from ``seed``.

    ``scale`` shrinks or grows the head's outline (not its layer thicknesses, so tiny test heads keep a
    resolvable skull); ``margin_mm`` of water surrounds the head so transducers fit inside the volume.
    """
    if int(seed) != seed or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer, got {seed}")
    if not 0.1 <= spacing_mm <= 5.0:
        raise ValueError(f"`spacing_mm` must be in [0.1, 5] mm, got {spacing_mm}")
    if not 0.2 <= scale <= 2.0:
        raise ValueError(f"`scale` must be in [0.2, 2], got {scale}")
    if margin_mm < 0:
        raise ValueError(f"`margin_mm` must be >= 0, got {margin_mm}")
    rng = np.random.default_rng(int(seed))
    semi = np.asarray(semi_axes_mm, dtype=np.float64) * scale * rng.uniform(0.95, 1.05, size=3)
    affine, (x, y, z) = _grid(semi, spacing_mm, margin_mm)
    X, Y, Z = np.meshgrid(x, y, z, indexing="ij", sparse=True)
    dist = np.sqrt(X * X + Y * Y + Z * Z) + np.float32(1e-6)
    r = np.sqrt((X / np.float32(semi[0])) ** 2 + (Y / np.float32(semi[1])) ** 2 + (Z / np.float32(semi[2])) ** 2)
    depth = dist * (1 - r) / np.maximum(r, np.float32(1e-6))  # mm below the surface along the ray
    hu = np.zeros(depth.shape, dtype=np.float32)  # water background
    inside = depth >= 0
    hu[inside] = BRAIN_HU
    shell = np.nonzero(inside & (depth < SHELL_MM))  # layered properties are only computed here
    pts = [np.broadcast_to(a, depth.shape)[shell] for a in (X, Y, Z)]
    d = np.sqrt(pts[0] ** 2 + pts[1] ** 2 + pts[2] ** 2) + np.float32(1e-6)
    hu[shell] = _layers(rng, depth[shell], [p / d for p in pts])
    hu[inside] += rng.normal(0.0, 8.0, size=int(inside.sum())).astype(np.float32)  # CT-like texture
    return Volume(hu, affine)


def _layers(rng: np.random.Generator, depth: np.ndarray, dirs: list[np.ndarray]) -> np.ndarray:
    """HU of shell voxels by depth below the scalp, with smoothly varying thicknesses and bone HU."""
    f32 = np.float32
    skin_t = f32(4.5) + f32(1.0) * _smooth_field(rng, dirs)
    outer_t = f32(1.8) + f32(0.5) * _smooth_field(rng, dirs)
    diploe_t = f32(3.5) + f32(2.0) * _smooth_field(rng, dirs)   # 1.5 … 5.5 mm
    inner_t = f32(1.3) + f32(0.4) * _smooth_field(rng, dirs)
    cortical_hu = f32(1750) + f32(120) * _smooth_field(rng, dirs)  # ~1600 … 1900
    diploe_hu = f32(800) + f32(170) * _smooth_field(rng, dirs)     # ~600 … 1000
    bounds = np.cumsum([skin_t, outer_t, diploe_t, inner_t, np.full_like(skin_t, CSF_MM)], axis=0)
    values = [f32(SKIN_HU) + 0 * depth, cortical_hu, diploe_hu, cortical_hu - f32(50),
              f32(CSF_HU) + 0 * depth, f32(BRAIN_HU) + 0 * depth]
    layer = (depth[None, :] >= bounds).sum(axis=0)  # 0 = skin … 5 = brain
    return np.choose(layer, values).astype(f32)


def write_phantom(seed: int, path: str | os.PathLike, **kwargs) -> Path:
    """Write :func:`make_phantom` ``(seed, **kwargs)`` as NIfTI (``.nii``/``.nii.gz``), atomically."""
    path = Path(path)
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        raise ValueError(f"{path}: phantom output must end in .nii or .nii.gz")
    volume = make_phantom(seed, **kwargs)
    return save_nifti(volume.hu, volume.affine, path)
