"""Placement planner: realistic transducer positions on the scalp of a CT, deterministic from a seed.

1. The CT is resampled to a coarse axis-aligned planning grid (``PLAN_SPACING_MM``).
2. Head mask: HU above a threshold halfway between the background (median of the volume's faces:
   air at −1000 for a scanner CT, water at 0 for phantoms/TFUScapes) and soft tissue, joined with the
   bone, reduced to its largest connected component and with holes filled.
3. Scalp surface = the mask's boundary voxels, moved onto the 0.5 level of a Gaussian-smoothed mask;
   outward normals = −∇(smoothed mask).
4. Candidates are surface points on the upper part of the head (above the mask's centroid by
   ``UPPER_FRACTION`` of the way to the vertex, normal not pointing down). A seeded random subset is spread by farthest-point sampling from a seeded start.
5. Each placement: the bowl sits ``config.standoff_mm`` of water outside the scalp (apex at
   ``standoff + h`` along the outward normal, h = the bowl's depth, so the rim does not cut the scalp);
   its axis follows the inward normal (target = geometric focus = apex + roc·inward normal) or aims at an
   explicit target. A candidate is rejected (and the next one taken) unless the bowl stays out of the
   head, the target is inside it, and :func:`sim.window.plan_window` accepts it with this config.
6. Annular arrays (``config.transducer.rings_mm``): the *exit plane* sits ``standoff_mm`` outside the scalp
   (the devices are coupled by their front face), the apex ``exit_plane_depth`` behind it. With an explicit
   target the axis runs from the exit plane's centre through the scalp point to the target, and the steering
   distance is the exit plane → target distance, carried by the placement
   (``focal_distance_mm``); a target outside the device's steerable range rejects the candidate. Without a
   target the array aims along the inward normal at its configured focal distance (or geometric focus).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from tfus.sim.ingest import Volume, grid_covering, resample, voxel_to_world, world_to_voxel
from tfus.sim.transducer import Bowl
from tfus.sim.window import plan_window

log = logging.getLogger(__name__)

PLAN_SPACING_MM = 2.0
SOFT_TISSUE_HU = 40.0
BONE_HU = 300.0
NORMAL_SMOOTHING_MM = 4.0
UPPER_FRACTION = 0.2  # candidates lie above centroid + this fraction of the way to the vertex (above the ears)


@dataclass(frozen=True)
class Placement:
    """Bowl apex (``position_mm``) and aim point (``target_mm``) in world mm; ``scalp_mm`` for reference."""

    position_mm: tuple[float, float, float]
    target_mm: tuple[float, float, float]
    scalp_mm: tuple[float, float, float] | None = None
    focal_distance_mm: float | None = None  # arrays aimed at a target: steering distance from the exit plane

    def __post_init__(self) -> None:
        for name in ("position_mm", "target_mm", "scalp_mm"):
            value = getattr(self, name)
            if value is None and name == "scalp_mm":
                continue
            v = np.asarray(value, dtype=np.float64).reshape(-1)
            if v.shape != (3,) or not np.all(np.isfinite(v)):
                raise ValueError(f"`{name}` must be three finite numbers in mm, got {value}")
            object.__setattr__(self, name, tuple(round(float(x), 4) for x in v))
        if np.linalg.norm(np.subtract(self.position_mm, self.target_mm)) < 1e-6:
            raise ValueError("`target_mm` must differ from `position_mm`")

    def to_dict(self) -> dict:
        return {"position_mm": list(self.position_mm), "target_mm": list(self.target_mm),
                "scalp_mm": list(self.scalp_mm) if self.scalp_mm is not None else None,
                **({"focal_distance_mm": self.focal_distance_mm} if self.focal_distance_mm is not None else {})}


@dataclass(frozen=True, eq=False)
class _Scalp:
    mask: np.ndarray        # head mask on the planning grid
    affine: np.ndarray      # planning grid voxel → world mm
    points_mm: np.ndarray   # (M, 3) scalp points
    normals: np.ndarray     # (M, 3) unit outward normals (world)
    centroid_mm: np.ndarray


def head_mask(hu: np.ndarray) -> np.ndarray:
    """Boolean head mask of a CT array (any grid): threshold, largest component, holes filled."""
    faces = np.concatenate([hu[[0, -1]].ravel(), hu[:, [0, -1]].ravel(), hu[:, :, [0, -1]].ravel()])
    background = float(np.median(faces))
    if background < SOFT_TISSUE_HU - 30:
        mask = (hu > 0.5 * (background + SOFT_TISSUE_HU)) | (hu > BONE_HU)
    else:  # background as dense as tissue: only bone separates the head
        mask = ndimage.binary_closing(hu > BONE_HU, iterations=2)
    labels, count = ndimage.label(mask)
    if count == 0:
        raise ValueError("no head found in the CT (nothing above the soft-tissue/bone threshold)")
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return ndimage.binary_fill_holes(labels == int(np.argmax(sizes)))


def find_scalp(volume: Volume, plan_spacing_mm: float = PLAN_SPACING_MM) -> _Scalp:
    """Scalp points and outward normals of a CT (on a coarse planning grid)."""
    s = max(plan_spacing_mm, float(volume.spacing_mm.min()))
    affine, shape = grid_covering(*volume.centre_bounds_mm(), s)
    hu = resample(volume, affine, shape, fill_hu=0.0).hu
    mask = head_mask(hu)
    smooth = ndimage.gaussian_filter(mask.astype(np.float32), NORMAL_SMOOTHING_MM / s / 2)
    grad = np.stack(np.gradient(smooth), axis=-1)  # per voxel index; the grid is axis-aligned, isotropic
    surface = np.argwhere(mask & ~ndimage.binary_erosion(mask))
    g = grad[tuple(surface.T)]
    norm = np.linalg.norm(g, axis=1)
    keep = norm > 1e-3
    surface, g, norm = surface[keep], g[keep], norm[keep]
    normals = -g / norm[:, None]
    step = (smooth[tuple(surface.T)] - 0.5) / norm  # Newton step onto the 0.5 level, in voxels
    points_vox = surface + step[:, None] * normals
    centroid = voxel_to_world(affine, np.argwhere(mask).mean(axis=0))
    return _Scalp(mask, affine, voxel_to_world(affine, points_vox), normals, centroid)


def _spread(points: np.ndarray, rng: np.random.Generator):
    """Yield indices by farthest-point sampling from a random start (best-spread first), lazily."""
    current = int(rng.integers(len(points)))
    dist = np.full(len(points), np.inf)
    for _ in range(len(points)):
        yield current
        dist = np.minimum(dist, np.linalg.norm(points - points[current], axis=1))
        dist[current] = -1.0  # never again
        current = int(np.argmax(dist))
        if dist[current] < 0:
            return


def _inside(scalp: _Scalp, points_mm: np.ndarray) -> np.ndarray:
    v = np.rint(world_to_voxel(scalp.affine, points_mm)).astype(int)
    ok = np.all((v >= 0) & (v < np.asarray(scalp.mask.shape)), axis=1)
    out = np.zeros(len(points_mm), dtype=bool)
    out[ok] = scalp.mask[tuple(v[ok].T)]
    return out


def _try(volume, scalp, point, normal, target, config) -> Placement | None:
    from tfus.sim.transducers import exit_plane_depth_mm  # noqa: PLC0415

    tr = config.transducer
    depth = tr.roc_mm - np.sqrt(max(tr.roc_mm ** 2 - (tr.aperture_mm / 2) ** 2, 0.0))  # rim height
    focal_distance = None
    if tr.is_array:  # the exit plane on the scalp (with the stand-off)
        exit_depth = exit_plane_depth_mm(tr.roc_mm, tr.aperture_mm, tr.exit_plane_to_focus_mm)
        stand = config.standoff_mm + max(depth - exit_depth, 0.0)  # a rim in front of the exit plane stays off
        if target is None:
            exit_centre = point + stand * normal
            reach = tr.focal_distance_mm if tr.focal_distance_mm is not None else tr.roc_mm - exit_depth
            target = exit_centre - reach * normal
            apex = exit_centre + exit_depth * normal
        else:  # the exit plane's centre on the line from the target through the scalp point
            inward = np.asarray(target, float) - point
            if np.linalg.norm(inward) < 1e-6 or inward @ normal >= 0:
                return None
            inward /= np.linalg.norm(inward)
            exit_centre = point - stand * inward
            apex = exit_centre - exit_depth * inward
            focal_distance = float(np.linalg.norm(np.asarray(target, float) - exit_centre))
            lo, hi = tr.focal_range_mm or (0.0, np.inf)
            if not lo <= focal_distance <= hi:
                log.debug("placement at %s rejected: target %.1f mm past the exit plane, outside %s's "
                          "steering range %g-%g mm", np.round(point, 1), focal_distance, tr.name, lo, hi)
                return None
    else:
        apex = point + (config.standoff_mm + depth) * normal
        if target is None:
            target = apex - tr.roc_mm * normal
    try:
        bowl = Bowl(tuple(apex), tuple(target), tr.roc_mm, tr.aperture_mm)
        plan_window(volume, apex, target, config)
    except ValueError as exc:
        log.debug("placement at %s rejected: %s", np.round(point, 1), exc)
        return None
    if _inside(scalp, bowl.surface_points_mm(256)).any() or _inside(scalp, bowl.rim_points_mm(64)).any():
        return None
    if not _inside(scalp, np.asarray(target, dtype=float)[None])[0]:
        return None
    return Placement(tuple(apex), tuple(target), tuple(point), focal_distance)


def plan_placements(volume: Volume, n: int, seed: int, config, targets_mm=None) -> list[Placement]:
    """``n`` valid, well-spread scalp placements, deterministic from ``seed`` (see the module docstring).

    ``targets_mm``: optional list of world targets, used in turn (placement i aims at
    ``targets_mm[i % len]``); by default each bowl aims along the inward scalp normal.
    """
    if int(n) != n or n < 1:
        raise ValueError(f"`n` must be a positive integer, got {n}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer, got {seed}")
    targets = None if targets_mm is None else [np.asarray(t, dtype=float).reshape(3) for t in targets_mm]
    scalp = find_scalp(volume)
    z, zc = scalp.points_mm[:, 2], scalp.centroid_mm[2]
    upper = (z >= zc + UPPER_FRACTION * (z.max() - zc)) & (scalp.normals[:, 2] > -0.1)
    cand = np.flatnonzero(upper)
    if len(cand) == 0:
        raise ValueError("no scalp surface found on the upper part of the head")
    rng = np.random.default_rng(int(seed))
    cand = rng.permutation(cand)[: max(4 * n, len(cand) // 4)]
    chosen: list[Placement] = []
    for k in _spread(scalp.points_mm[cand], rng):
        idx = cand[k]
        target = None if targets is None else targets[len(chosen) % len(targets)]
        placement = _try(volume, scalp, scalp.points_mm[idx], scalp.normals[idx], target, config)
        if placement is not None:
            chosen.append(placement)
            if len(chosen) == n:
                return chosen
    steer = (f", steering range {config.transducer.focal_range_mm} mm from the exit plane"
             if config.transducer.is_array and targets is not None and config.transducer.focal_range_mm else "")
    raise ValueError(f"only {len(chosen)} of {n} placements fit this CT with this configuration "
                     f"(window {config.window_shape} at {config.spacing_mm} mm, standoff {config.standoff_mm} mm"
                     f"{steer})")
