"""What lies outside the head is coupling water; air enclosed by the head stays air.

A scanner CT shows air (−1000 HU) around the head, a patient table and head holders; the simulation assumes
the transducer is coupled through water (gel, a water bag), and nothing outside the head is on the beam's way
once the transducer sits on the scalp. So outside the head every voxel becomes water (0 HU). Air inside the
head — sinuses, mastoid cells, ear canals, the nasal cavity — is an acoustic mirror, not water: a window that
holds more than ``MIN_AIR_ML`` of it deeper than ``SKIN_MM`` inside the head is refused by :func:`check_no_air` and placement planning avoids such windows. A low-impedance region was
tried instead and measured unsuitable on this scheme: at the water sound speed a density of 30 kg/m³ diverged
(CFL 0.5) and 100 kg/m³ still let 70 % of the water-path pressure reach a target behind a 6 mm slab, where a
layer of that impedance should pass ~20 % (docs/VALIDATION.md).

The head is found on a coarse grid (``COARSE_MM``): voxels denser than halfway between the background and
soft tissue (bone-dense objects in the outside air, such as holders and electrodes, are not head), opened by ``DETACH_MM`` so that a table or holder touching the scalp along a thin
contact falls off, the component holding the most bone grown back inside the original mask, then closed by ``SEAL_MM``
and hole-filled so that canals open to the outside (nostrils, ear canals) count as inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import ndimage

from tfus.sim.ingest import Volume, grid_covering, resample, sample_nearest

COARSE_MM = 2.0
DETACH_MM = 4.0
SEAL_MM = 10.0
AIR_BACKGROUND_HU = -500.0  # a background below this is a scanner CT's air (phantoms and TFUScapes: water, 0)
SOFT_TISSUE_HU = 40.0
BONE_HU = 300.0
AIR_HU = -400.0  # below: air (halfway between fat at about -100 HU and air at -1000 HU)
SKIN_MM = 4.0     # air counts from this deep below the head's surface (the skin's partial-volume voxels do not)
MIN_AIR_ML = 0.05  # a window may hold this much (interpolation specks); a sinus is mL, a mastoid cell cluster too


@dataclass(frozen=True, eq=False)
class HeadMask:
    """The sealed head on a coarse grid: ``mask`` (bool) with its ``affine`` (voxel → world mm)."""

    mask: np.ndarray
    affine: np.ndarray

    def contains(self, points_mm) -> np.ndarray:
        """Whether world points (..., 3) lie inside the head (nearest coarse voxel)."""
        return sample_nearest(self.mask, self.affine, points_mm, False)

    @cached_property
    def deep(self) -> "HeadMask":
        """The head less its outer ``SKIN_MM`` (computed once per head)."""
        spacing = float(np.linalg.norm(self.affine[:3, 0]))
        return HeadMask(ndimage.binary_erosion(self.mask, iterations=max(1, round(SKIN_MM / spacing))), self.affine)


def background_hu(hu: np.ndarray) -> float:
    """Median of the volume's six faces."""
    faces = np.concatenate([hu[[0, -1]].ravel(), hu[:, [0, -1]].ravel(), hu[:, :, [0, -1]].ravel()])
    return float(np.median(faces))


def has_air_background(volume: Volume) -> bool:
    return background_hu(volume.hu) < AIR_BACKGROUND_HU


def largest_component(mask: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """The component of ``mask`` with the most voxels (or the most ``weight`` voxels)."""
    labels, count = ndimage.label(mask)
    if count == 0:
        raise ValueError("no head found in the CT (nothing above the soft-tissue/bone threshold)")
    sizes = np.bincount(labels.ravel(), weights=None if weight is None else weight.ravel().astype(float))
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def _ball(radius_vox: int) -> np.ndarray:
    r = max(int(radius_vox), 1)
    g = np.mgrid[-r:r + 1, -r:r + 1, -r:r + 1]
    return (g ** 2).sum(axis=0) <= r * r


def _objects_in_air(bone: np.ndarray, soft: np.ndarray) -> np.ndarray:
    """Bone-dense components other than the skull that touch the outside air (holders, electrodes): a holder
    that touches both the scalp and the table must not make the table part of the head. Facial bones and
    sinus walls lie under skin and stay."""
    labels, count = ndimage.label(bone)
    if count < 2:
        return np.zeros_like(bone)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    air_labels, _ = ndimage.label(~soft)
    border = np.unique(np.concatenate([air_labels[[0, -1]].ravel(), air_labels[:, [0, -1]].ravel(),
                                       air_labels[:, :, [0, -1]].ravel()]))
    outside = np.isin(air_labels, border[border > 0])
    touching = np.unique(labels[ndimage.binary_dilation(outside) & bone])
    touching = touching[(touching > 0) & (touching != int(np.argmax(sizes)))]
    return np.isin(labels, touching)


def _large_parts(mask: np.ndarray, min_voxels: float) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return np.isin(labels, np.flatnonzero(sizes >= min_voxels))


def head_from_hu(hu: np.ndarray, spacing_mm: float) -> np.ndarray:
    """The sealed head mask of an HU array on an isotropic grid (module docstring)."""
    background = background_hu(hu)
    bone = hu > BONE_HU
    if background < SOFT_TISSUE_HU - 30:
        soft = hu > 0.5 * (background + SOFT_TISSUE_HU)
        dense = soft & ~_objects_in_air(bone, soft)
    else:  # background as dense as tissue (water phantoms): only bone separates the head
        dense = ndimage.binary_closing(bone, iterations=2)
    detach = _ball(round(DETACH_MM / spacing_mm))
    core = ndimage.binary_opening(dense, structure=detach)
    head = largest_component(core, bone) if core.any() else largest_component(dense)  # the skull's component, not a big table
    head = ndimage.binary_dilation(head, structure=detach) & dense | head  # grow back, not onto the table
    head = largest_component(head)
    seal = _ball(round(SEAL_MM / spacing_mm))
    pad = seal.shape[0]
    closed = ndimage.binary_closing(np.pad(head, pad), structure=seal)[tuple([slice(pad, -pad)] * 3)]
    sealed = ndimage.binary_fill_holes(closed | head)
    other = _large_parts(dense & ~head, 0.02 * head.sum())  # table, holders: the seal must not bridge to them
    if other.any():
        sealed &= ~ndimage.binary_dilation(other, structure=seal)
    return sealed | head


def find_head(volume: Volume, spacing_mm: float = COARSE_MM) -> HeadMask:
    """:func:`head_from_hu` on a coarse resampling of the whole CT."""
    s = max(spacing_mm, float(volume.spacing_mm.min()))
    affine, shape = grid_covering(*volume.centre_bounds_mm(), s)
    fill = background_hu(volume.hu)
    return HeadMask(head_from_hu(resample(volume, affine, shape, fill_hu=fill).hu, s), affine)


def couple_window(ct_hu: np.ndarray, affine: np.ndarray, head: HeadMask) -> np.ndarray:
    """A window's HU with everything outside the head, and the air of the skin's partial-volume band (the
    outer ``SKIN_MM``), set to water (0 HU); inside unchanged. Air deeper inside is left for
    :func:`check_no_air`, so a coupled window that passes it holds no air at all (a stored window re-read
    later needs no head mask)."""
    idx = np.indices(ct_hu.shape, dtype=np.float32).reshape(3, -1).T
    world = idx @ affine[:3, :3].T.astype(np.float32) + affine[:3, 3].astype(np.float32)
    inside = head.contains(world).reshape(ct_hu.shape)
    deep = head.deep.contains(world).reshape(ct_hu.shape)
    water = ~inside | ((ct_hu < AIR_HU) & ~deep)
    return np.where(water, np.float32(0.0), ct_hu).astype(np.float32)


def air_inside(ct_hu: np.ndarray, affine: np.ndarray, head: HeadMask | None) -> np.ndarray:
    """World positions (N, 3) of the window voxels that are air inside the head (``head`` None: anywhere)."""
    air = np.argwhere(ct_hu < AIR_HU)
    if not len(air):
        return np.zeros((0, 3))
    world = air @ affine[:3, :3].T + affine[:3, 3]
    if head is not None:
        world = world[head.deep.contains(world)]
    return world





def check_no_air(ct_hu: np.ndarray, affine: np.ndarray, head: HeadMask | None, source: str = "") -> None:
    """``ValueError`` (one line) if the window holds air inside the head (module docstring)."""
    air = air_inside(ct_hu, affine, head)
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1e3
    if len(air) * voxel_ml > MIN_AIR_ML:
        centre = np.round(air.mean(axis=0), 1).tolist()
        raise ValueError(f"{source + ': ' if source else ''}{len(air) * voxel_ml:.2f} mL of air inside the head lies "
                         f"in the simulation window (around {centre} mm): air cavities (sinuses, mastoid cells, ear "
                         "canals) are mirrors that tfus does not simulate; place the transducer over the cranial "
                         "vault away from them")
