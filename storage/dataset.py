"""Opening and creating datasets, and the :class:`Dataset` handle (reading side).

Writing (``reserve``, ``write_sample``, ``commit``, ``mark_failed``, aux arrays) lives in
:mod:`storage.writing`; the sample table and queries in :mod:`storage.table`. ``Dataset`` methods delegate.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import logging
import os
import posixpath
import threading

import numpy as np
import zarr
from zarr.api.asynchronous import open_array as open_async_array
from zarr.core.sync import sync

from tfus.storage import table as _table
from tfus.storage import writing as _writing
from tfus.storage.lease import LEASE_NAME
from tfus.storage.schema import (AUX_GROUP, FORMAT_NAME, RECORDS_DIR, SCHEMA_VERSION, SUPPORTED_SCHEMA_VERSIONS,
                            UNITS, DatasetSpec, sample_arrays, table_arrays)
from tfus.storage.sample import Sample
from tfus.storage.store import Location, create_array, gather, grow
from tfus.storage.writing import write_sample_to

log = logging.getLogger(__name__)

RESERVED_ATTRS = ("format", "schema_version", "window_shape", "spacing_mm", "n_transducer_points", "units",
                  "producer", "created_utc", "schema_v2_from_row", _table.SUBJECTS_ATTR)


class Dataset:
    """A handle on one dataset store. Cheap to create; the sample table is read on first use."""

    def __init__(self, loc: Location, group: zarr.Group, mode: str):
        self.loc = loc
        self.group = group
        self.mode = mode
        self.spec = DatasetSpec.from_attrs(dict(group.attrs))
        self._arrays: dict[str, zarr.Array] = {}
        self._table = None
        self._key_rows: dict[str, int] | None = None

    # --- basics -------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.loc.url

    @property
    def attrs(self) -> dict:
        return dict(self.group.attrs)

    def __repr__(self) -> str:
        return f"Dataset({self.url!r}, window_shape={self.spec.window_shape}, mode={self.mode!r})"

    def __len__(self) -> int:
        return len(self.table)

    @property
    def schema_version(self) -> int:
        return int(self.group.attrs.get("schema_version", 1))

    def has_v2_row(self, row: int) -> bool:
        """Whether ``row`` was written under schema version 2 (it has a ``transducer_drive`` chunk)."""
        return self.schema_version >= 2 and row >= int(self.group.attrs.get("schema_v2_from_row", 0))

    def array(self, name: str, min_len: int = 0) -> zarr.Array:
        """A schema array, opened once; reopened when another process has grown it past ``min_len``."""
        arr = self._arrays.get(name)
        if arr is None or arr.shape[0] < min_len:
            try:
                arr = zarr.open_array(self.loc.zarr_store(), path=name, mode="r" if self.mode == "r" else "r+")
            except FileNotFoundError as exc:
                raise ValueError(f"store {self.url} is damaged: array {name!r} is missing") from exc
            self._arrays[name] = arr
        return arr

    def open_arrays(self, names) -> list[zarr.Array]:
        """Several schema arrays, the ones not yet open opened concurrently (one round trip, not one each)."""
        todo = [n for n in dict.fromkeys(names) if n not in self._arrays]
        if todo:
            mode = "r" if self.mode == "r" else "r+"
            opened = sync(gather(*(open_async_array(store=self.loc.zarr_store(), path=n, mode=mode) for n in todo),
                                 return_exceptions=True))
            for name, arr in zip(todo, opened):
                if isinstance(arr, FileNotFoundError):
                    raise ValueError(f"store {self.url} is damaged: array {name!r} is missing") from arr
                if isinstance(arr, Exception):
                    raise arr
                self._arrays[name] = zarr.Array(arr)
        return [self._arrays[n] for n in names]

    def refresh(self) -> "Dataset":
        """Forget cached arrays and the table, so that the next read sees other processes' writes."""
        self._arrays.clear()
        self._table = None
        self._key_rows = None
        return self

    def record_subjects(self, info: dict[str, dict]) -> None:
        """Merge per-subject facts (``storage.table.SUBJECT_COLUMNS``: source, T1, skull QC) into the
        dataset's attributes; written by the coordinating run only (it holds the store's lease)."""
        self.require_writable()
        merged = dict(self.group.attrs.get(_table.SUBJECTS_ATTR) or {})
        for sid, facts in info.items():
            merged[str(sid)] = {k: v for k, v in dict(facts).items() if k in _table.SUBJECT_COLUMNS}
        self.group.attrs[_table.SUBJECTS_ATTR] = merged
        self._table = None

    def require_writable(self) -> None:
        if self.mode == "r":
            raise ValueError(f"dataset {self.url} is open read-only; use open_dataset(url, mode='a')")

    # --- table and queries --------------------------------------------------------------------------
    @property
    def table(self):
        """pandas DataFrame, one row per reserved sample (see storage.table)."""
        if self._table is None:
            self._table = _table.read_table(self)
        return self._table

    def complete_keys(self) -> set[str]:
        t = self.table
        return set(t.loc[t["status"] == "complete", "key"])

    def query(self, subject=None, split=None, where: str | None = None, status: str | None = "complete"):
        return _table.query(self.table, subject=subject, split=split, where=where, status=status,
                            store=self.url)

    def row_of(self, sample_id: str, complete: bool = True) -> int:
        """Row index of a sample id (or key); ValueError naming store and sample when unknown."""
        return _table.row_of(self, sample_id, complete=complete)

    # --- samples ------------------------------------------------------------------------------------
    def sample(self, sample_id: str) -> Sample:
        return _table.read_sample(self, sample_id)

    def samples(self, sample_ids) -> list[Sample]:
        return [self.sample(s) for s in sample_ids]

    def to_xarray(self):
        return _table.to_xarray(self)

    # --- writing (delegated) ------------------------------------------------------------------------
    def reserve(self, records) -> dict[str, int]:
        return _writing.reserve(self, records)

    def write_sample(self, key: str, *, ct_hu, pressure_pa, affine, transducer_points, meta: dict,
                     transducer_drive=None) -> bool:
        return _writing.write_sample_to(self, key, ct_hu=ct_hu, pressure_pa=pressure_pa, affine=affine,
                                        transducer_points=transducer_points, meta=meta,
                                        transducer_drive=transducer_drive)

    def commit(self) -> int:
        return _writing.commit(self)

    def mark_failed(self, key: str, reason: str) -> bool:
        return _writing.mark_failed(self, key, reason)

    def write_aux(self, name: str, sample_id: str, array) -> bool:
        return _writing.write_aux(self, name, sample_id, array)

    def read_aux(self, name: str, sample_id: str):
        return _writing.read_aux(self, name, sample_id)

    def aux_names(self) -> list[str]:
        return sorted(self.group[AUX_GROUP].array_keys())


def _producer() -> dict:
    versions = {}
    for dist in ("tfus", "zarr", "numpy", "numcodecs"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "unknown"
    return versions


def _open_group(loc: Location, mode: str) -> zarr.Group | None:
    """The Zarr group at ``loc``, or None where there is none."""
    try:
        return zarr.open_group(loc.zarr_store(), mode=mode, use_consolidated=False)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        return None
    except (ValueError, json.JSONDecodeError, zarr.errors.NodeTypeValidationError, FileExistsError,
            NotADirectoryError) as exc:
        raise ValueError(f"{loc.url} is not a tfus dataset: {exc}") from exc


def _check_attrs(url: str, attrs: dict) -> None:
    if attrs.get("format") != FORMAT_NAME:
        raise ValueError(f"{url} is a Zarr group but not a tfus dataset (no format={FORMAT_NAME!r} attribute)")
    version = attrs.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise ValueError(f"{url}: dataset schema version {version!r} is not supported by this tfus "
                         f"(supports {list(SUPPORTED_SCHEMA_VERSIONS)})")


def open_dataset(url, mode: str = "r") -> Dataset:
    """Open an existing dataset; ``mode="a"`` to write. FileNotFoundError / ValueError name the store."""
    if mode not in ("r", "a"):
        raise ValueError(f"`mode` must be 'r' or 'a', got {mode!r}")
    loc = Location.from_url(url)
    group = _open_group(loc, "r" if mode == "r" else "r+")
    if group is None:
        if loc.fs.exists(loc.root):
            raise ValueError(f"{loc.url} is not a tfus dataset (no Zarr group there)")
        raise FileNotFoundError(f"no dataset at {loc.url}")
    _check_attrs(loc.url, dict(group.attrs))
    return Dataset(loc, group, mode)   # arrays open lazily; a missing one raises "store … is damaged"


def create_dataset(url, spec: DatasetSpec, attrs: dict | None = None) -> Dataset:
    """Create a dataset, or reopen an existing one with the same spec (a different spec: ValueError).

    ``attrs`` (JSON-serialisable) are stored as group attributes: ``sim_config`` (the SimConfig dict),
    ``frequency_hz`` … Keys already present in an existing store are kept as they are.
    """
    if not isinstance(spec, DatasetSpec):
        raise ValueError(f"`spec` must be a DatasetSpec, got {type(spec).__name__}")
    attrs = dict(attrs or {})
    clash = sorted(set(attrs) & set(RESERVED_ATTRS))
    if clash:
        raise ValueError(f"`attrs` must not set reserved attributes {clash}")
    json.dumps(attrs, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v))
    loc = Location.from_url(url)
    group = _open_group(loc, "r+")
    if group is None:
        names = ([posixpath.basename(str(p).rstrip("/")) for p in loc.fs.ls(loc.root, detail=False)]
                 if loc.fs.exists(loc.root) else [])
        if [n for n in names if n != LEASE_NAME]:
            raise ValueError(f"{loc.url} exists and is not empty, but is not a tfus dataset")
        # only the lease there: its holder is the one creator, and zarr's "w-" refuses a non-empty folder
        mode = "a" if names else "w-"
        try:
            group = zarr.open_group(loc.zarr_store(), mode=mode, attributes=_new_attrs(spec, attrs))
        except zarr.errors.ContainsGroupError:   # created by another process a moment ago
            return create_dataset(url, spec, attrs)
    else:
        _check_attrs(loc.url, dict(group.attrs))
        existing = DatasetSpec.from_attrs(dict(group.attrs))
        if not existing.same_as(spec):
            raise ValueError(f"dataset {loc.url} exists with a different spec: {existing} (asked for {spec})")
        new = {k: v for k, v in attrs.items() if k not in group.attrs}
        if new:
            group.attrs.update(_jsonable(new))
        if group.attrs.get("schema_version") < SCHEMA_VERSION:
            _upgrade(group, spec)
    _ensure_arrays(group, spec)
    return Dataset(loc, group, "a")


def _jsonable(value: dict) -> dict:
    from tfus.storage.store import to_json
    return json.loads(to_json(value))


def _new_attrs(spec: DatasetSpec, attrs: dict) -> dict:
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    base = {"format": FORMAT_NAME, "schema_version": SCHEMA_VERSION, **spec.to_attrs(), "units": UNITS,
            "producer": _producer(), "created_utc": now}
    return _jsonable({**attrs, **base})


def _upgrade(group: zarr.Group, spec: DatasetSpec) -> None:
    """Version 1 → 2 in place: the transducer arrays are added (``_ensure_arrays``), rows written before
    read as single in-phase bowls; nothing already written is rewritten."""
    n = group["key"].shape[0] if "key" in group else 0
    _ensure_arrays(group, spec)
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    group.attrs.update({"schema_v2_from_row": int(n), "upgraded_utc": now, "schema_version": SCHEMA_VERSION})
    log.info("upgraded %s to schema version %d (rows before %d read as single bowls)", group.store, SCHEMA_VERSION, n)


def _ensure_arrays(group: zarr.Group, spec: DatasetSpec) -> None:
    """Create whatever schema arrays/groups are missing (a fresh store, or an interrupted creation)."""
    n = group["key"].shape[0] if "key" in group else 0
    for a in sample_arrays(spec):
        if a.name not in group:
            create_array(group, a, n, per_sample=True)
    for a in table_arrays():
        if a.name not in group:
            create_array(group, a, n, per_sample=False)
    for name, note in ((RECORDS_DIR, "completion records: one JSON object per sample key (not Zarr arrays)"),
                       (AUX_GROUP, "auxiliary per-sample arrays, one chunk per sample")):
        if name not in group:
            group.create_group(name, attributes={"description": note})


_WRITERS: dict = {}


def write_sample(url, key: str, *, ct_hu, pressure_pa, affine, transducer_points, meta: dict,
                 transducer_drive=None) -> bool:
    """Write one sample from any process (opens the store once per process). See write_sample_to."""
    cache_key = (os.getpid(), threading.get_ident(), str(url))   # a handle is not shared between threads
    ds = _WRITERS.get(cache_key)
    if ds is None:
        ds = _WRITERS[cache_key] = open_dataset(url, mode="a")
    return write_sample_to(ds, key, ct_hu=ct_hu, pressure_pa=pressure_pa, affine=affine,
                           transducer_points=transducer_points, meta=meta, transducer_drive=transducer_drive)
