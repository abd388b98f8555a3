"""Field statistics of a steady-state pressure amplitude (one implementation for the whole project).

The focus is searched (like ITRUSST's "brain region" mask) only where a focus can be: beyond the bowl's
rim plane plus one wavelength (not the source's near field), within R/2 of the geometric focus, and
outside the skull (HU above the skull threshold): the pressure just inside the outer table can exceed the
transmitted focal pressure (transmission coefficient up to ~1.6), and standing waves between bowl and
skull are not a focus. ``max_pressure_anywhere_pa`` reports the unrestricted maximum. The focal volume is
the −6 dB (half-amplitude) connected component that contains the peak.
"""

from __future__ import annotations

import numpy as np

WATER_SOUND_SPEED_M_S = 1500.0


def focal_search_mask(shape, affine, bowl, frequency_hz: float | None, skull=None) -> np.ndarray:
    """Beyond the rim plane + one wavelength, within R/2 of the geometric focus, outside ``skull`` (bool)."""
    idx = np.indices(shape, dtype=np.float64).reshape(3, -1).T
    world = idx @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]
    axial = (world - np.asarray(bowl.apex_mm)) @ np.asarray(bowl.axis)
    wavelength_mm = WATER_SOUND_SPEED_M_S / frequency_hz * 1e3 if frequency_hz else 0.0
    near_focus = np.linalg.norm(world - np.asarray(bowl.focus_mm), axis=1) <= bowl.roc_mm / 2
    mask = ((axial > bowl.depth_mm + wavelength_mm) & near_focus).reshape(shape)
    return mask & ~np.asarray(skull, bool) if skull is not None else mask


def focal_volume_mm3(pressure: np.ndarray, peak_index, voxel_volume_mm3: float, level: float = 0.5) -> float:
    """Volume of the connected region ≥ ``level``·peak (−6 dB for 0.5) that contains ``peak_index``."""
    from scipy import ndimage  # noqa: PLC0415

    peak = float(pressure[tuple(peak_index)])
    if peak <= 0:
        return 0.0
    labels, _ = ndimage.label(pressure >= level * peak)
    return float(np.count_nonzero(labels == labels[tuple(peak_index)]) * voxel_volume_mm3)


def field_summary(pressure: np.ndarray, affine, bowl=None, frequency_hz: float | None = None,
                  skull=None) -> dict:
    """``focal_point_mm`` (world), ``focal_index``, ``peak_pressure_pa``, ``focal_volume_mm3`` (−6 dB).

    ``skull``: optional boolean mask of skull voxels excluded from the focus search (module docstring).
    """
    p = np.asarray(pressure, dtype=np.float32)
    search = (focal_search_mask(p.shape, affine, bowl, frequency_hz, skull) if bowl is not None
              else np.ones(p.shape, bool))
    if not search.any():
        search = np.ones(p.shape, bool)
    masked = np.where(search, p, -np.inf)
    peak_index = np.unravel_index(int(np.argmax(masked)), p.shape)
    affine = np.asarray(affine, dtype=np.float64)
    voxel_volume = float(abs(np.linalg.det(affine[:3, :3])))
    focal = affine[:3, :3] @ np.asarray(peak_index, float) + affine[:3, 3]
    return {
        "focal_point_mm": [float(x) for x in focal],
        "focal_index": [int(i) for i in peak_index],
        "peak_pressure_pa": float(p[peak_index]),
        "focal_volume_mm3": focal_volume_mm3(p, peak_index, voxel_volume),
        "max_pressure_anywhere_pa": float(p.max()),
    }
