"""Quality figures of a skull segmentation (a pseudo-CT's), and its three-plane picture.

* ``skull_volume_ml``: bone voxels × voxel volume.
* Cranial vault: the directions of the upper hemisphere (world +z, RAS) from the centroid of the intracranial
  space, on a Fibonacci lattice (``VAULT_RAYS``). A ray *encloses* the brain where it crosses at least
  ``MIN_BONE_MM`` of bone between the intracranial space and the head surface; ``vault_enclosed_fraction`` is
  the share of such rays. A segmentation that does not enclose the brain (< ``MIN_ENCLOSED``) is refused.
* Thickness along the scalp normal: at each vault ray's exit point on the scalp, a ray along the inward normal
  of the (smoothed) head surface; the thickness is the length of its first bone run. Reported as the median
  and the 5–95 % range over the vault.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from tfus.sim.ingest import sample_nearest, voxel_to_world, world_to_voxel

VAULT_RAYS = 600
STEP_MM = 0.25
MIN_BONE_MM = 1.0
MIN_ENCLOSED = 0.9


def vault_directions(n: int = VAULT_RAYS) -> np.ndarray:
    """(n, 3) unit vectors spread evenly over the upper hemisphere (z ≥ 0)."""
    k = np.arange(n) + 0.5
    z = k / n
    phi = np.pi * (1 + 5 ** 0.5) * k
    r = np.sqrt(1 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def _runs(along: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per ray (rows): index of the first True sample and the length of that first run (samples)."""
    first = np.where(along.any(axis=1), np.argmax(along, axis=1), -1)
    after = np.arange(along.shape[1])[None, :] >= np.maximum(first, 0)[:, None]
    stop = ~along & after
    end = np.where(stop.any(axis=1), np.argmax(stop, axis=1), along.shape[1])
    return first, np.where(first >= 0, end - first, 0)


def skull_qc(head: np.ndarray, skull: np.ndarray, intracranial: np.ndarray, affine: np.ndarray) -> dict:
    """The quality figures of the module docstring (JSON-ready dict; lengths in mm, volume in mL)."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    out = {"skull_volume_ml": round(float(skull.sum() * np.prod(spacing) / 1e3), 2),
           "intracranial_volume_ml": round(float(intracranial.sum() * np.prod(spacing) / 1e3), 1)}
    if not intracranial.any():
        return {**out, "vault_enclosed_fraction": 0.0, "vault_rays": 0}
    centre = voxel_to_world(affine, np.argwhere(intracranial).mean(axis=0))
    dirs = vault_directions()
    reach = float(np.linalg.norm(np.asarray(head.shape) * spacing))
    s = np.arange(0.0, reach, STEP_MM)
    pts = centre + dirs[:, None, :] * s[None, :, None]  # (rays, samples, 3)
    in_head, in_bone = sample_nearest(head, affine, pts, False), sample_nearest(skull, affine, pts, False)
    exit_idx = np.where(in_head.any(axis=1), in_head.shape[1] - np.argmax(in_head[:, ::-1], axis=1) - 1, 0)
    bone_mm = in_bone.sum(axis=1) * STEP_MM
    enclosed = bone_mm >= MIN_BONE_MM
    out["vault_enclosed_fraction"] = round(float(enclosed.mean()), 4)
    out["vault_rays"] = int(len(dirs))
    thickness = _normal_thickness(head, skull, affine, spacing, pts[np.arange(len(dirs)), exit_idx][enclosed])
    if thickness.size:
        p5, p50, p95 = np.percentile(thickness, [5, 50, 95])
        out.update(skull_thickness_median_mm=round(float(p50), 2), skull_thickness_p5_mm=round(float(p5), 2),
                   skull_thickness_p95_mm=round(float(p95), 2))
    return out


def _normal_thickness(head, skull, affine, spacing, scalp_mm: np.ndarray) -> np.ndarray:
    """Length (mm) of the first bone run along the inward scalp normal at each scalp point (M, 3)."""
    if not len(scalp_mm):
        return np.zeros(0)
    smooth = ndimage.gaussian_filter(head.astype(np.float32), 2.0 / spacing)
    grads = [ndimage.map_coordinates(g, world_to_voxel(affine, scalp_mm).T, order=1)
             for g in np.gradient(smooth, *spacing)]
    g_world = np.stack(grads, axis=1) @ (affine[:3, :3] / spacing).T  # voxel-axis gradient → world
    inward = g_world / np.maximum(np.linalg.norm(g_world, axis=1, keepdims=True), 1e-9)
    s = np.arange(0.0, 40.0, STEP_MM)
    pts = scalp_mm[:, None, :] + inward[:, None, :] * s[None, :, None]
    _, length = _runs(sample_nearest(skull, affine, pts, False))
    return length[length > 0] * STEP_MM


def check_enclosed(qc: dict, name: str) -> None:
    if qc.get("vault_enclosed_fraction", 0.0) < MIN_ENCLOSED:
        raise ValueError(f"{name}: no enclosed skull found (bone on {100 * qc.get('vault_enclosed_fraction', 0):.0f} % "
                         f"of the vault rays, need {100 * MIN_ENCLOSED:.0f} %); is this a head T1 with scalp and skull?")


def write_qc(qc: dict, path: str | os.PathLike) -> Path:
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(json.dumps(qc, indent=2, sort_keys=True))
    os.replace(tmp, path)
    return path


def render_qc(image: np.ndarray, skull: np.ndarray, intracranial: np.ndarray, affine: np.ndarray,
              path: str | os.PathLike, title: str = "") -> Path:
    """Three planes through the intracranial centroid: the image in grey, skull (red), intracranial (cyan)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt  # noqa: PLC0415

    c = np.rint(np.argwhere(intracranial).mean(axis=0) if intracranial.any() else np.asarray(image.shape) / 2)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    top = float(np.percentile(image, 99.5)) or 1.0
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.6), constrained_layout=True)
    for ax, axis in zip(axes, range(3)):
        take = [slice(None)] * 3
        take[axis] = int(c[axis])
        rest = [a for a in range(3) if a != axis]
        extent = (0, image.shape[rest[0]] * spacing[rest[0]], 0, image.shape[rest[1]] * spacing[rest[1]])
        ax.imshow(image[tuple(take)].T, cmap="gray", origin="lower", extent=extent, vmin=0, vmax=top)
        for mask, colour in ((skull, "red"), (intracranial, "cyan")):
            plane = mask[tuple(take)].T.astype(float)
            if plane.any() and not plane.all():
                ax.contour(plane, [0.5], colors=colour, linewidths=0.7, origin="lower", extent=extent)
        ax.set_title(f"voxel axis {axis} = {int(c[axis])}")
        ax.set_axis_off()
    fig.suptitle(title or "skull (red), intracranial space (cyan)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return path
