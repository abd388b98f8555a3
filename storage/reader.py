"""A torch-free, map-style sample reader for training loops (the models package wraps it in torch).

The sample list is fixed when the reader is made; the Zarr arrays are opened lazily in each process that
reads (so a pickled reader works in DataLoader worker processes, which get their own handles).
"""

from __future__ import annotations

import os

import numpy as np

from tfus.storage.schema import AUX_GROUP

_FIELDS = {"ct_hu": "ct", "pressure_pa": "pressure", "affine": "affine", "transducer_points": "transducer_points",
           "transducer_drive": "transducer_drive"}


class SampleReader:
    """``reader[i]`` → dict of numpy arrays: ``ct_hu``, ``pressure_pa`` (X, Y, Z) float32, ``affine`` (4, 4),
    ``transducer_points`` (P, 3) float32, ``transducer_drive`` (P, 3) float32 (ring, amplitude, phase), any
    requested ``aux`` arrays, plus ``sample_id`` and ``index``.

    split / subject / where / status select samples as in ``Dataset.query``; ``fields`` limits what is read.
    """

    def __init__(self, url, split=None, *, subject=None, where: str | None = None, status: str = "complete",
                 fields=tuple(_FIELDS), aux=()):
        from tfus.storage.dataset import open_dataset
        unknown = [f for f in fields if f not in _FIELDS]
        if unknown:
            raise ValueError(f"`fields` must be among {list(_FIELDS)}, got {unknown}")
        self.url = str(url)
        ds = open_dataset(url)
        table = ds.query(subject=subject, split=split, where=where, status=status)
        self.sample_ids = table["sample_id"].tolist()
        self.rows = table["index"].to_numpy(dtype=np.int64)
        self.fields = tuple(fields)
        self.aux = tuple(aux)
        self.attrs = ds.attrs
        self._ds, self._pid = ds, os.getpid()

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_ds"], state["_pid"] = None, None
        return state

    def _dataset(self):
        if self._ds is None or self._pid != os.getpid():
            from tfus.storage.dataset import open_dataset
            self._ds, self._pid = open_dataset(self.url), os.getpid()
        return self._ds

    def __getitem__(self, i: int) -> dict:
        from tfus.storage.table import read_sample_arrays
        if not -len(self) <= i < len(self):
            raise IndexError(f"sample index {i} out of range for {len(self)} samples")
        row, sample_id = int(self.rows[i]), self.sample_ids[i]
        names = [_FIELDS[f] for f in self.fields] + [f"{AUX_GROUP}/{a}" for a in self.aux]
        arrays = read_sample_arrays(self._dataset(), row, sample_id, names=names)
        out = {f: arrays[_FIELDS[f]] for f in self.fields}
        out.update({a: arrays[f"{AUX_GROUP}/{a}"] for a in self.aux})
        out["sample_id"], out["index"] = sample_id, row
        return out
