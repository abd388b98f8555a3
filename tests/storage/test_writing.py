"""Concurrent writers, idempotence, interrupted writes (storage/writing.py)."""

from __future__ import annotations

import multiprocessing as mp
import os
import time

import numpy as np
import pytest

from tfus.storage import create_dataset, open_dataset, write_sample
from tests.storage import helpers
from tests.storage.helpers import SPEC, key_of, make_store, meta, record, sample_arrays


def test_three_processes_write_at_once_nothing_lost(tmp_path):
    url = str(tmp_path / "ds.zarr")
    n = 24
    ds = create_dataset(url, SPEC, {})
    ds.reserve([record(i) for i in range(n)])
    parts = [list(range(k, n, 3)) for k in range(3)]         # interleaved: neighbours in different processes
    with mp.get_context("spawn").Pool(3) as pool:
        pending = pool.starmap_async(helpers.write_many, [(url, p) for p in parts])
        while not pending.ready():           # a reader during the appends: complete means fully written
            reader = open_dataset(url)
            for sid in reader.query()["sample_id"]:
                i = int(sid[1:])
                np.testing.assert_array_equal(reader.sample(sid).pressure_pa, sample_arrays(i)["pressure_pa"])
        results = pending.get(timeout=120)
    assert all(all(r) for r in results)
    reader = open_dataset(url)                                 # before commit: records only
    assert set(reader.table["status"]) == {"complete"}
    ds.commit()
    reader = open_dataset(url)
    assert len(reader.query()) == n
    for i in range(n):
        s = reader.sample(f"s{i:04d}")
        np.testing.assert_array_equal(s.pressure_pa, sample_arrays(i)["pressure_pa"])
        np.testing.assert_array_equal(s.ct_hu, sample_arrays(i)["ct_hu"])
        assert s.meta["peak_pressure_pa"] == pytest.approx(meta(i)["peak_pressure_pa"])


def test_rerun_is_a_no_op_and_never_overwrites(tmp_path):
    url = tmp_path / "ds.zarr"
    make_store(url, n=3, write=range(3))
    other = sample_arrays(99)
    assert write_sample(url, key_of(1), **other, meta=meta(99)) is False
    ds = open_dataset(url, mode="a")
    assert ds.write_sample(key_of(1), **other, meta=meta(99)) is False
    assert ds.mark_failed(key_of(1), "late failure report") is False      # complete stays complete
    np.testing.assert_array_equal(open_dataset(url).sample("s0001").pressure_pa, sample_arrays(1)["pressure_pa"])
    assert ds.reserve([record(i) for i in range(3)]) == {key_of(i): i for i in range(3)}
    assert len(open_dataset(url).table) == 3


def test_failed_sample_can_complete_on_retry(tmp_path):
    url = tmp_path / "ds.zarr"
    ds = make_store(url, n=2, write=[0])
    assert ds.mark_failed(key_of(1), "worker lost") is True
    assert open_dataset(url).table.loc[1, "status"] == "failed"
    assert write_sample(url, key_of(1), **sample_arrays(1), meta=meta(1)) is True
    t = open_dataset(url).table
    assert t.loc[1, "status"] == "complete" and t.loc[1, "reason"] == ""
    ds.commit()
    assert open_dataset(url).table.loc[1, "status"] == "complete"


def test_killed_writer_leaves_no_complete_sample(tmp_path):
    url = str(tmp_path / "ds.zarr")
    make_store(url, n=3, write=[0])
    flag = tmp_path / "stalled"
    proc = mp.get_context("spawn").Process(target=helpers.write_then_hang, args=(url, 1, str(flag)))
    proc.start()
    deadline = time.monotonic() + 60
    while not flag.exists() and proc.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert flag.exists(), "the writer never reached the point before its completion record"
    proc.kill()
    proc.join()
    reader = open_dataset(url)
    assert reader.table.loc[1, "status"] == "pending"         # chunks are there, but no record
    with pytest.raises(ValueError, match="not complete"):
        reader.sample("s0001")
    assert open_dataset(url, mode="a").commit() == 0
    assert write_sample(url, key_of(1), **sample_arrays(1), meta=meta(1)) is True   # the retry completes it
    np.testing.assert_array_equal(open_dataset(url).sample("s0001").ct_hu, sample_arrays(1)["ct_hu"])


def test_arrays_without_record_are_not_complete(tmp_path):
    url = tmp_path / "ds.zarr"
    ds = make_store(url, n=2, write=[0])
    ds.array("ct", 2)[1] = sample_arrays(1)["ct_hu"]          # a writer that stopped half-way
    ds.array("pressure", 2)[1] = sample_arrays(1)["pressure_pa"]
    assert open_dataset(url).complete_keys() == {key_of(0)}


def test_write_sample_validates_before_writing(tmp_path):
    url = tmp_path / "ds.zarr"
    make_store(url, n=2, write=[])
    good = sample_arrays(0)
    bad = [({"ct_hu": good["ct_hu"][:4]}, "ct_hu"), ({"pressure_pa": good["pressure_pa"] * np.nan}, "finite"),
           ({"transducer_points": good["transducer_points"][:3]}, "transducer_points"),
           ({"affine": np.eye(3)}, "affine")]
    for change, message in bad:
        with pytest.raises(ValueError, match=message):
            write_sample(url, key_of(0), **{**good, **change}, meta=meta(0))
    with pytest.raises(ValueError, match="not reserved"):
        write_sample(url, "nokey", **good, meta=meta(0))
    with pytest.raises(ValueError, match="sample key"):
        write_sample(url, "../evil", **good, meta=meta(0))
    assert open_dataset(url).complete_keys() == set()
    assert not os.listdir(tmp_path / "ds.zarr" / "_records") or \
        all(not n.endswith(".json") or n == "zarr.json" for n in os.listdir(tmp_path / "ds.zarr" / "_records"))


def test_read_only_handle_refuses_writes(tmp_path):
    make_store(tmp_path / "ds.zarr", n=1, write=[])
    with pytest.raises(ValueError, match="read-only"):
        open_dataset(tmp_path / "ds.zarr").reserve([record(5)])


def test_the_record_is_linked_only_after_the_chunks_are_fsynced(tmp_path, monkeypatch):
    """Durable writes: every chunk file of the sample (and their folders) fsynced, then the record's bytes,
    then its name linked, then the records folder fsynced; ``TFUS_STORE_FSYNC=0`` turns it off."""
    import os

    from tfus.storage import store as store_mod

    url = tmp_path / "ds.zarr"
    make_store(url, n=3, write=[])
    events = []
    real_fsync, real_link = os.fsync, os.link

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def link(src, dst):
        events.append(("link", str(dst)))
        return real_link(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    write_sample(url, key_of(1), **sample_arrays(1), meta=meta(1))
    names = ("ct", "pressure", "affine", "transducer_points", "transducer_drive")
    link_at = next(i for i, (kind, _) in enumerate(events) if kind == "link")
    synced = {path for kind, path in events[:link_at] if kind == "fsync"}
    for name in names:
        chunk = [p for p in synced if p.startswith(str(url / name) + "/c.1.")]
        assert len(chunk) == 1 and os.path.getsize(chunk[0]) > 0, name
        assert str(url / name) in synced  # the chunk's directory entry too
    assert any(p.endswith(".tmp") for p in synced)  # the record's bytes before its name
    assert events[link_at][1].endswith(f"{key_of(1)}.json") and events[-1] == ("fsync", str(url / "_records"))

    events.clear()
    monkeypatch.setenv("TFUS_STORE_FSYNC", "0")
    assert not store_mod.durable_writes()
    write_sample(url, key_of(2), **sample_arrays(2), meta=meta(2))
    assert [kind for kind, _ in events] == ["link"]
