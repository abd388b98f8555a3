"""Bowl geometry: axis, focus, rim, surface points, validation."""

from __future__ import annotations

import numpy as np
import pytest

from tfus.sim.transducer import Bowl


def _bowl(**kw) -> Bowl:
    args = dict(apex_mm=(10.0, -5.0, 3.0), target_mm=(10.0, 25.0, 43.0), roc_mm=64.0, aperture_mm=64.0)
    args.update(kw)
    return Bowl(**args)


def test_axis_focus_depth():
    b = _bowl()
    np.testing.assert_allclose(b.axis, [0, 0.6, 0.8])
    np.testing.assert_allclose(b.focus_mm, [10.0, -5.0 + 0.6 * 64, 3.0 + 0.8 * 64])
    assert b.depth_mm == pytest.approx(64 - np.sqrt(64 ** 2 - 32 ** 2))  # 8.574 mm (ITRUSST SC1)
    assert b.half_angle_rad == pytest.approx(np.pi / 6)


def test_surface_points_lie_on_the_cap():
    b = _bowl()
    pts = b.surface_points_mm(500)
    assert pts.shape == (500, 3)
    np.testing.assert_allclose(np.linalg.norm(pts - b.focus_mm, axis=1), 64.0, rtol=1e-9)
    # All on the transducer side of the rim plane, within the aperture.
    axial = (pts - np.asarray(b.apex_mm)) @ b.axis
    assert axial.min() >= -1e-9 and axial.max() <= b.depth_mm + 1e-9
    radial = np.linalg.norm((pts - b.focus_mm) - np.outer((pts - b.focus_mm) @ b.axis, b.axis), axis=1)
    assert radial.max() <= 32.0 + 1e-9
    assert radial.max() > 31.5  # reaches the rim


def test_surface_points_are_quasi_uniform_and_deterministic():
    b = _bowl()
    pts = b.surface_points_mm(2000)
    np.testing.assert_array_equal(pts, _bowl().surface_points_mm(2000))
    # Equal area: the fraction of points within polar angle θ follows (1 - cos θ)/(1 - cos θmax).
    cos_t = (np.asarray(b.apex_mm) - b.focus_mm) @ (pts - b.focus_mm).T / 64.0 ** 2
    theta_half = np.arccos(1 - 0.5 * (1 - np.cos(np.pi / 6)))
    assert np.mean(np.arccos(np.clip(cos_t, -1, 1)) <= theta_half) == pytest.approx(0.5, abs=0.01)
    # Azimuthal balance: the centroid lies on the axis.
    centroid = pts.mean(axis=0) - b.focus_mm
    assert np.linalg.norm(centroid - (centroid @ b.axis) * b.axis) < 0.2


def test_rim_and_bounding_box():
    b = _bowl(target_mm=(10.0, -5.0, 100.0))  # axis +z
    rim = b.rim_points_mm(90)
    np.testing.assert_allclose(rim[:, 2], 3.0 + b.depth_mm)
    np.testing.assert_allclose(np.linalg.norm(rim[:, :2] - [10.0, -5.0], axis=1), 32.0)
    lo, hi = b.bounding_box_mm()
    np.testing.assert_allclose(lo, [10 - 32, -5 - 32, 3.0], atol=1e-3)
    np.testing.assert_allclose(hi, [10 + 32, -5 + 32, 3.0 + b.depth_mm], atol=1e-3)


def test_hemisphere_bounding_box_includes_sphere_extremes():
    b = Bowl((0.0, 0.0, 0.0), (0.0, 0.0, 1.0), 10.0, 20.0)  # a full hemisphere: rim at the focus plane
    lo, hi = b.bounding_box_mm()
    np.testing.assert_allclose(lo, [-10, -10, 0], atol=1e-6)
    np.testing.assert_allclose(hi, [10, 10, 10], atol=1e-6)


@pytest.mark.parametrize("kw,match", [
    (dict(target_mm=(10.0, -5.0, 3.0)), "must differ"),
    (dict(aperture_mm=130.0), "twice"),
    (dict(roc_mm=0.0), "roc_mm"),
    (dict(aperture_mm=-1.0), "aperture_mm"),
    (dict(apex_mm=(1.0, 2.0)), "apex_mm"),
    (dict(target_mm=(np.nan, 0.0, 0.0)), "target_mm"),
])
def test_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        _bowl(**kw)


def test_from_config():
    from tfus.sim.config import TransducerConfig

    b = Bowl.from_config((0, 0, 0), (0, 0, 5), TransducerConfig(roc_mm=30.0, aperture_mm=26.0))
    assert b.roc_mm == 30.0 and b.aperture_mm == 26.0
    np.testing.assert_allclose(b.focus_mm, [0, 0, 30.0])
