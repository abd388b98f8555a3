"""The transducer library: named single bowls and annular arrays, and focal steering of the arrays.

An annular array is a set of rings on one spherical bowl (radius of curvature R), ring ``r`` covering the
projected (chord) diameters ``inner_r`` … ``outer_r`` — the convention of the device documents and of
``kWaveArray.add_annular_element`` (polar angle θ = arcsin(d / 2R)). Each ring is driven with its own
amplitude and phase. The devices are operated by a *focal distance* measured from the **exit plane** (the
housing's front face), which lies ``exit_plane_to_focus_mm`` in front of the geometric focus along the axis.

Geometry (device documentation as reproduced in BabelBrain's docs and PRESTUS' transducer files):

* ``ctx500`` (NeuroFUS / Sonic Concepts CTX-500): R 63.2 mm, aperture 64.0 mm, rings 0/32.5, 33.0/45.8,
  46.2/55.6, 56.1/64.0 mm; exit plane 56.87 mm before the geometric focus; 500 kHz; steerable 33–80 mm
  from the exit plane. ``ctx560``: the same at 560 kHz.
* ``ctx250``: the same bowl, rings 0/32.4, 32.9/45.6, 46.1/55.5, 56.0/64.0 mm; exit plane 52.38 mm before
  the geometric focus; 250 kHz; 25–60 mm.
* ``dpx500`` (Brainbox DPX-500): 4 rings, focal length 144.9 mm, aperture 64 mm, 500 kHz, 50–120 mm. The
  ring boundaries are not in the sources above: here 4 rings of equal area with 0.5 mm kerfs (an assumption,
  stated in ``notes``), exit plane at the rim plane.

Steering, ``steering="geometric"``: the phase of ring r is k·(d_r − d_0) wrapped to [0, 2π), with d_r the
distance in water from the ring's mid-angle point on the bowl to the set point on the axis (geometric
delays): every ring's wave arrives there in phase. The pressure peak then lies *before* the set point (the
focal shift of a weakly focused aperture: measured on the CTX-250 in water 23.2 / 38.2 / 51.2 mm for set
points 25 / 42.5 / 60 mm, and O'Neil's annulus solution gives the same, docs/VALIDATION.md).
``steering="peak"`` (default): the set point is chosen (bisection) so that the on-axis peak of O'Neil's
annulus solution in water, with those geometric phases (its focal lobe: the local maximum nearest the set
point), lies at the requested distance — the focus lands
where the user asked, within the model's accuracy in water.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

WATER_SOUND_SPEED_M_S = 1500.0


@dataclass(frozen=True)
class TransducerSpec:
    """A named transducer: one bowl (``rings_mm`` empty) or an annular array on a bowl. Lengths in mm."""

    name: str
    frequency_hz: float
    roc_mm: float
    aperture_mm: float
    rings_mm: tuple[tuple[float, float], ...] = ()
    exit_plane_to_focus_mm: float | None = None  # None: the rim plane is the exit plane
    focal_range_mm: tuple[float, float] | None = None  # steerable focal distances from the exit plane
    notes: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "rings_mm", tuple(tuple(float(x) for x in r) for r in self.rings_mm))
        if self.focal_range_mm is not None:
            object.__setattr__(self, "focal_range_mm", tuple(float(x) for x in self.focal_range_mm))
        check_rings(self.rings_mm, self.roc_mm, self.aperture_mm, f"transducer {self.name!r}")
        if self.focal_range_mm is not None and not 0 < self.focal_range_mm[0] < self.focal_range_mm[1]:
            raise ValueError(f"transducer {self.name!r}: `focal_range_mm` must be (min, max) with 0 < min < max")

    @property
    def is_array(self) -> bool:
        return len(self.rings_mm) > 0


def check_rings(rings_mm, roc_mm: float, aperture_mm: float, what: str = "transducer") -> None:
    """One clear line for rings that are not inner < outer, ascending without overlap, inside the bowl."""
    previous_outer = None
    for i, ring in enumerate(rings_mm):
        if len(ring) != 2:
            raise ValueError(f"{what}: ring {i} must be (inner, outer) diameters in mm, got {ring}")
        inner, outer = ring
        if not (0 <= inner < outer):
            raise ValueError(f"{what}: ring {i} needs 0 <= inner < outer diameter, got {inner}/{outer} mm")
        if previous_outer is not None and inner < previous_outer:
            raise ValueError(f"{what}: ring {i} ({inner}/{outer} mm) overlaps ring {i - 1} "
                             f"(outer {previous_outer} mm)")
        if outer > aperture_mm + 1e-9 or outer > 2 * roc_mm:
            raise ValueError(f"{what}: ring {i} outer diameter {outer} mm exceeds the bowl's aperture "
                             f"({aperture_mm} mm, R {roc_mm} mm)")
        previous_outer = outer


def _equal_area_rings(roc_mm: float, aperture_mm: float, n: int, kerf_mm: float) -> tuple:
    """n rings of equal spherical area on the bowl, separated by ``kerf_mm`` in projected diameter."""
    h_total = roc_mm - math.sqrt(roc_mm ** 2 - (aperture_mm / 2) ** 2)  # cap height ∝ area
    edges = [2 * math.sqrt(max(roc_mm ** 2 - (roc_mm - h_total * i / n) ** 2, 0.0)) for i in range(n + 1)]
    return tuple((round(edges[i] + (kerf_mm / 2 if i else 0.0), 2),
                  round(edges[i + 1] - (kerf_mm / 2 if i < n - 1 else 0.0), 2)) for i in range(n))


_CTX_RINGS = ((0.0, 32.5), (33.0, 45.8), (46.2, 55.6), (56.1, 64.0))
LIBRARY: dict[str, TransducerSpec] = {
    "ctx500": TransducerSpec("ctx500", 500e3, 63.2, 64.0, _CTX_RINGS, 56.87, (33.0, 80.0),
                             "NeuroFUS/Sonic Concepts CTX-500, 4 rings"),
    "ctx560": TransducerSpec("ctx560", 560e3, 63.2, 64.0, _CTX_RINGS, 56.87, (33.0, 80.0),
                             "NeuroFUS/Sonic Concepts CTX-560: the CTX-500 geometry at 560 kHz"),
    "ctx250": TransducerSpec("ctx250", 250e3, 63.2, 64.0,
                             ((0.0, 32.4), (32.9, 45.6), (46.1, 55.5), (56.0, 64.0)), 52.38, (25.0, 60.0),
                             "NeuroFUS/Sonic Concepts CTX-250, 4 rings"),
    "dpx500": TransducerSpec("dpx500", 500e3, 144.9, 64.0, _equal_area_rings(144.9, 64.0, 4, 0.5), None,
                             (50.0, 120.0), "Brainbox DPX-500, 4 rings; ring boundaries assumed "
                             "(equal areas, 0.5 mm kerf): not published in the sources used"),
    # the single bowls of the presets
    "bowl-test": TransducerSpec("bowl-test", 200e3, 30.0, 26.0, notes="single bowl of the test/small presets"),
    "bowl-demo": TransducerSpec("bowl-demo", 200e3, 40.0, 40.0, notes="single bowl of the demo preset"),
    "bowl-practice": TransducerSpec("bowl-practice", 250e3, 63.2, 64.0,
                                    notes="single 64 mm bowl, R 63.2 mm (practice preset)"),
    "bowl-tfuscapes": TransducerSpec("bowl-tfuscapes", 500e3, 64.0, 64.0, notes="TFUScapes' single bowl"),
}


def load_transducer(name_or_path: str) -> TransducerSpec:
    """A library name, or ``custom`` from a YAML file of :class:`TransducerSpec` fields."""
    text = str(name_or_path)
    if text in LIBRARY:
        return LIBRARY[text]
    path = Path(text)
    if not path.is_file():
        raise ValueError(f"unknown transducer {text!r}: choose one of {', '.join(LIBRARY)} or give a YAML file")
    from tfus.sim.yamlfile import read_mapping  # noqa: PLC0415

    data = read_mapping(path, "transducer fields")
    data.setdefault("name", "custom")
    known = set(TransducerSpec.__dataclass_fields__)
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"{path}: unknown transducer field(s) {', '.join(sorted(unknown))}")
    try:
        return TransducerSpec(**data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def rim_depth_mm(roc_mm: float, aperture_mm: float) -> float:
    """Depth (mm) of a bowl's rim plane below its apex: R − √(R² − (D/2)²) (the one formula; Bowl.depth_mm)."""
    return float(roc_mm - math.sqrt(max(roc_mm ** 2 - (aperture_mm / 2) ** 2, 0.0)))


def exit_plane_depth_mm(roc_mm: float, aperture_mm: float, exit_plane_to_focus_mm: float | None) -> float:
    """Axial distance from the apex to the exit plane (mm)."""
    if exit_plane_to_focus_mm is None:
        return rim_depth_mm(roc_mm, aperture_mm)
    return float(roc_mm - exit_plane_to_focus_mm)


def ring_mid_points_mm(roc_mm: float, rings_mm) -> np.ndarray:
    """(n, 2): (radial, axial-from-apex) mm of each ring's mid-angle point on the bowl."""
    out = []
    for inner, outer in rings_mm:
        theta = 0.5 * (math.asin(inner / (2 * roc_mm)) + math.asin(outer / (2 * roc_mm)))
        out.append((roc_mm * math.sin(theta), roc_mm * (1 - math.cos(theta))))
    return np.asarray(out, dtype=np.float64)


def steering_phases(roc_mm: float, aperture_mm: float, rings_mm, exit_plane_to_focus_mm: float | None,
                    focal_distance_mm: float, frequency_hz: float,
                    sound_speed_m_s: float = WATER_SOUND_SPEED_M_S) -> np.ndarray:
    """Ring phases (rad, [0, 2π), ring 0 = 0) that focus on the axis ``focal_distance_mm`` past the exit plane."""
    if not focal_distance_mm > 0:
        raise ValueError(f"`focal_distance_mm` must be > 0, got {focal_distance_mm}")
    z_focus = exit_plane_depth_mm(roc_mm, aperture_mm, exit_plane_to_focus_mm) + focal_distance_mm
    mid = ring_mid_points_mm(roc_mm, rings_mm)
    d = np.hypot(mid[:, 0], z_focus - mid[:, 1]) * 1e-3
    k = 2 * math.pi * frequency_hz / sound_speed_m_s
    return np.mod(k * (d - d[0]), 2 * math.pi)


def analytic_axis_mm(roc_mm: float, rings_mm, drive, z_mm: np.ndarray, frequency_hz: float,
                     sound_speed_m_s: float = WATER_SOUND_SPEED_M_S) -> np.ndarray:
    """|p| on the axis (z from the apex, mm) of rings with complex drives: Σ c_r (P_bowl(outer) − P_bowl(inner))."""
    from tfus.sim.oneil import oneil_on_axis  # noqa: PLC0415

    z = np.asarray(z_mm, float) * 1e-3
    total = np.zeros(z.shape, complex)
    for (inner, outer), c in zip(rings_mm, drive):
        p = oneil_on_axis(z, roc_mm * 1e-3, outer * 1e-3, frequency_hz, 1.0, sound_speed_m_s, complex_field=True)
        if inner > 0:
            p = p - oneil_on_axis(z, roc_mm * 1e-3, inner * 1e-3, frequency_hz, 1.0, sound_speed_m_s,
                                  complex_field=True)
        total = total + complex(c) * p
    return np.abs(total)


def analytic_peak_mm(roc_mm, aperture_mm, rings_mm, exit_plane_to_focus_mm, phases, frequency_hz,
                     near_mm: float, far_mm: float, around_mm: float | None = None) -> float:
    """Distance from the exit plane of the on-axis O'Neil peak for ring ``phases`` in [near, far]: the
    highest, or with ``around_mm`` the local maximum nearest to it (the focal lobe, not a grating lobe)."""
    exit_mm = exit_plane_depth_mm(roc_mm, aperture_mm, exit_plane_to_focus_mm)
    d = np.linspace(near_mm, far_mm, 2001)
    p = analytic_axis_mm(roc_mm, rings_mm, np.exp(1j * np.asarray(phases)), exit_mm + d, frequency_hz)
    if around_mm is None:
        return float(d[int(np.argmax(p))])
    inner = np.flatnonzero((p[1:-1] >= p[:-2]) & (p[1:-1] >= p[2:])) + 1
    if inner.size == 0:
        return float(d[int(np.argmax(p))])
    return float(d[inner[np.argmin(np.abs(d[inner] - around_mm))]])


def peak_steering_phases(roc_mm: float, aperture_mm: float, rings_mm, exit_plane_to_focus_mm: float | None,
                         focal_distance_mm: float, frequency_hz: float) -> tuple[np.ndarray, float]:
    """(phases, set point mm): geometric phases whose on-axis O'Neil peak lies at ``focal_distance_mm``."""
    def peak(set_mm: float) -> float:
        ph = steering_phases(roc_mm, aperture_mm, rings_mm, exit_plane_to_focus_mm, set_mm, frequency_hz)
        return analytic_peak_mm(roc_mm, aperture_mm, rings_mm, exit_plane_to_focus_mm, ph, frequency_hz,
                                0.3 * focal_distance_mm, 3.0 * focal_distance_mm, around_mm=set_mm)

    lo, hi = 0.7 * focal_distance_mm, 2.5 * focal_distance_mm
    if not peak(lo) <= focal_distance_mm <= peak(hi):
        raise ValueError(f"cannot place the on-axis peak {focal_distance_mm:g} mm past the exit plane with this "
                         f"array at {frequency_hz / 1e3:g} kHz (reachable {peak(lo):.1f}-{peak(hi):.1f} mm); "
                         f"use steering='geometric'")
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if peak(mid) < focal_distance_mm else (lo, mid)
        if hi - lo < 0.01:
            break
    set_mm = 0.5 * (lo + hi)
    return steering_phases(roc_mm, aperture_mm, rings_mm, exit_plane_to_focus_mm, set_mm, frequency_hz), set_mm
