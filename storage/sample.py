"""One complete sample as read back from a dataset (shared by the table reader and the Dataset handle)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Sample:
    """One complete sample. ct_hu, pressure_pa: (X, Y, Z) float32 in HU / Pa; affine (4, 4) voxel → world
    mm; transducer_points (P, 3) float32 voxel coordinates of the window; meta: the table row, the
    sample's simulation ``config`` (dict) and its ``summary`` (dict); transducer_drive (P, 3) float32 ring
    index, relative amplitude and phase (rad) of each point (a single bowl: (0, 1, 0))."""

    sample_id: str
    ct_hu: np.ndarray
    pressure_pa: np.ndarray
    affine: np.ndarray
    transducer_points: np.ndarray
    meta: dict = field(default_factory=dict)
    transducer_drive: np.ndarray | None = None
