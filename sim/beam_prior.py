"""The free-field beam of a transducer as a prior: Rayleigh integral once, then placed at any pose in a window.

A focused bowl (or annular array on a bowl) driven uniformly per ring radiates an axisymmetric field in
water, so its amplitude is a function of (z, r): the distance along the axis from the apex and from the axis.
``rayleigh_template`` evaluates the Rayleigh integral of the cap (normal velocity u0 = p0/(ρ0·c0), per-ring
complex drive) on a (z, r) table once per transducer and spacing; ``place`` reads that table at every voxel
of a window for a pose (apex, axis), bilinear, in milliseconds. ``pose_from_points`` recovers the pose from
the transducer points that every sample and every model input carries (least-squares sphere centre =
geometric focus; the points' centroid lies on the axis), so the prior is a function of what the model sees.

Used by the models (``ModelConfig.prior``): the prior enters as an input channel and the network predicts a
correction to it, so an untrained network is the free-field baseline and training can only start from there.
The table's on-axis values follow O'Neil's solution (``tests/sim/test_beam_prior.py``); it is the field of
the continuous cap in a lossless fluid, not the solver's discretised source (which ``simulate_free_field``
gives, a simulation per placement).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from tfus.sim.transducer import Bowl

SOUND_SPEED_M_S = 1500.0  # water, as the simulations' 0 HU (sim.medium)
BACK_MM_FRACTION = 0.5     # the table reaches this fraction of the reach behind the apex (the field there is weak)


@dataclass(frozen=True)
class BeamTemplate:
    """Free-field amplitude (Pa) ``table[iz, ir]`` at z = z0_mm + iz·step_mm (apex → focus positive) and
    r = ir·step_mm from the axis; zero outside the table."""

    table: np.ndarray
    z0_mm: float
    step_mm: float
    roc_mm: float

    def __post_init__(self) -> None:
        t = np.asarray(self.table)
        if t.ndim != 2 or min(t.shape) < 2 or not np.isfinite(t).all():
            raise ValueError(f"`table` must be a finite (z, r) array of at least 2×2, got shape {t.shape}")
        if not self.step_mm > 0 or not self.roc_mm > 0:
            raise ValueError(f"`step_mm` and `roc_mm` must be > 0, got {self.step_mm}, {self.roc_mm}")

    @property
    def z_max_mm(self) -> float:
        return self.z0_mm + (self.table.shape[0] - 1) * self.step_mm

    @property
    def r_max_mm(self) -> float:
        return (self.table.shape[1] - 1) * self.step_mm


def _surface(transducer, n: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(n, 3) cap points of the bowl at the origin aimed along +z (mm), their complex drive, and the area (mm²)
    per point (``Bowl.ring_points_mm`` shares the points by area)."""
    bowl = Bowl((0.0, 0.0, 0.0), (0.0, 0.0, 1.0), float(transducer.roc_mm), float(transducer.aperture_mm))
    rings = tuple(getattr(transducer, "rings_mm", ()) or ())
    points, ring = bowl.ring_points_mm(n, rings)
    drive = np.asarray(transducer.ring_drive() if rings else (1.0 + 0j,), np.complex128)[ring]
    r = float(transducer.roc_mm)
    if rings:
        edges = np.asarray(rings, np.float64) / (2 * r)
        area = float(np.sum(2 * np.pi * r * r * (np.sqrt(1 - edges[:, 0] ** 2) - np.sqrt(1 - edges[:, 1] ** 2))))
    else:
        area = 2 * np.pi * r * bowl.depth_mm
    return points, drive, area / n


def rayleigh_template(transducer, reach_mm: float, step_mm: float, n_points: int | None = None,
                      chunk: int = 4096) -> BeamTemplate:
    """The (z, r) amplitude table of ``transducer`` (a ``sim.config.TransducerConfig``) out to ``reach_mm``
    from the apex (``BACK_MM_FRACTION`` of it behind the apex), every ``step_mm``.

    p(x) = (i k p0 / 2π) Σ_j d_j e^{−ikR_j}/R_j ΔS (Rayleigh; p0 = ``amplitude_pa``, d_j the ring drive);
    ``n_points`` surface points (default: ~λ/6 apart, at least 2000).
    """
    if not reach_mm > 0 or not step_mm > 0:
        raise ValueError(f"`reach_mm` and `step_mm` must be > 0, got {reach_mm}, {step_mm}")
    f = float(transducer.frequency_hz)
    k = 2 * np.pi * f / SOUND_SPEED_M_S * 1e-3  # rad/mm
    wavelength_mm = SOUND_SPEED_M_S / f * 1e3
    if n_points is None:
        cap_area = 2 * np.pi * transducer.roc_mm * Bowl((0, 0, 0), (0, 0, 1), transducer.roc_mm,
                                                        transducer.aperture_mm).depth_mm
        n_points = max(2000, int(np.ceil(cap_area / (wavelength_mm / 6) ** 2)))
    src, drive, ds = _surface(transducer, int(n_points))
    z = np.arange(-BACK_MM_FRACTION * reach_mm, reach_mm + step_mm / 2, step_mm)
    r = np.arange(0.0, reach_mm + step_mm / 2, step_mm)
    zz, rr = np.meshgrid(z, r, indexing="ij")
    nodes = np.stack([rr.ravel(), np.zeros(rr.size), zz.ravel()], axis=1)
    r_min = np.sqrt(ds) / 2  # a node on the surface: no closer than half an element (the sum's resolution)
    weight = drive * ds
    src32, nodes32 = src.astype(np.float32), nodes.astype(np.float32)
    src_sq = (src32 ** 2).sum(axis=1)
    wr, wi = weight.real.astype(np.float32), weight.imag.astype(np.float32)
    out = np.empty(len(nodes), np.float64)
    for i in range(0, len(nodes), max(1, chunk)):
        block = nodes32[i:i + chunk]
        dist_sq = (block ** 2).sum(axis=1)[:, None] + src_sq[None, :] - 2.0 * block @ src32.T
        dist = np.sqrt(np.maximum(dist_sq, np.float32(r_min ** 2)))
        phase = np.float32(k) * dist
        c, s = np.cos(phase) / dist, np.sin(phase) / dist
        re, im = c @ wr + s @ wi, c @ wi - s @ wr
        out[i:i + chunk] = np.hypot(re, im)  # |Σ d_j e^{−ikR_j}/R_j|
    amplitude = float(transducer.amplitude_pa) * k / (2 * np.pi) * out
    return BeamTemplate(amplitude.reshape(zz.shape).astype(np.float32), float(z[0]), float(step_mm),
                        float(transducer.roc_mm))


def window_reach_mm(shape, spacing_mm: float, roc_mm: float, grid: str = "subject") -> float:
    """Largest distance (mm) from the apex to a voxel of a window: the whole diagonal on a skull-fixed
    (``subject``) grid, where the bowl may sit anywhere; half of it plus R/2 (and a voxel for the origin's snap)
    on a beam-centred window, which is centred half-way between apex and focus."""
    diagonal = float(np.linalg.norm(np.asarray(shape, np.float64)) * spacing_mm)
    return diagonal if grid == "subject" else diagonal / 2 + roc_mm / 2 + 2 * spacing_mm


@lru_cache(maxsize=8)
def _cached_template(transducer, reach_mm: float, step_mm: float) -> BeamTemplate:
    return rayleigh_template(transducer, reach_mm, step_mm)


def template_for(transducer, shape, spacing_mm: float, grid: str = "subject") -> BeamTemplate:
    """The template covering any pose in windows of ``shape`` at ``spacing_mm`` (``grid`` as
    ``SimConfig.grid``); table step half a voxel, or λ/10 when that is coarser; computed once per process for
    each transducer and window (seconds at the CPU presets, ~1 min for 256³ at 0.5 mm)."""
    step = max(float(spacing_mm) / 2, SOUND_SPEED_M_S / float(transducer.frequency_hz) * 1e3 / 10)
    reach = window_reach_mm(shape, spacing_mm, float(transducer.roc_mm), grid)
    return _cached_template(transducer, round(reach, 3), round(step, 6))


def sphere_centre(points: np.ndarray) -> np.ndarray:
    """Least-squares centre of the sphere through points on the cap (the bowl's geometric focus)."""
    p = np.asarray(points, dtype=np.float64)
    a = np.hstack([2 * p, np.ones((len(p), 1))])
    return np.linalg.lstsq(a, (p ** 2).sum(axis=1), rcond=None)[0][:3]


def pose_from_points(points_vox: np.ndarray, roc_vox: float) -> tuple[np.ndarray, np.ndarray]:
    """(apex, unit axis) in voxel coordinates from points on the cap: the least-squares sphere centre is the
    geometric focus, the points' centroid lies on the axis between apex and focus."""
    p = np.asarray(points_vox, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3 or len(p) < 4 or not np.isfinite(p).all():
        raise ValueError(f"transducer points must be finite with shape (P >= 4, 3), got {p.shape}")
    centre = sphere_centre(p)
    axis = centre - p.mean(axis=0)
    norm = float(np.linalg.norm(axis))
    if norm < 1e-9:
        raise ValueError("transducer points do not form a cap (centroid at the sphere centre)")
    axis /= norm
    return centre - float(roc_vox) * axis, axis


def place(template: BeamTemplate, apex_vox, axis, shape, spacing_mm: float) -> np.ndarray:
    """Amplitude (Pa, float32, ``shape``) of the template with its apex at ``apex_vox`` pointing along ``axis``
    (voxel coordinates of an isotropic window of ``spacing_mm``)."""
    from scipy.ndimage import map_coordinates  # noqa: PLC0415

    axis = np.asarray(axis, np.float64)
    axis = axis / np.linalg.norm(axis)
    grids = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij", sparse=True)
    rel = [g - np.float32(a) for g, a in zip(grids, np.asarray(apex_vox, np.float64))]
    z = rel[0] * np.float32(axis[0]) + rel[1] * np.float32(axis[1]) + rel[2] * np.float32(axis[2])
    r2 = rel[0] ** 2 + rel[1] ** 2 + rel[2] ** 2 - z ** 2
    r = np.sqrt(np.maximum(r2, 0)) * np.float32(spacing_mm)
    z = z * np.float32(spacing_mm)
    coords = np.stack([((z - template.z0_mm) / template.step_mm).ravel(), (r / template.step_mm).ravel()])
    out = map_coordinates(template.table, coords, order=1, mode="constant", cval=0.0)
    return out.reshape(tuple(shape)).astype(np.float32)


def free_field_prior(template: BeamTemplate, points_vox: np.ndarray, shape, spacing_mm: float) -> np.ndarray:
    """Free-field amplitude (Pa) on a window for the transducer whose cap points are ``points_vox``."""
    apex, axis = pose_from_points(points_vox, template.roc_mm / float(spacing_mm))
    return place(template, apex, axis, shape, spacing_mm)
