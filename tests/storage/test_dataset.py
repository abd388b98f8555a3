"""Round trips, reserve/commit semantics, plain-Zarr and xarray readability (storage/dataset.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from tfus.storage import DatasetSpec, SampleRecord, create_dataset, open_dataset, write_sample
from tests.storage.helpers import SHAPE, SPEC, key_of, make_store, meta, record, sample_arrays


def test_round_trip_every_field(tmp_path):
    url = tmp_path / "ds.zarr"
    make_store(url)
    ds = open_dataset(url)
    for i in range(4):
        s = ds.sample(f"s{i:04d}")
        want = sample_arrays(i)
        np.testing.assert_array_equal(s.ct_hu, want["ct_hu"])
        np.testing.assert_array_equal(s.pressure_pa, want["pressure_pa"])
        np.testing.assert_array_equal(s.affine, want["affine"])
        np.testing.assert_array_equal(s.transducer_points, want["transducer_points"])
        assert s.ct_hu.dtype == np.float32 and s.ct_hu.shape == SHAPE
        assert s.meta["config"] == {"i": i, "preset": "test"}
        assert s.meta["summary"] == {"i": i, "grid_shape": list(SHAPE)}
        assert s.meta["peak_pressure_pa"] == pytest.approx(float(want["pressure_pa"].max()))
        assert s.meta["position_mm"] == (float(i), 0.0, 1.0)
    assert [s.sample_id for s in ds.samples(["s0002", "s0000"])] == ["s0002", "s0000"]
    assert ds.sample(key_of(1)).sample_id == "s0001"   # a key works as well as a sample id


def test_table_columns_and_status(tmp_path):
    ds = make_store(tmp_path / "ds.zarr", n=6, write=range(4))
    ds.mark_failed(key_of(5), "solver diverged")
    t = open_dataset(tmp_path / "ds.zarr").table
    assert list(t.columns) == ["index", "sample_id", "key", "subject_id", "split", "status", "reason",
                               "position_mm", "target_mm", "focal_point_mm", "peak_pressure_pa",
                               "frequency_hz", "runtime_s", "transducer", "focal_distance_mm",
                               "ring_phases_rad", "source", "source_t1", "skull_volume_ml",
                               "skull_thickness_median_mm", "skull_thickness_p5_mm", "skull_thickness_p95_mm",
                               "vault_enclosed_fraction"]
    assert set(t["source"]) == {"ct"} and t["skull_volume_ml"].isna().all()  # no subject facts recorded
    assert list(t["status"]) == ["complete"] * 4 + ["pending", "failed"]
    assert t.loc[5, "reason"] == "solver diverged"
    assert t.loc[2, "focal_point_mm"] == (1.0, 2.0, 2.0)
    assert ds.complete_keys() == {key_of(i) for i in range(4)}


def test_complete_before_commit_and_after(tmp_path):
    url = tmp_path / "ds.zarr"
    ds = make_store(url, n=4, write=[0], commit=False)
    reader = open_dataset(url)
    assert list(reader.table["status"]) == ["complete", "pending", "pending", "pending"]
    committed = zarr.open_group(str(url), mode="r", use_consolidated=False)["status"][:]
    assert list(committed) == ["pending"] * 4          # the record alone makes it complete
    assert ds.commit() == 1
    assert list(zarr.open_group(str(url), mode="r", use_consolidated=False)["status"][:]) == \
        ["complete", "pending", "pending", "pending"]
    assert ds.commit() == 0                             # nothing left to fold
    write_sample(url, key_of(2), **sample_arrays(2), meta=meta(2))
    assert list(reader.refresh().table["status"]) == ["complete", "pending", "complete", "pending"]
    assert reader.refresh().table.loc[2, "runtime_s"] == 2.5


def test_reserve_keeps_indices_and_appends(tmp_path):
    ds = create_dataset(tmp_path / "ds.zarr", SPEC, {})
    first = ds.reserve([record(0), record(1)])
    assert first == {key_of(0): 0, key_of(1): 1}
    again = ds.reserve([record(2), record(1), record(2)])
    assert again == {key_of(1): 1, key_of(2): 2}
    assert len(ds.refresh().table) == 3
    with pytest.raises(ValueError, match="already used"):
        ds.reserve([SampleRecord("other", "s0000", "x", "train", (0, 0, 0), (0, 0, 0), 1e5, "{}")])


def test_reopen_same_spec_and_reject_other(tmp_path):
    url = tmp_path / "ds.zarr"
    create_dataset(url, SPEC, {"sim_config": {"a": 1}})
    ds = create_dataset(url, DatasetSpec(SHAPE, (0.5, 0.5, 0.5), 12), {"sim_config": {"a": 2}, "new": 3})
    assert ds.attrs["sim_config"] == {"a": 1} and ds.attrs["new"] == 3
    with pytest.raises(ValueError, match="different spec"):
        create_dataset(url, DatasetSpec((8, 8, 8), 0.5, 12), {})
    with pytest.raises(ValueError, match="reserved"):
        create_dataset(url, SPEC, {"schema_version": 9})


def test_plain_zarr_and_xarray_views(tmp_path):
    url = tmp_path / "ds.zarr"
    make_store(url, n=5, write=[0, 1, 3])
    g = zarr.open_group(str(url), mode="r", use_consolidated=False)
    assert g.attrs["schema_version"] == 2 and g.attrs["window_shape"] == list(SHAPE)
    assert g["ct"].chunks == (1, *SHAPE) and g["pressure"].shape == (5, *SHAPE)
    np.testing.assert_array_equal(g["pressure"][3], sample_arrays(3)["pressure_pa"])
    assert np.isnan(g["pressure"][2]).all()              # never written: fill value NaN
    xd = open_dataset(url).to_xarray()
    assert list(xd["sample"].values) == ["s0000", "s0001", "s0003"]
    assert xd["pressure"].dims == ("sample", "x", "y", "z")
    np.testing.assert_array_equal(xd["ct"].sel(sample="s0003").values, sample_arrays(3)["ct_hu"])
    assert json.loads(str(xd["config_json"].values[2])) == {"i": 3, "preset": "test"}


def test_memory_url_round_trip():
    url = "memory://tfus-tests/ds.zarr"
    make_store(url, n=3, write=[0, 2], commit=False)
    ds = open_dataset(url)
    assert list(ds.table["status"]) == ["complete", "pending", "complete"]
    np.testing.assert_array_equal(ds.sample("s0002").pressure_pa, sample_arrays(2)["pressure_pa"])
    create_dataset(url, SPEC, {}).commit()
    assert open_dataset(url).complete_keys() == {key_of(0), key_of(2)}


def test_aux_arrays(tmp_path):
    url = tmp_path / "ds.zarr"
    ds = make_store(url, n=4, write=range(3))
    assert ds.read_aux("free_field", "s0001") is None
    field = np.full(SHAPE, 7.0, dtype=np.float32)
    assert ds.write_aux("free_field", "s0001", field) is True
    assert ds.write_aux("free_field", "s0001", field * 2) is False      # present: not overwritten
    ds.reserve([record(9)])                                              # grows aux arrays too
    reader = open_dataset(url)
    np.testing.assert_array_equal(reader.read_aux("free_field", "s0001"), field)
    assert reader.read_aux("free_field", "s0002") is None
    assert reader.aux_names() == ["free_field"]
    with pytest.raises(ValueError, match="per-sample shape"):
        ds.write_aux("free_field", "s0002", np.zeros((2, 2)))
    with pytest.raises(ValueError, match="aux array name"):
        ds.write_aux("../x", "s0002", field)


def test_interrupted_reserve_rows_are_invisible_and_reused(tmp_path):
    from tfus.storage.dataset import grow
    url = tmp_path / "ds.zarr"
    ds = make_store(url, n=2, write=[0])
    for name in ("ct", "pressure", "affine", "transducer_points", "sample_id", "status", "key"):
        grow(ds.array(name), 4)                          # a reserve that resized, then died before any key
    assert list(open_dataset(url).table["sample_id"]) == ["s0000", "s0001"]
    assert ds.reserve([record(7)]) == {key_of(7): 2}     # the blank row is used again
    assert list(open_dataset(url).table["index"]) == [0, 1, 2]


def test_memory_url_xarray():
    url = "memory://tfus-tests/xr.zarr"
    make_store(url, n=2, write=[1])
    xd = open_dataset(url).to_xarray()
    assert list(xd["sample"].values) == ["s0001"] and xd["ct"].shape == (1, *SHAPE)


def _as_version_1(url) -> None:
    """Turn a fresh store into what tfus wrote before schema version 2: no transducer arrays, version 1."""
    import shutil

    from tfus.storage.schema import V2_SAMPLE_ARRAYS, V2_TABLE_ARRAYS

    for name in V2_SAMPLE_ARRAYS + V2_TABLE_ARRAYS:
        shutil.rmtree(url / name)
    zarr.open_group(str(url), mode="r+", use_consolidated=False).attrs["schema_version"] = 1


def test_a_version_1_store_reads_as_single_bowls_and_upgrades_in_place(tmp_path):
    from tests.storage.helpers import POINTS

    url = tmp_path / "ds.zarr"
    make_store(url, n=3, write=range(3))
    _as_version_1(url)
    old = open_dataset(url)
    assert old.schema_version == 1 and list(old.table["transducer"]) == [""] * 3
    assert old.table["focal_distance_mm"].isna().all() and list(old.table["ring_phases_rad"]) == [()] * 3
    drive = old.sample("s0001").transducer_drive
    np.testing.assert_array_equal(drive, np.tile([0.0, 1.0, 0.0], (POINTS, 1)).astype(np.float32))
    before = old.sample("s0001")

    ds = create_dataset(url, SPEC)  # a new run on the old store: upgraded, nothing rewritten
    assert ds.schema_version == 2 and ds.attrs["schema_v2_from_row"] == 3
    r = record(3)
    ds.reserve([SampleRecord(**{**r.__dict__, "transducer": "ctx500", "focal_distance_mm": 50.0,
                                "ring_phases_rad": (0.0, 0.5, 1.0, 1.5)})])
    steered = np.tile([0.0, 1.0, 0.0], (POINTS, 1)).astype(np.float32)
    steered[:, 0] = np.arange(POINTS) % 4
    steered[:, 2] = 0.5 * steered[:, 0]
    ds.write_sample(key_of(3), **sample_arrays(3), meta=meta(3), transducer_drive=steered)
    ds.commit()
    t = open_dataset(url).table
    assert list(t["transducer"]) == ["", "", "", "ctx500"] and t["focal_distance_mm"].iloc[3] == 50.0
    assert t["ring_phases_rad"].iloc[3] == (0.0, 0.5, 1.0, 1.5) and t["ring_phases_rad"].iloc[0] == ()
    again = open_dataset(url)
    np.testing.assert_array_equal(again.sample("s0003").transducer_drive, steered)
    after = again.sample("s0001")  # written before the upgrade: the same arrays, a single bowl's drive
    np.testing.assert_array_equal(after.pressure_pa, before.pressure_pa)
    np.testing.assert_array_equal(after.transducer_drive, drive)
