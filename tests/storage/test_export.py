"""NIfTI export, the three-slice PNG and stats (storage/export.py, storage/stats.py)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from tfus.storage import export_sample, open_dataset, render_sample_png, stats
from tests.storage.helpers import SHAPE, key_of, make_store, sample_arrays


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    url = tmp_path_factory.mktemp("e") / "ds.zarr"
    ds = make_store(url, n=5, write=range(4))
    ds.mark_failed(key_of(4), "out of memory")
    return str(url)


def test_export_round_trips_data_and_affine(store, tmp_path):
    paths = export_sample(store, "s0003", tmp_path / "out")
    want = sample_arrays(3)
    ct, p = nib.load(paths["ct"]), nib.load(paths["pressure"])
    np.testing.assert_array_equal(ct.get_fdata(dtype=np.float32), want["ct_hu"])
    np.testing.assert_array_equal(p.get_fdata(dtype=np.float32), want["pressure_pa"])
    np.testing.assert_allclose(ct.affine, want["affine"])
    np.testing.assert_allclose(p.affine, want["affine"])
    voxel = np.array([2, 3, 4, 1.0])                       # a voxel maps to the same world point in both
    np.testing.assert_allclose(p.affine @ voxel, want["affine"] @ voxel)
    meta = json.loads(open(paths["meta"]).read())
    assert meta["sample_id"] == "s0003" and meta["config"]["i"] == 3
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ct.nii.gz", "pressure.nii.gz", "sample.json"]


def test_export_unknown_or_incomplete_sample(store, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        export_sample(store, "nope", tmp_path / "x")
    with pytest.raises(ValueError, match=r"not complete \(status failed: out of memory\)"):
        export_sample(store, "s0004", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_render_png(store, tmp_path):
    png = render_sample_png(store, "s0001", tmp_path / "p" / "s1.png")
    data = open(png, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_stats(store):
    s = stats(store)
    assert s["n_samples"] == 5
    assert s["status"] == {"complete": 4, "failed": 1}
    assert s["split"] == {"test": 1, "train": 2, "val": 1}
    assert s["subjects"] == {"subj0": 2, "subj1": 1, "subj2": 1}
    assert s["failures"] == [{"sample_id": "s0004", "key": key_of(4), "reason": "out of memory"}]
    assert s["window_shape"] == list(SHAPE) and s["uncommitted_complete"] == 0
    assert s["bytes"] > 4 * 2 * np.prod(SHAPE)           # at least the (incompressible) float data
    assert open_dataset(store).table["status"].tolist().count("complete") == 4
