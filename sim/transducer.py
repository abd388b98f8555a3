"""Geometry of a single-element spherically focused bowl, in world millimetres.

The bowl is a spherical cap of radius ``roc_mm`` whose centre of curvature is the geometric focus.
``apex_mm`` is the rear centre of the cap (k-Wave's ``bowl_pos``); the axis points from the apex toward
``target_mm`` (any point on the axis: k-Wave's ``focus_pos``), so the geometric focus is
``apex + roc·axis``. The rim is a circle of radius ``aperture/2`` at depth ``h = R − sqrt(R² − a²)``
from the apex along the axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfus.sim.transducers import rim_depth_mm

_GOLDEN_ANGLE = np.pi * (3.0 - np.sqrt(5.0))


@dataclass(frozen=True)
class Bowl:
    """A focused bowl: apex and aim point (world mm), radius of curvature and aperture diameter (mm)."""

    apex_mm: tuple[float, float, float]
    target_mm: tuple[float, float, float]
    roc_mm: float
    aperture_mm: float

    def __post_init__(self) -> None:
        for name in ("apex_mm", "target_mm"):
            v = np.asarray(getattr(self, name), dtype=np.float64)
            if v.shape != (3,) or not np.all(np.isfinite(v)):
                raise ValueError(f"`{name}` must be three finite numbers (x, y, z) in mm, got {getattr(self, name)}")
            object.__setattr__(self, name, tuple(float(x) for x in v))
        if not np.isfinite(self.roc_mm) or self.roc_mm <= 0:
            raise ValueError(f"`roc_mm` must be > 0, got {self.roc_mm}")
        if not np.isfinite(self.aperture_mm) or self.aperture_mm <= 0:
            raise ValueError(f"`aperture_mm` must be > 0, got {self.aperture_mm}")
        if self.aperture_mm > 2 * self.roc_mm:
            raise ValueError(f"`aperture_mm` ({self.aperture_mm}) must not exceed twice `roc_mm` "
                             f"({self.roc_mm}): no such spherical bowl")
        if np.linalg.norm(np.subtract(self.target_mm, self.apex_mm)) < 1e-6:
            raise ValueError(f"`target_mm` must differ from the transducer position, both are {self.apex_mm}")

    @classmethod
    def from_config(cls, position_mm, target_mm, transducer) -> "Bowl":
        """From a :class:`sim.config.TransducerConfig` (duck-typed: ``roc_mm``, ``aperture_mm``)."""
        return cls(tuple(position_mm), tuple(target_mm), float(transducer.roc_mm), float(transducer.aperture_mm))

    @property
    def axis(self) -> np.ndarray:
        """Unit vector from the apex toward the target."""
        d = np.subtract(self.target_mm, self.apex_mm)
        return d / np.linalg.norm(d)

    @property
    def focus_mm(self) -> np.ndarray:
        """Geometric focus (centre of curvature) = apex + roc·axis."""
        return np.asarray(self.apex_mm) + self.roc_mm * self.axis

    @property
    def depth_mm(self) -> float:
        """Rim height h: axial distance from the apex to the rim plane."""
        return rim_depth_mm(self.roc_mm, self.aperture_mm)

    @property
    def half_angle_rad(self) -> float:
        return float(np.arcsin(min(self.aperture_mm / (2 * self.roc_mm), 1.0)))

    @property
    def rim_center_mm(self) -> np.ndarray:
        return np.asarray(self.apex_mm) + self.depth_mm * self.axis

    def basis(self) -> tuple[np.ndarray, np.ndarray]:
        """Two unit vectors (u, v) perpendicular to the axis and to each other (deterministic)."""
        w = self.axis
        helper = np.eye(3)[int(np.argmin(np.abs(w)))]
        u = np.cross(w, helper)
        u /= np.linalg.norm(u)
        return u, np.cross(w, u)

    def rim_points_mm(self, n: int = 64) -> np.ndarray:
        """(n, 3) points on the rim circle."""
        u, v = self.basis()
        phi = 2 * np.pi * np.arange(n) / n
        r = self.aperture_mm / 2
        return self.rim_center_mm + r * (np.cos(phi)[:, None] * u + np.sin(phi)[:, None] * v)

    def surface_points_mm(self, n: int) -> np.ndarray:
        """(n, 3) quasi-uniform points on the cap (Fibonacci spiral, equal-area in cos θ); deterministic.

        θ is the polar angle at the focus, measured from the backward axis (θ = 0 is the apex).
        """
        if int(n) != n or n < 1:
            raise ValueError(f"`n` must be a positive integer, got {n}")
        i = np.arange(int(n), dtype=np.float64)
        cos_max = np.cos(self.half_angle_rad)
        cos_t = 1.0 - (i + 0.5) / n * (1.0 - cos_max)
        sin_t = np.sqrt(np.clip(1.0 - cos_t ** 2, 0.0, None))
        phi = i * _GOLDEN_ANGLE
        u, v = self.basis()
        radial = np.cos(phi)[:, None] * u + np.sin(phi)[:, None] * v
        direction = -cos_t[:, None] * self.axis + sin_t[:, None] * radial
        return self.focus_mm + self.roc_mm * direction

    def ring_points_mm(self, n: int, rings_mm=()) -> tuple[np.ndarray, np.ndarray]:
        """(n, 3) points on the radiating surface and each point's ring index (n,): for an annular array
        (``rings_mm``: (inner, outer) aperture diameters in mm per ring) the points lie on the rings only,
        shared between them by area (largest remainder, at least one each), the same spiral within each
        ring's band of polar angle; without rings, ``surface_points_mm(n)`` and ring 0 everywhere."""
        if not rings_mm:
            return self.surface_points_mm(n), np.zeros(int(n), np.int64)
        if int(n) != n or n < len(rings_mm):
            raise ValueError(f"`n` must be an integer >= the {len(rings_mm)} rings, got {n}")
        n = int(n)
        edges = np.asarray(rings_mm, np.float64) / (2.0 * self.roc_mm)      # sin θ of each ring edge
        cos_in, cos_out = np.sqrt(1.0 - edges[:, 0] ** 2), np.sqrt(1.0 - edges[:, 1] ** 2)
        share = (cos_in - cos_out) / np.sum(cos_in - cos_out) * (n - len(rings_mm))
        counts = 1 + np.floor(share).astype(int)
        counts[np.argsort(-(share - np.floor(share)))[: n - counts.sum()]] += 1
        ring = np.repeat(np.arange(len(rings_mm)), counts)
        local = np.concatenate([(np.arange(c) + 0.5) / c for c in counts])
        cos_t = cos_in[ring] - local * (cos_in[ring] - cos_out[ring])
        sin_t = np.sqrt(np.clip(1.0 - cos_t ** 2, 0.0, None))
        phi = np.arange(n) * _GOLDEN_ANGLE
        u, v = self.basis()
        radial = np.cos(phi)[:, None] * u + np.sin(phi)[:, None] * v
        direction = -cos_t[:, None] * self.axis + sin_t[:, None] * radial
        return self.focus_mm + self.roc_mm * direction, ring

    def extent_points_mm(self) -> np.ndarray:
        """Points whose bounding box is the bowl's bounding box (apex, rim circle densely, rim extremes)."""
        return np.vstack([np.asarray(self.apex_mm)[None], self.rim_points_mm(360)])

    def bounding_box_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned world bounding box of the cap (exact up to the rim sampling)."""
        # The cap's extreme points are on the rim or at the sphere's extremes inside the cap.
        pts = [self.extent_points_mm()]
        for k in range(3):
            for s in (-1.0, 1.0):
                d = s * np.eye(3)[k]  # sphere extreme in direction d: focus + R d, inside the cap?
                if np.dot(-d, self.axis) >= np.cos(self.half_angle_rad) - 1e-12:
                    pts.append((self.focus_mm + self.roc_mm * d)[None])
        allp = np.vstack(pts)
        return allp.min(axis=0), allp.max(axis=0)

    def to_dict(self) -> dict:
        return {"apex_mm": list(self.apex_mm), "target_mm": list(self.target_mm), "roc_mm": self.roc_mm,
                "aperture_mm": self.aperture_mm, "focus_mm": [float(x) for x in self.focus_mm]}
