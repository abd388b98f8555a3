"""The bowl transducer as an off-grid, band-limited k-Wave source (``kWaveArray.add_bowl_element``).

The bowl is not staircased onto a binary mask: ``kWaveArray`` integrates band-limited interpolants (BLIs)
over ~10 points per grid cell of the bowl surface, giving a weight per grid point. The source is then
``weights · s(t)`` injected as a pressure (mass) source.

Array order: ``kspace_solver.Simulation`` flattens masks in C order. We take the weights straight from
``get_element_grid_weights`` as a full grid and flatten them ourselves in C order, so mask and signal
cannot disagree (an F-order distributed signal silently gave ~10 % of the right amplitude).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BowlSource:
    """A focused bowl in *grid voxel coordinates* of the returned box (not the PML-padded grid).

    ``apex_vox``: centre of the bowl surface (on the axis); ``focus_vox``: a point on the axis towards which
    the bowl faces (its geometric focus when at distance ``roc``). Lengths in metres.
    """

    apex_vox: tuple[float, float, float]
    focus_vox: tuple[float, float, float]
    roc_m: float
    diameter_m: float
    rings_m: tuple = ()     # annular array: ((inner, outer) projected diameter in m, ...) on this bowl
    ring_drive: tuple = ()  # complex drive a_r·e^{iφ_r} per ring (relative to the amplitude)

    def __post_init__(self) -> None:
        apex, focus = np.asarray(self.apex_vox, float), np.asarray(self.focus_vox, float)
        if apex.shape != (3,) or focus.shape != (3,) or not (np.isfinite(apex).all() and np.isfinite(focus).all()):
            raise ValueError("`apex_vox`/`focus_vox` must be three finite numbers each")
        if np.allclose(apex, focus):
            raise ValueError("bowl `focus_vox` equals `apex_vox`: the bowl axis is undefined")
        if self.roc_m <= 0 or self.diameter_m <= 0:
            raise ValueError("bowl `roc_m` and `diameter_m` must be > 0")
        if self.diameter_m > 2 * self.roc_m:
            raise ValueError(f"bowl diameter {self.diameter_m} m exceeds twice the radius of curvature "
                             f"{self.roc_m} m")
        if len(self.ring_drive) != len(self.rings_m):
            raise ValueError(f"{len(self.ring_drive)} ring drives for {len(self.rings_m)} rings")


def as_terms(weights, signal) -> tuple[list, list]:
    """(weights list, signal list) from one grid and its drive, or from lists of them (``source_terms``)."""
    if isinstance(weights, (list, tuple)):
        weights, signal = list(weights), list(signal)
    else:
        weights, signal = [weights], [signal]
    if len(weights) != len(signal) or not weights:
        raise ValueError(f"{len(weights)} source weights for {len(signal)} drive signals")
    return weights, signal


def source_terms(bowl: BowlSource, padded_shape, pml_size: int, spacing_m: float, n_steps: int, dt: float,
                 frequency_hz: float, amplitude_pa: float, ramp_cycles: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """The source as (grid weights, drive signal) terms whose sum Σ w_k·s_k(t) is the injected pressure.

    One bowl: one term. An annular array with ring weights W_r and drives c_r = a_r e^{iφ_r}:
    Σ_r a_r sin(ωt + φ_r) W_r = sin ωt · Σ Re(c_r) W_r + cos ωt · Σ Im(c_r) W_r, so two terms whatever the
    number of rings (the per-step cost of a steered array is two filtered fields, not one per ring).
    """
    if not bowl.rings_m:
        return [(bowl_grid_weights(bowl, padded_shape, pml_size, spacing_m),
                 drive_signal(n_steps, dt, frequency_hz, amplitude_pa, ramp_cycles))]
    w_sin = np.zeros(tuple(int(n) for n in padded_shape))
    w_cos = np.zeros_like(w_sin)
    for r, drive in enumerate(bowl.ring_drive):
        if drive == 0:
            continue
        w = ring_grid_weights(bowl, r, padded_shape, pml_size, spacing_m)
        w_sin += drive.real * w
        w_cos += drive.imag * w
    terms = []
    for w, phase in ((w_sin, 0.0), (w_cos, np.pi / 2)):
        if np.any(w):
            terms.append((w, drive_signal(n_steps, dt, frequency_hz, amplitude_pa, ramp_cycles, phase)))
    return terms


def ring_grid_weights(bowl: BowlSource, ring: int, padded_shape, pml_size: int, spacing_m: float,
                      upsampling_rate: int = 10, bli_tolerance: float = 0.05) -> np.ndarray:
    """Grid weights (padded shape, float64) of ring ``ring`` via ``kWaveArray.add_annular_element``."""
    inner, outer = bowl.rings_m[ring]
    return _element_weights(bowl, padded_shape, pml_size, spacing_m, upsampling_rate, bli_tolerance, True,
                            lambda ka, pos, foc: ka.add_annular_element(pos, float(bowl.roc_m),
                                                                        [float(inner), float(outer)], foc))


def vox_to_grid_m(vox, padded_shape, pml_size: int, spacing_m: float) -> list[float]:
    """Box voxel coordinates → kWaveGrid metres of the padded grid (index i ↦ (i − N//2)·dx)."""
    vox = np.asarray(vox, dtype=float)
    centre = np.array([n // 2 for n in padded_shape], dtype=float)
    return [float(v) for v in (vox + pml_size - centre) * spacing_m]


def bowl_grid_weights(bowl: BowlSource, padded_shape, pml_size: int, spacing_m: float,
                      upsampling_rate: int = 10, bli_tolerance: float = 0.05, *,
                      vectorised: bool = True) -> np.ndarray:
    """Grid weights (padded shape, float64) of the bowl via ``kWaveArray.add_bowl_element``.

    ``vectorised=True`` (default): k-wave's own integration points and scale (what
    ``kWaveArray.get_off_grid_points`` computes before its per-point loop), summed by
    ``sim.offgrid.off_grid_weights`` for all points at once. ``vectorised=False``: k-wave-python's
    ``get_element_grid_weights`` (a Python loop over every integration point). Both agree to rounding.
    """
    return _element_weights(bowl, padded_shape, pml_size, spacing_m, upsampling_rate, bli_tolerance, vectorised,
                            lambda ka, pos, foc: ka.add_bowl_element(pos, float(bowl.roc_m),
                                                                     float(bowl.diameter_m), foc))


def _element_weights(bowl: BowlSource, padded_shape, pml_size: int, spacing_m: float, upsampling_rate: int,
                     bli_tolerance: float, vectorised: bool, add) -> np.ndarray:
    """Weights of the one kWaveArray element that ``add(karray, position, focus)`` adds."""
    from tfus.sim.kwave_import import kwave_modules  # noqa: PLC0415  (k-wave only when simulating)

    kw = kwave_modules()
    kgrid = kw.kgrid([int(n) for n in padded_shape], [spacing_m] * 3)
    karray = kw.karray(bli_tolerance=bli_tolerance, upsampling_rate=upsampling_rate)
    position = vox_to_grid_m(bowl.apex_vox, padded_shape, pml_size, spacing_m)
    focus = vox_to_grid_m(bowl.focus_vox, padded_shape, pml_size, spacing_m)
    add(karray, position, focus)
    if vectorised and _fast_path_applies(karray, kgrid):
        weights = _element_weights_vectorised(karray, kgrid)
    else:
        weights = np.asarray(karray.get_element_grid_weights(kgrid, 0), dtype=np.float64)
    if not np.any(weights):
        raise ValueError("the transducer bowl does not intersect the simulation grid")
    return weights


def _fast_path_applies(karray, kgrid) -> bool:
    """The case ``sim.offgrid`` reproduces: 3D, dx = dy = dz, sinc BLI, 0 < tol < 1, no axisymmetry."""
    return (kgrid.dim == 3 and kgrid.dx == kgrid.dy == kgrid.dz and not getattr(kgrid, "nonuniform", False)
            and karray.bli_type == "sinc" and 0 < karray.bli_tolerance < 1 and not karray.axisymmetric
            and not karray.single_precision and karray.elements[0].type in ("bowl", "annulus"))


def _element_weights_vectorised(karray, kgrid, element_num: int = 0) -> np.ndarray:
    """``kWaveArray.get_off_grid_points(kgrid, element_num, False)`` for a bowl or an annulus, the loop
    vectorised."""
    import math  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from tfus.sim.offgrid import off_grid_weights  # noqa: PLC0415

    ka = sys.modules[type(karray).__module__]  # kwave.utils.kwave_array: the functions it uses itself
    element = karray.elements[element_num]
    m_grid = element.measure / kgrid.dx ** element.dim
    m_integration = math.ceil(m_grid * karray.upsampling_rate)
    if element.type == "annulus":  # as get_off_grid_points: make_cart_spherical_segment
        points = ka.make_cart_spherical_segment(karray.affine(element.position), element.radius_of_curvature,
                                                element.inner_diameter, element.outer_diameter,
                                                karray.affine(element.focus_position), m_integration)
    else:
        points = ka.make_cart_bowl(karray.affine(element.position), element.radius_of_curvature,
                                   element.diameter, karray.affine(element.focus_position), m_integration)
    scale = m_grid / points.shape[1]
    points = ka.trim_cart_points(kgrid, points)
    return off_grid_weights(kgrid, points, scale, bli_tolerance=karray.bli_tolerance)


def drive_signal(n_steps: int, dt: float, frequency_hz: float, amplitude_pa: float,
                 ramp_cycles: float, phase_rad: float = 0.0) -> np.ndarray:
    """``A·sin(ωt + φ)`` with a raised-cosine ramp over the first ``ramp_cycles`` periods (float64, length n)."""
    t = np.arange(n_steps) * dt
    signal = amplitude_pa * np.sin(2 * np.pi * frequency_hz * t + phase_rad)
    if ramp_cycles > 0:
        ramp_t = ramp_cycles / frequency_hz
        ramp = np.where(t < ramp_t, 0.5 * (1 - np.cos(np.pi * np.minimum(t / ramp_t, 1.0))), 1.0)
        signal *= ramp
    return signal


class StreamingPressureSource:
    """An additive k-space pressure source evaluated per step (weights · s(t)), never an (n_src, Nt) matrix.

    Reproduces ``kspace_solver._build_source_op(..., mode="additive")`` and the scaling of
    ``Simulation._setup_source_operators``: ``rho_i += F⁻¹[source_kappa · F[w·s(t)·2dt/(ndim·c0·d_i)]]``.
    k-wave-python would store the source as a (points × time steps) array (GBs on a head grid).
    """

    def __init__(self, sim, weights, signal) -> None:
        """``weights``/``signal``: one grid and its drive, or lists of them (``source_terms``), summed."""
        xp = sim.xp
        weights, signal = as_terms(weights, signal)
        flats = [np.asarray(w, dtype=np.float64).ravel(order="C") for w in weights]  # the solver's mask order
        idx = np.flatnonzero(np.any(np.stack(flats) != 0, axis=0))
        self._idx = xp.asarray(idx)
        c0_src = sim.c0.ravel()[self._idx]
        base = [xp.asarray(f[idx], dtype=sim._dtype) * (2 * sim.dt / (sim.ndim * c0_src)) for f in flats]
        self._scaled = [(b / float(sim.spacing[0])).astype(sim._dtype) for b in base]  # per term, 1/d_0
        self._signals = [np.asarray(sg, dtype=np.float64) for sg in signal]
        self._signal = self._signals[0]
        self._buf = xp.zeros(int(np.prod(sim.grid_shape)), dtype=sim._dtype)
        self._sim = sim
        self._cache_t = -1
        self._cache = None

    @property
    def n_points(self) -> int:
        return int(self._idx.size)

    def op(self, axis: int):
        def apply(t: int, field):
            if t >= self._signal.size:
                return field
            if self._cache_t != t:  # the k-space filtered source is the same up to 1/d_i on every axis
                sim = self._sim
                self._buf[:] = 0
                values = self._scaled[0] * self._signals[0][t]
                for scaled, sg in zip(self._scaled[1:], self._signals[1:]):
                    values = values + scaled * sg[t]
                self._buf[self._idx] = values
                self._cache = sim._diff(self._buf.reshape(sim.grid_shape), sim.source_kappa)
                self._cache_t = t
            ratio = float(self._sim.spacing[0]) / float(self._sim.spacing[axis])
            return field + (self._cache if ratio == 1.0 else self._cache * ratio)
        return apply
