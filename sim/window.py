"""The simulation / model grid ("window") around one transducer placement.

Two kinds of window, both axis-aligned in world RAS at isotropic ``config.spacing_mm``:

* ``config.window_shape`` set (the dataset/model case): a box of exactly that many voxels centred on the
  beam (midpoint of the bowl apex and its geometric focus). Its origin is snapped to multiples of the
  spacing in world mm, so the same placement always gives the same grid, and nearby placements share
  one lattice. The whole bowl must fit with ≥ ``MARGIN_VOX`` voxels to spare.
* ``config.grid == "subject"``: one fixed box per subject (``sim.subject_grid``), the same for all of its
  placements; the bowl and its focus must lie inside it.
* ``config.window_shape`` None: the whole CT extent (or a ``crop_mm`` box centred on the beam),
  resampled to the spacing.

The CT is resampled onto the window with SimpleITK (linear, 0 HU = water outside the CT). The window also
carries ``config.n_transducer_points`` points on the bowl surface in window voxel coordinates: the
transducer encoding stored with each sample and fed to the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfus.sim.coupling import check_no_air, couple_window, find_head, has_air_background
from tfus.sim.ingest import (Volume, axis_aligned_affine, grid_covering, load_volume, resample, voxel_to_world,
                        world_to_voxel)
from tfus.sim.subject_grid import MARGIN_VOX, box_contains, subject_grid
from tfus.sim.transducer import Bowl

MAX_WINDOW_VOXELS = 2**31  # refuse absurd whole-CT grids before allocating them


COUPLING_WATER = "water: the CT's background (0 HU) is the coupling medium"
COUPLING_SCANNER = ("water: the CT's air, table and holders outside the head were replaced by coupling water "
                    "(0 HU), as the simulation assumes the transducer is coupled through water or gel")


def transducer_encoding(bowl: Bowl, transducer, n: int, affine) -> tuple[np.ndarray, np.ndarray]:
    """The transducer as stored with a sample and fed to the model: (P, 3) float32 points on its radiating
    surface in voxel coordinates of ``affine``, and (P, 3) float32 ``(ring index, relative amplitude, phase
    rad)`` of each point's ring (``transducer.ring_drive()``; a single bowl is ring 0 at (1, 0)), so that an
    annular array's steering is in the encoding, not only in the field."""
    rings = tuple(getattr(transducer, "rings_mm", ()) or ())
    points_mm, ring = bowl.ring_points_mm(int(n), rings)
    drive = np.asarray(transducer.ring_drive() if rings else (1.0 + 0j,), dtype=np.complex128)[ring]
    encoding = np.stack([ring.astype(np.float64), np.abs(drive), np.angle(drive)], axis=1)
    return world_to_voxel(affine, points_mm).astype(np.float32), encoding.astype(np.float32)


def single_bowl_drive(n_points: int) -> np.ndarray:
    """(P, 3) ``(ring, amplitude, phase)`` of a single in-phase bowl: what samples stored before the drive
    encoding existed (dataset schema v1) were."""
    drive = np.zeros((int(n_points), 3), np.float32)
    drive[:, 1] = 1.0
    return drive


@dataclass(frozen=True, eq=False)
class Window:
    """``ct_hu`` (X, Y, Z) float32 HU on the window grid; ``affine`` (4, 4) voxel → world mm (RAS);
    ``transducer_points_vox`` (P, 3) float32 bowl-surface points in voxel coordinates; ``bowl``;
    ``transducer_drive`` (P, 3) float32 (ring, amplitude, phase rad) per point (None: a single bowl)."""

    ct_hu: np.ndarray
    affine: np.ndarray
    transducer_points_vox: np.ndarray
    bowl: Bowl | None = None
    transducer_drive: np.ndarray | None = None
    coupling: str = COUPLING_WATER  # what lies between the scalp and the transducer (the summary says it)

    def __post_init__(self) -> None:
        ct = np.asarray(self.ct_hu, dtype=np.float32)
        if ct.ndim != 3:
            raise ValueError(f"`ct_hu` must be 3D, got shape {ct.shape}")
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise ValueError(f"`affine` must be 4x4, got {affine.shape}")
        pts = np.asarray(self.transducer_points_vox, dtype=np.float32)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise ValueError(f"`transducer_points_vox` must be (P, 3), got {pts.shape}")
        object.__setattr__(self, "ct_hu", ct)
        object.__setattr__(self, "affine", affine)
        object.__setattr__(self, "transducer_points_vox", pts)
        drive = single_bowl_drive(len(pts)) if self.transducer_drive is None else \
            np.asarray(self.transducer_drive, dtype=np.float32)
        if drive.shape != pts.shape:
            raise ValueError(f"`transducer_drive` must be (P, 3) like the points {pts.shape}, got {drive.shape}")
        object.__setattr__(self, "transducer_drive", drive)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.ct_hu.shape)

    @property
    def spacing_mm(self) -> float:
        return float(np.linalg.norm(self.affine[:3, 0]))

    @property
    def volume(self) -> Volume:
        return Volume(self.ct_hu, self.affine)

    def world_to_voxel(self, points_mm) -> np.ndarray:
        return world_to_voxel(self.affine, points_mm)

    def voxel_to_world(self, points_vox) -> np.ndarray:
        return voxel_to_world(self.affine, points_vox)


def _point(value, name: str) -> np.ndarray:
    p = np.asarray(value, dtype=np.float64).reshape(-1)
    if p.shape != (3,) or not np.all(np.isfinite(p)):
        raise ValueError(f"`{name}` must be three finite numbers (x, y, z) in mm, got {value}")
    return p


def _snap(x_mm: np.ndarray, spacing_mm: float) -> np.ndarray:
    """Round world coordinates to the nearest multiple of the spacing (a deterministic lattice)."""
    return np.round(np.asarray(x_mm) / spacing_mm) * spacing_mm


def plan_window(volume: Volume, position_mm, target_mm, config, crop_mm=None,
                source: str | None = None, grid=None) -> tuple[np.ndarray, tuple[int, int, int], Bowl]:
    """The window grid ``(affine, shape)`` and the :class:`Bowl`, without resampling anything.

    Lets callers estimate memory before allocating. Raises ``ValueError`` when the transducer apex lies
    outside the CT, when the bowl does not fit the window with ``MARGIN_VOX`` voxels to spare, or when
    target equals position (and, on a subject grid, when the focus lies outside it). ``source`` names the
    CT file in messages; ``grid``: the subject grid ``(affine, shape)`` when already known.
    """
    position, target = _point(position_mm, "position_mm"), _point(target_mm, "target_mm")
    if np.linalg.norm(target - position) < 1e-6:
        raise ValueError(f"`target_mm` must differ from `position_mm`, both are {tuple(position)}")
    bowl = Bowl.from_config(position, target, config.transducer)
    where = f" {source}" if source else ""
    if not volume.contains_mm(position):
        raise ValueError(f"transducer position {tuple(np.round(position, 2))} mm lies outside the CT volume"
                         f"{where} (extent {np.round(volume.corners_mm().min(0), 1).tolist()} .. "
                         f"{np.round(volume.corners_mm().max(0), 1).tolist()} mm)")
    s = float(config.spacing_mm)
    center = (position + bowl.focus_mm) / 2
    if config.grid == "subject":
        affine, shape = grid if grid is not None else subject_grid(volume, config)
        if not box_contains(affine, shape, bowl.focus_mm, MARGIN_VOX)[0]:
            raise ValueError(f"focus {tuple(np.round(bowl.focus_mm, 1))} mm lies outside the subject window "
                             f"{tuple(shape)} at {s} mm{where}: aim inside it or enlarge window_shape")
    elif config.window_shape is not None:
        shape = tuple(int(n) for n in config.window_shape)
        origin = _snap(center - (np.asarray(shape) - 1) / 2 * s, s)
        affine = axis_aligned_affine(origin, s)
    elif crop_mm is not None:
        size = np.broadcast_to(np.asarray(crop_mm, dtype=np.float64), (3,))
        if np.any(size <= 0) or not np.all(np.isfinite(size)):
            raise ValueError(f"`crop_mm` must be positive, got {crop_mm}")
        affine, shape = grid_covering(center - size / 2, center + size / 2, s)
    else:
        affine, shape = grid_covering(*volume.centre_bounds_mm(), s)
    if int(np.prod(shape, dtype=np.int64)) > MAX_WINDOW_VOXELS:
        raise ValueError(f"simulation grid {shape} at {s} mm is too large; use --crop-mm or a coarser spacing")
    _check_bowl_fits(bowl, affine, shape, s)
    return affine, shape, bowl


def _check_bowl_fits(bowl: Bowl, affine: np.ndarray, shape, spacing_mm: float) -> None:
    lo_mm, hi_mm = bowl.bounding_box_mm()
    lo, hi = world_to_voxel(affine, lo_mm), world_to_voxel(affine, hi_mm)  # axis-aligned: bbox → bbox
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    limit = np.asarray(shape) - 1 - MARGIN_VOX
    if np.any(lo < MARGIN_VOX - 1e-6) or np.any(hi > limit + 1e-6):
        span = np.round(hi_mm - lo_mm, 1).tolist()
        raise ValueError(
            f"window too small for the transducer: the bowl (roc {bowl.roc_mm} mm, aperture "
            f"{bowl.aperture_mm} mm) spans {span} mm but the window {tuple(shape)} voxels at {spacing_mm} mm "
            f"leaves less than {MARGIN_VOX} voxels around it; enlarge window_shape/crop_mm or use a smaller bowl")


def make_window(volume_or_path: Volume | str | os.PathLike, position_mm, target_mm, config,
                crop_mm=None) -> Window:
    """The window around one placement: CT resampled onto it, the transducer's surface points in its voxel
    coordinates with each point's ring drive (``transducer_encoding``).

    ``config``: a :class:`sim.config.SimConfig` (uses ``spacing_mm``, ``window_shape``,
    ``n_transducer_points``, ``transducer.roc_mm``/``aperture_mm``). ``crop_mm`` (scalar or 3 values)
    only applies when ``config.window_shape`` is None.
    """
    source = None
    if isinstance(volume_or_path, Volume):
        volume = volume_or_path
    else:
        source = str(Path(volume_or_path))
        volume = load_volume(volume_or_path)
    scanner = has_air_background(volume)
    head = find_head(volume) if scanner or config.grid == "subject" else None
    grid = subject_grid(volume, config, head) if config.grid == "subject" else None
    affine, shape, bowl = plan_window(volume, position_mm, target_mm, config, crop_mm, source, grid)
    ct = resample(volume, affine, shape, fill_hu=0.0)
    hu, coupling = ct.hu, COUPLING_WATER
    if scanner:  # a scanner CT: air, table and holders outside the head become coupling water
        hu = couple_window(hu, affine, head)
        coupling = COUPLING_SCANNER
    check_no_air(hu, affine, head if scanner else None, source or "CT")
    points, drive = transducer_encoding(bowl, config.transducer, int(config.n_transducer_points), affine)
    return Window(hu, affine, points, bowl, drive, coupling)


def move_transducer(window: Window, position_mm, target_mm, config) -> Window:
    """``window``'s grid and CT with the transducer at another placement: on a skull-fixed grid all of a
    subject's placements share one resampled CT, so scoring many candidates resamples once."""
    position, target = _point(position_mm, "position_mm"), _point(target_mm, "target_mm")
    if np.linalg.norm(target - position) < 1e-6:
        raise ValueError(f"`target_mm` must differ from `position_mm`, both are {tuple(position)}")
    bowl = Bowl.from_config(position, target, config.transducer)
    _check_bowl_fits(bowl, window.affine, window.shape, window.spacing_mm)
    points, drive = transducer_encoding(bowl, config.transducer, int(config.n_transducer_points), window.affine)
    return Window(window.ct_hu, window.affine, points, bowl, drive, window.coupling)
