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

from tfus.sim.ingest import Volume, axis_aligned_affine, save_nifti

ADULT_SEMI_AXES_MM = (75.0, 90.0, 80.0)  # 150 × 180 × 160 mm head
SKIN_HU, CSF_HU, BRAIN_HU = 50.0, 10.0, 30.0
CSF_MM = 2.0
SHELL_MM = 20.0  # deepest possible layer boundary (skin + tables + diploë + CSF) stays below this


# Smoothly varying properties: name -> (mean, amplitude); drawn in this order from the seed.
FIELDS = {
    "skin_t": (4.5, 1.0), "outer_t": (1.8, 0.5), "diploe_t": (3.5, 2.0), "inner_t": (1.3, 0.4),  # mm
    "cortical_hu": (1750.0, 120.0), "diploe_hu": (800.0, 170.0),  # ~1600–1900 and ~600–1000 HU
}
SLAB = 16  # x-slices per chunk: bounded memory, cache-friendly


def _draw_field(rng: np.random.Generator, n_waves: int = 6, max_cycles: float = 1.5):
    """Wave vectors (n, 3) and phases (n,) of a smooth random field over unit directions."""
    k = rng.normal(size=(n_waves, 3))
    k *= (rng.uniform(0.5, max_cycles, size=n_waves) * 2 * np.pi / np.linalg.norm(k, axis=1))[:, None]
    return k.astype(np.float32), rng.uniform(0, 2 * np.pi, size=n_waves).astype(np.float32)


def _eval_field(params, dirs: list[np.ndarray]) -> np.ndarray:
    """The field in about [-1, 1] at unit directions ``dirs`` (three arrays)."""
    k, phase = params
    out = np.zeros_like(dirs[0])
    for kk, ph in zip(k, phase):
        out += np.cos(kk[0] * dirs[0] + kk[1] * dirs[1] + kk[2] * dirs[2] + ph)
    return out / np.float32(np.sqrt(len(k) / 2.0) * 1.8)


def _grid(semi_axes: np.ndarray, spacing_mm: float, margin_mm: float) -> tuple[np.ndarray, list]:
    shape = np.ceil((2 * semi_axes + 2 * margin_mm) / spacing_mm).astype(int) + 1
    origin = -(shape - 1) / 2 * spacing_mm
    affine = axis_aligned_affine(origin, spacing_mm)
    axes = [(origin[i] + spacing_mm * np.arange(shape[i])).astype(np.float32) for i in range(3)]
    return affine, axes


def check_head_args(seed, spacing_mm, scale, margin_mm) -> None:
    """``ValueError`` naming the argument of a synthetic head (shared with ``sim.scanner_phantom``)."""
    if int(seed) != seed or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer, got {seed}")
    if not 0.1 <= spacing_mm <= 5.0:
        raise ValueError(f"`spacing_mm` must be in [0.1, 5] mm, got {spacing_mm}")
    if not 0.2 <= scale <= 2.0:
        raise ValueError(f"`scale` must be in [0.2, 2], got {scale}")
    if not margin_mm >= 0:
        raise ValueError(f"`margin_mm` must be >= 0, got {margin_mm}")


def make_phantom(seed: int, spacing_mm: float = 1.0, scale: float = 1.0, margin_mm: float = 20.0,
                 semi_axes_mm: tuple[float, float, float] = ADULT_SEMI_AXES_MM) -> Volume:
    """A CT-like head, deterministic from ``seed``.

    ``scale`` shrinks or grows the head's outline (not its layer thicknesses, so tiny test heads keep a
    resolvable skull); ``margin_mm`` of water surrounds the head so transducers fit inside the volume.
    """
    check_head_args(seed, spacing_mm, scale, margin_mm)
    rng = np.random.default_rng(int(seed))
    semi = np.asarray(semi_axes_mm, dtype=np.float64) * scale * rng.uniform(0.95, 1.05, size=3)
    affine, (x, y, z) = _grid(semi, spacing_mm, margin_mm)
    hu = np.zeros(tuple(len(a) for a in (x, y, z)), dtype=np.float32)  # water background
    fields = {name: _draw_field(rng) for name in FIELDS}
    # Only the head's bounding box needs work (the margin is water); x-slabs keep memory bounded.
    lo, hi = [[int(np.searchsorted(a, sgn * (h + spacing_mm))) for a, h in zip((x, y, z), semi)] for sgn in (-1, 1)]
    Y, Z = np.meshgrid(y[lo[1]:hi[1]], z[lo[2]:hi[2]], indexing="ij", sparse=True)
    for i in range(lo[0], hi[0], SLAB):
        X = x[i:min(i + SLAB, hi[0])][:, None, None]
        noise_rng = np.random.default_rng([int(seed), i])  # one stream per slab (fixed by seed and SLAB)
        hu[i:i + X.shape[0], lo[1]:hi[1], lo[2]:hi[2]] = _head(X, Y[None], Z[None], semi, fields, noise_rng)
    return Volume(hu, affine)


def _head(X, Y, Z, semi: np.ndarray, fields: dict, noise_rng: np.random.Generator) -> np.ndarray:
    """HU of a block from sparse world coordinates (mm, head centre at 0)."""
    f32 = np.float32
    dist = np.sqrt(X * X + Y * Y + Z * Z) + f32(1e-6)
    r = np.sqrt((X / f32(semi[0])) ** 2 + (Y / f32(semi[1])) ** 2 + (Z / f32(semi[2])) ** 2)
    depth = dist * (1 - r) / np.maximum(r, f32(1e-6))  # mm below the surface along the ray
    inside = depth >= 0
    hu = np.where(inside, f32(BRAIN_HU), f32(0))
    shell = np.nonzero(inside & (depth < SHELL_MM))  # layered properties are only computed here
    if shell[0].size:
        pts = [np.broadcast_to(a, depth.shape)[shell] for a in (X, Y, Z)]
        d = np.sqrt(pts[0] ** 2 + pts[1] ** 2 + pts[2] ** 2) + f32(1e-6)
        hu[shell] = _layers(depth[shell], [p / d for p in pts], fields)
    noise = noise_rng.standard_normal(size=hu.shape, dtype=np.float32) * f32(8.0)  # CT-like texture
    hu += np.where(inside, noise, f32(0))
    return hu


def _layers(depth: np.ndarray, dirs: list[np.ndarray], fields: dict) -> np.ndarray:
    """HU of shell voxels by depth below the scalp, with smoothly varying thicknesses and bone HU."""
    f32 = np.float32
    v = {name: f32(mean) + f32(amp) * _eval_field(fields[name], dirs) for name, (mean, amp) in FIELDS.items()}
    b1 = v["skin_t"]
    b2 = b1 + v["outer_t"]
    b3 = b2 + v["diploe_t"]
    b4 = b3 + v["inner_t"]
    b5 = b4 + f32(CSF_MM)
    hu = np.full(depth.shape, f32(SKIN_HU))
    hu = np.where(depth >= b1, v["cortical_hu"], hu)               # outer table
    hu = np.where(depth >= b2, v["diploe_hu"], hu)                 # diploë
    hu = np.where(depth >= b3, v["cortical_hu"] - f32(50), hu)     # inner table
    hu = np.where(depth >= b4, f32(CSF_HU), hu)
    return np.where(depth >= b5, f32(BRAIN_HU), hu)


def write_phantom(seed: int, path: str | os.PathLike, **kwargs) -> Path:
    """Write :func:`make_phantom` ``(seed, **kwargs)`` as NIfTI (``.nii``/``.nii.gz``), atomically."""
    path = Path(path)
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        raise ValueError(f"{path}: phantom output must end in .nii or .nii.gz")
    volume = make_phantom(seed, **kwargs)
    return save_nifti(volume.hu, volume.affine, path)
