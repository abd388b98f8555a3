"""Optional path: the same steady-state problem on a user-supplied k-Wave C++/CUDA executable.

Never downloaded: the user passes ``--kwave-binary PATH``. k-wave-python's ``CppSimulation`` writes the
HDF5 input; we run the binary ourselves with ``-s`` (record start, 1-based) so that only the last two
lock-in windows of pressure are recorded on the box, then do the same lock-in as the Python path.

Differences from the Python backend handled here (k-wave-python 0.6.2 does not for this entry point):
* the C++ code expects the *scaled* additive source (MATLAB's ``scaleSourceTerms``: ``p·2·dt/(N·c0·dx)``);
* masks and source rows are in Fortran (column-major) order, as in MATLAB.
UNTESTED here: no k-Wave binary is available on the development machine (see docs/VALIDATION.md).
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from tfus.sim.config import SimConfig
from tfus.sim.solver import (MediumArrays, SteadyState, _pad, absorbing_dt_limit, check_points_per_wavelength,
                        make_time_axis, padded_layout)
from tfus.sim.source import BowlSource, bowl_grid_weights, drive_signal

log = logging.getLogger(__name__)


def _inputs(medium: MediumArrays, bowl: BowlSource, frequency_hz, amplitude_pa, spacing_m, config, taxis):
    from tfus.sim.kwave_import import kwave_modules  # noqa: PLC0415

    kw = kwave_modules()
    from kwave.kmedium import kWaveMedium  # noqa: PLC0415
    from kwave.ksensor import kSensor  # noqa: PLC0415
    from kwave.ksource import kSource  # noqa: PLC0415

    shape = np.shape(medium.sound_speed)
    padded, left = padded_layout(shape, config.pml_size)
    c = _pad(medium.sound_speed, padded, left, np.float32)
    kmedium = kWaveMedium(sound_speed=c, density=_pad(medium.density, padded, left, np.float32))
    if medium.alpha_coeff is not None and np.any(medium.alpha_coeff > 0):
        kmedium.alpha_coeff = _pad(medium.alpha_coeff, padded, left, np.float32)
        kmedium.alpha_power = float(medium.alpha_power)
        kmedium.alpha_mode = "no_dispersion"
    kgrid = kw.kgrid(list(padded), [spacing_m] * 3)
    kgrid.setTime(taxis.n_steps, taxis.dt)
    weights = bowl_grid_weights(bowl, padded, config.pml_size, spacing_m)
    idx_f = np.flatnonzero(weights.ravel(order="F"))  # MATLAB order of the mask points
    w = weights.ravel(order="F")[idx_f]
    c_src = c.ravel(order="F")[idx_f].astype(np.float64)
    signal = drive_signal(taxis.n_steps, taxis.dt, frequency_hz, amplitude_pa, config.ramp_cycles)
    scale = w * 2 * taxis.dt / (3 * c_src * spacing_m)
    source = kSource()
    source.p_mask = weights != 0
    source.p = (scale[:, None] * signal[None, :]).astype(np.float32)
    source.p_mode = "additive"
    box = np.zeros(padded, bool)
    box[tuple(slice(lo, lo + n) for lo, n in zip(left, shape))] = True
    sensor = kSensor(mask=box)
    return kgrid, kmedium, source, sensor, padded, left


def solve_steady_state_cpp(medium: MediumArrays, bowl: BowlSource, frequency_hz: float, amplitude_pa: float,
                           spacing_m: float, config: SimConfig, binary, device: str = "cpu") -> SteadyState:
    """Run the k-Wave executable ``binary`` and return the lock-in amplitude/phase on the box."""
    binary = Path(binary)
    if not binary.is_file() or not os.access(binary, os.X_OK):
        raise FileNotFoundError(f"--kwave-binary {binary}: not an executable file")
    from tfus.sim.kwave_import import kwave_modules  # noqa: PLC0415

    kwave_modules()
    from kwave.solvers.cpp_simulation import CppSimulation  # noqa: PLC0415

    c_min, c_max = float(np.min(medium.sound_speed)), float(np.max(medium.sound_speed))
    check_points_per_wavelength(c_min, spacing_m, frequency_hz)
    shape = tuple(int(n) for n in np.shape(medium.sound_speed))
    taxis = make_time_axis(shape, spacing_m, c_min, c_max, frequency_hz, config,
                           dt_limit=absorbing_dt_limit(medium, spacing_m))
    kgrid, kmedium, source, sensor, padded, left = _inputs(medium, bowl, frequency_hz, amplitude_pa, spacing_m,
                                                           config, taxis)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tfus-kwave-") as tmp:
        sim = CppSimulation(kgrid, kmedium, source, sensor, pml_size=(config.pml_size,) * 3,
                            pml_alpha=(config.pml_alpha,) * 3)
        inp, outp = sim.prepare(data_path=tmp)
        start = taxis.n_steps - 2 * taxis.window_steps + 1  # 1-based first recorded step
        cmd = [str(binary), "-i", inp, "-o", outp, "-s", str(start), "--verbose", "0"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ValueError(f"--kwave-binary {binary} failed (exit {proc.returncode}): {tail[0]}")
        result = sim._fix_output_order(sim._parse_output(outp))
    p = np.asarray(result["p"], dtype=np.float64)  # (box points in C order, 2 windows)
    runtime = time.perf_counter() - t0
    return _lockin_from_series(p, shape, taxis, runtime, int(np.count_nonzero(source.p_mask)))


def _lockin_from_series(p: np.ndarray, shape, taxis, runtime_s: float, n_points: int) -> SteadyState:
    n0 = taxis.n_steps - 2 * taxis.window_steps  # 0-based step index of the first recorded sample
    k = (n0 + np.arange(p.shape[1])) % taxis.points_per_period
    phase = np.exp(-2j * np.pi * k / taxis.points_per_period)
    w = taxis.window_steps
    prev = (2.0 / w) * (p[:, :w] @ phase[:w])
    last = (2.0 / w) * (p[:, w:2 * w] @ phase[w:2 * w])
    conv = float(np.linalg.norm(np.abs(last) - np.abs(prev)) / max(np.linalg.norm(np.abs(last)), 1e-30))
    return SteadyState(amplitude_pa=np.abs(last).reshape(shape).astype(np.float32),
                       phase_rad=np.angle(last).reshape(shape).astype(np.float32), convergence=conv,
                       time=taxis, runtime_s=runtime_s, seconds_per_step=runtime_s / taxis.n_steps,
                       n_source_points=n_points, info={"solver": "k-Wave C++ binary (lock-in on -s window)"})
