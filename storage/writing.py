"""Writing samples: ``reserve`` (coordinator), ``write_sample`` (any worker, any number at once),
``commit`` / ``mark_failed`` (coordinator), and auxiliary per-sample arrays.

Who writes what, so that nothing races:
- the coordinating process (the flow) alone resizes arrays and writes the table arrays, whose chunks hold
  many samples (``reserve``, ``commit``, ``mark_failed``);
- workers write only the one-chunk-per-sample arrays of their own sample, then create the sample's
  completion record, atomically and without overwriting. The record is what makes a sample complete.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from dataclasses import dataclass

import numpy as np
from zarr.core.sync import sync

from tfus.storage.schema import (AUX_GROUP, MAX_RINGS, check_aux_name, check_key, default_drive, sample_arrays,
                                 table_arrays)
from tfus.storage.store import durable_writes, fsync_files, gather as _gather, grow, to_json

log = logging.getLogger(__name__)

MAX_REASON_CHARS = 2000


@dataclass(frozen=True)
class SampleRecord:
    """What the coordinator knows about a sample before it is simulated. ``transducer``: its library name;
    ``focal_distance_mm``: the steering distance from the exit plane (NaN: not steered); ``ring_phases_rad``:
    the drive phase of each ring (() for a single bowl)."""

    key: str
    sample_id: str
    subject_id: str
    split: str
    position_mm: tuple[float, float, float]
    target_mm: tuple[float, float, float]
    frequency_hz: float
    config_json: str
    transducer: str = ""
    focal_distance_mm: float = float("nan")
    ring_phases_rad: tuple = ()

    def __post_init__(self) -> None:
        check_key(self.key)
        for name in ("sample_id", "subject_id", "split"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"`{name}` must be a non-empty string, got {value!r}")
        for name in ("position_mm", "target_mm"):
            value = np.asarray(getattr(self, name), dtype=float)
            if value.shape != (3,) or not np.all(np.isfinite(value)):
                raise ValueError(f"`{name}` must be three finite numbers, got {getattr(self, name)!r}")
            object.__setattr__(self, name, tuple(float(v) for v in value))
        if not np.isfinite(self.frequency_hz) or self.frequency_hz <= 0:
            raise ValueError(f"`frequency_hz` must be a positive number, got {self.frequency_hz!r}")
        object.__setattr__(self, "frequency_hz", float(self.frequency_hz))
        if not isinstance(self.transducer, str):
            raise ValueError(f"`transducer` must be a string, got {self.transducer!r}")
        focal = float(self.focal_distance_mm) if self.focal_distance_mm is not None else float("nan")
        if np.isinf(focal) or focal <= 0:
            raise ValueError(f"`focal_distance_mm` must be a positive number or NaN, got {self.focal_distance_mm!r}")
        object.__setattr__(self, "focal_distance_mm", focal)
        phases = np.asarray(self.ring_phases_rad, dtype=float).reshape(-1)
        if phases.size > MAX_RINGS or not np.all(np.isfinite(phases)):
            raise ValueError(f"`ring_phases_rad` must be at most {MAX_RINGS} finite numbers, got "
                             f"{self.ring_phases_rad!r}")
        object.__setattr__(self, "ring_phases_rad", tuple(float(v) for v in phases))
        try:
            json.loads(self.config_json)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"`config_json` must be a JSON string: {exc}") from None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _update_rows(arr, rows: np.ndarray, values) -> None:
    """Set ``arr[rows] = values`` by rewriting the covering row range (coordinator only)."""
    lo, hi = int(rows.min()), int(rows.max()) + 1
    block = arr[lo:hi]
    if block.dtype.kind in "OT":
        block = np.asarray(block, dtype=object)
    block[rows - lo] = values
    arr[lo:hi] = block


# --- reserve ----------------------------------------------------------------------------------------
def reserve(ds, records) -> dict[str, int]:
    """Give every record a row; keys already present keep theirs. The only operation that resizes."""
    ds.require_writable()
    records = list(records)
    for r in records:
        if not isinstance(r, SampleRecord):
            raise ValueError(f"reserve() takes SampleRecord objects, got {type(r).__name__}")
    ds.refresh()
    keys = np.asarray(ds.array("key")[:], dtype=object)
    ids = np.asarray(ds.array("sample_id", len(keys))[: len(keys)], dtype=object)
    rows = {k: i for i, k in enumerate(keys) if k}
    used_ids = {s: k for s, k in zip(ids, keys) if k}
    result, new = {}, {}
    for r in records:
        if r.key in rows:
            result[r.key] = rows[r.key]
            continue
        other = used_ids.get(r.sample_id)
        if other is not None and other != r.key:
            raise ValueError(f"sample_id {r.sample_id!r} is already used by key {other} in {ds.url}")
        used_ids[r.sample_id] = r.key
        new.setdefault(r.key, r)
    if not new:
        return result
    holes = np.nonzero(keys == "")[0].tolist()          # rows of an interrupted reserve
    slots = holes[: len(new)]
    slots += list(range(len(keys), len(keys) + len(new) - len(slots)))
    n = max(len(keys), slots[-1] + 1)
    names = [a.name for a in sample_arrays(ds.spec)] + [f"{AUX_GROUP}/{a}" for a in ds.aux_names()]
    for name in names + [a.name for a in table_arrays()]:   # key last: a row exists once its key is set
        grow(ds.array(name), n)
    _write_new_rows(ds, np.asarray(slots), list(new.values()))
    result.update({r.key: s for r, s in zip(new.values(), slots)})
    ds.refresh()
    log.info("reserved %d new samples in %s (%d rows)", len(new), ds.url, n)
    return result


def _write_new_rows(ds, rows: np.ndarray, recs: list[SampleRecord]) -> None:
    k = len(recs)
    nan3 = np.full((k, 3), np.nan)
    columns = {
        "sample_id": [r.sample_id for r in recs], "subject_id": [r.subject_id for r in recs],
        "split": [r.split for r in recs], "status": ["pending"] * k, "reason": [""] * k,
        "position_mm": np.array([r.position_mm for r in recs]), "target_mm": np.array([r.target_mm for r in recs]),
        "focal_point_mm": nan3, "peak_pressure_pa": np.full(k, np.nan),
        "frequency_hz": np.array([r.frequency_hz for r in recs]), "runtime_s": np.full(k, np.nan),
        "transducer": [r.transducer for r in recs],
        "focal_distance_mm": np.array([r.focal_distance_mm for r in recs]),
        "ring_phases_rad": np.array([list(r.ring_phases_rad) + [np.nan] * (MAX_RINGS - len(r.ring_phases_rad))
                                     for r in recs]),
        "config_json": [r.config_json for r in recs], "summary_json": [""] * k,
        "key": [r.key for r in recs],
    }
    for a in table_arrays():   # in schema order, key last
        values = columns[a.name]
        if isinstance(values, list):
            values = np.array(values, dtype=object)
        _update_rows(ds.array(a.name), rows, values)


# --- worker writes ----------------------------------------------------------------------------------
def _row_for_key(ds, key: str) -> int:
    for attempt in (0, 1):
        if ds._key_rows is None or attempt:
            ds.refresh()
            keys = ds.array("key")[:]
            ds._key_rows = {k: i for i, k in enumerate(keys) if k}
        if key in ds._key_rows:
            return ds._key_rows[key]
    raise ValueError(f"key {key} is not reserved in store {ds.url}: call Dataset.reserve() first")


def _checked(name: str, value, shape: tuple, dtype) -> np.ndarray:
    arr = np.asarray(value, dtype=dtype)
    if arr.shape != shape:
        raise ValueError(f"`{name}` must have shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` must be finite everywhere (NaN/inf found)")
    return arr


def write_sample_to(ds, key: str, *, ct_hu, pressure_pa, affine, transducer_points, meta: dict,
                    transducer_drive=None) -> bool:
    """Write one sample's chunks, then its completion record. False (nothing written) if already complete.
    ``transducer_drive`` (P, 3): ring, relative amplitude, phase (rad) per point; None = a single bowl."""
    ds.require_writable()
    check_key(key)
    if ds.loc.has_record(key):
        log.info("sample %s already complete in %s; not rewritten", key, ds.url)
        return False
    row = _row_for_key(ds, key)
    spec = ds.spec
    arrays = {
        "ct": _checked("ct_hu", ct_hu, spec.window_shape, np.float32),
        "pressure": _checked("pressure_pa", pressure_pa, spec.window_shape, np.float32),
        "affine": _checked("affine", affine, (4, 4), np.float64),
        "transducer_points": _checked("transducer_points", transducer_points, (spec.n_transducer_points, 3),
                                      np.float32),
        "transducer_drive": _checked("transducer_drive", default_drive(spec.n_transducer_points)
                                     if transducer_drive is None else transducer_drive,
                                     (spec.n_transducer_points, 3), np.float32),
    }
    record = _record(key, row, meta)
    targets = [(ds.array(name, min_len=row + 1), value) for name, value in arrays.items()]
    sync(_gather(*(arr.async_array.setitem(row, value) for arr, value in targets)))  # concurrently
    if ds.loc.is_local and durable_writes():  # the record must never outlive its chunks (a machine crash)
        fsync_files([ds.loc.path(name, arr.metadata.encode_chunk_key((row,) + (0,) * (arr.ndim - 1)))
                     for (arr, _), name in zip(targets, arrays)])
    return ds.loc.write_record(key, record)


def _record(key: str, row: int, meta: dict) -> dict:
    if not isinstance(meta, dict):
        raise ValueError(f"`meta` must be a dict, got {type(meta).__name__}")
    focal = np.asarray(meta.get("focal_point_mm", [np.nan] * 3), dtype=float)
    if focal.shape != (3,):
        raise ValueError(f"`meta['focal_point_mm']` must be three numbers, got {meta.get('focal_point_mm')!r}")
    peak = float(meta.get("peak_pressure_pa", np.nan))
    summary = meta.get("summary", {})
    json.loads(to_json(summary))   # raises TypeError early for what JSON cannot hold
    return {"key": key, "row": row, "status": "complete", "written_utc": _now(), "pid": os.getpid(),
            "focal_point_mm": focal.tolist(), "peak_pressure_pa": peak,
            "runtime_s": float(meta.get("runtime_s", np.nan)), "summary": summary}


# --- coordinator: commit and failures ---------------------------------------------------------------
def commit(ds) -> int:
    """Fold completion records into the table arrays; returns how many samples were folded."""
    from tfus.storage.table import committed_columns, merge_records
    ds.require_writable()
    ds.refresh()
    cols = committed_columns(ds, names=("key", "status", "reason", "focal_point_mm", "peak_pressure_pa",
                                        "runtime_s"))
    records = merge_records(ds, cols)
    for name in ds.aux_names():   # repair an aux array created by a worker before a later reserve
        grow(ds.array(f"{AUX_GROUP}/{name}"), len(cols["key"]))
    if not records:
        return 0
    index = {k: i for i, k in enumerate(cols["key"]) if k in records}
    rows = np.array([index[k] for k in records])
    summaries = np.array([to_json(records[k].get("summary", {})) for k in records], dtype=object)
    for name in ("focal_point_mm", "peak_pressure_pa", "runtime_s", "reason"):
        _update_rows(ds.array(name), rows, cols[name][rows])
    _update_rows(ds.array("summary_json"), rows, summaries)
    _update_rows(ds.array("status"), rows, cols["status"][rows])   # last: status says it is folded
    ds.refresh()
    log.info("committed %d samples in %s", len(rows), ds.url)
    return len(rows)


def mark_failed(ds, key: str, reason: str) -> bool:
    """Record that ``key`` failed (coordinator only). False if the sample is complete (left as it is)."""
    ds.require_writable()
    check_key(key)
    if ds.loc.has_record(key):
        return False
    row = _row_for_key(ds, key)
    rows = np.array([row])
    _update_rows(ds.array("reason"), rows, np.array([str(reason)[:MAX_REASON_CHARS]], dtype=object))
    _update_rows(ds.array("status"), rows, np.array(["failed"], dtype=object))
    ds.refresh()
    return True


# --- auxiliary arrays -------------------------------------------------------------------------------
def _aux_array(ds, name: str, row: int, shape: tuple, create: bool):
    import zarr
    from tfus.storage.schema import ArraySpec
    from tfus.storage.store import create_array
    path = f"{AUX_GROUP}/{name}"
    try:
        arr = ds.array(path, min_len=row + 1)
    except ValueError:
        if not create:
            return None
        n = ds.array("key").shape[0]
        spec = ArraySpec(name, "float32", shape, tuple(f"{name}_{i}" for i in range(len(shape))), float("nan"))
        group = zarr.open_group(ds.loc.zarr_store(), path=AUX_GROUP, mode="r+", use_consolidated=False)
        try:
            create_array(group, spec, n, per_sample=True)
        except zarr.errors.ContainsArrayError:
            pass   # another worker created it at the same moment
        ds._arrays.pop(path, None)
        arr = ds.array(path, min_len=row + 1)
    if arr.shape[0] <= row and create:
        grow(arr, ds.array("key").shape[0])   # created before a later reserve; only ever grows
    return arr


def write_aux(ds, name: str, sample_id: str, array) -> bool:
    """Store an auxiliary float32 array for one sample (e.g. ``free_field``); chunk per sample, then a
    presence marker. Any process may call it for different samples. False if already present."""
    ds.require_writable()
    check_aux_name(name)
    row = ds.row_of(sample_id, complete=False)
    key = ds.table.loc[ds.table["index"] == row, "key"].iloc[0]
    if ds.loc.has_record(key, sub=f"aux/{name}"):
        return False
    value = np.asarray(array, dtype=np.float32)
    if not np.all(np.isfinite(value)):
        raise ValueError(f"aux array {name!r} for sample {sample_id!r} must be finite everywhere")
    arr = _aux_array(ds, name, row, value.shape, create=True)
    if arr.shape[1:] != value.shape:
        raise ValueError(f"aux array {name!r} in {ds.url} has per-sample shape {arr.shape[1:]}, got {value.shape}")
    arr[row] = value
    return ds.loc.write_record(key, {"key": key, "row": row, "written_utc": _now()}, sub=f"aux/{name}")


def read_aux(ds, name: str, sample_id: str):
    """The auxiliary array ``name`` of a sample, or None where it was never written."""
    check_aux_name(name)
    row = ds.row_of(sample_id, complete=False)
    key = ds.table.loc[ds.table["index"] == row, "key"].iloc[0]
    if not ds.loc.has_record(key, sub=f"aux/{name}"):
        return None
    arr = _aux_array(ds, name, row, (), create=False)
    if arr is None or arr.shape[0] <= row:
        raise ValueError(f"store {ds.url}: aux array {name!r} does not cover sample {sample_id!r}; "
                         "run Dataset.commit() to repair")
    from tfus.storage.table import read_sample_arrays
    return read_sample_arrays(ds, row, sample_id, names=(f"{AUX_GROUP}/{name}",))[f"{AUX_GROUP}/{name}"]
