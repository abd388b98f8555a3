"""O'Neil's analytic on-axis field of a focused bowl (J. Acoust. Soc. Am. 21(5):516, 1949).

The form of k-Wave's ``focusedBowlONeil.m`` (see /work/shared/reference/physics_anchors.md §1.7), for a
bowl driven by a uniform CW normal velocity ``u0`` in a lossless homogeneous medium; a pressure-specified
source of amplitude ``p0`` corresponds to ``u0 = p0/(ρ0·c0)``. ``z`` is measured from the bowl apex along
the axis towards the focus. Written out here (not only wrapped) so the reference does not depend on the
code under test; ``tests/sim/test_oneil.py`` checks it against ``kwave.utils.mapgen.focused_bowl_oneil``
and the published numbers.
"""

from __future__ import annotations

import numpy as np


def oneil_on_axis(z_m, roc_m: float, aperture_m: float, frequency_hz: float, amplitude_pa: float,
                  sound_speed: float = 1500.0, density: float = 1000.0, complex_field: bool = False):
    """On-axis pressure amplitude (Pa) at distances ``z_m`` from the apex (or the complex field).

    |p(z)| = ρ0·c0·u0·|E·sin(k·d/2)| with h = R − √(R² − a²), B = √((z−h)² + a²), d = B − z,
    E = 2/(1 − z/R); the limit at z = R is ρ0·c0·u0·k·h.
    """
    if aperture_m > 2 * roc_m:
        raise ValueError(f"aperture {aperture_m} m exceeds twice the radius of curvature {roc_m} m")
    z = np.atleast_1d(np.asarray(z_m, dtype=np.float64))
    a = aperture_m / 2.0
    k = 2 * np.pi * frequency_hz / sound_speed
    h = roc_m - np.sqrt(roc_m**2 - a**2)
    p0 = amplitude_pa  # = ρ0·c0·u0 for u0 = p0/(ρ0·c0)
    b = np.sqrt((z - h) ** 2 + a**2)
    d = b - z
    at_focus = np.isclose(z, roc_m, rtol=0, atol=1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        e = 2.0 / (1.0 - z / roc_m)
        field = p0 * e * np.sin(k * d / 2) * 1j * np.exp(-1j * k * (b + z) / 2)
    field = np.where(at_focus, p0 * k * h * 1j * np.exp(-1j * k * (b + z) / 2), field)
    out = field if complex_field else np.abs(field)
    return out if np.ndim(z_m) else out[0]


def oneil_focal_gain(roc_m: float, aperture_m: float, frequency_hz: float, sound_speed: float = 1500.0) -> float:
    """|p(R)|/p0 = k·h."""
    a = aperture_m / 2.0
    return 2 * np.pi * frequency_hz / sound_speed * (roc_m - np.sqrt(roc_m**2 - a**2))


def focal_zone_m(roc_m: float, aperture_m: float, frequency_hz: float, level: float = 0.5,
                 sound_speed: float = 1500.0) -> tuple[float, float]:
    """(z_near, z_far) in m from the apex: the on-axis stretch around the on-axis maximum where the free
    field stays ≥ ``level`` × that maximum (−6 dB for 0.5). A weakly focused bowl's zone reaches back to the
    bowl (its maximum sits well before the geometric focus)."""
    if not 0 < level < 1:
        raise ValueError(f"`level` must be in (0, 1), got {level}")
    z = np.linspace(roc_m * 1e-3, 3 * roc_m, 6000)
    p = oneil_on_axis(z, roc_m, aperture_m, frequency_hz, 1.0, sound_speed)
    peak = int(np.argmax(p))
    above = p >= level * p[peak]
    lo, hi = peak, peak
    while lo > 0 and above[lo - 1]:
        lo -= 1
    while hi < len(z) - 1 and above[hi + 1]:
        hi += 1
    return float(z[lo]), float(z[hi])
