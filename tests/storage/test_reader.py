"""The torch-free map-style reader (storage/reader.py)."""

from __future__ import annotations

import multiprocessing as mp
import pickle

import numpy as np
import pytest

from tfus.storage import SampleReader
from tests.storage.helpers import make_store, sample_arrays


def _sum_item(reader, i):
    return float(reader[i]["pressure_pa"].sum())


def test_reader_items_and_split(tmp_path):
    url = tmp_path / "ds.zarr"
    make_store(url, n=6, write=range(5))
    reader = SampleReader(url, "train")
    assert len(reader) == 3 and reader.sample_ids == ["s0000", "s0001", "s0004"]
    item = reader[2]
    assert item["sample_id"] == "s0004" and item["index"] == 4
    np.testing.assert_array_equal(item["ct_hu"], sample_arrays(4)["ct_hu"])
    assert set(item) == {"ct_hu", "pressure_pa", "affine", "transducer_points", "transducer_drive", "sample_id",
                         "index"}
    np.testing.assert_array_equal(item["transducer_drive"], np.tile([0.0, 1.0, 0.0], (len(item["transducer_points"]), 1)))
    with pytest.raises(IndexError):
        reader[3]
    only = SampleReader(url, None, fields=("pressure_pa",))
    assert len(only) == 5 and set(only[0]) == {"pressure_pa", "sample_id", "index"}


def test_reader_pickles_and_reopens_in_spawned_workers(tmp_path):
    url = tmp_path / "ds.zarr"
    make_store(url, n=4, write=range(4))
    reader = SampleReader(url)
    reader[0]                                               # opened in this process …
    clone = pickle.loads(pickle.dumps(reader))              # … but the handle is not pickled
    assert clone._ds is None
    with mp.get_context("spawn").Pool(2) as pool:
        sums = pool.starmap(_sum_item, [(reader, i) for i in range(4)])
    np.testing.assert_allclose(sums, [float(sample_arrays(i)["pressure_pa"].sum()) for i in range(4)], rtol=1e-6)


def test_reader_with_aux(tmp_path):
    url = tmp_path / "ds.zarr"
    ds = make_store(url, n=2, write=range(2))
    for i in range(2):
        ds.write_aux("free_field", f"s{i:04d}", np.full((8, 9, 10), i + 1.0))
    item = SampleReader(url, aux=("free_field",))[1]
    assert float(item["free_field"].mean()) == 2.0
    with pytest.raises(ValueError, match="`fields`"):
        SampleReader(url, fields=("ct",))
