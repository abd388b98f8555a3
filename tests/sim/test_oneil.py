"""The analytic reference itself (sim.oneil) and the solver against it in water (issue 2 acceptance)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfus.sim.oneil import oneil_focal_gain, oneil_on_axis
from tfus.sim.validation import CASES, compare_on_axis, run_oneil_validation, water_bowl_field


def test_oneil_matches_published_numbers_for_itrusst_bm1():
    # physics_anchors.md §1.7: R = D = 64 mm, 500 kHz, p0 = 60 kPa
    args = (64e-3, 64e-3, 500e3, 60e3)
    assert oneil_on_axis(64e-3, *args) == pytest.approx(1077.5e3, rel=1e-3)
    z = np.linspace(40e-3, 80e-3, 40001)
    p = oneil_on_axis(z, *args)
    assert p.max() == pytest.approx(1094.4e3, rel=1e-3)
    assert z[np.argmax(p)] == pytest.approx(61.93e-3, abs=0.02e-3)
    for z_mm, kpa in [(30, 110.8), (50, 347.1), (70, 894.5), (100, 30.3)]:
        assert oneil_on_axis(z_mm * 1e-3, *args) / 1e3 == pytest.approx(kpa, rel=2e-3)
    assert oneil_focal_gain(64e-3, 64e-3, 500e3) == pytest.approx(17.958, rel=1e-4)


def test_oneil_agrees_with_kwave_python_implementation():
    from tfus.sim.kwave_import import kwave_modules

    mapgen = kwave_modules().mapgen
    z = np.linspace(1e-3, 60e-3, 301)
    ours = oneil_on_axis(z, 30e-3, 26e-3, 300e3, 45e3)
    ref, _, _ = mapgen.focused_bowl_oneil(30e-3, 26e-3, 45e3 / (1000 * 1500), 300e3, 1500, 1000, z, None)
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-6)


def test_oneil_refuses_impossible_bowl():
    with pytest.raises(ValueError, match="aperture"):
        oneil_on_axis(0.01, 10e-3, 25e-3, 300e3, 1e3)


@pytest.fixture(scope="module")
def small_water_run():
    case = CASES["small"]
    return case, water_bowl_field(case)


def test_water_bowl_matches_oneil_on_axis(small_water_run):
    case, state = small_water_run
    m = compare_on_axis(state.amplitude_pa, case)["metrics"]
    assert abs(m["peak_rel_error"]) < 0.05, m
    assert abs(m["peak_shift_mm"]) <= case.spacing_m * 1e3 + 1e-9, m
    assert m["on_axis_rel_l2"] < 0.10, m
    assert m["passed"]
    assert state.convergence < 1e-2
    assert np.isfinite(state.amplitude_pa).all() and state.amplitude_pa.min() >= 0


def test_returned_box_is_whole_and_pml_absorbs(small_water_run):
    """The field covers the requested box (PML outside it) and the far end has no standing-wave ripple."""
    case, state = small_water_run
    assert state.amplitude_pa.shape == case.shape()
    cmp = compare_on_axis(state.amplitude_pa, case)
    tail = slice(-8, None)  # the last 8 voxels before the box edge, past the focus
    err = np.abs(cmp["sim_pa"][tail] - cmp["oneil_pa"][tail]) / cmp["oneil_pa"].max()
    assert err.max() < 0.03, err  # a reflecting edge would add ripples of tens of %
    lateral_edge = state.amplitude_pa[:, [0, -1], :].max()
    assert lateral_edge < 0.2 * state.amplitude_pa.max()


@pytest.mark.slow
def test_validate_default_case_writes_figure_and_json(tmp_path):
    report = run_oneil_validation(tmp_path, case="default", progress=False)
    assert report["metrics"]["passed"], report["metrics"]
    assert (tmp_path / "oneil_water.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "oneil_water.json").read_text())["metrics"]["passed"]
