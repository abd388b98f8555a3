"""Grid-spacing convergence of the steady-state field through a skull.

No analytic solution exists through bone, so the evidence that a skull simulation resolves what it claims
is convergence: the same CT, placement and physics simulated at several spacings on the same physical box
(``crop_mm`` centred on the beam). Every field is interpolated (linear, in world mm) onto the finest grid
and compared with the finest field in the region a focus can be in (``sim.fieldstats.focal_search_mask``:
beyond the rim plane + λ, within R/2 of the geometric focus, outside the skull): relative L2, focal peak
pressure and focal position. The observed order between successive spacings is reported too; the skull's
outline itself is resampled at each spacing (staircasing), so the order is not the scheme's spectral one.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfus.sim.config import SimConfig


@dataclass(frozen=True)
class ConvergenceStudy:
    """Spacings (mm, coarse → fine; the last is the reference) and the edge of the cubic box (mm)."""

    spacings_mm: tuple[float, ...] = (2.0, 1.5, 1.2, 1.0)
    box_mm: float = 48.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "spacings_mm", tuple(float(s) for s in self.spacings_mm))
        s = self.spacings_mm
        if len(s) < 3:
            raise ValueError(f"`spacings_mm` needs at least 3 spacings (2 to compare + the reference), got {s}")
        if any(not math.isfinite(x) or x <= 0 for x in s) or any(a <= b for a, b in zip(s, s[1:])):
            raise ValueError(f"`spacings_mm` must be positive and strictly decreasing, got {s}")
        if not self.box_mm > 0:
            raise ValueError(f"`box_mm` must be > 0, got {self.box_mm}")


def resample_onto(field: np.ndarray, affine, target_affine, target_shape) -> np.ndarray:
    """``field`` (voxel grid ``affine``) linearly interpolated onto the target grid (``sim.ingest.resample``,
    the same resampler that puts CTs on simulation windows); float32."""
    from tfus.sim.ingest import Volume, resample  # noqa: PLC0415

    return resample(Volume(field, affine), target_affine, target_shape).hu


def covered_by(shape, affine, other_shape, other_affine) -> np.ndarray:
    """Voxels of the grid ``(shape, affine)`` that lie within the extent (first to last sample) of the grid
    ``(other_shape, other_affine)`` (bool, ``shape``)."""
    from tfus.sim.ingest import voxel_to_world, world_to_voxel  # noqa: PLC0415

    idx = np.indices(shape, dtype=np.float64).reshape(3, -1).T
    vox = world_to_voxel(other_affine, voxel_to_world(affine, idx))
    inside = np.all((vox > -1e-6) & (vox < np.asarray(other_shape) - 1 + 1e-6), axis=1)
    return inside.reshape(shape)


def compare_fields(results: list, config: SimConfig) -> list[dict]:
    """Errors of every :class:`sim.simulation.SimResult` in ``results`` against the last (finest) one.

    The boxes of the spacings are snapped to their own lattices (``sim.ingest.grid_covering``), so their
    edges differ by up to one spacing; the comparison region is the focal search region of the finest grid
    within the extent of every grid (outside a coarse grid the resampler has no field, only its 0 fill)."""
    from tfus.sim.fieldstats import focal_search_mask  # noqa: PLC0415

    ref = results[-1]
    w = ref.window
    skull = w.ct_hu > config.medium.skull_threshold_hu
    mask = focal_search_mask(w.shape, w.affine, w.bowl, config.transducer.frequency_hz, skull)
    for r in results[:-1]:
        mask &= covered_by(w.shape, w.affine, r.window.shape, r.window.affine)
    p_ref = np.asarray(ref.pressure_pa, np.float64)
    ref_peak, ref_focus = ref.summary["peak_pressure_pa"], np.asarray(ref.summary["focal_point_mm"])
    rows = []
    for r in results:
        p = resample_onto(r.pressure_pa, r.window.affine, w.affine, w.shape) if r is not ref else p_ref
        rows.append({
            "spacing_mm": float(r.window.spacing_mm),
            "grid_shape": list(r.window.shape),
            "points_per_wavelength_min": r.summary["points_per_wavelength_min"],
            "rel_l2_vs_finest": float(np.linalg.norm((p - p_ref)[mask]) / np.linalg.norm(p_ref[mask])),
            "peak_pressure_pa": r.summary["peak_pressure_pa"],
            "peak_rel_error_vs_finest": float(r.summary["peak_pressure_pa"] / ref_peak - 1),
            "focal_point_mm": r.summary["focal_point_mm"],
            "focal_shift_vs_finest_mm": float(np.linalg.norm(np.asarray(r.summary["focal_point_mm"]) - ref_focus)),
            "convergence": r.summary["convergence"],
            "time_steps": r.summary["time_steps"],
            "runtime_s": r.summary["runtime_s"],
        })
    for a, b in zip(rows, rows[1:-1]):  # observed order between successive non-reference spacings
        ea, eb = a["rel_l2_vs_finest"], b["rel_l2_vs_finest"]
        b["observed_order_rel_l2"] = (float(math.log(ea / eb) / math.log(a["spacing_mm"] / b["spacing_mm"]))
                                      if ea > 0 and eb > 0 else None)
    return rows


def run_skull_convergence(ct, position_mm, target_mm, config: SimConfig, study: ConvergenceStudy,
                          out_dir: str | os.PathLike, progress: bool = True, device: str = "cpu") -> dict:
    """Simulate at every spacing of ``study``; write ``convergence.json`` and ``convergence.png``."""
    from tfus.sim.ingest import Volume, load_volume  # noqa: PLC0415
    from tfus.sim.simulation import simulate  # noqa: PLC0415

    volume = ct if isinstance(ct, Volume) else load_volume(ct)
    results = []
    for spacing in study.spacings_mm:
        cfg = config.replace(spacing_mm=spacing, window_shape=None)
        results.append(simulate(volume, position_mm, target_mm, cfg, progress=progress, device=device,
                                crop_mm=study.box_mm))
    rows = compare_fields(results, config)
    report = {"ct": str(ct) if not isinstance(ct, Volume) else "<in-memory Volume>",
              "position_mm": [float(x) for x in position_mm], "target_mm": [float(x) for x in target_mm],
              "box_mm": study.box_mm, "config": config.to_dict(), "levels": rows}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "convergence.json").write_text(json.dumps(report, indent=2) + "\n")
    _plot(results, rows, out / "convergence.png")
    return report


def run_phantom_skull_convergence(seed: int, config: SimConfig, study: ConvergenceStudy,
                                  out_dir: str | os.PathLike, progress: bool = True, device: str = "cpu",
                                  phantom_spacing_mm: float = 0.5) -> dict:
    """``run_skull_convergence`` on the adult phantom of ``seed`` at its first planned placement (seeded)."""
    from tfus.sim.phantom import make_phantom  # noqa: PLC0415
    from tfus.sim.placement import plan_placements  # noqa: PLC0415

    head = make_phantom(seed, spacing_mm=phantom_spacing_mm)
    placement = plan_placements(head, 1, seed, config)[0]
    return run_skull_convergence(head, placement.position_mm, placement.target_mm, config, study, out_dir,
                                 progress=progress, device=device)


def run_ct_skull_convergence(ct, seed: int, config: SimConfig, study: ConvergenceStudy,
                             out_dir: str | os.PathLike, progress: bool = True, device: str = "cpu") -> dict:
    """``run_skull_convergence`` on a CT or pseudo-CT file at its first planned placement (seeded)."""
    from tfus.sim.ingest import load_volume  # noqa: PLC0415
    from tfus.sim.placement import plan_placements  # noqa: PLC0415

    volume = load_volume(ct)
    placement = plan_placements(volume, 1, seed, config)[0]
    report = run_skull_convergence(volume, placement.position_mm, placement.target_mm, config, study, out_dir,
                                   progress=progress, device=device)
    report["ct"] = str(ct)
    (Path(out_dir) / "convergence.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _axis_profile(result, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Amplitude along the bowl axis from the apex to 1.5 R (distance in mm, Pa)."""
    from scipy import ndimage  # noqa: PLC0415

    bowl = result.window.bowl
    d = np.linspace(0, 1.5 * bowl.roc_mm, n)
    world = np.asarray(bowl.apex_mm)[:, None] + np.asarray(bowl.axis)[:, None] * d[None, :]
    vox = result.window.world_to_voxel(world.T).T
    return d, ndimage.map_coordinates(np.asarray(result.pressure_pa, np.float64), vox, order=1, mode="nearest")


def _plot(results, rows, path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.4), constrained_layout=True)
    for r, row in zip(results, rows):
        d, p = _axis_profile(r)
        ax1.plot(d, p / 1e3, lw=1.2, label=f"{row['spacing_mm']:g} mm ({row['points_per_wavelength_min']:.1f} PPW)")
    ax1.set_xlabel("distance from the bowl apex along its axis (mm)")
    ax1.set_ylabel("pressure amplitude (kPa)")
    ax1.set_title("on the beam axis, through the skull", fontsize=10)
    ax1.legend(fontsize=8)
    h = [row["spacing_mm"] for row in rows[:-1]]
    ax2.loglog(h, [row["rel_l2_vs_finest"] for row in rows[:-1]], "o-", label="rel. L2 (focal region)")
    ax2.loglog(h, [max(abs(row["peak_rel_error_vs_finest"]), 1e-6) for row in rows[:-1]], "s-",
               label="|focal peak error|")
    ax2.set_xlabel("grid spacing (mm)")
    ax2.set_ylabel(f"error vs the {rows[-1]['spacing_mm']:g} mm field")
    ax2.set_title("convergence in grid spacing", fontsize=10)
    ax2.legend(fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)
