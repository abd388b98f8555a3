"""``simulate``: CT + placement → steady-state pressure on the window grid, with a JSON summary.

Flow: load the CT → plan the window (fails fast on bad geometry) → points-per-wavelength and memory
checks (before allocating) → resample the CT onto the window → HU → medium → bowl source → the streaming
solver (``sim.solver``; or the k-Wave C++ binary via ``--kwave-binary``) → field statistics.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tfus.sim.config import SimConfig
from tfus.sim.fieldstats import field_summary
from tfus.sim.ingest import Volume, load_volume
from tfus.sim.memory import check_memory, estimate_memory_bytes
from tfus.sim.window import Window, make_window, plan_window, transducer_encoding

log = logging.getLogger(__name__)


@dataclass(eq=False)
class SimResult:
    """``pressure_pa``/``phase_rad`` (X, Y, Z) float32 on ``window``'s grid; ``summary`` JSON-serialisable."""

    pressure_pa: np.ndarray
    phase_rad: np.ndarray
    window: Window
    summary: dict = field(default_factory=dict)


def _check_config(config, device: str) -> None:
    if not isinstance(config, SimConfig):
        raise ValueError(f"`config` must be a sim.config.SimConfig, got {type(config).__name__}")
    if device not in ("cpu", "gpu"):
        raise ValueError(f"`device` must be 'cpu' or 'gpu', got {device!r}")


def validate_config(config: SimConfig) -> None:
    """Refuse, before any CT is read, what no CT can rescue: < 3 points per wavelength in the slowest medium."""
    from tfus.sim.solver import check_points_per_wavelength  # noqa: PLC0415

    c_min = min(config.medium.water_sound_speed_m_s, config.medium.sound_speed_min_m_s)
    check_points_per_wavelength(c_min, config.spacing_mm * 1e-3, config.transducer.frequency_hz, warn=False)


def simulate(ct: Volume | str | os.PathLike, position_mm, target_mm, config: SimConfig, progress: bool = True,
             device: str = "cpu", crop_mm=None, kwave_binary: str | os.PathLike | None = None) -> SimResult:
    """Steady-state field of the bowl at ``position_mm`` aimed at ``target_mm`` (world mm) through ``ct``.

    Raises ``FileNotFoundError``/``ValueError`` (one line) for a missing/unreadable CT, NaN voxels, a
    transducer outside the CT or not fitting the window, target == position, < 3 points per wavelength,
    or a grid whose estimated memory exceeds the available RAM.
    """
    _check_config(config, device)
    source = None if isinstance(ct, Volume) else str(ct)
    volume = ct if isinstance(ct, Volume) else load_volume(ct)
    validate_config(config)
    shape = tuple(config.window_shape) if config.grid == "subject" else \
        plan_window(volume, position_mm, target_mm, config, crop_mm, source)[1]  # the subject grid: make_window's
    check_memory(estimate_memory_bytes(config, shape, device=device), what=f"simulation grid {tuple(shape)}")
    window = make_window(volume, position_mm, target_mm, config, crop_mm=crop_mm)
    inputs = {"ct": source or "<in-memory Volume>", "position_mm": [float(x) for x in position_mm],
              "target_mm": [float(x) for x in target_mm], "crop_mm": _jsonable(crop_mm), "device": device,
              "kwave_binary": str(kwave_binary) if kwave_binary else None}
    return simulate_window(window, config, inputs, progress=progress, device=device, kwave_binary=kwave_binary)


def simulate_free_field(position_mm, target_mm, config: SimConfig, window_affine, shape=None,
                        progress: bool = True, device: str = "cpu") -> SimResult:
    """The same transducer on the same grid in water (HU 0 everywhere)."""
    from tfus.sim.transducer import Bowl  # noqa: PLC0415

    _check_config(config, device)
    shape = tuple(int(n) for n in (shape if shape is not None else config.window_shape or ()))
    if len(shape) != 3:
        raise ValueError("`shape` is required when `config.window_shape` is None")
    validate_config(config)
    check_memory(estimate_memory_bytes(config, shape, device=device), what=f"simulation grid {shape}")
    bowl = Bowl.from_config(position_mm, target_mm, config.transducer)
    affine = np.asarray(window_affine, dtype=np.float64)
    points, drive = transducer_encoding(bowl, config.transducer, int(config.n_transducer_points), affine)
    window = Window(np.zeros(shape, np.float32), affine, points, bowl, drive)
    inputs = {"ct": "<water: HU 0 everywhere>", "position_mm": [float(x) for x in position_mm],
              "target_mm": [float(x) for x in target_mm], "crop_mm": None, "device": device,
              "kwave_binary": None}
    return simulate_window(window, config, inputs, progress=progress, device=device)


def simulate_window(window: Window, config: SimConfig, inputs: dict, progress: bool = True, device: str = "cpu",
                    kwave_binary=None) -> SimResult:
    """Run the solver on a prepared :class:`Window` (its ``bowl`` must be set)."""
    from tfus.sim.medium import hu_to_medium  # noqa: PLC0415
    from tfus.sim.solver import MediumArrays  # noqa: PLC0415
    from tfus.sim.source import BowlSource  # noqa: PLC0415

    if window.bowl is None:
        raise ValueError("`window.bowl` is required to place the source")
    t0 = time.perf_counter()
    tr = config.transducer
    med = hu_to_medium(window.ct_hu, config.medium, tr.frequency_hz)
    medium = MediumArrays(med.sound_speed_m_s, med.density_kg_m3, med.alpha_coeff_db_mhz_y_cm, med.alpha_power)
    bowl = BowlSource(tuple(window.world_to_voxel(window.bowl.apex_mm)),
                      tuple(window.world_to_voxel(window.bowl.focus_mm)), tr.roc_mm * 1e-3, tr.aperture_mm * 1e-3,
                      tuple((a * 1e-3, b * 1e-3) for a, b in tr.rings_mm), tr.ring_drive())
    spacing_m = window.spacing_mm * 1e-3
    if kwave_binary and tr.is_array:
        raise ValueError("`--kwave-binary` supports single bowls only; an annular array runs on the tfus or "
                         "kwave engines")
    if kwave_binary:
        from tfus.sim.solver_cpp import solve_steady_state_cpp  # noqa: PLC0415
        state = solve_steady_state_cpp(medium, bowl, tr.frequency_hz, tr.amplitude_pa, spacing_m, config,
                                       binary=kwave_binary, device=device)
    else:
        from tfus.sim.solver import solve_steady_state  # noqa: PLC0415
        state = solve_steady_state(medium, bowl, tr.frequency_hz, tr.amplitude_pa, spacing_m, config,
                                   device=device, progress=progress)
    summary = _summary(state, window, config, inputs, med.min_sound_speed_m_s, time.perf_counter() - t0)
    return SimResult(state.amplitude_pa, state.phase_rad, window, summary)


def _summary(state, window: Window, config: SimConfig, inputs: dict, c_min: float, runtime_s: float) -> dict:
    skull = window.ct_hu > config.medium.skull_threshold_hu
    stats = field_summary(state.amplitude_pa, window.affine, window.bowl, config.transducer.frequency_hz, skull)
    geometric_focus = np.asarray(window.bowl.focus_mm)
    return {
        **stats,
        "focus_offset_from_geometric_mm": float(np.linalg.norm(np.subtract(stats["focal_point_mm"],
                                                                           geometric_focus))),
        "geometric_focus_mm": [float(x) for x in geometric_focus],
        "convergence": float(state.convergence),
        "time_steps": int(state.info.get("steps_run", state.time.n_steps)),  # steps run
        "time_steps_cap": int(state.time.n_steps),  # the fixed length (slowest transit + cycles + 2 windows)
        "time_steps_saved": int(state.info.get("steps_saved", 0)),  # by the steady-state detection
        "steady_change": _finite(state.info.get("steady_change")),  # last window-to-window change beyond the bowl
        "dt_s": float(state.time.dt),
        "points_per_period": int(state.time.points_per_period),
        "cfl": float(state.time.cfl_actual),
        "points_per_wavelength_min": float(c_min / config.transducer.frequency_hz / (window.spacing_mm * 1e-3)),
        "runtime_s": float(runtime_s),
        "solver_seconds_per_step": float(state.seconds_per_step),
        "n_source_points": int(state.n_source_points),
        "grid_shape": list(window.shape),
        "spacing_mm": float(window.spacing_mm),
        "coupling_medium": window.coupling,
        "affine": np.asarray(window.affine).tolist(),
        "solver": state.info.get("solver", "kwave-python kspace_solver.Simulation (streaming lock-in)"),
        "engine": state.info.get("engine", "kwave-binary"),  # "tfus" | "kwave" (sim.solver); else the C++ binary
        **_transducer_summary(window, config),
        "inputs": inputs,
        "config": config.to_dict(),
        "config_key": config.key(),
    }


def _transducer_summary(window: Window, config: SimConfig) -> dict:
    """Name, exit plane and (arrays) the requested focus and ring phases, world mm / rad."""
    from tfus.sim.transducers import exit_plane_depth_mm  # noqa: PLC0415

    tr, bowl = config.transducer, window.bowl
    exit_plane = np.asarray(bowl.apex_mm) + exit_plane_depth_mm(tr.roc_mm, tr.aperture_mm,
                                                                tr.exit_plane_to_focus_mm) * bowl.axis
    out = {"transducer": tr.name, "exit_plane_mm": [float(x) for x in exit_plane]}
    if tr.is_array:
        requested = exit_plane + tr.focal_distance_mm * bowl.axis if tr.focal_distance_mm is not None else None
        out.update(ring_phases_rad=[float(x) for x in tr.ring_phases()],
                   focal_distance_mm=tr.focal_distance_mm,
                   requested_focus_mm=None if requested is None else [float(x) for x in requested])
    return out


def _finite(value):
    """A float for JSON, None when absent or not finite (JSON has no inf)."""
    return float(value) if value is not None and np.isfinite(value) else None


def _jsonable(value):
    if value is None:
        return None
    arr = np.atleast_1d(np.asarray(value, dtype=float))
    return [float(x) for x in arr]


def write_simulation(result: SimResult, out_dir: str | os.PathLike) -> Path:
    """Write ``pressure.nii.gz``, ``ct.nii.gz``, ``summary.json``, ``preview.png`` into ``out_dir``.

    Everything goes to a temporary sibling directory first, renamed into place at the end: a failed run
    leaves no complete-looking ``out_dir``. An existing ``out_dir`` is replaced only after success.
    """
    from tfus.sim.output import write_outputs  # noqa: PLC0415

    return write_outputs(result, Path(out_dir))

