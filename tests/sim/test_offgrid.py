"""sim.offgrid (vectorised off-grid BLI weights) against k-wave-python's per-point loop."""

from __future__ import annotations

import numpy as np
import pytest

from tfus.sim.kwave_import import kwave_modules
from tfus.sim.offgrid import off_grid_weights, star_stencil
from tfus.sim.source import BowlSource, bowl_grid_weights


def _assert_same(fast: np.ndarray, ref: np.ndarray) -> None:
    assert fast.shape == ref.shape and fast.dtype == np.float64
    assert np.any(ref)
    np.testing.assert_allclose(fast, ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())


def _both(bowl: BowlSource, shape, pml: int, dx: float) -> tuple[np.ndarray, np.ndarray]:
    fast = bowl_grid_weights(bowl, shape, pml, dx)
    ref = bowl_grid_weights(bowl, shape, pml, dx, vectorised=False)
    return fast, ref


def test_star_stencil_matches_tol_star_size():
    s = star_stencil(0.05)  # d = ceil(1/(0.05π)) = 7
    assert s.shape[0] == 3 and np.abs(s).max() == 7
    assert np.all(np.abs(s[0] * s[1] * s[2]) <= 7)
    assert len({tuple(c) for c in s.T}) == s.shape[1]


def test_demo_bowl_matches_kwave():
    """(a) the demo preset's bowl (R = D = 40 mm) on a 64³ grid at 1.5 mm, axis along x."""
    dx = 1.5e-3
    bowl = BowlSource((6.3, 24.0, 24.0), (6.3 + 40e-3 / dx, 24.0, 24.0), 40e-3, 40e-3)
    fast, ref = _both(bowl, (64, 64, 64), 8, dx)
    _assert_same(fast, ref)


def test_tilted_bowl_matches_kwave():
    """(b) a bowl whose axis is off every grid axis."""
    bowl = BowlSource((8.2, 11.7, 21.3), (30.0, 24.1, 12.9), 20e-3, 18e-3)
    fast, ref = _both(bowl, (44, 44, 44), 6, 1e-3)
    _assert_same(fast, ref)


def test_bowl_at_grid_edge_matches_kwave():
    """(c) a bowl hanging over the grid boundary: integration points trimmed and stencils clipped."""
    bowl = BowlSource((-7.4, 3.2, 20.0), (12.0, 8.0, 20.0), 16e-3, 20e-3)
    fast, ref = _both(bowl, (40, 40, 40), 4, 1e-3)
    _assert_same(fast, ref)
    assert np.any(ref[0]) and np.any(ref[:, 0])  # weights reach the first plane: clipping happened


def test_points_on_grid_lines_collapse_like_kwave():
    """(d) points on (or within dx·1e-3 of) grid lines: tol_star keeps only the zero offset on that axis."""
    from kwave.utils.kwave_array import off_grid_points  # noqa: PLC0415  (kwave already imported below)

    kw = kwave_modules()
    dx = 1e-3
    kgrid = kw.kgrid([24, 20, 22], [dx, dx, dx])
    x, y, z = (np.asarray(v, float).ravel() for v in (kgrid.x_vec, kgrid.y_vec, kgrid.z_vec))
    points = np.array([
        [x[10], y[7] + 0.37 * dx, z[5] + 0.21 * dx],          # exactly on an x grid plane
        [x[12] + 0.4 * dx, y[9] + 2e-4 * dx, z[11]],          # on y within threshold, exactly on z
        [x[3], y[4], z[15]],                                  # on a grid node
        [x[0] + 0.3 * dx, y[1], z[21] - 5e-4 * dx],           # at the edge, on y and (nearly) z
        [x[23] - 0.5 * dx, y[10] + 0.5 * dx, z[0] + 0.5 * dx],  # halfway: closest-node ties, clipped
        [x[6] + 1.5e-3 * dx, y[6] - 0.2 * dx, z[6] + 0.6 * dx],  # just outside the on-grid threshold
    ]).T
    scale = np.array([1.0, 0.5, 2.0, 1.3, 0.7, 0.9])
    ref = off_grid_points(kgrid, points, scale, bli_tolerance=0.05, bli_type="sinc", mask_only=False)
    fast = off_grid_weights(kgrid, points, scale, bli_tolerance=0.05)
    _assert_same(fast, ref)
    for i in range(points.shape[1]):  # per point too, so a collapse cannot hide behind its neighbours
        one_ref = off_grid_points(kgrid, points[:, i:i + 1], scale[i], bli_tolerance=0.05)
        one = off_grid_weights(kgrid, points[:, i:i + 1], scale[i], bli_tolerance=0.05)
        _assert_same(one, one_ref)
        assert np.array_equal(one != 0, one_ref != 0)
    first = off_grid_weights(kgrid, points[:, :1], 1.0, bli_tolerance=0.05)
    assert np.flatnonzero(first.any(axis=(1, 2))).tolist() == [10]  # collapsed onto the x plane
    node = off_grid_weights(kgrid, points[:, 2:3], 2.0, bli_tolerance=0.05)
    assert np.count_nonzero(node) == 1 and node[3, 4, 15] == pytest.approx(2.0)


def test_chunking_does_not_change_the_result():
    kw = kwave_modules()
    kgrid = kw.kgrid([20, 20, 20], [1e-3] * 3)
    rng = np.random.default_rng(0)
    points = rng.uniform(-9e-3, 9e-3, size=(3, 50))
    a = off_grid_weights(kgrid, points, 0.3, bli_tolerance=0.05)
    b = off_grid_weights(kgrid, points, 0.3, bli_tolerance=0.05, chunk_entries=1)
    np.testing.assert_array_equal(a, b)


def test_rejects_unsupported_grids():
    kw = kwave_modules()
    with pytest.raises(ValueError, match="dx = dy = dz"):
        off_grid_weights(kw.kgrid([8, 8, 8], [1e-3, 1e-3, 2e-3]), np.zeros((3, 1)), 1.0, 0.05)
    with pytest.raises(ValueError, match="3D"):
        off_grid_weights(kw.kgrid([8, 8], [1e-3, 1e-3]), np.zeros((2, 1)), 1.0, 0.05)
    with pytest.raises(ValueError, match="bli_tolerance"):
        off_grid_weights(kw.kgrid([8, 8, 8], [1e-3] * 3), np.zeros((3, 1)), 1.0, 0.0)
