"""The k-Wave solver through flat fluid layers vs the semi-analytic reference of :mod:`sim.layered`.

The same bowl and layer stack are set up on tfus's simulation grid the way :mod:`sim.validation` sets up
the O'Neil water case (its :class:`~sim.validation.WaterBowlCase` gives the box, the bowl placement and the
solver configuration; the axis is x, the apex at voxel ``apex_index``). Each voxel takes the properties of
the layer containing its centre, so on the grid a layer spans whole voxels: its faces move to the nearest
voxel faces (staircasing; a layer thinner than a voxel can vanish or double). Two references are reported:

* ``nominal``: the layers as specified;
* ``voxelised``: the layers with the faces the grid actually has, which separates the solver's error from
  the geometry's.

Compared on axis from the first voxel beyond the last layer (ITRUSST's "brain" region) to the end of the box:
the transmitted peak, its position, the on-axis relative L2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from tfus.sim.layered import ITRUSST_SC1, LayeredMedium, itrusst_bm3_medium, itrusst_bm4_medium, on_axis
from tfus.sim.validation import WaterBowlCase


@dataclass(frozen=True)
class LayeredCase:
    """A bowl (m, Hz, Pa) in front of a layer stack; the grid follows from the points per wavelength."""

    roc_m: float
    diameter_m: float
    frequency_hz: float
    medium: LayeredMedium
    amplitude_pa: float = 60e3
    cfl: float = 0.5
    pml_size: int = 8
    beyond_focus_m: float = 16e-3

    def __post_init__(self) -> None:
        for name in ("roc_m", "diameter_m", "frequency_hz", "amplitude_pa", "cfl", "beyond_focus_m"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}")
        if not isinstance(self.medium, LayeredMedium):
            raise ValueError("`medium` must be a LayeredMedium")

    def grid(self, points_per_wavelength: float) -> WaterBowlCase:
        """The box, bowl placement and solver settings at ``points_per_wavelength`` (in water)."""
        if not points_per_wavelength >= 3:
            raise ValueError(f"`points_per_wavelength` must be >= 3, got {points_per_wavelength}")
        spacing = self.medium.c_water_m_s / self.frequency_hz / points_per_wavelength
        return WaterBowlCase(self.frequency_hz, spacing, self.roc_m, self.diameter_m, cfl=self.cfl,
                             pml_size=self.pml_size, beyond_focus_m=self.beyond_focus_m,
                             amplitude_pa=self.amplitude_pa)


_SMALL_BOWL = {"roc_m": 30e-3, "diameter_m": 30e-3, "frequency_hz": 300e3}  # sim.validation's "small" bowl
CASES = {
    # BM3 with every length scaled by 30/64 (plate 3.05 mm from 14.06 mm), the small bowl at 300 kHz.
    # Measured on one core: 6 s at 4 PPW (41×32×32), 21 s at 6, 63 s at 8, 266 s at 12 PPW.
    "bm3_small": LayeredCase(**_SMALL_BOWL, medium=itrusst_bm3_medium(scale=30 / 64)),
    # The ITRUSST geometries themselves (SC1 at 500 kHz): 164×144×144 at 6 PPW, GPU-sized (not run here).
    "bm3": LayeredCase(**ITRUSST_SC1, medium=itrusst_bm3_medium()),
    "bm4": LayeredCase(**ITRUSST_SC1, medium=itrusst_bm4_medium()),
}


def axial_positions_m(grid: WaterBowlCase) -> np.ndarray:
    """(nx,) z of every voxel centre along the axis, from the bowl apex."""
    return (np.arange(grid.shape()[0]) - grid.apex_index) * grid.spacing_m


def voxelised_medium(medium: LayeredMedium, grid: WaterBowlCase) -> LayeredMedium:
    """The stack the grid represents: each layer spans the voxels whose centre it contains, so its faces
    sit on voxel faces; layers that contain no voxel centre are dropped."""
    dx, i0 = grid.spacing_m, grid.apex_index
    first = lambda z: math.ceil(round(z / dx + i0, 9))  # noqa: E731  first voxel centre at or beyond z
    faces = [first(z) for z in medium.interfaces_m]
    kept = [replace(la, thickness_m=(hi - lo) * dx) for la, lo, hi in zip(medium.layers, faces, faces[1:]) if hi > lo]
    if not kept:
        raise ValueError("no layer of the stack contains a voxel centre at this spacing")
    return replace(medium, layers=tuple(kept), z_first_m=(faces[0] - 0.5 - i0) * dx)


def medium_arrays(medium: LayeredMedium, grid: WaterBowlCase, partial_volume: bool = False):
    """:class:`sim.solver.MediumArrays` of the box: water, the layers, the far fluid.

    ``partial_volume=False``: each voxel takes the layer containing its centre (nearest voxel, staircased
    faces). ``True``: each voxel mixes the fluids by the fraction f_j of its axial extent [z − dx/2, z + dx/2]
    they occupy, as a stack in series along the axis: compressibility 1/(ρc²) = Σ f_j/(ρ_j c_j²), density
    ρ = Σ f_j ρ_j (so c = 1/sqrt(ρ·Σ f_j/(ρ_j c_j²))), absorption α = Σ f_j α_j.
    """
    from tfus.sim.solver import MediumArrays  # noqa: PLC0415

    z = axial_positions_m(grid)
    fluids = [(medium.c_water_m_s, medium.rho_water_kg_m3, 0.0)]
    fluids += [(la.sound_speed_m_s, la.density_kg_m3, la.alpha_db_mhz2_cm) for la in medium.layers]
    fluids += [(medium.c_far_m_s, medium.rho_far_kg_m3, medium.alpha_far_db_mhz2_cm)]
    edges = np.concatenate([[-np.inf], medium.interfaces_m, [np.inf]])  # fluid j spans [edges[j], edges[j+1])
    if partial_volume:
        lo, hi = z - grid.spacing_m / 2, z + grid.spacing_m / 2
        frac = np.clip(np.minimum(hi[:, None], edges[None, 1:]) - np.maximum(lo[:, None], edges[None, :-1]),
                       0, None) / grid.spacing_m                                   # (nx, n_fluids)
        frac = np.where(frac < 1e-9, 0.0, frac)
        frac /= frac.sum(axis=1, keepdims=True)
    else:  # the fluid containing the voxel centre (a centre on a face goes to the far side)
        j = np.searchsorted(edges, z + 1e-12, side="right") - 1
        frac = np.zeros((z.size, len(fluids)))
        frac[np.arange(z.size), j] = 1.0
    c_j, rho_j, alpha_j = (np.array(v, np.float64) for v in zip(*fluids))
    rho = frac @ rho_j
    compressibility = frac @ (1.0 / (rho_j * c_j**2))
    c = 1.0 / np.sqrt(rho * compressibility)
    alpha = frac @ alpha_j
    shape = grid.shape()
    full = lambda v: np.broadcast_to(v[:, None, None], shape).astype(np.float32)  # noqa: E731
    return MediumArrays(full(c), full(rho), full(alpha) if alpha.any() else None, alpha_power=2.0)


def simulate(case: LayeredCase, points_per_wavelength: float, device: str = "cpu", progress: bool = False):
    """Run the streaming solver on ``case`` (:class:`sim.solver.SteadyState`, axis along x)."""
    from tfus.sim.solver import solve_steady_state  # noqa: PLC0415
    from tfus.sim.source import BowlSource  # noqa: PLC0415

    grid = case.grid(points_per_wavelength)
    c = grid.shape()[1] / 2  # the placement of sim.validation.water_bowl_field
    bowl = BowlSource((grid.apex_index, c, c), (grid.apex_index + grid.roc_m / grid.spacing_m, c, c),
                      grid.roc_m, grid.aperture_m)
    return solve_steady_state(medium_arrays(case.medium, grid), bowl, case.frequency_hz, case.amplitude_pa,
                              grid.spacing_m, grid.config(), device=device, progress=progress)


def _reference_metrics(case: LayeredCase, medium: LayeredMedium, z: np.ndarray, sim_axis: np.ndarray) -> dict:
    bowl = (case.roc_m, case.diameter_m, case.frequency_hz, case.amplitude_pa)
    ref = np.abs(on_axis(*bowl, medium, z))
    fine = np.linspace(z[0], z[-1], 4001)
    ref_fine = np.abs(on_axis(*bowl, medium, fine))
    return {"peak_ref_grid_pa": float(ref.max()), "peak_ref_continuous_pa": float(ref_fine.max()),
            "peak_rel_error": float(sim_axis.max() / ref.max() - 1),
            "peak_z_ref_mm": float(fine[np.argmax(ref_fine)] * 1e3),
            "peak_shift_mm": float((z[np.argmax(sim_axis)] - fine[np.argmax(ref_fine)]) * 1e3),
            "on_axis_rel_l2": float(np.linalg.norm(sim_axis - ref) / np.linalg.norm(ref)),
            "z_last_mm": medium.z_last_m * 1e3}


def compare_with_reference(amplitude: np.ndarray, case: LayeredCase, points_per_wavelength: float) -> dict:
    """On-axis metrics of a simulated amplitude (X, Y, Z) against the nominal and the voxelised reference."""
    grid = case.grid(points_per_wavelength)
    c = amplitude.shape[1] // 2
    z_all = axial_positions_m(grid)
    use = z_all >= case.medium.z_last_m - 1e-12  # voxels of the far fluid
    z, sim_axis = z_all[use], amplitude[use, c, c].astype(np.float64)
    report = {"points_per_wavelength": float(points_per_wavelength), "spacing_mm": grid.spacing_m * 1e3,
              "grid_shape": list(grid.shape()), "peak_sim_pa": float(sim_axis.max()),
              "peak_z_sim_mm": float(z[np.argmax(sim_axis)] * 1e3), "compared_from_z_mm": float(z[0] * 1e3),
              "peak_sim_off_axis_pa": float(amplitude[use].max())}  # the far region's maximum anywhere
    report["nominal"] = _reference_metrics(case, case.medium, z, sim_axis)
    report["voxelised"] = _reference_metrics(case, voxelised_medium(case.medium, grid), z, sim_axis)
    return report


def run_layered_comparison(case: str = "bm3_small", points_per_wavelength=(4, 6, 8), device: str = "cpu",
                           progress: bool = False) -> list[dict]:
    """Simulate ``case`` at each points-per-wavelength value and compare; one report dict per value."""
    if case not in CASES:
        raise ValueError(f"unknown layered case {case!r}; choose one of {', '.join(CASES)}")
    reports = []
    for ppw in points_per_wavelength:
        state = simulate(CASES[case], ppw, device=device, progress=progress)
        report = compare_with_reference(state.amplitude_pa, CASES[case], ppw)
        report.update(case=case, convergence=state.convergence, runtime_s=state.runtime_s,
                      time_steps=state.time.n_steps, points_per_period=state.time.points_per_period)
        reports.append(report)
    return reports
