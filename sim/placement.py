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
   explicit target; with ``config.aim_tilt_deg`` > 0 the axis is tilted off the normal by a seeded random
   angle up to it (uniform over the cone's solid angle, focus still at roc from the apex) — training placements
   like the tilted ones ``candidate_placements`` scores. A candidate is rejected (and the next one taken) unless the bowl stays out of the
   head, the target is inside it, and :func:`sim.window.plan_window` accepts it with this config.
6. Annular arrays (``config.transducer.rings_mm``): the *exit plane* sits ``standoff_mm`` outside the scalp
   (the devices are coupled by their front face), the apex ``exit_plane_depth`` behind it. With an explicit
   target the axis runs from the exit plane's centre through the scalp point to the target, and the steering
   distance is the exit plane → target distance, carried by the placement
   (``focal_distance_mm``); a target outside the device's steerable range rejects the candidate. Without a
   target the array aims along the inward normal at its configured focal distance (or geometric focus).
7. Skull-fixed datasets (``config.grid == "subject"``): candidates are only the scalp points inside the
   subject's fixed window (``sim.subject_grid``), and a candidate whose bowl or focus leaves it is rejected.
8. Candidates for one target (:func:`candidate_placements`, what ``tfus plan --optimize`` scores): every
   bowl aims at the target, from scalp points whose inward normal is within ``max_tilt_deg`` of the beam
   axis and whose apex → target distance lies in the transducer's reach — the on-axis −6 dB zone of its
   free field (O'Neil, :func:`sim.oneil.focal_zone_m`); steered arrays: their steering range.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from tfus.sim.coupling import AIR_HU, HeadMask, background_hu, head_from_hu
from tfus.sim.ingest import Volume, grid_covering, resample, sample_nearest, voxel_to_world, world_to_voxel
from tfus.sim.subject_grid import box_contains, subject_grid
from tfus.sim.transducer import Bowl
from tfus.sim.transducers import rim_depth_mm
from tfus.sim.window import MARGIN_VOX, plan_window

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
    hu: np.ndarray          # the CT on the planning grid
    air_mm: np.ndarray      # (K, 3) air voxels inside the head (sinuses, mastoid cells, canals)
    object_hu: float = np.inf  # above this, a voxel outside the head is an object (a CT with air around)


def head_mask(hu: np.ndarray, spacing_mm: float = PLAN_SPACING_MM) -> np.ndarray:
    """Boolean head mask of a CT array on an isotropic grid: the sealed head of :func:`sim.coupling.head_from_hu`
    (a table or holder touching the scalp is not head; canals open to the outside are sealed)."""
    return head_from_hu(hu, spacing_mm)


def find_scalp(volume: Volume, plan_spacing_mm: float = PLAN_SPACING_MM) -> _Scalp:
    """Scalp points and outward normals of a CT (on a coarse planning grid)."""
    s = max(plan_spacing_mm, float(volume.spacing_mm.min()))
    affine, shape = grid_covering(*volume.centre_bounds_mm(), s)
    hu = resample(volume, affine, shape, fill_hu=background_hu(volume.hu)).hu
    mask = head_mask(hu, s)
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
    air = np.argwhere((hu < AIR_HU) & HeadMask(mask, affine).deep.mask)  # cavities, not the skin's edge
    background = background_hu(hu)
    object_hu = 0.5 * (background + SOFT_TISSUE_HU) if background < SOFT_TISSUE_HU - 30 else np.inf
    return _Scalp(mask, affine, voxel_to_world(affine, points_vox), normals, centroid, hu,
                  voxel_to_world(affine, air), object_hu)


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
    return sample_nearest(scalp.mask, scalp.affine, points_mm, False)


MAX_SCALP_MM = 12.0  # the skull lies at most this deep under the scalp over the vault (face, eyes, ears: deeper)
RAY_STEP_MM = 0.5


def _hu_at(scalp: _Scalp, points_mm: np.ndarray) -> np.ndarray:
    return sample_nearest(scalp.hu, scalp.affine, points_mm, 0.0)


def _vault_reason(scalp: _Scalp, point, target) -> str | None:
    """Why the scalp point / target pair is not a placement over the cranial vault (None: it is)."""
    if _hu_at(scalp, np.asarray(target, float)[None])[0] > BONE_HU:
        return "target in bone"
    direction = np.asarray(target, float) - point
    length = float(np.linalg.norm(direction))
    s = np.arange(0.0, length, RAY_STEP_MM)
    hu = _hu_at(scalp, point + np.outer(s, direction / length))
    bone = np.flatnonzero(hu > BONE_HU)
    if not len(bone) or s[bone[0]] > MAX_SCALP_MM:
        return "not over the cranial vault (no skull within %g mm under the scalp)" % MAX_SCALP_MM
    if np.any(hu[bone[0]:] < AIR_HU):
        return "air cavity on the beam path"
    return None


def _window_reason(volume: Volume, scalp: _Scalp, bowl: Bowl, target, affine, shape) -> str | None:
    """Why the simulation window of a placement would be wrong (None: fine)."""
    beam = np.vstack([bowl.rim_points_mm(32), np.asarray(target, float)[None]])
    if not all(volume.contains_mm(p) for p in beam):
        return "beam leaves the CT's field of view"
    if len(scalp.air_mm):
        v = world_to_voxel(affine, scalp.air_mm)
        if np.any(np.all((v >= -0.5) & (v <= np.asarray(shape) - 0.5), axis=1)):
            return "air cavity inside the head in the simulation window"
    return None


def _upper_scalp(scalp: _Scalp) -> np.ndarray:
    """Scalp points on the upper part of the head with a normal not pointing down (module docstring, 4)."""
    z, zc = scalp.points_mm[:, 2], scalp.centroid_mm[2]
    return (z >= zc + UPPER_FRACTION * (z.max() - zc)) & (scalp.normals[:, 2] > -0.1)


def _try(volume, scalp, point, normal, target, config, grid=None) -> Placement | str:
    """A placement at a scalp point, or the reason why there is none."""
    from tfus.sim.transducers import exit_plane_depth_mm  # noqa: PLC0415

    tr = config.transducer
    depth = rim_depth_mm(tr.roc_mm, tr.aperture_mm)
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
                return "target not inside the head from this side"
            inward /= np.linalg.norm(inward)
            exit_centre = point - stand * inward
            apex = exit_centre - exit_depth * inward
            focal_distance = float(np.linalg.norm(np.asarray(target, float) - exit_centre))
            lo, hi = tr.focal_range_mm or (0.0, np.inf)
            if not lo <= focal_distance <= hi:
                return f"target outside {tr.name}'s steering range"
    else:
        apex = point + (config.standoff_mm + depth) * normal
        if target is None:
            target = apex - tr.roc_mm * normal
    try:
        bowl = Bowl(tuple(apex), tuple(target), tr.roc_mm, tr.aperture_mm)
        affine, shape, _ = plan_window(volume, apex, target, config, grid=grid)
    except ValueError as exc:
        text = str(exc)
        return "beam leaves the CT's field of view" if "outside the CT" in text else text.split(" (")[0]
    shell = np.vstack([bowl.surface_points_mm(256), bowl.rim_points_mm(64)])
    if _inside(scalp, shell).any():
        return "bowl would cut the scalp"
    if np.any(_hu_at(scalp, shell) > scalp.object_hu):
        return "bowl would hit an object outside the head (holder, table)"
    if not _inside(scalp, np.asarray(target, dtype=float)[None])[0]:
        return "target outside the head"
    reason = _vault_reason(scalp, np.asarray(point, float), target) or \
        _window_reason(volume, scalp, bowl, target, affine, shape)
    if reason:
        return reason
    return Placement(tuple(apex), tuple(target), tuple(point), focal_distance)


def _tilted_focus(point: np.ndarray, normal: np.ndarray, config, rng: np.random.Generator) -> np.ndarray:
    """Geometric focus of a bowl on ``point``'s normal whose axis is tilted by a random angle ≤ aim_tilt_deg."""
    tr = config.transducer
    if tr.is_array:
        raise ValueError("`aim_tilt_deg` applies to single bowls; aim an array with explicit targets")
    depth = rim_depth_mm(tr.roc_mm, tr.aperture_mm)
    apex = point + (config.standoff_mm + depth) * normal
    cos_t = rng.uniform(np.cos(np.radians(config.aim_tilt_deg)), 1.0)  # uniform over the cone's solid angle
    phi = rng.uniform(0.0, 2 * np.pi)
    helper = np.array([1.0, 0.0, 0.0]) if abs(normal[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(normal, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(normal, e1)
    sin_t = np.sqrt(max(1.0 - cos_t ** 2, 0.0))
    axis = -cos_t * normal + sin_t * (np.cos(phi) * e1 + np.sin(phi) * e2)
    return apex + tr.roc_mm * axis


def plan_placements(volume: Volume, n: int, seed: int, config, targets_mm=None,
                    skipped: Counter | None = None) -> list[Placement]:
    """``n`` valid, well-spread scalp placements, deterministic from ``seed`` (see the module docstring).

    ``targets_mm``: optional list of world targets, used in turn (placement i aims at
    ``targets_mm[i % len]``); by default each bowl aims along the inward scalp normal. ``skipped``: a Counter
    that receives the reason of every candidate passed over (face, bone target, air, field of view, ...).
    """
    if int(n) != n or n < 1:
        raise ValueError(f"`n` must be a positive integer, got {n}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer, got {seed}")
    targets = None if targets_mm is None else [np.asarray(t, dtype=float).reshape(3) for t in targets_mm]
    scalp = find_scalp(volume)
    upper = _upper_scalp(scalp)
    grid = None
    if config.grid == "subject":  # one fixed window: only the scalp inside it can carry the bowl
        # the scalp's mask is coupling.find_head's (same 2 mm grid, same head_from_hu): not computed twice
        grid = subject_grid(volume, config, HeadMask(scalp.mask, scalp.affine))
        upper &= box_contains(*grid, scalp.points_mm, MARGIN_VOX)
    cand = np.flatnonzero(upper)
    if len(cand) == 0:
        where = " inside the subject window" if grid is not None else ""
        raise ValueError(f"no scalp surface found on the upper part of the head{where}")
    rng = np.random.default_rng(int(seed))
    cand = rng.permutation(cand)[: max(4 * n, len(cand) // 4)]
    chosen: list[Placement] = []
    skipped = Counter() if skipped is None else skipped
    for k in _spread(scalp.points_mm[cand], rng):
        idx = cand[k]
        target = None if targets is None else targets[len(chosen) % len(targets)]
        if target is None and config.aim_tilt_deg > 0:
            target = _tilted_focus(scalp.points_mm[idx], scalp.normals[idx], config,
                                   np.random.default_rng([int(seed), int(idx)]))
        placement = _try(volume, scalp, scalp.points_mm[idx], scalp.normals[idx], target, config, grid)
        if isinstance(placement, str):
            skipped[placement] += 1
            continue
        chosen.append(placement)
        if len(chosen) == n:
            if skipped:
                log.info("placements: %d chosen; candidates skipped: %s", n, _reasons(skipped))
            return chosen
    steer = (f", steering range {config.transducer.focal_range_mm} mm from the exit plane"
             if config.transducer.is_array and targets is not None and config.transducer.focal_range_mm else "")
    raise ValueError(f"only {len(chosen)} of {n} placements fit this CT with this configuration "
                     f"({'subject ' if grid is not None else ''}window {config.window_shape} at {config.spacing_mm} mm, "
                     f"standoff {config.standoff_mm} mm"
                     f"{steer}); candidates skipped: {_reasons(skipped) or 'none'}")


MAX_TILT_DEG = 20.0  # beam axis vs inward scalp normal (near-normal incidence: least reflection, no mode conversion)


def check_target(volume: Volume, target_mm, scalp: _Scalp | None = None) -> _Scalp:
    """The scalp of ``volume``; ValueError (one line) when the target is outside the head or in bone."""
    scalp = scalp or find_scalp(volume)
    t = np.asarray(target_mm, dtype=float).reshape(3)
    if not volume.contains_mm(t):
        raise ValueError(f"target {tuple(round(float(v), 1) for v in t)} mm is outside the CT's field of view")
    if not _inside(scalp, t[None])[0]:
        raise ValueError(f"target {tuple(round(float(v), 1) for v in t)} mm is outside the head")
    hu = float(sample_nearest(volume.hu, volume.affine, t[None], 0.0)[0])
    if hu > BONE_HU:
        raise ValueError(f"target {tuple(round(float(v), 1) for v in t)} mm is in bone ({hu:.0f} HU > {BONE_HU:g}); "
                         "aim at brain tissue")
    return scalp


def reach_mm(config) -> tuple[float, float]:
    """(near, far) apex → target distance (mm) a single bowl reaches: its free field's on-axis −6 dB zone."""
    from tfus.sim.oneil import focal_zone_m  # noqa: PLC0415

    tr = config.transducer
    near, far = focal_zone_m(tr.roc_mm * 1e-3, tr.aperture_mm * 1e-3, tr.frequency_hz)
    return near * 1e3, far * 1e3


def candidate_placements(volume: Volume, target_mm, n: int, config, seed: int = 0,
                         max_tilt_deg: float = MAX_TILT_DEG, skipped: Counter | None = None) -> list[Placement]:
    """Up to ``n`` well-spread placements on the scalp aimed at ``target_mm`` (see the module docstring, 8).

    ValueError (one line) for a target outside the head or in bone, and when no placement reaches it.
    """
    if int(n) != n or n < 1:
        raise ValueError(f"`candidates` must be a positive integer, got {n}")
    if not 0 < max_tilt_deg <= 90:
        raise ValueError(f"`max_tilt_deg` must be in (0, 90], got {max_tilt_deg}")
    target = np.asarray(target_mm, dtype=float).reshape(3)
    scalp = check_target(volume, target)
    tr = config.transducer
    ok = _upper_scalp(scalp)
    grid = None
    if config.grid == "subject":
        grid = subject_grid(volume, config, HeadMask(scalp.mask, scalp.affine))
        if not box_contains(*grid, target[None], MARGIN_VOX)[0]:
            raise ValueError(f"target {tuple(round(float(v), 1) for v in target)} mm is outside the subject's "
                             f"fixed window (the model's {config.window_shape} grid)")
        ok &= box_contains(*grid, scalp.points_mm, MARGIN_VOX)
    inward = target - scalp.points_mm
    dist = np.linalg.norm(inward, axis=1)
    cos_tilt = -(inward * scalp.normals).sum(axis=1) / np.maximum(dist, 1e-9)
    ok &= cos_tilt >= np.cos(np.radians(max_tilt_deg))
    if not tr.is_array:
        depth = rim_depth_mm(tr.roc_mm, tr.aperture_mm)
        apex = scalp.points_mm + (config.standoff_mm + depth) * scalp.normals
        near, far = reach_mm(config)
        d = np.linalg.norm(apex - target, axis=1)
        ok &= (d >= max(near, depth)) & (d <= far)
        reach = f"apex-target {max(near, depth):.0f}-{far:.0f} mm"
    else:
        reach = f"steering range {tr.focal_range_mm} mm"
    cand = np.flatnonzero(ok)
    where = f"tilt <= {max_tilt_deg:g} deg, {reach}, stand-off {config.standoff_mm:g} mm" + \
        (f", inside the {config.window_shape} subject window" if grid is not None else "")
    if len(cand) == 0:
        raise ValueError(f"no candidate placement reaches the target {tuple(round(float(v), 1) for v in target)} mm "
                         f"from the upper scalp ({where})")
    skipped = Counter() if skipped is None else skipped
    chosen: list[Placement] = []
    for k in _spread(scalp.points_mm[cand], np.random.default_rng(int(seed))):
        idx = cand[k]
        placement = _try(volume, scalp, scalp.points_mm[idx], scalp.normals[idx], target, config, grid)
        if isinstance(placement, str):
            skipped[placement] += 1
            continue
        chosen.append(placement)
        if len(chosen) == n:
            break
    if not chosen:
        raise ValueError(f"no candidate placement reaches the target {tuple(round(float(v), 1) for v in target)} mm "
                         f"({where}); candidates skipped: {_reasons(skipped)}")
    if len(chosen) < n:
        log.info("candidates: %d of %d asked reach the target (%s); skipped: %s", len(chosen), n, where,
                 _reasons(skipped) or "none")
    return chosen


def _reasons(skipped: Counter) -> str:
    return ", ".join(f"{count} {reason}" for reason, count in skipped.most_common())
