"""The dataset schema: the one place that names arrays, dims, dtypes, chunks and the schema version.

Two kinds of arrays share the leading ``sample`` dimension (length N):

* *sample arrays* (``ct``, ``pressure``, ``affine``, ``transducer_points``, ``transducer_drive``, and
  ``aux/<name>``): one chunk
  per sample, written by any worker process; chunks of different samples are different objects, so
  concurrent writers never touch the same object. Fill value NaN: an unwritten chunk reads as NaN, which
  lets readers detect a missing chunk without an extra request (valid samples are checked finite).
* *table arrays* (``key``, ``sample_id``, ``status``, ``peak_pressure_pa`` …): many samples per chunk so that
  the whole table lists in a few requests; written only by the single coordinating process
  (``reserve``/``commit``/``mark_failed``), because a shared chunk is read-modify-write.

Completion of a sample is an immutable JSON record ``_records/<key>.json`` written after its chunks.

Schema versions: 2 added the transducer to the data (annular arrays): the sample array ``transducer_drive``
(ring index, relative amplitude, phase of each stored surface point) and the table columns ``transducer``,
``focal_distance_mm`` and ``ring_phases_rad``. A version-1 store reads as single in-phase bowls (drive
(0, 1, 0), transducer ""), and ``create_dataset`` upgrades it in place when a run writes to it again: the
new arrays are added (nothing written is touched) and ``schema_v2_from_row`` records the first row written
under version 2.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

SCHEMA_VERSION = 2
SUPPORTED_SCHEMA_VERSIONS = (1, 2)
MAX_RINGS = 16               # ring phases per table row (NaN-padded); annular arrays have up to this many rings
V2_SAMPLE_ARRAYS = ("transducer_drive",)
V2_TABLE_ARRAYS = ("transducer", "focal_distance_mm", "ring_phases_rad")
FORMAT_NAME = "tfus-dataset"
TABLE_CHUNK = 16384          # samples per chunk of the table arrays listed by Dataset.table
JSON_CHUNK = 256             # samples per chunk of the per-sample JSON columns
RECORDS_DIR = "_records"     # completion records (a Zarr group holding plain JSON objects)
AUX_GROUP = "aux"            # auxiliary per-sample arrays (aux/<name>)
STATUSES = ("pending", "complete", "failed")
KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")

UNITS = {
    "ct": "HU", "pressure": "Pa (steady-state amplitude)", "affine": "voxel index -> world mm (RAS)",
    "transducer_points": "voxel coordinates of the sample window", "position_mm": "mm", "target_mm": "mm",
    "focal_point_mm": "mm", "peak_pressure_pa": "Pa", "frequency_hz": "Hz", "runtime_s": "s",
    "transducer_drive": "per point: ring index, relative amplitude, phase (rad)",
    "focal_distance_mm": "mm from the exit plane (steered arrays; NaN: not steered)",
    "ring_phases_rad": "rad per ring (NaN-padded to MAX_RINGS)",
}

# name -> (dtype, trailing shape as a function of the spec, dimension names after "sample")
_STR = "str"


@dataclass(frozen=True)
class DatasetSpec:
    """What every sample of a dataset shares, so that samples stack for training.

    window_shape: voxels (X, Y, Z); spacing_mm: voxel size in mm (one number or three);
    n_transducer_points: P, the fixed number of bowl-surface points per sample.
    """

    window_shape: tuple[int, int, int]
    spacing_mm: float | tuple[float, float, float]
    n_transducer_points: int

    def __post_init__(self) -> None:
        shape = tuple(self.window_shape) if np.ndim(self.window_shape) == 1 else ()
        if len(shape) != 3 or not all(_is_int(s) and int(s) > 0 for s in shape):
            raise ValueError(f"`window_shape` must be three positive integers, got {self.window_shape!r}")
        object.__setattr__(self, "window_shape", tuple(int(s) for s in shape))
        spacing = np.atleast_1d(np.asarray(self.spacing_mm, dtype=float)) if _numeric(self.spacing_mm) else None
        if spacing is None or spacing.size not in (1, 3) or not np.all(np.isfinite(spacing) & (spacing > 0)):
            raise ValueError(f"`spacing_mm` must be one or three positive numbers, got {self.spacing_mm!r}")
        spacing = np.broadcast_to(spacing, (3,))
        object.__setattr__(self, "spacing_mm", tuple(float(s) for s in spacing))
        if not _is_int(self.n_transducer_points) or int(self.n_transducer_points) < 1:
            raise ValueError(f"`n_transducer_points` must be a positive integer, got {self.n_transducer_points!r}")
        object.__setattr__(self, "n_transducer_points", int(self.n_transducer_points))

    def to_attrs(self) -> dict:
        return {"window_shape": list(self.window_shape), "spacing_mm": list(self.spacing_mm),
                "n_transducer_points": self.n_transducer_points}

    @classmethod
    def from_attrs(cls, attrs: dict) -> "DatasetSpec":
        return cls(tuple(attrs["window_shape"]), tuple(attrs["spacing_mm"]), attrs["n_transducer_points"])

    def same_as(self, other: "DatasetSpec") -> bool:
        return (self.window_shape == other.window_shape and self.n_transducer_points == other.n_transducer_points
                and all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(self.spacing_mm, other.spacing_mm)))


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _numeric(value) -> bool:
    try:
        np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class ArraySpec:
    """One array of the schema: dtype, shape after the sample dimension, dims, fill value."""

    name: str
    dtype: str
    tail: tuple[int, ...]
    dims: tuple[str, ...]
    fill: object
    chunk: int = 0   # samples per chunk for table arrays (0: TABLE_CHUNK)


def sample_arrays(spec: DatasetSpec) -> list[ArraySpec]:
    """Arrays with one chunk per sample (written by workers)."""
    x, y, z = spec.window_shape
    return [
        ArraySpec("ct", "float32", (x, y, z), ("x", "y", "z"), float("nan")),
        ArraySpec("pressure", "float32", (x, y, z), ("x", "y", "z"), float("nan")),
        ArraySpec("affine", "float64", (4, 4), ("row", "col"), float("nan")),
        ArraySpec("transducer_points", "float32", (spec.n_transducer_points, 3), ("point", "xyz"), float("nan")),
        ArraySpec("transducer_drive", "float32", (spec.n_transducer_points, 3), ("point", "ring_amp_phase"),
                  float("nan")),
    ]


def table_arrays() -> list[ArraySpec]:
    """Arrays with TABLE_CHUNK samples per chunk (written only by the coordinating process).

    ``key`` comes last: ``reserve`` writes it last, and a row whose key is "" does not exist yet.
    """
    nan = float("nan")
    return [
        ArraySpec("sample_id", _STR, (), (), ""),
        ArraySpec("subject_id", _STR, (), (), ""),
        ArraySpec("split", _STR, (), (), ""),
        ArraySpec("status", _STR, (), (), ""),
        ArraySpec("reason", _STR, (), (), ""),
        ArraySpec("position_mm", "float64", (3,), ("xyz",), nan),
        ArraySpec("target_mm", "float64", (3,), ("xyz",), nan),
        ArraySpec("focal_point_mm", "float64", (3,), ("xyz",), nan),
        ArraySpec("peak_pressure_pa", "float64", (), (), nan),
        ArraySpec("frequency_hz", "float64", (), (), nan),
        ArraySpec("runtime_s", "float64", (), (), nan),
        ArraySpec("transducer", _STR, (), (), ""),
        ArraySpec("focal_distance_mm", "float64", (), (), nan),
        ArraySpec("ring_phases_rad", "float64", (MAX_RINGS,), ("ring",), nan),
        # read one sample at a time (Dataset.sample), so small chunks: no 16k-string decode per sample
        ArraySpec("config_json", _STR, (), (), "", JSON_CHUNK),
        ArraySpec("summary_json", _STR, (), (), "", JSON_CHUNK),
        ArraySpec("key", _STR, (), (), ""),
    ]


# Table columns read for Dataset.table (config/summary JSON are read per sample only).
TABLE_COLUMNS = ("sample_id", "key", "subject_id", "split", "status", "reason", "position_mm", "target_mm",
                 "focal_point_mm", "peak_pressure_pa", "frequency_hz", "runtime_s", "transducer",
                 "focal_distance_mm", "ring_phases_rad")


def default_drive(n_points: int) -> np.ndarray:
    """``transducer_drive`` of a single in-phase bowl, (P, 3) float32 rows (ring 0, amplitude 1, phase 0):
    what every sample of a version-1 store was."""
    drive = np.zeros((int(n_points), 3), np.float32)
    drive[:, 1] = 1.0
    return drive


def check_key(key: str) -> str:
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise ValueError(f"sample key must match {KEY_PATTERN.pattern}, got {key!r}")
    return key


def check_aux_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(f"aux array name must match {NAME_PATTERN.pattern}, got {name!r}")
    return name
