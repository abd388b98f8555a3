"""Streaming steady-state driver: k-wave-python's scheme stepped by ``sim.engine`` (default, "tfus") or by
k-wave-python's Python backend itself (``kspace_solver.Simulation``, "kwave").

Why not ``kspaceFirstOrder(..., sensor.record=["p_max"])``: the Python backend stores the whole time series
of every sensor point (grid × Nt floats) and the source as a (points × Nt) matrix. Here we step the solver
ourselves and keep only a lock-in sum: over windows of ``lockin_periods`` whole drive periods,
``Σ p·cos(ωt)`` and ``Σ p·sin(ωt)`` give the complex amplitude ``a = (2/N)·Σ p·e^{−iωt}`` of the
steady state (``sim.lockin``); the run stops once |a| changes by less than ``steady_tol`` between two
windows beyond the bowl, at the latest after the fixed length below. The relative change between the last
two windows over the whole box is the reported convergence.

Time axis: ``dt = 1/(PPP·f)`` with an integer number of points per period ``PPP = ceil(c_max/(cfl·dx·f))``
(so each window is exactly whole periods and the CFL number stays ≤ ``cfl``); run length = slowest transit
across the box (diagonal / c_min) + ``ramp_cycles`` + ``extra_cycles`` periods, then the two windows
(the cap of an early-stopped run).
The PML lies *outside* the requested box: the medium is edge-padded by ``pml_size`` cells per side and the
result is cropped back, so the returned field covers the whole box.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from tfus.sim.config import SimConfig
from tfus.sim.engine import db_to_neper
from tfus.sim.lockin import LockIn, LockInPlan, focus_region, lockin_plan
from tfus.sim.source import BowlSource, StreamingPressureSource, source_terms

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MediumArrays:
    """Acoustic properties on the box (X, Y, Z), SI; ``alpha_coeff`` in dB/(MHz^y cm), None = lossless."""

    sound_speed: np.ndarray
    density: np.ndarray
    alpha_coeff: np.ndarray | None = None
    alpha_power: float = 2.0

    def __post_init__(self) -> None:
        shape = np.shape(self.sound_speed)
        if len(shape) != 3:
            raise ValueError(f"`sound_speed` must be a 3D array, got shape {shape}")
        for name in ("density", "alpha_coeff"):
            arr = getattr(self, name)
            if arr is not None and np.shape(arr) != shape:
                raise ValueError(f"`{name}` shape {np.shape(arr)} differs from `sound_speed` {shape}")
        for name in ("sound_speed", "density", "alpha_coeff"):
            arr = getattr(self, name)
            if arr is not None and not np.isfinite(arr).all():
                raise ValueError(f"`{name}` contains NaN or inf values")
        if np.min(self.sound_speed) <= 0 or np.min(self.density) <= 0:
            raise ValueError("`sound_speed` and `density` must be > 0 everywhere")

    @classmethod
    def water(cls, shape, sound_speed=1500.0, density=1000.0) -> "MediumArrays":
        return cls(np.full(shape, sound_speed, np.float32), np.full(shape, density, np.float32))


@dataclass(frozen=True)
class TimeAxis:
    dt: float
    points_per_period: int
    n_steps: int
    window_steps: int          # steps in one lock-in window
    cfl_actual: float


@dataclass
class SteadyState:
    amplitude_pa: np.ndarray   # (X, Y, Z) float32, steady-state pressure amplitude on the box
    phase_rad: np.ndarray      # (X, Y, Z) float32
    convergence: float         # ‖A_last − A_prev‖ / ‖A_last‖
    time: TimeAxis
    runtime_s: float
    seconds_per_step: float
    n_source_points: int
    info: dict = field(default_factory=dict)


STABILITY_SAFETY = 0.9  # fraction of k-Wave's absorbing stability limit actually used


def absorbing_dt_limit(medium: MediumArrays, spacing_m: float) -> float:
    """k-Wave's stability limit on dt with absorption (``kwave.utils.checks.check_stability``, no dispersion).

    Without absorption the k-space scheme with c_ref = c_max is unconditionally stable (returns inf). With
    the Stokes/power-law absorption term it is not: e.g. bone at 28 dB/(MHz² cm) on a 1.5 mm grid needs
    dt < 1.9e-7 s although CFL 0.5 would allow 2.4e-7 s (measured: the field blew up to 20 GPa).
    """
    if medium.alpha_coeff is None or not np.any(medium.alpha_coeff > 0):
        return math.inf
    y = float(medium.alpha_power)
    alpha_np = db_to_neper(np.asarray(medium.alpha_coeff, np.float64), y)
    tau_min = float(np.min(-2.0 * alpha_np * np.asarray(medium.sound_speed, np.float64) ** (y - 1.0)))
    c_max = float(np.max(medium.sound_speed))
    k_max = math.sqrt(3.0) * math.pi / spacing_m
    dt = 2.0 / (k_max * c_max)
    for _ in range(200):  # fixed point of k-Wave's criterion (converges in a few iterations)
        kappa = float(np.sinc(c_max * k_max * dt / 2.0 / np.pi))
        t2 = c_max * tau_min * kappa * k_max ** (y - 1.0)
        new = (t2 + math.sqrt(t2 * t2 + 4.0)) / (k_max * kappa * c_max)
        if abs(new - dt) < 1e-15:
            break
        dt = new
    return dt


def make_time_axis(shape, spacing_m: float, c_min: float, c_max: float, frequency_hz: float,
                   config: SimConfig, dt_limit: float = math.inf) -> TimeAxis:
    ppp = int(math.ceil(c_max / (config.cfl * spacing_m * frequency_hz)))
    if math.isfinite(dt_limit):
        ppp_stable = int(math.ceil(1.0 / (frequency_hz * STABILITY_SAFETY * dt_limit)))
        if ppp_stable > ppp:
            log.info("absorption limits the time step: %d instead of %d points per period", ppp_stable, ppp)
            ppp = ppp_stable
    dt = 1.0 / (ppp * frequency_hz)
    diagonal_m = spacing_m * math.sqrt(sum(int(n) ** 2 for n in shape))
    settle_periods = math.ceil(diagonal_m / c_min * frequency_hz + config.ramp_cycles + config.extra_cycles)
    window = int(config.lockin_periods) * ppp
    n_steps = settle_periods * ppp + 2 * window
    return TimeAxis(dt=dt, points_per_period=ppp, n_steps=n_steps, window_steps=window,
                    cfl_actual=c_max * dt / spacing_m)


def check_points_per_wavelength(c_min: float, spacing_m: float, frequency_hz: float, warn: bool = True) -> float:
    """Refuse < 3 points per wavelength in the slowest medium, warn < 6."""
    ppw = c_min / frequency_hz / spacing_m
    if ppw < 3:
        raise ValueError(f"spacing {spacing_m * 1e3:.3g} mm gives {ppw:.2f} points per wavelength at "
                         f"{frequency_hz / 1e3:.0f} kHz in {c_min:.0f} m/s: need >= 3 (use a smaller "
                         "--spacing-mm or a larger --ppw)")
    if ppw < 6 and warn:
        log.warning("%.2f points per wavelength in the slowest medium (< 6): expect a few %% error", ppw)
    return ppw


def _fft_friendly(n: int) -> int:
    """Smallest m >= n whose prime factors are 2, 3, 5, 7 (FFT sizes with a large prime are slow)."""
    m = n
    while True:
        r = m
        for p in (2, 3, 5, 7):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def padded_layout(shape, pml_size: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(padded shape, left pad per axis): PML of ``pml_size`` cells outside the box on both sides, plus a
    few extra interior cells on the high side so every axis length is FFT-friendly."""
    padded = tuple(_fft_friendly(int(n) + 2 * pml_size) for n in shape)
    return padded, (pml_size,) * len(shape)


def _pad(arr: np.ndarray, padded_shape, left, dtype) -> np.ndarray:
    widths = [(lo, n_pad - n - lo) for n, n_pad, lo in zip(np.shape(arr), padded_shape, left)]
    return np.pad(np.asarray(arr, dtype=dtype), widths, mode="edge")


def _build_simulation(medium: MediumArrays, time_axis: TimeAxis, spacing_m: float, config: SimConfig,
                      device: str):
    from tfus.sim.kwave_import import kwave_modules  # noqa: PLC0415

    kw = kwave_modules()
    from kwave.kmedium import kWaveMedium  # noqa: PLC0415
    from kwave.ksensor import kSensor  # noqa: PLC0415
    from kwave.ksource import kSource  # noqa: PLC0415

    pml, dtype = config.pml_size, np.dtype(config.dtype).type
    padded, left = padded_layout(np.shape(medium.sound_speed), pml)
    c = _pad(medium.sound_speed, padded, left, dtype)
    kmedium = kWaveMedium(sound_speed=c, density=_pad(medium.density, padded, left, dtype))
    if medium.alpha_coeff is not None and np.any(medium.alpha_coeff > 0):
        kmedium.alpha_coeff = _pad(medium.alpha_coeff, padded, left, dtype)
        kmedium.alpha_power = float(medium.alpha_power)
        kmedium.alpha_mode = "no_dispersion"  # keep the tabulated bone sound speed (ITRUSST used y = 2)
    kgrid = kw.kgrid(list(c.shape), [spacing_m] * 3)
    kgrid.setTime(time_axis.n_steps, time_axis.dt)
    sensor = kSensor()
    sensor.record = ["p_final"]  # nothing per step: no time series is allocated
    sim = kw.solver.Simulation(kgrid, kmedium, kSource(), sensor, device=device, pml_size=(pml,) * 3,
                               pml_alpha=(config.pml_alpha,) * 3, quiet=True, dtype=dtype)
    sim.setup()
    return sim


ENGINES = ("tfus", "kwave")
ENGINE_NAMES = {"tfus": "tfus sim.engine.KSpaceEngine (k-wave-python's scheme; streaming lock-in)",
                "kwave": "kwave-python kspace_solver.Simulation (streaming lock-in)"}


def _build_engine(medium: MediumArrays, time_axis: TimeAxis, spacing_m: float, config: SimConfig, device: str,
                  weights: np.ndarray, signal: np.ndarray, fft_workers: int | None):
    """``sim.engine.KSpaceEngine`` on the same padded grid as :func:`_build_simulation`."""
    from tfus.sim.engine import EngineConfig, KSpaceEngine  # noqa: PLC0415

    pml, dtype = config.pml_size, np.dtype(config.dtype).type
    padded, left = padded_layout(np.shape(medium.sound_speed), pml)
    absorbing = medium.alpha_coeff is not None and np.any(medium.alpha_coeff > 0)
    alpha = _pad(medium.alpha_coeff, padded, left, dtype) if absorbing else None
    cfg = EngineConfig(spacing_m=spacing_m, dt_s=time_axis.dt, pml_size=pml, pml_alpha=config.pml_alpha,
                       dtype=config.dtype, device=device, fft_workers=fft_workers)
    return KSpaceEngine(_pad(medium.sound_speed, padded, left, dtype), _pad(medium.density, padded, left, dtype),
                        alpha, float(medium.alpha_power), weights, signal, cfg)


def _build_stepper(engine: str, medium: MediumArrays, taxis: TimeAxis, spacing_m: float, config: SimConfig,
                   device: str, weights: np.ndarray, signal: np.ndarray, fft_workers: int | None):
    """(object with ``step()``/``p``/``xp``, number of source points, info) for ``engine``."""
    if engine == "tfus":
        sim = _build_engine(medium, taxis, spacing_m, config, device, weights, signal, fft_workers)
        return sim, sim.n_source_points, {"fft_backend": sim.fft.backend, "fft_workers": sim.fft_workers}
    sim = _build_simulation(medium, taxis, spacing_m, config, device)
    source = StreamingPressureSource(sim, weights, signal)
    sim._source_p_ops = [source.op(axis) for axis in range(3)]
    return sim, source.n_points, {}


def solve_steady_state(medium: MediumArrays, bowl: BowlSource, frequency_hz: float, amplitude_pa: float,
                       spacing_m: float, config: SimConfig, device: str = "cpu", progress: bool = True,
                       engine: str | None = None, fft_workers: int | None = None) -> SteadyState:
    """Run the time loop to steady state and return the lock-in amplitude/phase on the box.

    ``engine``: "tfus" (``sim.engine``, the fast re-implementation) or "kwave" (k-wave-python's own
    ``Simulation.step``); None = ``config.engine``. ``fft_workers``: CPU threads per transform of the
    "tfus" engine (None: ``sim.engine.default_fft_workers()``; 1 in a one-thread Dask worker).
    """
    if device not in ("cpu", "gpu"):
        raise ValueError(f"`device` must be 'cpu' or 'gpu', got {device!r}")
    engine = config.engine if engine is None else engine
    if engine not in ENGINES:
        raise ValueError(f"`engine` must be one of {', '.join(ENGINES)}, got {engine!r}")
    c_min, c_max = float(np.min(medium.sound_speed)), float(np.max(medium.sound_speed))
    check_points_per_wavelength(c_min, spacing_m, frequency_hz)
    shape = tuple(int(n) for n in np.shape(medium.sound_speed))
    taxis = make_time_axis(shape, spacing_m, c_min, c_max, frequency_hz, config,
                           dt_limit=absorbing_dt_limit(medium, spacing_m))
    padded, _ = padded_layout(shape, config.pml_size)
    terms = source_terms(bowl, padded, config.pml_size, spacing_m, taxis.n_steps, taxis.dt, frequency_hz,
                         amplitude_pa, config.ramp_cycles)
    weights, signal = [w for w, _ in terms], [s for _, s in terms]
    del terms
    t0 = time.perf_counter()
    sim, n_points, info = _build_stepper(engine, medium, taxis, spacing_m, config, device, weights, signal,
                                         fft_workers)
    del weights
    setup_s = time.perf_counter() - t0
    plan = lockin_plan(taxis.n_steps, taxis.window_steps, taxis.points_per_period, config.ramp_cycles,
                       config.steady_tol)
    region = focus_region(shape, bowl.apex_vox, bowl.focus_vox, bowl.roc_m, bowl.diameter_m, spacing_m)
    lockin, loop_s, steps = _time_loop(sim, taxis, config.pml_size, shape, progress, np.dtype(config.dtype),
                                       plan, region)
    state = _finish(lockin.windows(), taxis, setup_s, loop_s, n_points, sim, steps)
    state.info.update(engine=engine, solver=ENGINE_NAMES[engine], steps_run=steps,
                      steps_saved=taxis.n_steps - steps, steady_change=lockin.last_change,
                      window_changes=list(lockin.changes),
                      steady_tol=config.steady_tol, **info)
    return state


def _time_loop(sim, taxis: TimeAxis, pml: int, box: tuple[int, int, int], progress: bool, dtype=np.float32,
               plan: LockInPlan | None = None, region: np.ndarray | None = None):
    """Step the solver until steady (``plan.tol``) or ``taxis.n_steps``; lock-in per window (``sim.lockin``).

    Returns (lock-in, loop seconds, steps run); ``lockin.windows()`` = [(re, im) previous, (re, im) last].
    """
    from tqdm import tqdm  # noqa: PLC0415

    plan = plan or lockin_plan(taxis.n_steps, taxis.window_steps, taxis.points_per_period, 0.0, 0.0)
    lockin = LockIn(sim.xp, box, dtype, plan, region, getattr(sim, "fused", None))
    crop = tuple(slice(pml, pml + n) for n in box)
    t0, n = time.perf_counter(), -1
    with tqdm(total=taxis.n_steps, desc="k-Wave steady state", unit="step", disable=not progress,
              leave=False) as bar:
        for n in range(taxis.n_steps):
            sim.step()
            bar.update(1)
            if lockin.add(n, sim.p[crop]):  # sim.p after step n is the field at time n·dt
                break
    return lockin, time.perf_counter() - t0, n + 1


def _finish(windows, taxis: TimeAxis, setup_s: float, loop_s: float, n_points: int, sim,
            steps: int | None = None) -> SteadyState:
    to_cpu = (lambda a: a.get()) if hasattr(sim.xp, "asnumpy") else np.asarray
    scale = 2.0 / taxis.window_steps
    amps = []
    for re, im in windows:
        a = scale * (to_cpu(re).astype(np.float64) - 1j * to_cpu(im).astype(np.float64))
        amps.append(a)
    prev, last = np.abs(amps[0]), np.abs(amps[1])
    norm = float(np.linalg.norm(last))
    convergence = float(np.linalg.norm(last - prev) / norm) if norm > 0 else float("inf")
    return SteadyState(amplitude_pa=last.astype(np.float32), phase_rad=np.angle(amps[1]).astype(np.float32),
                       convergence=convergence, time=taxis, runtime_s=setup_s + loop_s,
                       seconds_per_step=loop_s / max(taxis.n_steps if steps is None else steps, 1),
                       n_source_points=n_points,
                       info={"setup_s": setup_s, "loop_s": loop_s})
