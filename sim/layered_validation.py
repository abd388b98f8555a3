"""The k-Wave solver through flat fluid layers vs the semi-analytic reference of :mod:`sim.layered`.

The same bowl and layer stack are set up on tfus's simulation grid the way :mod:`sim.validation` sets up
the O'Neil water case (its :class:`~sim.validation.WaterBowlCase` gives the box, the bowl placement and the
solver configuration; the axis is x, the apex at voxel ``apex_index``). By default each voxel takes the
properties of the layer containing its centre, so on the grid a layer spans whole voxels: its faces move to
the nearest voxel faces (staircasing; a layer thinner than a voxel can vanish or double). With
``LayeredCase.partial_volume`` the voxels cut by a face mix the two fluids instead (:func:`medium_arrays`).
Two references are reported:

* ``nominal``: the layers as specified;
* ``voxelised``: the stack the grid actually holds (:func:`grid_medium`: the faces moved to voxel faces, or
  with partial volumes every mixed voxel as a layer of its own), which separates the solver's error from
  the geometry's.

Compared on axis from the first voxel beyond the last layer (ITRUSST's "brain" region) to the end of the box:
the transmitted peak, its position (the grid maximum, and a sub-voxel estimate from a parabola through it and
its two neighbours), the on-axis relative L2.

:func:`plane_wave_transmission` runs the solver's scheme (``sim.engine``'s operators, the same time step)
in 1D on a plane wave at normal incidence: the plate's transmission coefficient against the exact one of
the same stack, cheap enough to sweep the grid spacing and the time step (docs/VALIDATION.md, "Through flat
bone layers").

    python -m tfus.sim.layered_validation --case bm3_small --ppw 4 6 8 --out validation-layered/
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from tfus.sim.layered import (
    ITRUSST_SC1, Layer, LayeredMedium, complex_wavenumber, itrusst_bm3_medium, itrusst_bm4_medium,
    layer_transmission, on_axis,
)
from tfus.sim.validation import WaterBowlCase


@dataclass(frozen=True)
class LayeredCase:
    """A bowl (m, Hz, Pa) in front of a layer stack; the grid follows from the points per wavelength."""

    roc_m: float
    diameter_m: float
    frequency_hz: float
    medium: LayeredMedium
    amplitude_pa: float = 60e3
    # CFL number at the fastest medium (bone). 0.2, not the water case's 0.5: at a bone face the error of
    # the k-space scheme grows with the time step (docs/VALIDATION.md, "Through flat bone layers"):
    # bm3_small at 6 PPW, transmitted peak -3.3 % at CFL 0.5 (0.31 after the absorption limit), -2.9 % at 0.2.
    cfl: float = 0.2
    pml_size: int = 8
    beyond_focus_m: float = 16e-3
    partial_volume: bool = False  # voxels cut by a face mix the fluids (medium_arrays); False: nearest voxel

    def __post_init__(self) -> None:
        for name in ("roc_m", "diameter_m", "frequency_hz", "amplitude_pa", "cfl", "beyond_focus_m"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}")
        if not isinstance(self.medium, LayeredMedium):
            raise ValueError("`medium` must be a LayeredMedium")
        if not isinstance(self.partial_volume, bool):
            raise ValueError(f"`partial_volume` must be a bool, got {self.partial_volume!r}")

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
    # Measured on one core at CFL 0.2: 10 s at 4 PPW (41×32×32), 32 s at 6, 68 s at 8, 344 s at 12 PPW.
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


def axis_properties(medium: LayeredMedium, z_m: np.ndarray, spacing_m: float, partial_volume: bool = False):
    """(c, ρ, α) at voxel centres ``z_m`` (float64, shape of ``z_m``): water, the layers, the far fluid.

    ``partial_volume=False``: the fluid containing the centre (a centre on a face goes to the far side).
    ``True``: the fluids mixed by the fraction f_j of the voxel's axial extent [z − dx/2, z + dx/2] they fill,
    as a stack in series along the axis (the long-wave limit): compressibility 1/(ρc²) = Σ f_j/(ρ_j c_j²),
    density ρ = Σ f_j ρ_j, absorption α = Σ f_j α_j. This keeps each voxel's mass and compliance, but at
    6 points per wavelength the mixed voxel is a graded impedance step, not a sharp face: for the bm3_small
    plate the exact focal peak of that stack is 19 % above the sharp plate's (docs/VALIDATION.md). A
    diagnostic, not a remedy.
    """
    z = np.asarray(z_m, np.float64)
    fluids = [(medium.c_water_m_s, medium.rho_water_kg_m3, 0.0)]
    fluids += [(la.sound_speed_m_s, la.density_kg_m3, la.alpha_db_mhz2_cm) for la in medium.layers]
    fluids += [(medium.c_far_m_s, medium.rho_far_kg_m3, medium.alpha_far_db_mhz2_cm)]
    edges = np.concatenate([[-np.inf], medium.interfaces_m, [np.inf]])  # fluid j fills [edges[j], edges[j+1])
    if partial_volume:
        lo, hi = z - spacing_m / 2, z + spacing_m / 2
        frac = np.clip(np.minimum(hi[:, None], edges[None, 1:]) - np.maximum(lo[:, None], edges[None, :-1]),
                       0, None) / spacing_m                                   # (n, n_fluids)
        frac = np.where(frac < 1e-9, 0.0, frac)
        frac /= frac.sum(axis=1, keepdims=True)
    else:
        j = np.searchsorted(edges, z + 1e-12, side="right") - 1
        frac = np.zeros((z.size, len(fluids)))
        frac[np.arange(z.size), j] = 1.0
    c_j, rho_j, alpha_j = (np.array(v, np.float64) for v in zip(*fluids))
    rho = frac @ rho_j
    c = 1.0 / np.sqrt(rho * (frac @ (1.0 / (rho_j * c_j**2))))
    return c, rho, frac @ alpha_j


def grid_medium(medium: LayeredMedium, grid: WaterBowlCase, partial_volume: bool = False) -> LayeredMedium:
    """The stack the grid holds: :func:`voxelised_medium` (nearest voxel), or with ``partial_volume`` every
    voxel from the first to the last one a face cuts as a layer of its own (one voxel thick, its mixed
    properties); water before, the far fluid after."""
    if not partial_volume:
        return voxelised_medium(medium, grid)
    z, dx = axial_positions_m(grid), grid.spacing_m
    c, rho, alpha = axis_properties(medium, z, dx, partial_volume=True)
    touched = np.flatnonzero((z + dx / 2 > medium.z_first_m + 1e-12) & (z - dx / 2 < medium.z_last_m - 1e-12))
    if touched.size == 0:
        raise ValueError("the stack lies outside the box")
    layers = tuple(Layer(dx, float(c[i]), float(rho[i]), float(alpha[i]), f"voxel {i}") for i in touched)
    return replace(medium, layers=layers, z_first_m=float(z[touched[0]] - dx / 2))


def medium_arrays(medium: LayeredMedium, grid: WaterBowlCase, partial_volume: bool = False):
    """:class:`sim.solver.MediumArrays` of the box: :func:`axis_properties` at every voxel, uniform across."""
    from tfus.sim.solver import MediumArrays  # noqa: PLC0415

    c, rho, alpha = axis_properties(medium, axial_positions_m(grid), grid.spacing_m, partial_volume)
    shape = grid.shape()
    full = lambda v: np.broadcast_to(v[:, None, None], shape).astype(np.float32)  # noqa: E731
    return MediumArrays(full(c), full(rho), full(alpha) if alpha.any() else None, alpha_power=2.0)


def simulate(case: LayeredCase, points_per_wavelength: float, device: str = "cpu", progress: bool = False):
    """Run the streaming solver on ``case`` (:class:`sim.solver.SteadyState`, axis along x)."""
    from tfus.sim.solver import solve_steady_state  # noqa: PLC0415

    grid = case.grid(points_per_wavelength)
    return solve_steady_state(medium_arrays(case.medium, grid, case.partial_volume), grid.bowl(), case.frequency_hz,
                              case.amplitude_pa, grid.spacing_m, grid.config(), device=device, progress=progress)


def subvoxel_peak(z: np.ndarray, values: np.ndarray) -> float:
    """Position of the maximum of ``values`` sampled at the evenly spaced ``z``: the vertex of the parabola
    through the largest sample and its two neighbours (the sample itself at either end)."""
    i = int(np.argmax(values))
    if i == 0 or i == len(values) - 1:
        return float(z[i])
    y0, y1, y2 = (float(v) for v in values[i - 1:i + 2])
    curvature = y0 - 2 * y1 + y2
    return float(z[i] + (0.5 * (y0 - y2) / curvature * (z[1] - z[0]) if curvature < 0 else 0.0))


def _reference_metrics(case: LayeredCase, medium: LayeredMedium, z: np.ndarray, sim_axis: np.ndarray) -> dict:
    """Metrics on the voxels of ``z`` beyond ``medium``'s last face (a partial-volume grid stack ends up to
    one voxel later than the nominal one)."""
    keep = z >= medium.z_last_m - 1e-12
    z, sim_axis = z[keep], sim_axis[keep]
    bowl = (case.roc_m, case.diameter_m, case.frequency_hz, case.amplitude_pa)
    ref = np.abs(on_axis(*bowl, medium, z))
    fine = np.linspace(z[0], z[-1], 4001)
    ref_fine = np.abs(on_axis(*bowl, medium, fine))
    z_ref = float(fine[np.argmax(ref_fine)])
    return {"peak_ref_grid_pa": float(ref.max()), "peak_ref_continuous_pa": float(ref_fine.max()),
            "peak_rel_error": float(sim_axis.max() / ref.max() - 1),
            "peak_z_ref_mm": z_ref * 1e3,
            "peak_shift_mm": float((z[np.argmax(sim_axis)] - z_ref) * 1e3),
            "peak_shift_subvoxel_mm": (subvoxel_peak(z, sim_axis) - z_ref) * 1e3,
            "on_axis_rel_l2": float(np.linalg.norm(sim_axis - ref) / np.linalg.norm(ref)),
            "z_last_mm": medium.z_last_m * 1e3}


def compare_with_reference(amplitude: np.ndarray, case: LayeredCase, points_per_wavelength: float) -> dict:
    """On-axis metrics of a simulated amplitude (X, Y, Z) against the nominal reference and the reference of
    the stack the grid holds (``voxelised``, :func:`grid_medium`)."""
    grid = case.grid(points_per_wavelength)
    c = amplitude.shape[1] // 2
    z_all = axial_positions_m(grid)
    use = z_all >= case.medium.z_last_m - 1e-12  # voxels of the far fluid
    z, sim_axis = z_all[use], amplitude[use, c, c].astype(np.float64)
    report = {"points_per_wavelength": float(points_per_wavelength), "spacing_mm": grid.spacing_m * 1e3,
              "grid_shape": list(grid.shape()), "cfl": case.cfl, "partial_volume": case.partial_volume,
              "peak_sim_pa": float(sim_axis.max()), "peak_z_sim_mm": float(z[np.argmax(sim_axis)] * 1e3),
              "peak_z_sim_subvoxel_mm": subvoxel_peak(z, sim_axis) * 1e3, "compared_from_z_mm": float(z[0] * 1e3),
              "peak_sim_off_axis_pa": float(amplitude[use].max()),  # the far region's maximum anywhere
              "axis": {"z_mm": (z * 1e3).tolist(), "sim_pa": sim_axis.tolist()}}
    report["nominal"] = _reference_metrics(case, case.medium, z, sim_axis)
    report["voxelised"] = _reference_metrics(case, grid_medium(case.medium, grid, case.partial_volume), z,
                                             sim_axis)
    return report


def _case(case: "str | LayeredCase") -> tuple[str, LayeredCase]:
    if isinstance(case, LayeredCase):
        return "custom", case
    if case not in CASES:
        raise ValueError(f"unknown layered case {case!r}; choose one of {', '.join(CASES)}")
    return case, CASES[case]


def run_layered_comparison(case: "str | LayeredCase" = "bm3_small", points_per_wavelength=(4, 6, 8),
                           device: str = "cpu", progress: bool = False, cfl: float | None = None,
                           partial_volume: bool | None = None) -> list[dict]:
    """Simulate ``case`` (a name of :data:`CASES` or a :class:`LayeredCase`) at each points-per-wavelength
    value and compare; one report dict per value. ``cfl`` / ``partial_volume`` override the case's."""
    name, spec = _case(case)
    if cfl is not None:
        spec = replace(spec, cfl=float(cfl))
    if partial_volume is not None:
        spec = replace(spec, partial_volume=bool(partial_volume))
    reports = []
    for ppw in points_per_wavelength:
        state = simulate(spec, ppw, device=device, progress=progress)
        report = compare_with_reference(state.amplitude_pa, spec, ppw)
        report.update(case=name, convergence=state.convergence, runtime_s=state.runtime_s,
                      time_steps=state.time.n_steps, steps_run=state.info.get("steps_run"),
                      points_per_period=state.time.points_per_period, cfl_actual=state.time.cfl_actual)
        reports.append(report)
    return reports


def plane_wave_transmission(medium: LayeredMedium, frequency_hz: float, points_per_wavelength: float,
                            cfl: float = 0.2, partial_volume: bool = False, points_per_period: int | None = None,
                            c_ref_m_s: float | None = None, pml_size: int = 20) -> dict:
    """|T| of ``medium`` for a plane wave at normal incidence with the solver's scheme in 1D, against the
    exact T of the stack the grid holds (:func:`grid_medium`'s faces) and of the nominal stack.

    The scheme is ``sim.engine``'s reduced to one axis, operator for operator: staggered density (the mean
    of neighbours), κ = sinc(c_ref |k| dt/2) with c_ref = c_max unless ``c_ref_m_s``, the shifted spectral
    derivatives, k-Wave's PML (``pml_size`` cells each end), the k-space filtered additive source, Stokes
    absorption. Nodes at integer multiples of the spacing from z = 0 (as on the 3D grid, apex at a node).
    The time step is the 3D solver's for the same medium (``sim.solver``: points per period from ``cfl`` at
    c_max, then k-Wave's absorbing stability limit) unless ``points_per_period``. |T| is the lock-in
    amplitude 1–3 wavelengths beyond the last face (corrected for the far fluid's absorption) over that of
    the same source in water on the same time axis. Cheap: ~1 s at 6 PPW and CFL 0.2.
    """
    from tfus.sim.engine import db_to_neper, pml_profile, staggered_density  # noqa: PLC0415
    from tfus.sim.solver import STABILITY_SAFETY, MediumArrays, absorbing_dt_limit  # noqa: PLC0415

    lam = medium.c_water_m_s / frequency_hz
    dx = lam / float(points_per_wavelength)
    n = int(math.ceil((medium.z_last_m - medium.z_first_m + 12 * lam) / dx)) + 2 * pml_size
    i_src = pml_size + int(round(2 * lam / dx))
    first = int(round(medium.z_first_m / dx)) - (i_src + int(round(4 * lam / dx)))  # plate 4 λ after the source
    z = (np.arange(n) + first) * dx

    def run(med: LayeredMedium, ppp: int | None, c_ref: float | None):
        c0, rho0, alpha = axis_properties(med, z, dx, partial_volume)
        c_max = float(c0.max())
        if ppp is None:
            ppp = int(math.ceil(c_max / (cfl * dx * frequency_hz)))
            cube = lambda v: v[:, None, None]  # noqa: E731
            limit = absorbing_dt_limit(MediumArrays(cube(c0), cube(rho0), cube(alpha) if alpha.any() else None),
                                       dx)
            if math.isfinite(limit):
                ppp = max(ppp, int(math.ceil(1.0 / (frequency_hz * STABILITY_SAFETY * limit))))
        c_ref = c_max if c_ref is None else float(c_ref)
        dt = 1.0 / (ppp * frequency_hz)
        k = 2 * np.pi * np.fft.rfftfreq(n, dx)
        kappa = np.sinc(c_ref * k * dt / 2 / np.pi)
        grad = 1j * k * np.exp(1j * k * dx / 2) * kappa
        div = 1j * k * np.exp(-1j * k * dx / 2) * kappa
        pml = pml_profile(n, dx, dt, c_ref, pml_size, 2.0, False)
        pml_sg = pml_profile(n, dx, dt, c_ref, pml_size, 2.0, True)
        u_coef = pml_sg * dt / staggered_density(rho0, 0)
        rho_coef = pml * dt * rho0
        absorb = -2.0 * db_to_neper(alpha, 2.0) * c0 * rho0
        weights = np.zeros(n)
        weights[i_src] = 1.0
        source = np.fft.irfft(np.cos(c_ref * k * dt / 2) * np.fft.rfft(weights * 2 * dt / c0), n) / dx
        periods = int(math.ceil(2 * n * dx / float(c0.min()) * frequency_hz)) + 20
        n_steps, window = periods * ppp, 4 * ppp
        t = np.arange(n_steps) / (ppp * frequency_hz)
        drive = np.sin(2 * np.pi * frequency_hz * t) * np.where(
            t < 2 / frequency_hz, 0.5 * (1 - np.cos(np.pi * t * frequency_hz / 2)), 1.0)  # 2-cycle ramp
        p, u, rho = np.zeros(n), np.zeros(n), np.zeros(n)
        lock = np.zeros(n, np.complex128)
        for step in range(n_steps):
            u = pml_sg * pml_sg * u - u_coef * np.fft.irfft(grad * np.fft.rfft(p), n)
            d = np.fft.irfft(div * np.fft.rfft(u), n)
            rho = pml * pml * rho - rho_coef * d + drive[step] * source
            p = c0**2 * (rho + absorb * d)
            if step >= n_steps - window:
                lock += p * np.exp(-2j * np.pi * (step % ppp) / ppp)
        return 2 * lock / window, ppp, c_ref, c_max * dt / dx

    a, ppp, c_ref, cfl_actual = run(medium, points_per_period, c_ref_m_s)
    water, _, _, _ = run(LayeredMedium((), medium.z_first_m, medium.c_water_m_s, medium.rho_water_kg_m3,
                                       medium.c_water_m_s, medium.rho_water_kg_m3), ppp, c_ref)
    grid_stack = _grid_stack_1d(medium, dx, partial_volume)
    beyond = (z > grid_stack.z_last_m + dx) & (z < grid_stack.z_last_m + 3 * lam)
    k_far = complex_wavenumber(frequency_hz, medium.c_far_m_s, medium.alpha_far_db_mhz2_cm)
    t_sim = float(np.mean(np.abs(a[beyond] / water[beyond]) * np.exp(-k_far.imag * (z[beyond] - medium.z_last_m))))
    t_grid = abs(complex(layer_transmission(np.array([0.0]), frequency_hz, grid_stack)[0]))
    t_nominal = abs(complex(layer_transmission(np.array([0.0]), frequency_hz, medium)[0]))
    return {"points_per_wavelength": float(points_per_wavelength), "spacing_mm": dx * 1e3,
            "points_per_period": ppp, "cfl_actual": cfl_actual, "c_ref_m_s": c_ref, "partial_volume": partial_volume,
            "abs_t_sim": t_sim, "abs_t_grid_stack": t_grid, "abs_t_nominal": t_nominal,
            "rel_error_vs_grid_stack": t_sim / t_grid - 1, "rel_error_vs_nominal": t_sim / t_nominal - 1}


def _grid_stack_1d(medium: LayeredMedium, dx: float, partial_volume: bool) -> LayeredMedium:
    """:func:`grid_medium` on a 1D grid with nodes at integer multiples of ``dx``."""
    faces = [math.ceil(round(z / dx, 9)) for z in medium.interfaces_m]
    if not medium.layers:  # one face between two half-spaces: where it sits does not change |T|
        return medium
    if not partial_volume:
        kept = [replace(la, thickness_m=(hi - lo) * dx) for la, lo, hi in zip(medium.layers, faces, faces[1:])
                if hi > lo]
        if not kept:
            raise ValueError("no layer of the stack contains a voxel centre at this spacing")
        return replace(medium, layers=tuple(kept), z_first_m=(faces[0] - 0.5) * dx)
    i0, i1 = math.floor(round(medium.z_first_m / dx + 0.5, 9)), math.ceil(round(medium.z_last_m / dx - 0.5, 9))
    z = np.arange(i0, i1 + 1) * dx
    c, rho, alpha = axis_properties(medium, z, dx, partial_volume=True)
    layers = tuple(Layer(dx, float(ci), float(ri), float(ai)) for ci, ri, ai in zip(c, rho, alpha))
    return replace(medium, layers=layers, z_first_m=float(z[0] - dx / 2))


def plot_layered(reports: list[dict], sweep: list[dict], case: LayeredCase, path) -> None:
    """Three panels: on-axis profiles (the smallest CFL of ``reports``) against the nominal reference; the
    3D transmitted-peak error vs PPW per CFL; the 1D plane-wave |T| error (``sweep``) vs the CFL number,
    with the 3D errors against the grid's own stack at their actual CFL."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 4.6), constrained_layout=True)
    plain = [r for r in reports if not r["partial_volume"]]
    cfl_min = min(r["cfl"] for r in plain)
    z = np.linspace(case.medium.z_last_m, max(r["axis"]["z_mm"][-1] for r in plain) * 1e-3, 801)
    ref = np.abs(on_axis(case.roc_m, case.diameter_m, case.frequency_hz, case.amplitude_pa, case.medium, z))
    ax1.plot(z * 1e3, ref / 1e3, "k-", lw=1.5, label="reference (nominal plate)")
    for r in [r for r in plain if r["cfl"] == cfl_min]:
        ax1.plot(r["axis"]["z_mm"], np.asarray(r["axis"]["sim_pa"]) / 1e3, "o-", ms=3, lw=0.8,
                 label=f"k-Wave, {r['points_per_wavelength']:g} PPW (CFL {r['cfl']:g})")
    ax1.set_xlabel("z from the bowl apex (mm)")
    ax1.set_ylabel("pressure amplitude on axis (kPa)")
    ax1.set_title("beyond the plate", fontsize=10)
    ax1.legend(fontsize=8)
    for cfl in sorted({r["cfl"] for r in plain}, reverse=True):
        rs = sorted([r for r in plain if r["cfl"] == cfl], key=lambda r: r["points_per_wavelength"])
        ppw = [r["points_per_wavelength"] for r in rs]
        line, = ax2.plot(ppw, [100 * r["nominal"]["peak_rel_error"] for r in rs], "o-", label=f"CFL {cfl:g}, nominal")
        ax2.plot(ppw, [100 * r["voxelised"]["peak_rel_error"] for r in rs], "s--", color=line.get_color(),
                 label=f"CFL {cfl:g}, vs the grid's stack")
    ax2.axhspan(-3, 3, color="0.9", zorder=0)
    ax2.axhline(0, color="k", lw=0.5)
    ax2.set_xlabel("points per wavelength in water")
    ax2.set_ylabel("transmitted peak error (%)")
    ax2.set_title("3D, focused bowl (grey: ±3 %)", fontsize=10)
    ax2.legend(fontsize=8)
    for ppw in sorted({s["points_per_wavelength"] for s in sweep}):
        ss = sorted([s for s in sweep if s["points_per_wavelength"] == ppw], key=lambda s: s["cfl_actual"])
        line, = ax3.plot([s["cfl_actual"] for s in ss], [100 * s["rel_error_vs_grid_stack"] for s in ss], "o-",
                         label=f"1D plane wave, {ppw:g} PPW")
        for r in [r for r in plain if r["points_per_wavelength"] == ppw]:
            ax3.plot(r["cfl_actual"], 100 * r["voxelised"]["peak_rel_error"], "*", ms=11, color=line.get_color())
    ax3.plot([], [], "k*", ms=9, label="3D focused peak (same PPW)")
    ax3.axhline(0, color="k", lw=0.5)
    ax3.set_xlim(left=0)
    ax3.set_xlabel("CFL number at c_max = 2800 m/s (actual)")
    ax3.set_ylabel("error vs the stack the grid holds (%)")
    ax3.set_title("plate transmission: time step and spacing", fontsize=10)
    ax3.legend(fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    """``python -m tfus.sim.layered_validation``: the 3D comparison, the 1D sweep, JSON and a figure."""
    import argparse  # noqa: PLC0415
    import json  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    ap = argparse.ArgumentParser(prog="python -m tfus.sim.layered_validation", description=main.__doc__)
    ap.add_argument("--case", default="bm3_small", choices=sorted(CASES))
    ap.add_argument("--ppw", type=float, nargs="+", default=[4, 6, 8], help="3D runs (points per wavelength)")
    ap.add_argument("--cfl", type=float, nargs="+", default=[0.5, 0.2], help="3D runs at each of these CFL")
    ap.add_argument("--partial-volume-ppw", type=float, nargs="*", default=[6],
                    help="3D runs with partial-volume faces (at the smallest --cfl)")
    ap.add_argument("--sweep-ppw", type=float, nargs="*", default=[6, 8, 12], help="1D plane-wave sweep")
    ap.add_argument("--sweep-cfl", type=float, nargs="*", default=[0.5, 0.3, 0.2, 0.1, 0.05])
    ap.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    ap.add_argument("--out", type=Path, default=Path("validation-layered"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    case = CASES[args.case]
    reports = []
    for cfl in args.cfl:
        reports += run_layered_comparison(args.case, args.ppw, device=args.device, cfl=cfl, partial_volume=False)
    if args.partial_volume_ppw:
        reports += run_layered_comparison(args.case, args.partial_volume_ppw, device=args.device,
                                          cfl=min(args.cfl), partial_volume=True)
    sweep, seen = [], set()
    for ppw in args.sweep_ppw:
        for cfl in args.sweep_cfl:
            s = plane_wave_transmission(case.medium, case.frequency_hz, ppw, cfl)
            if (ppw, s["points_per_period"]) not in seen:  # CFL values under the absorption limit coincide
                seen.add((ppw, s["points_per_period"]))
                sweep.append(s)
    for r in reports:
        n, v = r["nominal"], r["voxelised"]
        print(f"{r['points_per_wavelength']:4g} PPW  CFL {r['cfl']:.2f} ({r['cfl_actual']:.2f})"
              f"{'  partial volume' if r['partial_volume'] else ''}: peak {100 * n['peak_rel_error']:+.2f} %"
              f" (grid stack {100 * v['peak_rel_error']:+.2f} %), at {r['peak_z_sim_mm']:.2f} mm"
              f" (sub-voxel {r['peak_z_sim_subvoxel_mm']:.2f}) vs {n['peak_z_ref_mm']:.2f} mm,"
              f" L2 {100 * n['on_axis_rel_l2']:.2f} %, {r['runtime_s']:.0f} s")
    for s in sweep:
        print(f"1D {s['points_per_wavelength']:4g} PPW  CFL {s['cfl_actual']:.3f}: |T| {s['abs_t_sim']:.4f} vs"
              f" {s['abs_t_grid_stack']:.4f} ({100 * s['rel_error_vs_grid_stack']:+.2f} %)")
    stem = args.out / f"layered_{args.case}"
    stem.with_suffix(".json").write_text(json.dumps({"case": args.case, "reports": reports, "plane_wave": sweep},
                                                    indent=1))
    plot_layered(reports, sweep, case, stem.with_suffix(".png"))
    print(f"wrote {stem}.json and {stem}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
