"""Importing TFUScapes-format files (storage/tfuscapes.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tfus.storage import import_tfuscapes, open_dataset
from tfus.storage.tfuscapes import bowl_placement_mm, subsample_points
from tests.storage import tfuscapes_files as tf


def test_import_round_trip(tmp_path):
    src, url = tmp_path / "tfuscapes", tmp_path / "ds.zarr"
    tf.make_tree(src)
    result = import_tfuscapes(src, url, progress=False, n_points=32)
    assert result["imported"] == 6 and result["skipped"] == 0 and result["window_shape"] == [16, 16, 16]
    ds = open_dataset(url)
    t = ds.table
    assert list(t["sample_id"]) == ["A001-exp_0", "A001-exp_1", "A002-exp_0", "A002-exp_1", "B003-exp_0",
                                    "B003-exp_1"]
    assert list(t["split"]) == ["train", "train", "val", "val", "test", "test"]
    assert set(t["status"]) == {"complete"} and list(t["subject_id"][:2]) == ["A001", "A001"]
    assert ds.attrs["spacing_mm"] == [0.5, 0.5, 0.5] and ds.attrs["frequency_hz"] == 500e3
    assert ds.spec.n_transducer_points == 32
    s = ds.sample("A002-exp_1")
    with np.load(src / "data" / "A002" / "exp_1.npz") as npz:
        np.testing.assert_array_equal(s.ct_hu, npz["ct"].astype(np.float32))
        np.testing.assert_array_equal(s.pressure_pa, npz["pmap"].astype(np.float32))
        surface = {tuple(p) for p in npz["tr_coords"].astype(float)}
    np.testing.assert_array_equal(s.affine, np.diag([0.5, 0.5, 0.5, 1.0]))
    assert s.transducer_points.shape == (32, 3) and all(tuple(p) in surface for p in s.transducer_points)
    np.testing.assert_allclose(s.meta["focal_point_mm"], np.array(tf.FOCUS_VOX) * 0.5)
    assert s.meta["peak_pressure_pa"] == pytest.approx(1e5 * 12)
    np.testing.assert_allclose(s.meta["target_mm"], tf.CENTRE_VOX * 0.5, atol=0.3)   # fitted bowl centre


def test_import_resumes_and_keeps_what_is_done(tmp_path):
    src, url = tmp_path / "tfuscapes", tmp_path / "ds.zarr"
    entries = tf.make_tree(src)
    (src / "splits" / "test.txt").write_text("")                        # a first, partial run
    assert import_tfuscapes(src, url, progress=False)["imported"] == 4
    tf.make_tree(src)                                                   # the full lists
    second = import_tfuscapes(src, url, progress=False)
    assert second["imported"] == 2 and second["skipped"] == 4
    assert open_dataset(url).query()["sample_id"].tolist()[-2:] == ["B003-exp_0", "B003-exp_1"]
    assert import_tfuscapes(src, url, progress=False)["imported"] == 0  # nothing left
    assert len(open_dataset(url).table) == len(entries)
    assert open_dataset(url).spec.n_transducer_points == min(512, len(tf.bowl_coords()))


@pytest.mark.parametrize("change, message", [
    ({"pmap": None}, r"missing keys \['pmap'\]"),
    ({"ct": np.zeros((16, 16))}, "`ct` must be 3-D"),
    ({"ct": np.zeros((8, 8, 8)), "pmap": np.zeros((8, 8, 8))}, "this dataset's window"),
    ({"pmap": np.zeros((16, 16, 8))}, "differs from `ct`"),
    ({"tr_coords": np.zeros((5, 2))}, "tr_coords"),
])
def test_bad_npz_leaves_no_store(tmp_path, change, message):
    src, url = tmp_path / "tfuscapes", tmp_path / "ds.zarr"
    tf.make_tree(src)
    tf.make_npz(src / "data" / "B003" / "exp_1.npz", seed=0, **change)
    with pytest.raises(ValueError, match=message) as err:
        import_tfuscapes(src, url, progress=False)
    assert "B003/exp_1.npz" in str(err.value)
    assert not url.exists()                                             # checked before anything is written


def test_bad_values_stop_at_that_file(tmp_path):
    src, url = tmp_path / "tfuscapes", tmp_path / "ds.zarr"
    tf.make_tree(src)
    coords = tf.bowl_coords()
    coords[0] = (40, 0, 0)
    tf.make_npz(src / "data" / "A002" / "exp_0.npz", seed=0, tr_coords=coords)
    with pytest.raises(ValueError, match=r"A002/exp_0.npz: `tr_coords` has voxel indices outside"):
        import_tfuscapes(src, url, progress=False)
    t = open_dataset(url).table
    assert t[t["status"] == "complete"]["sample_id"].tolist() == ["A001-exp_0", "A001-exp_1"]


def test_layout_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no data/ folder"):
        import_tfuscapes(tmp_path, tmp_path / "ds.zarr", progress=False)
    tf.make_tree(tmp_path / "t")
    (tmp_path / "t" / "splits" / "val.txt").write_text("A001/exp_7.npz\n")
    with pytest.raises(FileNotFoundError, match="listed in splits/val.txt but missing"):
        import_tfuscapes(tmp_path / "t", tmp_path / "ds.zarr", progress=False)
    (tmp_path / "t" / "splits" / "val.txt").write_text("A001/exp_0.npz\n")
    with pytest.raises(ValueError, match="more than one split"):
        import_tfuscapes(tmp_path / "t", tmp_path / "ds.zarr", progress=False)


def test_point_subsampling_is_deterministic_and_spread():
    coords = tf.bowl_coords()
    a = subsample_points(coords, 16)
    b = subsample_points(coords[::-1].copy(), 16)
    np.testing.assert_array_equal(a, b)                                 # independent of file order
    spread = np.linalg.norm(a[:, None] - a[None], axis=2) + np.eye(16) * 99
    assert spread.min() >= 1.0                                          # no two picks on the same voxel
    assert subsample_points(coords[:3], 5).shape == (5, 3)              # too few: repeated
    position, target = bowl_placement_mm(coords, np.diag([0.5, 0.5, 0.5, 1.0]))
    np.testing.assert_allclose(target, tf.CENTRE_VOX * 0.5, atol=0.3)
    assert position[2] < target[2]                                      # the cap sits below its centre
