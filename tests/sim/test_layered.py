"""The semi-analytic layered reference (sim.layered): O'Neil in water, textbook plate transmission, ITRUSST."""

from __future__ import annotations

import numpy as np
import pytest

from tfus.sim.config import PRESETS
from tfus.sim.layered import (
    ITRUSST_SC1, Layer, LayeredMedium, SpectralSettings, bowl_field_through_layers, bowl_pressure_on_plane,
    complex_wavenumber, itrusst_bm3_medium, itrusst_bm4_medium, layer_transmission, on_axis, rim_depth_m,
)
from tfus.sim.oneil import oneil_on_axis

DEMO = PRESETS["demo"].transducer  # R = D = 40 mm, 200 kHz, 60 kPa
DEMO_BOWL = (DEMO.roc_mm * 1e-3, DEMO.aperture_mm * 1e-3, DEMO.frequency_hz, DEMO.amplitude_pa)
F = 500e3


def _focal_comparison(p: np.ndarray, z: np.ndarray) -> tuple[float, float]:
    """(max |Δ amplitude| over O'Neil's −6 dB region / O'Neil's peak, peak shift in m)."""
    ref = oneil_on_axis(z, *DEMO_BOWL)
    focal = ref >= 0.5 * ref.max()
    err = np.max(np.abs(np.abs(p) - ref)[focal]) / ref.max()
    return float(err), float(z[np.argmax(np.abs(p))] - z[np.argmax(ref)])


@pytest.mark.parametrize("method", ["ring", "plane"])
@pytest.mark.parametrize("layers", [(), (Layer(4e-3, 1500.0, 1000.0), Layer(2e-3, 1500.0, 1000.0))])
def test_reduces_to_oneil_in_water(method, layers):
    medium = LayeredMedium(layers, z_first_m=12e-3)  # the demo bowl's rim plane is at 5.4 mm
    z = np.linspace(medium.z_last_m, 2 * DEMO_BOWL[0], 1201)
    p = on_axis(*DEMO_BOWL, medium, z, SpectralSettings(method=method))
    err, shift = _focal_comparison(p, z)
    assert err < 0.01 and abs(shift) < 0.5e-3, (err, shift)
    if method == "ring":  # the exact spectrum: O'Neil's complex field (phase convention included)
        ref = oneil_on_axis(z, *DEMO_BOWL, complex_field=True)
        np.testing.assert_allclose(p, ref, rtol=0, atol=1e-6 * np.abs(ref).max())


def test_off_axis_field_in_water_is_the_rayleigh_integral():
    medium = LayeredMedium((), z_first_m=10e-3)
    z, r = np.array([25e-3, 40e-3, 55e-3]), np.linspace(0, 30e-3, 31)
    field = bowl_field_through_layers(*DEMO_BOWL, medium, z, r)
    for i, zi in enumerate(z):
        direct = bowl_pressure_on_plane(*DEMO_BOWL, zi, r)
        np.testing.assert_allclose(field[i], direct, rtol=0, atol=1e-6 * np.abs(direct).max())


def _textbook_plate(z1, layer: Layer, z3, frequency_hz):
    """T = 2·Z3 / [(Z1 + Z3)·cos(k2·L) + i·(Z2 + Z1·Z3/Z2)·sin(k2·L)] (e^{+iωt}; Kinsler et al. §6.3),
    with k2 = ω/c2 − i·α2 and Z2 = ρ2·ω/k2 for a lossy plate."""
    k2 = complex_wavenumber(frequency_hz, layer.sound_speed_m_s, layer.alpha_db_mhz2_cm)
    z2 = layer.density_kg_m3 * 2 * np.pi * frequency_hz / k2
    kl = k2 * layer.thickness_m
    return 2 * z3 / ((z1 + z3) * np.cos(kl) + 1j * (z2 + z1 * z3 / z2) * np.sin(kl))


def _plate(thickness_m: float, alpha: float = 0.0) -> tuple[LayeredMedium, Layer]:
    layer = Layer(thickness_m, 2800.0, 1850.0, alpha)
    return LayeredMedium((layer,), 30e-3, c_far_m_s=1560.0, rho_far_kg_m3=1040.0), layer


@pytest.mark.parametrize("plate, cos_kl", [("thin", 1.0), ("half-wave", -1.0)])
@pytest.mark.parametrize("alpha", [0.0, 16.0])
def test_single_plate_normal_incidence_matches_textbook(plate, cos_kl, alpha):
    thickness = 2800.0 / F / (10_000 if plate == "thin" else 2)  # λ/10⁴ or λ/2 of cortical bone, 500 kHz
    medium, layer = _plate(thickness, alpha)
    z1, z3 = 1500.0 * 1000.0, 1560.0 * 1040.0
    t = layer_transmission(np.array([0.0]), F, medium)[0]
    assert t == pytest.approx(_textbook_plate(z1, layer, z3, F), rel=1e-12)
    if alpha == 0:  # the limits: T = ±2·Z3/(Z1 + Z3), the plate is acoustically transparent
        assert t == pytest.approx(cos_kl * 2 * z3 / (z1 + z3), rel=2e-3 if plate == "thin" else 1e-12)
        assert abs(t) ** 2 * z1 / z3 == pytest.approx(4 * z1 * z3 / (z1 + z3) ** 2, rel=4e-3)  # intensity
    else:  # absorption only lowers the transmission
        assert abs(t) < abs(_textbook_plate(z1, Layer(thickness, 2800.0, 1850.0), z3, F))


@pytest.mark.parametrize("kr_over_k", [0.2, 0.4, 0.9])
def test_oblique_single_interface_is_fresnel(kr_over_k):
    """No layer: T = 2·Z2·cos θ1 / (Z2·cos θ1 + Z1·cos θ2), Z = ρc, Snell's law (cos θ2 imaginary beyond
    the critical angle)."""
    medium = LayeredMedium((), 30e-3, c_far_m_s=2800.0, rho_far_kg_m3=1850.0)
    k1 = complex_wavenumber(F, 1500.0).real
    sin1 = kr_over_k
    cos1, cos2 = np.sqrt(1 - sin1**2), np.sqrt(complex(1 - (sin1 * 2800.0 / 1500.0) ** 2))
    cos2 = -cos2 if cos2.imag > 0 else cos2  # the decaying branch
    z1, z2 = 1.5e6, 2800.0 * 1850.0
    t = layer_transmission(np.array([kr_over_k * k1]), F, medium)[0]
    assert t == pytest.approx(2 * z2 * cos1 / (z2 * cos1 + z1 * cos2), rel=1e-12)


def test_quarter_wave_matching_layer_transmits_all_energy():
    z1, z3 = 1.5e6, 6.0e6
    c2 = 2000.0
    matching = Layer(c2 / F / 4, c2, np.sqrt(z1 * z3) / c2)
    medium = LayeredMedium((matching,), 30e-3, c_far_m_s=3000.0, rho_far_kg_m3=z3 / 3000.0)
    t = layer_transmission(np.array([0.0]), F, medium)[0]
    assert abs(t) ** 2 * z1 / z3 == pytest.approx(1.0, rel=1e-12)


def test_evanescent_components_decay_without_overflow():
    medium = itrusst_bm4_medium()
    k = complex_wavenumber(F, 1500.0).real
    kr = np.linspace(0, 50 * k, 5001)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is the decay
        t = layer_transmission(kr, F, medium)
    assert np.isfinite(t).all()
    assert np.abs(t[kr > 2 * k]).max() < 1e-6  # 10.5 mm of stack, decaying at ≥ sqrt(3)·k
    assert np.abs(t).max() < 5  # bounded (no spurious growth)


def test_bm4_matches_published_itrusst_models():
    """physics_anchors.md §1.8 [S]: BM4-SC1 brain peak 299.6–317.8 kPa at 56.5–58 mm, p(64 mm) 257.7–270.7
    kPa across j-Wave, mSOUND, OptimUS, Salvus, Sim4Life."""
    medium = itrusst_bm4_medium()
    z = np.linspace(medium.z_last_m, 120e-3, 1661)
    p = np.abs(on_axis(**ITRUSST_SC1, medium=medium, z_m=z))
    assert 295e3 < p.max() < 320e3
    assert 56.5e-3 - 0.5e-3 <= z[np.argmax(p)] <= 58e-3 + 0.5e-3
    assert 255e3 < np.interp(64e-3, z, p) < 275e3


def test_plane_route_agrees_with_ring_route_through_bm3():
    medium = itrusst_bm3_medium()
    z = np.linspace(medium.z_last_m, 100e-3, 201)
    ring = on_axis(**ITRUSST_SC1, medium=medium, z_m=z)
    plane = on_axis(**ITRUSST_SC1, medium=medium, z_m=z, settings=SpectralSettings("plane", radius_factor=32))
    np.testing.assert_allclose(plane, ring, rtol=0, atol=1e-7 * np.abs(ring).max())  # measured 4e-9


def test_field_map_is_focused_on_axis():
    medium = itrusst_bm3_medium()
    z, r = np.arange(37e-3, 120e-3, 0.5e-3), np.arange(0, 35e-3, 0.5e-3)
    field = bowl_field_through_layers(**ITRUSST_SC1, medium=medium, z_m=z, r_m=r)
    assert field.shape == (z.size, r.size) and np.isfinite(field).all()
    iz, ir = np.unravel_index(np.argmax(np.abs(field)), field.shape)
    assert ir == 0 and 45e-3 < z[iz] < 64e-3  # on axis, pulled towards the transducer by the plate
    assert np.abs(field).max() < oneil_on_axis(np.linspace(40e-3, 80e-3, 401), **{
        "roc_m": 64e-3, "aperture_m": 64e-3, "frequency_hz": F, "amplitude_pa": 60e3}).max()


def test_itrusst_geometries():
    bm3, bm4 = itrusst_bm3_medium(), itrusst_bm4_medium()
    np.testing.assert_allclose(bm3.interfaces_m * 1e3, [30.0, 36.5])
    np.testing.assert_allclose(bm4.interfaces_m * 1e3, [26.0, 30.0, 31.5, 35.5, 36.5])
    assert [la.name for la in bm4.layers] == ["skin", "cortical", "trabecular", "cortical"]
    assert [la.alpha_db_mhz2_cm for la in bm4.layers] == pytest.approx([0.8, 16.0, 32.0, 16.0])
    assert (bm4.c_far_m_s, bm4.rho_far_kg_m3, bm4.alpha_far_db_mhz2_cm) == pytest.approx((1560, 1040, 1.2))
    np.testing.assert_allclose(itrusst_bm3_medium(scale=0.5).interfaces_m * 1e3, [15.0, 18.25])
    assert rim_depth_m(64e-3, 64e-3) == pytest.approx(8.574e-3, abs=1e-6)


@pytest.mark.parametrize("make, field", [
    (lambda: Layer(-1e-3, 2800, 1850), "thickness_m"),
    (lambda: Layer(1e-3, 0, 1850), "sound_speed_m_s"),
    (lambda: Layer(1e-3, 2800, float("nan")), "density_kg_m3"),
    (lambda: Layer(1e-3, 2800, 1850, -1), "alpha_db_mhz2_cm"),
    (lambda: LayeredMedium((), 0.0), "z_first_m"),
    (lambda: LayeredMedium((), 0.03, rho_far_kg_m3=-1), "rho_far_kg_m3"),
    (lambda: LayeredMedium(("bone",), 0.03), "layers"),
    (lambda: SpectralSettings(method="fft"), "method"),
    (lambda: SpectralSettings(taper_fraction=1.0), "taper_fraction"),
])
def test_invalid_inputs_name_the_field(make, field):
    with pytest.raises(ValueError, match=field):
        make()


def test_invalid_evaluation_points_and_bowl():
    medium = itrusst_bm3_medium()
    with pytest.raises(ValueError, match="z_m"):
        on_axis(**ITRUSST_SC1, medium=medium, z_m=[33e-3])  # inside the plate
    with pytest.raises(ValueError, match="z_first_m"):
        on_axis(**ITRUSST_SC1, medium=LayeredMedium((), 5e-3), z_m=[40e-3])  # inside the bowl
    with pytest.raises(ValueError, match="diameter_m"):
        on_axis(30e-3, 70e-3, F, 60e3, medium, [40e-3])
    with pytest.raises(ValueError, match="r_m"):
        bowl_field_through_layers(**ITRUSST_SC1, medium=medium, z_m=[40e-3], r_m=[-1e-3])


def test_layers_on_the_simulation_grid():
    from tfus.sim.layered_validation import CASES, axial_positions_m, medium_arrays, voxelised_medium

    case = CASES["bm3_small"]  # plate 14.06–17.11 mm; at 4 PPW voxel centres every 1.25 mm
    grid = case.grid(4)
    z = axial_positions_m(grid)
    arrays = medium_arrays(case.medium, grid)
    assert arrays.sound_speed.shape == grid.shape()
    axis_c = arrays.sound_speed[:, 0, 0]
    np.testing.assert_allclose(z[axis_c == 2800.0] * 1e3, [15.0, 16.25])
    assert axis_c[z < 14e-3].max() == 1500.0 and set(axis_c[z > 17.2e-3]) == {1560.0}
    np.testing.assert_allclose(np.unique(arrays.alpha_coeff[:, 0, 0]), [0.0, 1.2, 16.0], rtol=1e-6)
    vox = voxelised_medium(case.medium, grid)  # faces on the voxel faces around those two centres
    np.testing.assert_allclose(vox.interfaces_m * 1e3, [14.375, 16.875])


def test_partial_volume_keeps_each_voxels_mass_and_compliance():
    from tfus.sim.layered_validation import CASES, axial_positions_m, grid_medium, medium_arrays

    case = CASES["bm3_small"]
    grid = case.grid(6)  # plate 14.06–17.11 mm; voxels 0.833 mm, faces at 13.75 + k·0.833 mm
    z, dx = axial_positions_m(grid), grid.spacing_m
    arrays = medium_arrays(case.medium, grid, partial_volume=True)
    c, rho = arrays.sound_speed[:, 0, 0].astype(float), arrays.density[:, 0, 0].astype(float)
    lo, hi = z[0] - dx / 2, z[-1] + dx / 2  # the whole axis: ∫ρ dz and ∫dz/(ρc²) of the nominal stack
    fluids = [(1000.0, 1500.0, case.medium.z_first_m - lo), (1850.0, 2800.0, case.medium.layers[0].thickness_m),
              (1040.0, 1560.0, hi - case.medium.z_last_m)]
    assert rho.sum() * dx == pytest.approx(sum(r * t for r, _, t in fluids), rel=1e-6)
    assert (1 / (rho * c**2)).sum() * dx == pytest.approx(sum(t / (r * v**2) for r, v, t in fluids), rel=1e-6)
    assert set(np.round(c[(z > 14.5e-3) & (z < 16.8e-3)])) == {2800.0}
    stack = grid_medium(case.medium, grid, partial_volume=True)  # the 2 mixed voxels and 3 bone voxels
    np.testing.assert_allclose(stack.interfaces_m * 1e3, 13.75 + np.arange(6) * dx * 1e3)
    np.testing.assert_allclose([la.sound_speed_m_s for la in stack.layers], c[(z > 14e-3) & (z < 17.6e-3)],
                               rtol=1e-6)


def test_subvoxel_peak_is_the_parabola_vertex():
    from tfus.sim.layered_validation import subvoxel_peak

    z = np.arange(10) * 0.5
    assert subvoxel_peak(z, 3 - (z - 2.2) ** 2) == pytest.approx(2.2)
    assert subvoxel_peak(z, z) == 4.5  # maximum at the end: that sample


def test_plane_wave_scheme_through_the_plate():
    """The solver's scheme in 1D (normal incidence) through bm3_small's staircased plate, against the exact
    |T| of that stack: measured −2.94 % at 6 PPW and 36 points per period (bm3_small's time step at CFL 0.5
    after the absorption limit; the 3D focused peak: −2.94 %), −2.28 % at CFL 0.1, −0.58 % at 12 PPW."""
    from tfus.sim.layered_validation import CASES, plane_wave_transmission

    case = CASES["bm3_small"]

    def err(**kw):
        return plane_wave_transmission(case.medium, case.frequency_hz, **kw)["rel_error_vs_grid_stack"]

    coarse_dt = err(points_per_wavelength=6, points_per_period=36)
    fine_dt = err(points_per_wavelength=6, cfl=0.1)
    assert -0.035 < coarse_dt < -0.025 and coarse_dt + 0.005 < fine_dt < -0.015, (coarse_dt, fine_dt)
    assert abs(err(points_per_wavelength=12, cfl=0.1)) < 0.01
    water = LayeredMedium((Layer(3e-3, 1500.0, 1000.0),), 14e-3)  # no contrast: |T| = 1
    assert plane_wave_transmission(water, 300e3, 6, 0.5)["abs_t_sim"] == pytest.approx(1.0, abs=1e-3)


def test_kwave_through_a_plate_is_near_the_reference():
    """The cheapest comparison (bm3_small at 4 PPW, CFL 0.2, 41×32×32, ~10 s): measured peak −2.2 %,
    shift −0.76 mm."""
    from tfus.sim.layered_validation import CASES, compare_with_reference, simulate

    state = simulate(CASES["bm3_small"], 4)
    report = compare_with_reference(state.amplitude_pa, CASES["bm3_small"], 4)
    assert abs(report["nominal"]["peak_rel_error"]) < 0.06, report
    assert abs(report["nominal"]["peak_shift_mm"]) <= report["spacing_mm"], report
    assert report["nominal"]["on_axis_rel_l2"] < 0.10, report
    assert state.convergence < 1e-2
