"""The streaming driver's pieces: time axis, stability, PPW check, padding, source, medium validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tfus.sim.config import SimConfig
from tfus.sim.solver import (MediumArrays, absorbing_dt_limit, check_points_per_wavelength, make_time_axis,
                        padded_layout)
from tfus.sim.source import BowlSource, drive_signal


def test_time_axis_has_integer_points_per_period_and_respects_cfl():
    cfg = SimConfig(cfl=0.3, extra_cycles=6, lockin_periods=2, ramp_cycles=2)
    ta = make_time_axis((40, 40, 50), 1e-3, 1500.0, 2800.0, 400e3, cfg)
    assert ta.points_per_period == math.ceil(2800 / (0.3 * 1e-3 * 400e3))
    assert ta.dt * ta.points_per_period * 400e3 == pytest.approx(1.0)
    assert ta.cfl_actual <= 0.3 + 1e-12
    assert ta.window_steps == 2 * ta.points_per_period
    transit_periods = 1e-3 * math.sqrt(40**2 + 40**2 + 50**2) / 1500 * 400e3
    assert ta.n_steps * ta.dt * 400e3 >= transit_periods + 2 + 6 + 4 - 1e-9
    assert ta.n_steps % ta.points_per_period == 0


def test_absorbing_stability_limit_matches_kwave_and_shortens_dt():
    from tfus.sim.kwave_import import kwave_modules

    kwave_modules()
    from kwave.kmedium import kWaveMedium
    from kwave.utils.checks import check_stability

    from tfus.sim.kwave_import import kwave_modules as km

    c = np.full((16, 16, 16), 1500.0)
    c[5:9] = 3000.0
    alpha = np.where(c > 2000, 25.0, 0.0)
    medium = MediumArrays(c, np.full_like(c, 1000.0), alpha, 2.0)
    ours = absorbing_dt_limit(medium, 1.5e-3)
    kgrid = km().kgrid([16, 16, 16], [1.5e-3] * 3)
    ref = check_stability(kgrid, kWaveMedium(sound_speed=c, density=1000.0, alpha_coeff=alpha, alpha_power=2.0,
                                             alpha_mode="no_dispersion"))
    assert ours == pytest.approx(float(ref), rel=1e-3)
    ta = make_time_axis(c.shape, 1.5e-3, 1500, 3000, 200e3, SimConfig(cfl=0.5), dt_limit=ours)
    assert ta.dt <= 0.9 * ours + 1e-15
    assert math.isinf(absorbing_dt_limit(MediumArrays.water((8, 8, 8)), 1e-3))


def test_points_per_wavelength_refused_below_3_and_warned_below_6(caplog):
    with pytest.raises(ValueError, match="points per wavelength"):
        check_points_per_wavelength(1500, 2.6e-3, 200e3)  # 2.9 PPW
    with caplog.at_level("WARNING"):
        assert check_points_per_wavelength(1500, 1.5e-3, 200e3) == pytest.approx(5.0)
    assert any("points per wavelength" in r.message for r in caplog.records)


def test_padded_layout_puts_pml_outside_and_uses_fft_friendly_sizes():
    padded, left = padded_layout((23, 40, 57), 10)
    assert left == (10, 10, 10)
    for n, m in zip((23, 40, 57), padded):
        assert m >= n + 20
        r = m
        for p in (2, 3, 5, 7):
            while r % p == 0:
                r //= p
        assert r == 1


def test_drive_signal_ramps_then_is_a_pure_sine():
    dt, f = 1 / (20 * 100e3), 100e3
    s = drive_signal(200, dt, f, 5.0, ramp_cycles=2)
    assert s[0] == 0.0 and abs(s[:40]).max() < 5.0
    t = np.arange(200) * dt
    np.testing.assert_allclose(s[40:], 5.0 * np.sin(2 * np.pi * f * t[40:]), atol=1e-9)


@pytest.mark.parametrize("bad, match", [
    (dict(sound_speed=np.full((4, 4), 1500.0)), "3D"),
    (dict(sound_speed=np.full((4, 4, 4), np.nan)), "NaN"),
    (dict(density=np.zeros((4, 4, 4))), "> 0"),
    (dict(alpha_coeff=np.zeros((4, 4, 5))), "shape"),
])
def test_medium_arrays_reject_bad_input(bad, match):
    kw = dict(sound_speed=np.full((4, 4, 4), 1500.0), density=np.full((4, 4, 4), 1000.0))
    kw.update(bad)
    with pytest.raises(ValueError, match=match):
        MediumArrays(**kw)


def test_bowl_source_rejects_bad_geometry():
    with pytest.raises(ValueError, match="axis"):
        BowlSource((1, 2, 3), (1, 2, 3), 0.03, 0.03)
    with pytest.raises(ValueError, match="exceeds twice"):
        BowlSource((0, 0, 0), (1, 0, 0), 0.01, 0.03)


def test_bowl_weights_are_c_ordered_on_the_bowl_surface():
    """The weights sit on the bowl (apex voxel has weight; the focus has none), and the source integrates
    to the bowl's area in grid cells (kWaveArray's normalisation)."""
    from tfus.sim.source import bowl_grid_weights

    bowl = BowlSource((3.0, 16.0, 16.0), (23.0, 16.0, 16.0), 20e-3, 20e-3)
    w = bowl_grid_weights(bowl, (48, 48, 48), 8, 1e-3)
    assert w.shape == (48, 48, 48)
    assert abs(w[3 + 8, 24, 24]) > abs(w[23 + 8, 24, 24]) * 100
    area_cells = 2 * np.pi * 20**2 * (1 - np.cos(np.arcsin(0.5)))
    assert w.sum() == pytest.approx(area_cells, rel=0.05)
