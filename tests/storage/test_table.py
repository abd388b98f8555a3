"""Queries over the sample table (storage/table.py)."""

from __future__ import annotations

import pytest

from tfus.storage import open_dataset
from tests.storage.helpers import make_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    url = tmp_path_factory.mktemp("q") / "ds.zarr"
    ds = make_store(url, n=8, write=range(7))        # s0007 pending
    assert ds.mark_failed("key0006", "diverged") is False  # complete already: stays complete
    return open_dataset(url)


def ids(table) -> list[str]:
    return list(table["sample_id"])


def test_filters(store):
    assert ids(store.query()) == [f"s{i:04d}" for i in range(7)]
    assert ids(store.query(split="val")) == ["s0002", "s0006"]
    assert ids(store.query(split=["val", "test"])) == ["s0002", "s0003", "s0006"]
    assert ids(store.query(subject="subj1")) == ["s0001", "s0004"]
    assert ids(store.query(subject="subj1", split="train")) == ["s0001", "s0004"]
    assert ids(store.query(status="pending")) == ["s0007"]
    assert len(store.query(status="all")) == 8 and len(store.query(status=None)) == 8


def test_where_expressions(store):
    t = store.table
    threshold = float(t["peak_pressure_pa"].iloc[3])
    got = store.query(where=f"peak_pressure_pa > {threshold}")
    assert ids(got) == [s for s, p in zip(t["sample_id"][:7], t["peak_pressure_pa"][:7]) if p > threshold]
    assert ids(store.query(where="frequency_hz == 500e3 and runtime_s < 1")) == ["s0000"]
    assert ids(store.query(where="subject_id == 'subj2'", split="test")) == []


@pytest.mark.parametrize("where", ["peak_pressure_pa >", "no_such_column > 1", "import os", "peak_pressure_pa"])
def test_bad_where_is_a_clear_value_error(store, where):
    with pytest.raises(ValueError, match="invalid `where` expression"):
        store.query(where=where)


def test_bad_status(store):
    with pytest.raises(ValueError, match="`status` must be one of"):
        store.query(status="done")
