"""The simulation window: grid placement, CT resampling, transducer points, errors."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from tfus.sim.config import get_preset
from tfus.sim.ingest import Volume, axis_aligned_affine, save_nifti
from tfus.sim.window import MARGIN_VOX, make_window, plan_window

CONFIG = get_preset("test")  # 32³ at 1.5 mm, roc 30 mm, aperture 26 mm, 256 points


def _linear_ct(shape=(60, 64, 70), spacing=1.3) -> Volume:
    """HU linear in world mm (so linear interpolation is exact): HU = 3x − 2y + z + 100."""
    affine = axis_aligned_affine(-(np.asarray(shape) - 1) / 2 * spacing + [1.1, -0.7, 0.4], spacing)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    world = idx * spacing + affine[:3, 3]
    return Volume((world @ [3.0, -2.0, 1.0] + 100).astype(np.float32), affine)


def test_window_grid_and_points():
    vol = _linear_ct()
    position, target = (5.0, -3.0, 20.0), (0.0, 2.0, -10.0)
    w = make_window(vol, position, target, CONFIG)
    assert w.shape == (32, 32, 32) and w.ct_hu.dtype == np.float32
    assert w.spacing_mm == pytest.approx(1.5)
    np.testing.assert_allclose(w.affine[:3, :3], np.eye(3) * 1.5)
    np.testing.assert_allclose(np.round(w.affine[:3, 3] / 1.5), w.affine[:3, 3] / 1.5, atol=1e-9)  # snapped
    centre = w.voxel_to_world((np.asarray(w.shape) - 1) / 2)
    beam_mid = (np.asarray(position) + w.bowl.focus_mm) / 2
    assert np.all(np.abs(centre - beam_mid) <= 0.75 + 1e-9)
    pts = w.transducer_points_vox
    assert pts.shape == (CONFIG.n_transducer_points, 3) and pts.dtype == np.float32
    np.testing.assert_allclose(w.voxel_to_world(pts), w.bowl.surface_points_mm(CONFIG.n_transducer_points),
                               atol=1e-4)
    assert pts.min() >= MARGIN_VOX and pts.max() <= 31 - MARGIN_VOX


def test_window_resamples_ct_at_the_right_world_positions():
    vol = _linear_ct()
    w = make_window(vol, (5.0, -3.0, 20.0), (0.0, 2.0, -10.0), CONFIG)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in w.shape], indexing="ij"), axis=-1)
    expected = w.voxel_to_world(idx) @ [3.0, -2.0, 1.0] + 100
    np.testing.assert_allclose(w.ct_hu, expected, atol=0.05)


def test_window_is_deterministic_and_outside_is_water():
    vol = Volume(np.full((30, 30, 30), 500.0, np.float32), axis_aligned_affine([-15, -15, -15], 1.0))
    a = make_window(vol, (0.0, 0.0, 10.0), (0.0, 0.0, -20.0), CONFIG)
    b = make_window(vol, (0.0, 0.0, 10.0), (0.0, 0.0, -20.0), CONFIG)
    np.testing.assert_array_equal(a.ct_hu, b.ct_hu)
    np.testing.assert_array_equal(a.affine, b.affine)
    assert a.ct_hu[0, 0, 0] == 0.0 and a.ct_hu[16, 16, 16] == pytest.approx(500.0)


def test_oblique_axis_fits():
    vol = _linear_ct()
    w = make_window(vol, (12.0, 12.0, 12.0), (0.0, 0.0, 0.0), CONFIG)  # axis along (−1, −1, −1)/√3
    assert w.transducer_points_vox.min() >= MARGIN_VOX


def test_window_too_small():
    with pytest.raises(ValueError, match="window too small for the transducer"):
        make_window(_linear_ct(), (0.0, 0.0, 10.0), (0.0, 0.0, -10.0), CONFIG.replace(window_shape=(16, 16, 16)))


def test_apex_outside_ct():
    with pytest.raises(ValueError, match="outside the CT volume"):
        make_window(_linear_ct(), (0.0, 0.0, 200.0), (0.0, 0.0, 0.0), CONFIG)


def test_target_equals_position():
    with pytest.raises(ValueError, match="must differ"):
        make_window(_linear_ct(), (1.0, 2.0, 3.0), (1.0, 2.0, 3.0), CONFIG)


def test_bad_position_values():
    with pytest.raises(ValueError, match="position_mm"):
        make_window(_linear_ct(), (1.0, 2.0), (1.0, 2.0, 3.0), CONFIG)


def test_nan_file_named(tmp_path):
    data = np.zeros((20, 20, 20), np.float32)
    data[3, 3, 3] = np.nan
    path = tmp_path / "nanhead.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    with pytest.raises(ValueError, match="nanhead.nii.gz"):
        make_window(path, (5.0, 5.0, 5.0), (10.0, 10.0, 10.0), CONFIG)


def test_window_from_path_matches_volume(tmp_path):
    vol = _linear_ct()
    path = save_nifti(vol.hu, vol.affine, tmp_path / "ct.nii.gz")
    a = make_window(path, (5.0, -3.0, 20.0), (0.0, 2.0, -10.0), CONFIG)
    b = make_window(vol, (5.0, -3.0, 20.0), (0.0, 2.0, -10.0), CONFIG)
    np.testing.assert_allclose(a.ct_hu, b.ct_hu, atol=1e-3)


def test_whole_ct_and_crop():
    vol = _linear_ct()
    whole = CONFIG.replace(window_shape=None)
    affine, shape, _ = plan_window(vol, (5.0, -3.0, 20.0), (0.0, 2.0, -10.0), whole)
    extent = (np.asarray(vol.shape) - 1) * 1.3
    assert np.all(np.abs((np.asarray(shape) - 1) * 1.5 - extent) <= 1.5 + 1e-9)
    w = make_window(vol, (5.0, -3.0, 20.0), (0.0, 2.0, -10.0), whole, crop_mm=(50, 50, 60))
    assert np.all(np.abs(np.asarray(w.shape) - (np.array([50, 50, 60]) / 1.5 + 1)) <= 1)
    with pytest.raises(ValueError, match="window too small"):
        make_window(vol, (5.0, -3.0, 20.0), (0.0, 2.0, -10.0), whole, crop_mm=20)
    with pytest.raises(ValueError, match="crop_mm"):
        plan_window(vol, (5.0, -3.0, 20.0), (0.0, 2.0, -10.0), whole, crop_mm=-3)
