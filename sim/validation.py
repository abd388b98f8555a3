"""Validation of the solver against O'Neil's analytic on-axis field of a bowl in water.

``run_oneil_validation(out_dir, case)`` runs the streaming solver on a water box with the bowl's axis along
x, compares the on-axis amplitude with :func:`sim.oneil.oneil_on_axis` and writes ``oneil_water.json`` and
``oneil_water.png``. Acceptance (issue 2): peak within 5 %, axial peak position within one grid spacing,
on-axis relative L2 < 10 % (over z from the rim plane + λ/2 to the end of the box).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfus.sim.config import SimConfig
from tfus.sim.oneil import oneil_on_axis

C_WATER, RHO_WATER = 1500.0, 1000.0


@dataclass(frozen=True)
class WaterBowlCase:
    frequency_hz: float
    spacing_m: float
    roc_m: float
    aperture_m: float
    cfl: float
    pml_size: int
    beyond_focus_m: float = 16e-3   # box length past the geometric focus
    lateral_margin_m: float = 8e-3  # box width = aperture + margin
    amplitude_pa: float = 60e3
    apex_index: float = 2.0

    def shape(self) -> tuple[int, int, int]:
        nx = int(np.ceil((self.roc_m + self.beyond_focus_m) / self.spacing_m)) + int(self.apex_index) + 2
        nl = int(np.ceil((self.aperture_m + self.lateral_margin_m) / self.spacing_m))
        nl += nl % 2
        return nx, nl, nl

    def bowl(self):
        """The bowl on the box's x axis (apex at ``apex_index``, centred laterally), box voxel coordinates."""
        from tfus.sim.source import BowlSource  # noqa: PLC0415

        c = self.shape()[1] / 2
        return BowlSource((self.apex_index, c, c), (self.apex_index + self.roc_m / self.spacing_m, c, c),
                          self.roc_m, self.aperture_m)

    def config(self) -> SimConfig:
        return SimConfig(cfl=self.cfl, pml_size=self.pml_size, extra_cycles=4.0, lockin_periods=2,
                         ramp_cycles=2.0, preset="validation")


CASES = {
    # F-number 1, 400 kHz, 5 points per wavelength (λ 3.75 mm), CFL 0.3: the documented figure.
    "default": WaterBowlCase(400e3, 0.75e-3, 30e-3, 30e-3, cfl=0.3, pml_size=10),
    # The same geometry in 5 PPW at 300 kHz, CFL 0.5: ~4x cheaper, used by the default test suite.
    "small": WaterBowlCase(300e3, 1.0e-3, 30e-3, 30e-3, cfl=0.5, pml_size=8),
}


def water_bowl_field(case: WaterBowlCase, device: str = "cpu", progress: bool = False):
    """Run the solver for ``case``; returns the :class:`sim.solver.SteadyState` (axis along x)."""
    from tfus.sim.solver import MediumArrays, solve_steady_state  # noqa: PLC0415

    return solve_steady_state(MediumArrays.water(case.shape(), C_WATER, RHO_WATER), case.bowl(), case.frequency_hz,
                              case.amplitude_pa, case.spacing_m, case.config(), device=device, progress=progress)


def compare_on_axis(amplitude: np.ndarray, case: WaterBowlCase) -> dict:
    """Metrics of the on-axis profile of ``amplitude`` against O'Neil (see module docstring)."""
    c = amplitude.shape[1] // 2
    sim_axis = amplitude[:, c, c].astype(np.float64)
    z = (np.arange(amplitude.shape[0]) - case.apex_index) * case.spacing_m
    ref = oneil_on_axis(z, case.roc_m, case.aperture_m, case.frequency_hz, case.amplitude_pa, C_WATER, RHO_WATER)
    a = case.aperture_m / 2
    depth = case.roc_m - np.sqrt(case.roc_m**2 - a**2)
    wavelength = C_WATER / case.frequency_hz
    use = z >= depth + wavelength / 2
    zs, ps, pr = z[use], sim_axis[use], ref[use]
    peak_err = float(ps.max() / pr.max() - 1)
    dz = float(zs[np.argmax(ps)] - zs[np.argmax(pr)])
    rel_l2 = float(np.linalg.norm(ps - pr) / np.linalg.norm(pr))
    fine = np.linspace(depth + wavelength / 2, z[-1], 4000)
    ref_fine = oneil_on_axis(fine, case.roc_m, case.aperture_m, case.frequency_hz, case.amplitude_pa)
    metrics = {
        "peak_sim_pa": float(ps.max()), "peak_oneil_grid_pa": float(pr.max()),
        "peak_oneil_continuous_pa": float(ref_fine.max()),
        "peak_rel_error": peak_err, "peak_z_sim_mm": float(zs[np.argmax(ps)] * 1e3),
        "peak_z_oneil_mm": float(fine[np.argmax(ref_fine)] * 1e3),
        "peak_shift_mm": dz * 1e3, "peak_shift_grid_spacings": dz / case.spacing_m,
        "on_axis_rel_l2": rel_l2, "on_axis_rel_linf": float(np.max(np.abs(ps - pr)) / pr.max()),
        "compared_from_z_mm": float(zs[0] * 1e3),
    }
    metrics["passed"] = bool(abs(peak_err) <= 0.05 and abs(dz) <= case.spacing_m + 1e-12 and rel_l2 < 0.10)
    return {"metrics": metrics, "z_m": z, "sim_pa": sim_axis, "oneil_pa": ref, "use": use}


def lateral_profile(amplitude: np.ndarray, case: WaterBowlCase) -> dict:
    """Simulated vs analytic (2·p0·k·h·J1(Z)/Z, Z = k·r·a/R) lateral profile in the geometric focal plane."""
    from scipy.special import j1  # noqa: PLC0415

    c = amplitude.shape[1] // 2
    ix = int(round(case.apex_index + case.roc_m / case.spacing_m))
    r = (np.arange(amplitude.shape[1]) - c) * case.spacing_m
    k = 2 * np.pi * case.frequency_hz / C_WATER
    a = case.aperture_m / 2
    h = case.roc_m - np.sqrt(case.roc_m**2 - a**2)
    arg = k * np.abs(r) * a / case.roc_m
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(arg > 1e-9, j1(arg) / np.where(arg > 1e-9, arg, 1.0), 0.5)
    return {"r_m": r, "sim_pa": amplitude[ix, :, c].astype(np.float64),
            "analytic_pa": np.abs(2 * case.amplitude_pa * k * h * ratio)}


def run_oneil_validation(out_dir: str | os.PathLike, case: str = "default", device: str = "cpu",
                         progress: bool = True) -> dict:
    """Run a case, write ``oneil_water.json`` + ``oneil_water.png`` into ``out_dir``; returns the report."""
    if case not in CASES:
        raise ValueError(f"unknown validation case {case!r}; choose one of {', '.join(CASES)}")
    spec = CASES[case]
    state = water_bowl_field(spec, device=device, progress=progress)
    cmp = compare_on_axis(state.amplitude_pa, spec)
    lat = lateral_profile(state.amplitude_pa, spec)
    report = {"case": case, "case_parameters": spec.__dict__, "grid_shape": list(spec.shape()),
              "points_per_wavelength": C_WATER / spec.frequency_hz / spec.spacing_m,
              "metrics": {**cmp["metrics"], "convergence": state.convergence,
                          "time_steps": state.info.get("steps_run", state.time.n_steps),
                          "points_per_period": state.time.points_per_period, "runtime_s": state.runtime_s,
                          "seconds_per_step": state.seconds_per_step,
                          "all_finite": bool(np.isfinite(state.amplitude_pa).all())},
              "on_axis": {"z_mm": (cmp["z_m"] * 1e3).tolist(), "sim_pa": cmp["sim_pa"].tolist(),
                          "oneil_pa": cmp["oneil_pa"].tolist()}}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "oneil_water.json").write_text(json.dumps(report, indent=2) + "\n")
    _plot(cmp, lat, report, out / "oneil_water.png")
    return report


def _plot(cmp: dict, lat: dict, report: dict, path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt  # noqa: PLC0415

    m, p = report["metrics"], report["case_parameters"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.4), constrained_layout=True)
    z = cmp["z_m"] * 1e3
    fine = np.linspace(0, z[-1], 2000)
    ref = oneil_on_axis(fine * 1e-3, p["roc_m"], p["aperture_m"], p["frequency_hz"], p["amplitude_pa"])
    ax1.plot(fine, ref / 1e3, "k-", lw=1.2, label="O'Neil (analytic)")
    ax1.plot(z, cmp["sim_pa"] / 1e3, "o", ms=3.5, color="tab:red", label="k-Wave (streaming lock-in)")
    ax1.axvspan(0, m["compared_from_z_mm"], color="0.9", label="not compared (source region)")
    ax1.set_xlabel("axial distance from bowl apex z (mm)")
    ax1.set_ylabel("pressure amplitude (kPa)")
    ax1.set_title(f"on axis: peak {100 * m['peak_rel_error']:+.2f} %, shift {m['peak_shift_mm']:+.2f} mm, "
                  f"rel. L2 {100 * m['on_axis_rel_l2']:.2f} %", fontsize=10)
    ax1.legend(fontsize=8)
    ax2.plot(lat["r_m"] * 1e3, lat["analytic_pa"] / 1e3, "k-", lw=1.2, label="2 p0 k h J1(Z)/Z")
    ax2.plot(lat["r_m"] * 1e3, lat["sim_pa"] / 1e3, "o", ms=3.5, color="tab:red", label="k-Wave")
    ax2.set_xlabel("lateral distance in the geometric focal plane (mm)")
    ax2.set_ylabel("pressure amplitude (kPa)")
    ax2.set_title("lateral profile at z = R (paraxial analytic)", fontsize=10)
    ax2.legend(fontsize=8)
    fig.suptitle(f"Bowl in water: R = {p['roc_m'] * 1e3:.0f} mm, D = {p['aperture_m'] * 1e3:.0f} mm, "
                 f"{p['frequency_hz'] / 1e3:.0f} kHz, {report['points_per_wavelength']:.1f} PPW, "
                 f"grid {report['grid_shape']}, convergence {m['convergence']:.1e}", fontsize=11)
    fig.savefig(path, dpi=100)
    plt.close(fig)
