"""HU → (c, ρ, α): values at reference HU, water outside the skull, monotonicity, configuration checks."""

from __future__ import annotations

import numpy as np
import pytest

from tfus.sim.medium import Medium, MediumConfig, hu_for_sound_speed, hu_to_medium


def test_water_below_threshold():
    m = hu_to_medium(np.array([-1000.0, 0.0, 40.0, 300.0]), MediumConfig(), 500e3)
    np.testing.assert_array_equal(m.sound_speed_m_s, 1500.0)
    np.testing.assert_array_equal(m.density_kg_m3, 1000.0)
    np.testing.assert_array_equal(m.alpha_coeff_db_mhz_y_cm, 0.0)
    assert m.alpha_power == 2.0


def test_cortical_reference_is_itrusst_cortical_bone():
    """Typical cortical HU (1500–1800) spans the ITRUSST cortical 2800 m/s / 1850 kg/m³."""
    m = hu_to_medium(np.array([1500.0, 1625.0, 1800.0]))
    np.testing.assert_allclose(m.sound_speed_m_s[1], 2800.0, rtol=1e-4)
    np.testing.assert_allclose(m.density_kg_m3[1], 1853.125, rtol=1e-4)
    assert m.sound_speed_m_s[0] < 2800 < m.sound_speed_m_s[2]
    assert m.density_kg_m3[0] < 1850 < m.density_kg_m3[2]
    # 500 kHz absorption, y = 2: 4.0–5.0 dB/cm for cortical (ITRUSST cortical 4 dB/cm).
    assert 4.0 <= m.alpha_db_cm_at(500e3)[1] <= 5.0


def test_formula_values():
    cfg = MediumConfig()
    m = hu_to_medium(np.array([1000.0, 2000.0, 5000.0]), cfg)
    rho = 1000 + 1050 * 1000 / 2000
    np.testing.assert_allclose(m.density_kg_m3, [rho, 2050.0, 2050.0], rtol=1e-6)  # clipped at hu_max
    np.testing.assert_allclose(m.sound_speed_m_s, [1500 + 1600 * (rho - 1000) / 1050, 3100, 3100], rtol=1e-6)
    alpha_1000 = 16 + 18.8 * (1 - np.sqrt(700 / 1700))
    np.testing.assert_allclose(m.alpha_coeff_db_mhz_y_cm, [alpha_1000, 16.0, 16.0], rtol=1e-5)


def test_monotonic_in_bone():
    hu = np.linspace(301, 2000, 200)
    m = hu_to_medium(hu)
    assert np.all(np.diff(m.sound_speed_m_s) > 0)
    assert np.all(np.diff(m.density_kg_m3) > 0)
    assert np.all(np.diff(m.alpha_coeff_db_mhz_y_cm) < 0)  # denser bone: less porous, less absorbing
    assert m.sound_speed_m_s.dtype == np.float32 and m.sound_speed_m_s.shape == hu.shape


def test_shape_and_custom_constants():
    cfg = MediumConfig(sound_speed_max_m_s=2900.0, alpha_power=1.5, skull_threshold_hu=500.0)
    hu = np.full((3, 4, 5), 400.0)
    hu[1, 1, 1] = 2000.0
    m = hu_to_medium(hu, cfg)
    assert m.sound_speed_m_s.shape == (3, 4, 5)
    assert m.sound_speed_m_s[0, 0, 0] == 1500.0  # below the custom threshold
    assert m.sound_speed_m_s[1, 1, 1] == pytest.approx(2900.0) and m.alpha_power == 1.5


@pytest.mark.parametrize("field,value,match", [
    ("hu_max", -1.0, "hu_max"), ("density_max_kg_m3", 900.0, "density_max_kg_m3"),
    ("alpha_power", 0.0, "alpha_power"), ("alpha_min_db_mhz_y_cm", -1.0, "absorption"),
    ("sound_speed_min_m_s", 0.0, "sound_speed"),
])
def test_config_validation(field, value, match):
    with pytest.raises(ValueError, match=match):
        MediumConfig(**{field: value})


def test_bad_inputs():
    with pytest.raises(ValueError, match="NaN"):
        hu_to_medium(np.array([np.nan, 0.0]))
    with pytest.raises(ValueError, match="frequency_hz"):
        hu_to_medium(np.zeros(3), None, -5.0)
    with pytest.raises(ValueError, match="density_kg_m3"):
        Medium(np.zeros(3), np.zeros(4), np.zeros(3), 2.0)


def test_hu_for_sound_speed_inverts_the_map():
    for c in (1800.0, 2446.0, 2800.0, 3100.0):
        hu = hu_for_sound_speed(c)
        np.testing.assert_allclose(hu_to_medium(np.array([hu])).sound_speed_m_s[0], c, rtol=1e-6)
    assert hu_for_sound_speed(2800.0) == pytest.approx(1625.0)
    for c in (1500.0, 3200.0):  # water's, and above the map's 3100 m/s: no bone HU gives them
        with pytest.raises(ValueError, match="outside the bone range"):
            hu_for_sound_speed(c)
