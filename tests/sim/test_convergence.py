"""Grid-spacing convergence through a skull (sim.convergence)."""

from __future__ import annotations

import numpy as np
import pytest

from tfus.sim.convergence import ConvergenceStudy, compare_fields, resample_onto


@pytest.mark.parametrize("spacings, box, message", [
    ((2.0, 1.0), 48.0, "at least 3"),
    ((1.0, 1.5, 2.0), 48.0, "strictly decreasing"),
    ((2.0, 2.0, 1.0), 48.0, "strictly decreasing"),
    ((2.0, 1.0, -1.0), 48.0, "positive"),
    ((2.0, 1.5, 1.0), 0.0, "box_mm"),
])
def test_study_rejects_bad_settings(spacings, box, message):
    with pytest.raises(ValueError, match=message):
        ConvergenceStudy(spacings, box)


def test_resample_onto_is_exact_for_a_linear_field():
    """Linear interpolation reproduces a linear function of world mm between grids of other spacings."""
    coarse = np.diag([2.0, 2.0, 2.0, 1.0])
    coarse[:3, 3] = [-10.0, 4.0, 1.0]
    fine = np.diag([0.75, 0.75, 0.75, 1.0])
    fine[:3, 3] = [-8.0, 6.5, 3.0]

    def linear(affine, shape):
        idx = np.indices(shape, dtype=np.float64).reshape(3, -1)
        x, y, z = affine[:3, :3] @ idx + affine[:3, 3:4]
        return (1.5 * x - 0.5 * y + 2.0 * z + 7.0).reshape(shape)

    got = resample_onto(linear(coarse, (16, 16, 16)), coarse, fine, (20, 20, 20))
    np.testing.assert_allclose(got, linear(fine, (20, 20, 20)), rtol=1e-6, atol=1e-4)  # float32


def test_compare_fields_ignores_the_fine_grid_beyond_a_coarse_box():
    """The 0.6 mm box snaps 0.6 mm further along x than the 1 mm one (0.6..36.6 vs 0..36 mm), so its last
    slab, inside the focal search region, lies beyond the 1 mm field, where the resampler fills 0. A field
    both grids sample exactly (linear) must compare as equal: only the region all grids cover counts."""
    from types import SimpleNamespace

    from tfus.sim.config import get_preset
    from tfus.sim.ingest import axis_aligned_affine
    from tfus.sim.transducer import Bowl
    from tfus.sim.window import Window

    config = get_preset("test")
    bowl = Bowl((0.0, 0.0, 0.0), (30.0, 0.0, 0.0), 30.0, 26.0)  # focus at x = 30 mm: the mask reaches x = 36.6

    def result(spacing, origin, shape):
        affine = axis_aligned_affine(origin, spacing)
        idx = np.indices(shape, dtype=np.float64).reshape(3, -1)
        x, y, z = affine[:3, :3] @ idx + affine[:3, 3:4]
        window = Window(np.zeros(shape, np.float32), affine, np.zeros((1, 3), np.float32), bowl)
        summary = {"points_per_wavelength_min": 1.5 / spacing, "peak_pressure_pa": 1.0,
                   "focal_point_mm": [30.0, 0.0, 0.0], "convergence": 0.0, "time_steps": 1, "runtime_s": 0.0}
        return SimpleNamespace(pressure_pa=(1e5 + 1e3 * x + 500 * y - 300 * z).reshape(shape).astype(np.float32),
                               window=window, summary=summary)

    rows = compare_fields([result(1.0, (0.0, -12.0, -12.0), (37, 25, 25)),
                           result(0.6, (0.6, -12.0, -12.0), (61, 41, 41))], config)
    assert rows[-1]["rel_l2_vs_finest"] == 0
    assert rows[0]["rel_l2_vs_finest"] < 1e-5  # was 0.19: the 0.6 mm slab at x = 36.6 mm compared with 0


@pytest.mark.slow
def test_field_through_a_skull_converges_with_grid_spacing(tmp_path):
    """120 kHz through a 0.6-scale phantom at 3, 2.5, 2 and 1.5 mm: the error against the 1.5 mm field in the
    focal region falls with the spacing (measured 11 %, 6.2 %, 3.6 %), and so does the focal shift."""
    from tfus.sim.config import TransducerConfig, get_preset
    from tfus.sim.convergence import run_skull_convergence
    from tfus.sim.phantom import make_phantom
    from tfus.sim.placement import plan_placements

    config = get_preset("test").replace(transducer=TransducerConfig(frequency_hz=120e3, roc_mm=30.0,
                                                                    aperture_mm=26.0))
    head = make_phantom(0, spacing_mm=1.0, scale=0.6)
    placement = plan_placements(head, 1, 0, config)[0]
    report = run_skull_convergence(head, placement.position_mm, placement.target_mm, config,
                                   ConvergenceStudy((3.0, 2.5, 2.0, 1.5), 60.0), tmp_path, progress=False)
    levels = report["levels"]
    errors = [row["rel_l2_vs_finest"] for row in levels]
    assert errors[-1] == 0 and errors[0] > errors[1] > errors[2] > 0
    assert errors[2] < 0.06
    shifts = [row["focal_shift_vs_finest_mm"] for row in levels[:-1]]
    assert shifts[0] >= shifts[1] >= shifts[2]
    assert (tmp_path / "convergence.png").stat().st_size > 10_000
    assert all(row["convergence"] < 0.02 for row in levels)
