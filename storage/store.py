"""Where a dataset lives: URL → fsspec filesystem + Zarr group, and the completion-record objects.

A store is a local path or any fsspec URL. Zarr reads and writes the arrays; the small JSON records under
``_records/`` go through fsspec directly, written so that a record is either absent or whole:
on a local disk through a temporary file and a hard link (atomic and never overwrites), on object stores
as one PUT.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import posixpath
import uuid
from dataclasses import dataclass

import fsspec
import numpy as np
import zarr
from fsspec.implementations.local import LocalFileSystem
from zarr.core.sync import sync

from tfus.storage.schema import RECORDS_DIR, ArraySpec

log = logging.getLogger(__name__)

SAMPLE_CODECS = None  # set lazily: Blosc(lz4, shuffle) + crc32c (detects corrupt chunks)


def sample_codecs() -> list:
    """Compression for sample chunks: fast to decode (lz4), and a checksum so that corruption raises."""
    global SAMPLE_CODECS
    if SAMPLE_CODECS is None:
        SAMPLE_CODECS = [zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
                         zarr.codecs.Crc32cCodec()]
    return SAMPLE_CODECS


@dataclass(frozen=True)
class Location:
    """A store URL resolved once: the filesystem and the root path inside it."""

    url: str
    fs: fsspec.AbstractFileSystem
    root: str

    @classmethod
    def from_url(cls, url) -> "Location":
        url = os.fspath(url)
        if not isinstance(url, str) or not url:
            raise ValueError(f"store URL must be a non-empty string or path, got {url!r}")
        fs, root = fsspec.core.url_to_fs(url)
        return cls(url=url, fs=fs, root=root.rstrip("/") or "/")

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def zarr_store(self):
        """What zarr.open_group accepts: a plain path for local disks, the URL otherwise."""
        return self.root if self.is_local else self.url

    # --- records -------------------------------------------------------------------------------------
    def record_path(self, key: str, sub: str = "") -> str:
        return self.path(RECORDS_DIR, sub, f"{key}.json") if sub else self.path(RECORDS_DIR, f"{key}.json")

    def list_record_keys(self, sub: str = "") -> set[str]:
        """Keys with a record, from one directory listing (no object is read)."""
        folder = self.path(RECORDS_DIR, sub) if sub else self.path(RECORDS_DIR)
        if self.is_local:
            try:
                names = os.listdir(folder)
            except FileNotFoundError:
                return set()
        else:
            self.fs.invalidate_cache(folder)   # object-store listings are cached by fsspec; records are new
            try:
                names = [posixpath.basename(p.rstrip("/")) for p in self.fs.ls(folder, detail=False)]
            except FileNotFoundError:
                return set()
        return {n[:-5] for n in names if n.endswith(".json") and not n.startswith(".") and n != "zarr.json"}

    def read_records(self, keys, sub: str = "") -> dict[str, dict]:
        """Records of ``keys`` (one batched request on object stores); keys without one are left out."""
        paths = {self.record_path(k, sub): k for k in keys}
        if not paths:
            return {}
        out = {}
        if self.is_local:
            for path, key in paths.items():
                try:
                    with open(path, "rb") as fh:
                        out[key] = json.loads(fh.read())
                except FileNotFoundError:
                    continue
            return out
        blobs = self.fs.cat(list(paths), on_error="omit")
        return {paths[p]: json.loads(b) for p, b in blobs.items() if p in paths}

    def write_record(self, key: str, record: dict, sub: str = "") -> bool:
        """Create the record of ``key`` atomically; False (and nothing written) if it exists already."""
        path = self.record_path(key, sub)
        data = json.dumps(record, sort_keys=True, default=_json_default).encode()
        if self.is_local:
            folder = os.path.dirname(path)
            os.makedirs(folder, exist_ok=True)
            tmp = os.path.join(folder, f".{key}.{uuid.uuid4().hex}.tmp")
            with open(tmp, "wb") as fh:
                fh.write(data)
                if durable_writes():
                    fh.flush()
                    os.fsync(fh.fileno())   # the record's bytes on disk before its name exists
            try:
                os.link(tmp, path)   # atomic, and fails rather than replace an existing record
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
            if durable_writes():
                fsync_dir(folder)   # the name itself survives a crash of the machine
            return True
        if self.has_record(key, sub):
            return False
        self.fs.pipe_file(path, data)
        return True

    def has_record(self, key: str, sub: str = "") -> bool:
        path = self.record_path(key, sub)
        if self.is_local:
            return os.path.exists(path)
        self.fs.invalidate_cache(posixpath.dirname(path))
        return self.fs.exists(path)

    def du(self) -> int:
        """Bytes stored under the root."""
        try:
            return int(self.fs.du(self.root, total=True))
        except FileNotFoundError:
            return 0


def durable_writes() -> bool:
    """Whether local writes are fsynced (default yes; ``TFUS_STORE_FSYNC=0`` for scratch space where a crash
    of the machine may lose the dataset anyway)."""
    return os.environ.get("TFUS_STORE_FSYNC", "1").strip().lower() not in ("0", "false", "no", "off")


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_files(paths) -> None:
    """fsync each file, then each folder holding one (a new file's directory entry is data too)."""
    folders = set()
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        folders.add(os.path.dirname(path))
    for folder in sorted(folders):
        fsync_dir(folder)


async def gather(*coros, return_exceptions: bool = False):
    """asyncio.gather inside zarr's event loop (run it with zarr.core.sync.sync)."""
    return await asyncio.gather(*coros, return_exceptions=return_exceptions)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def to_json(value) -> str:
    return json.dumps(value, sort_keys=True, default=_json_default)


def create_array(group: zarr.Group, spec: ArraySpec, n: int, per_sample: bool) -> zarr.Array:
    """Create one schema array of length ``n`` along ``sample`` inside ``group``."""
    from tfus.storage.schema import TABLE_CHUNK
    shape = (n, *spec.tail)
    chunks = (1, *spec.tail) if per_sample else (spec.chunk or TABLE_CHUNK, *spec.tail)
    dtype = str if spec.dtype == "str" else spec.dtype
    kwargs = {"compressors": sample_codecs()} if per_sample else {}
    return group.create_array(spec.name, shape=shape, chunks=chunks, dtype=dtype, fill_value=spec.fill,
                              dimension_names=("sample", *spec.dims),
                              chunk_key_encoding={"name": "default", "separator": "."}, **kwargs)


def grow(arr: zarr.Array, n: int) -> None:
    """Grow ``arr`` along ``sample`` to at least ``n`` rows; never deletes chunks."""
    if arr.shape[0] < n:
        sync(arr.async_array.resize((n, *arr.shape[1:]), delete_outside_chunks=False))
