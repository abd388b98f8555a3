"""The sample table (committed table arrays merged with uncommitted completion records), queries, and
reading samples.

A sample is complete when its record ``_records/<key>.json`` exists (workers write it after the sample's
chunks) or when ``commit`` has folded that record into the ``status`` array. Listing the table therefore
costs a few chunk reads plus one directory listing; only records not yet committed are read.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
from zarr.core.sync import sync

from tfus.storage.sample import Sample
from tfus.storage.schema import MAX_RINGS, STATUSES, TABLE_COLUMNS, V2_TABLE_ARRAYS, default_drive
from tfus.storage.store import gather

log = logging.getLogger(__name__)

_VECTOR_COLUMNS = ("position_mm", "target_mm", "focal_point_mm")


def committed_columns(ds, names=TABLE_COLUMNS) -> dict[str, np.ndarray]:
    """Table arrays as written by the coordinator, truncated to the length of ``key``; all arrays are
    opened and read concurrently (a handful of requests in one round trip)."""
    names = list(dict.fromkeys(("key", *names)))
    absent = [n for n in names if n in V2_TABLE_ARRAYS and ds.schema_version < 2]  # a version-1 store
    names = [n for n in names if n not in absent]
    arrays = ds.open_arrays(names)
    n = arrays[0].shape[0]
    if any(a.shape[0] < n for a in arrays):   # grown by the coordinator since they were opened
        ds.refresh()
        arrays = ds.open_arrays(names)
    values = sync(gather(*(a.async_array.getitem(slice(0, n)) for a in arrays)))
    out = {}
    for name, value in zip(names, values):
        value = np.asarray(value)
        out[name] = np.asarray(value, dtype=object) if value.dtype.kind in "OTU" else value
    for name in absent:   # what a version-1 sample was: a single bowl, not steered
        out[name] = (np.full(n, "", dtype=object) if name == "transducer" else
                     np.full((n, MAX_RINGS) if name == "ring_phases_rad" else n, np.nan))
    return out


def merge_records(ds, cols: dict[str, np.ndarray]) -> dict[str, dict]:
    """Overlay completion records that commit has not folded yet; returns them by key."""
    keys, status = cols["key"], cols["status"]
    open_rows = np.nonzero((status != "complete") & (keys != ""))[0]
    if not len(open_rows):
        return {}   # everything committed: no listing needed
    record_keys = ds.loc.list_record_keys()
    rows = {keys[i]: i for i in open_rows if keys[i] in record_keys}
    records = ds.loc.read_records(list(rows))
    for key, rec in records.items():
        i = rows[key]
        status[i] = "complete"
        cols["reason"][i] = ""
        cols["focal_point_mm"][i] = rec.get("focal_point_mm", [np.nan] * 3)
        cols["peak_pressure_pa"][i] = rec.get("peak_pressure_pa", np.nan)
        cols["runtime_s"][i] = rec.get("runtime_s", np.nan)
    return records


def read_table(ds) -> pd.DataFrame:
    cols = committed_columns(ds)
    merge_records(ds, cols)
    rows = np.nonzero(cols["key"] != "")[0]   # "" = a row whose reserve did not finish
    data = {"index": rows}
    for name in TABLE_COLUMNS:
        values = cols[name][rows]
        if name == "ring_phases_rad":   # one value per ring of the sample's transducer (() for a single bowl)
            values = [tuple(v for v in row if v == v) for row in values.tolist()]
        data[name] = list(map(tuple, values.tolist())) if name in _VECTOR_COLUMNS else values
    table = pd.DataFrame(data)
    return join_subjects(table, ds.attrs.get(SUBJECTS_ATTR) or {})


SUBJECTS_ATTR = "subjects"  # dataset attribute: subject id -> where the head came from and its QC figures
SUBJECT_COLUMNS = {"source": "ct", "source_t1": "", "skull_volume_ml": np.nan, "skull_thickness_median_mm": np.nan,
                   "skull_thickness_p5_mm": np.nan, "skull_thickness_p95_mm": np.nan,
                   "vault_enclosed_fraction": np.nan}


def join_subjects(table: pd.DataFrame, subjects: dict) -> pd.DataFrame:
    """The per-subject columns (``SUBJECT_COLUMNS``; ``source`` "t1" for MRI-derived heads) on each row."""
    for name, default in SUBJECT_COLUMNS.items():
        table[name] = [subjects.get(sid, {}).get(name, default) for sid in table["subject_id"]]
    return table


def _as_list(value) -> list | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def query(table: pd.DataFrame, subject=None, split=None, where: str | None = None,
          status: str | None = "complete", store: str = "") -> pd.DataFrame:
    """Rows matching every given filter. ``status=None`` or ``"all"`` keeps every status; ``where`` is a
    pandas query string over the table's columns (e.g. ``"peak_pressure_pa > 1e5"``)."""
    out = table
    if status not in (None, "all"):
        wanted = _as_list(status)
        unknown = [s for s in wanted if s not in STATUSES]
        if unknown:
            raise ValueError(f"`status` must be one of {list(STATUSES)} or 'all', got {unknown}")
        out = out[out["status"].isin(wanted)]
    if subject is not None:
        out = out[out["subject_id"].isin(_as_list(subject))]
    if split is not None:
        out = out[out["split"].isin(_as_list(split))]
    if where:
        try:
            result = out.query(where, engine="python")
        except Exception as exc:  # pandas raises many types (SyntaxError, NameError, TypeError, KeyError …)
            raise ValueError(f"invalid `where` expression {where!r} for store {store}: "
                             f"{type(exc).__name__}: {exc}") from None
        if not isinstance(result, pd.DataFrame):
            raise ValueError(f"invalid `where` expression {where!r}: it must be a condition on columns")
        out = result
    return out.reset_index(drop=True)


def row_of(ds, sample_id: str, complete: bool = True) -> int:
    """Row of ``sample_id`` (a sample id or a key); re-reads the table once before giving up."""
    for attempt in (0, 1):
        t = ds.table
        hit = t[(t["sample_id"] == sample_id) | (t["key"] == sample_id)]
        if len(hit):
            break
        ds.refresh()
    else:
        raise ValueError(f"sample {sample_id!r} does not exist in store {ds.url}")
    status = hit["status"].iloc[0]
    if complete and status != "complete":
        reason = hit["reason"].iloc[0]
        raise ValueError(f"sample {sample_id!r} in store {ds.url} is not complete (status {status}"
                         + (f": {reason})" if reason else ")"))
    return int(hit["index"].iloc[0])


def read_sample_arrays(ds, row: int, label: str,
                       names=("ct", "pressure", "affine", "transducer_points", "transducer_drive")):
    """The sample arrays of one row; ValueError naming store and sample for corrupt or missing chunks.
    ``transducer_drive`` of a row written before schema version 2 is the single in-phase bowl's."""
    names = list(names)
    legacy = "transducer_drive" in names and not ds.has_v2_row(row)
    if legacy:
        names.remove("transducer_drive")
    arrays = [ds.array(name, min_len=row + 1).async_array for name in names]
    results = sync(gather(*(a.getitem(row) for a in arrays), return_exceptions=True))  # concurrently
    out = {}
    for name, value in zip(names, results):
        if isinstance(value, Exception):  # codec/checksum/IO errors from zarr's pipeline
            raise ValueError(f"store {ds.url}, sample {label!r}: cannot read {name!r} "
                             f"({type(value).__name__}: {value}); the chunk is corrupt") from value
        value = np.asarray(value)
        if np.isnan(value.flat[0]):
            raise ValueError(f"store {ds.url}, sample {label!r}: chunk of {name!r} is missing")
        out[name] = value
    if legacy:
        out["transducer_drive"] = default_drive(ds.spec.n_transducer_points)
    return out


def read_sample(ds, sample_id: str):
    row = row_of(ds, sample_id)
    arrays = read_sample_arrays(ds, row, sample_id)
    t = ds.table
    meta = t[t["index"] == row].iloc[0].to_dict()
    meta["config"] = _loads(_cell(ds, "config_json", row))
    summary = _cell(ds, "summary_json", row)
    if not summary:
        rec = ds.loc.read_records([meta["key"]]).get(meta["key"], {})
        summary = rec.get("summary", {})
    meta["summary"] = _loads(summary) if isinstance(summary, str) else summary
    return Sample(sample_id=meta["sample_id"], ct_hu=arrays["ct"], pressure_pa=arrays["pressure"],
                  affine=arrays["affine"], transducer_points=arrays["transducer_points"], meta=meta,
                  transducer_drive=arrays["transducer_drive"])


def _cell(ds, name: str, row: int):
    """One element of a table array as a Python value."""
    return ds.array(name, row + 1)[row: row + 1][0]


def _loads(text: str):
    return json.loads(text) if text else {}


def to_xarray(ds):
    """An xarray.Dataset of the complete samples (lazy, no dask needed); ``sample`` coordinate = sample_id."""
    import xarray as xr
    xd = xr.open_zarr(ds.loc.zarr_store(), consolidated=False, zarr_format=3, chunks=None,
                      mask_and_scale=False)
    t = ds.query(status="complete")
    xd = xd.isel(sample=t["index"].to_numpy())
    xd["status"] = ("sample", t["status"].to_numpy(dtype=object))
    xd["peak_pressure_pa"] = ("sample", t["peak_pressure_pa"].to_numpy(dtype=float))
    xd["focal_point_mm"] = (("sample", "xyz"), np.array([list(v) for v in t["focal_point_mm"]]).reshape(-1, 3))
    return xd.assign_coords(sample=t["sample_id"].to_numpy(dtype=object))
