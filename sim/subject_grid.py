"""The skull-fixed ("subject") grid: one window per subject, shared by all of its placements.

TFUScapes simulates every placement of a subject on one fixed crop of the head, so that the transducer moves
inside the grid and the model has to read the placement from the transducer encoding (beam-centred windows
put the bowl at nearly the same voxels in every sample). Here the box has ``config.window_shape`` voxels at
``config.spacing_mm``, axis-aligned in world RAS, placed from the subject's head mask alone (deterministic):

* laterally (x, y): on the head's centroid;
* vertically (z, superior): on the centroid too when the box is tall enough to keep, above the vertex,
  room for a bowl (``standoff_mm`` + the bowl's rim depth + ``MARGIN_VOX`` + 1 voxels); otherwise as low as
  that room allows, i.e. the box holds the top of the head (the cranial vault, where transducers go);
* the origin snapped to multiples of the spacing, like beam-centred windows.

Placements are then planned on the scalp inside the box (``sim.placement``) and a window is refused when its
bowl or its focus does not fit (``sim.window.plan_window``).
"""

from __future__ import annotations

import numpy as np

from tfus.sim.coupling import HeadMask, find_head
from tfus.sim.ingest import Volume, axis_aligned_affine, voxel_to_world, world_to_voxel
from tfus.sim.transducers import rim_depth_mm

MARGIN_VOX = 2  # free voxels required between the bowl and a window's edge (sim.window uses it for every window)


def subject_grid(volume: Volume, config, head: HeadMask | None = None) -> tuple[np.ndarray, tuple[int, int, int]]:
    """``(affine, shape)`` of the subject's fixed window (module docstring); ``head``: its mask if known."""
    if config.window_shape is None:
        raise ValueError("a subject grid needs `window_shape` (the fixed box every placement shares)")
    head = head if head is not None else find_head(volume)
    if not head.mask.any():
        raise ValueError("no head found in the CT: the subject grid is placed on the head")
    points = voxel_to_world(head.affine, np.argwhere(head.mask))
    centroid, vertex_z = points.mean(axis=0), float(points[:, 2].max())
    s = float(config.spacing_mm)
    shape = tuple(int(n) for n in config.window_shape)
    extent = (np.asarray(shape, dtype=np.float64) - 1) * s
    tr = config.transducer
    room = config.standoff_mm + rim_depth_mm(tr.roc_mm, tr.aperture_mm) + (MARGIN_VOX + 1) * s
    centre = centroid.copy()
    centre[2] = max(centroid[2], vertex_z + room - extent[2] / 2)
    origin = np.round((centre - extent / 2) / s) * s
    return axis_aligned_affine(origin, s), shape


def box_contains(affine: np.ndarray, shape, points_mm, margin_vox: float = 0.0) -> np.ndarray:
    """Which world points lie inside an axis-aligned grid, ``margin_vox`` voxels in from its edge."""
    v = world_to_voxel(affine, np.atleast_2d(np.asarray(points_mm, dtype=np.float64)))
    return np.all((v >= margin_vox) & (v <= np.asarray(shape) - 1 - margin_vox), axis=1)
