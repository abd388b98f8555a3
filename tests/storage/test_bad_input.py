"""Bad input gives one clear error naming the store and the sample, and leaves the store as it was."""

from __future__ import annotations

import os

import numpy as np
import pytest
import zarr

from tfus.storage import DatasetSpec, SampleRecord, create_dataset, open_dataset
from tests.storage.helpers import SPEC, make_store


def _chunk_file(url, array: str, row: int) -> str:
    return os.path.join(str(url), array, f"c.{row}.0.0.0")


def test_open_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no dataset at .*missing.zarr"):
        open_dataset(tmp_path / "missing.zarr")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="plain is not a tfus dataset"):
        open_dataset(tmp_path / "plain")
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w", attributes={"title": "someone else's"})
    with pytest.raises(ValueError, match="other.zarr is a Zarr group but not a tfus dataset"):
        open_dataset(tmp_path / "other.zarr")
    with pytest.raises(ValueError, match="not empty, but is not a tfus dataset"):
        create_dataset(tmp_path / "plain", SPEC, {})
    assert os.listdir(tmp_path / "plain") == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="file is not a tfus dataset"):
        create_dataset(tmp_path / "file", SPEC, {})
    with pytest.raises(ValueError, match="`mode`"):
        open_dataset(tmp_path / "plain", mode="w")


def test_unknown_schema_version(tmp_path):
    url = tmp_path / "ds.zarr"
    make_store(url, n=1, write=[0])
    zarr.open_group(str(url), mode="r+", use_consolidated=False).attrs["schema_version"] = 99
    with pytest.raises(ValueError, match="schema version 99 is not supported"):
        open_dataset(url)


def test_unknown_sample(tmp_path):
    url = tmp_path / "ds.zarr"
    make_store(url, n=2, write=[0])
    with pytest.raises(ValueError, match=r"sample 'zzz' does not exist in store .*ds.zarr"):
        open_dataset(url).sample("zzz")
    with pytest.raises(ValueError, match=r"'s0001' in store .*ds.zarr is not complete \(status pending\)"):
        open_dataset(url).sample("s0001")


def test_corrupt_chunk_is_detected(tmp_path):
    url = tmp_path / "ds.zarr"
    make_store(url, n=2, write=[0, 1])
    path = _chunk_file(url, "pressure", 1)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF                                    # one flipped byte: crc32c mismatch
    open(path, "wb").write(bytes(data))
    with pytest.raises(ValueError, match=r"ds.zarr, sample 's0001': cannot read 'pressure'.*corrupt"):
        open_dataset(url).sample("s0001")
    open_dataset(url).sample("s0000")                               # the others still read


def test_missing_chunk_is_detected(tmp_path):
    url = tmp_path / "ds.zarr"
    make_store(url, n=2, write=[0, 1])
    os.unlink(_chunk_file(url, "ct", 0))
    with pytest.raises(ValueError, match=r"sample 's0000': chunk of 'ct' is missing"):
        open_dataset(url).sample("s0000")


@pytest.mark.parametrize("kwargs, field", [
    ({"window_shape": (8, 8)}, "window_shape"), ({"window_shape": (8, 0, 8)}, "window_shape"),
    ({"spacing_mm": -1}, "spacing_mm"), ({"spacing_mm": (1, 2)}, "spacing_mm"), ({"spacing_mm": "a"}, "spacing_mm"),
    ({"n_transducer_points": 0}, "n_transducer_points"), ({"n_transducer_points": 2.5}, "n_transducer_points"),
])
def test_spec_validation(kwargs, field):
    args = {"window_shape": (8, 8, 8), "spacing_mm": 0.5, "n_transducer_points": 4, **kwargs}
    with pytest.raises(ValueError, match=f"`{field}`"):
        DatasetSpec(**args)


@pytest.mark.parametrize("change, field", [
    ({"key": "a/b"}, "sample key"), ({"sample_id": ""}, "sample_id"), ({"split": None}, "split"),
    ({"position_mm": (1, 2)}, "position_mm"), ({"target_mm": (1, 2, np.nan)}, "target_mm"),
    ({"frequency_hz": -5}, "frequency_hz"), ({"config_json": "{not json"}, "config_json"),
    ({"transducer": 5}, "transducer"), ({"focal_distance_mm": -3.0}, "focal_distance_mm"),
    ({"ring_phases_rad": [0.0] * 17}, "ring_phases_rad"), ({"ring_phases_rad": [0.0, np.inf]}, "ring_phases_rad"),
])
def test_record_validation(change, field):
    args = {"key": "k", "sample_id": "s", "subject_id": "a", "split": "train", "position_mm": (0, 0, 0),
            "target_mm": (0, 0, 1), "frequency_hz": 5e5, "config_json": "{}", **change}
    with pytest.raises(ValueError, match=field):
        SampleRecord(**args)
