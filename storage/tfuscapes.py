"""Import the public TFUScapes layout into a tfus dataset (streaming, resumable, published splits kept).

Layout: ``DIR/data/<SUBJECT>/exp_<k>.npz`` with ``ct`` (X, Y, Z float, pseudo-CT HU, background 0), ``pmap``
(X, Y, Z float, pressure amplitude in Pa) and ``tr_coords`` (M, 3 integer voxel indices of the transducer
surface, M ≈ 17k); ``DIR/splits/{train,val,test}.txt`` list ``SUBJECT/exp_k.npz``. 0.5 mm voxels, 500 kHz.
The npz files carry no affine and no placement: the affine is diag(0.5 mm) with origin 0, the transducer
position is the centroid of ``tr_coords`` and the target the pressure maximum (both in mm).
"""

from __future__ import annotations

import hashlib
import logging
import re
import zipfile
from pathlib import Path

import numpy as np

from tfus.storage.dataset import create_dataset
from tfus.storage.schema import DatasetSpec
from tfus.storage.store import to_json
from tfus.storage.writing import SampleRecord

log = logging.getLogger(__name__)

SPACING_MM = 0.5
FREQUENCY_HZ = 500e3
SPLITS = ("train", "val", "test")
DEFAULT_POINTS = 512
_ENTRY = re.compile(r"^([^/\s]+)/(exp_(\d+))\.npz$")


def read_splits(src: Path) -> list[tuple[str, str, str]]:
    """(subject, exp name, split) for every entry of the published split lists, in file order."""
    folder = src / "splits"
    files = [folder / f"{s}.txt" for s in SPLITS]
    if not any(f.is_file() for f in files):
        raise FileNotFoundError(f"no TFUScapes split lists in {folder} (expected train.txt, val.txt, test.txt)")
    entries, seen = [], set()
    for split, path in zip(SPLITS, files):
        lines = path.read_text().split() if path.is_file() else []
        for line in lines:
            m = _ENTRY.match(line.strip())
            if not m:
                raise ValueError(f"{path}: entry {line!r} is not of the form SUBJECT/exp_<k>.npz")
            if line in seen:
                raise ValueError(f"{path}: entry {line!r} is listed in more than one split")
            seen.add(line)
            entries.append((m.group(1), m.group(2), split))
    return entries


def npz_header(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shapes and dtypes of the arrays in an .npz without reading their data."""
    out = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                with zf.open(name) as fh:
                    version = np.lib.format.read_magic(fh)
                    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                            else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read(fh)
                    out[name.removesuffix(".npy")] = (tuple(shape), np.dtype(dtype))
    except (zipfile.BadZipFile, ValueError, OSError, SyntaxError) as exc:
        raise ValueError(f"{path}: not a readable .npz file ({exc})") from None
    return out


def check_header(path: Path, header: dict, shape: tuple | None) -> None:
    missing = [k for k in ("ct", "pmap", "tr_coords") if k not in header]
    if missing:
        raise ValueError(f"{path}: missing keys {missing} (TFUScapes files hold ct, pmap, tr_coords)")
    ct_shape = header["ct"][0]
    if len(ct_shape) != 3:
        raise ValueError(f"{path}: `ct` must be 3-D, got shape {ct_shape}")
    if shape is not None and ct_shape != shape:
        raise ValueError(f"{path}: `ct` has shape {ct_shape}, but this dataset's window is {shape}")
    if header["pmap"][0] != ct_shape:
        raise ValueError(f"{path}: `pmap` shape {header['pmap'][0]} differs from `ct` shape {ct_shape}")
    tr = header["tr_coords"][0]
    if len(tr) != 2 or tr[1] != 3 or tr[0] < 1:
        raise ValueError(f"{path}: `tr_coords` must have shape (M, 3) with M ≥ 1, got {tr}")


def subsample_points(coords: np.ndarray, n: int) -> np.ndarray:
    """``n`` of the surface points by farthest-point sampling (deterministic, even coverage of the bowl)."""
    pts = np.unique(np.asarray(coords, dtype=np.float64), axis=0)   # sorted: independent of file order
    if len(pts) <= n:
        return np.resize(pts, (n, 3)).astype(np.float32)   # too few points: repeat them cyclically
    chosen = np.empty(n, dtype=np.int64)
    chosen[0] = int(np.argmin(((pts - pts.mean(axis=0)) ** 2).sum(axis=1)))
    dist = ((pts - pts[chosen[0]]) ** 2).sum(axis=1)
    for i in range(1, n):
        chosen[i] = int(np.argmax(dist))
        dist = np.minimum(dist, ((pts - pts[chosen[i]]) ** 2).sum(axis=1))
    return pts[np.sort(chosen)].astype(np.float32)


def bowl_placement_mm(coords: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position, target) in mm from the bowl surface points: the points' centroid, and the centre of the
    least-squares sphere through them (the bowl's geometric focus); target = position if no sphere fits."""
    pts = np.asarray(coords, dtype=np.float64) @ affine[:3, :3].T + affine[:3, 3]
    position = pts.mean(axis=0)
    design = np.hstack([2 * pts, np.ones((len(pts), 1))])
    solution, _, rank, _ = np.linalg.lstsq(design, (pts ** 2).sum(axis=1), rcond=None)
    target = solution[:3] if rank == 4 and np.all(np.isfinite(solution)) else position
    return position, target


def _reserve_with_placement(ds, todo, affine: np.ndarray) -> None:
    """Reserve rows for ``todo`` with placements read from ``tr_coords`` only (cheap: one npz member)."""
    import dataclasses
    placed = []
    for i, (rec, path) in enumerate(todo):
        with np.load(path) as npz:
            position, target = bowl_placement_mm(npz["tr_coords"], affine)
        rec = dataclasses.replace(rec, position_mm=tuple(position), target_mm=tuple(target))
        todo[i] = (rec, path)
        placed.append(rec)
    ds.reserve(placed)


def _write_one(ds, key: str, data: dict, affine: np.ndarray, points: int) -> bool:
    pmap = data["pmap"]
    peak_vox = np.array(np.unravel_index(np.argmax(pmap), pmap.shape), dtype=float)
    focal = affine[:3, :3] @ peak_vox + affine[:3, 3]
    meta = {"focal_point_mm": focal, "peak_pressure_pa": float(pmap.max()),
            "summary": {"source": "TFUScapes", "n_tr_coords": int(len(data["coords"]))}}
    return ds.write_sample(key, ct_hu=data["ct"], pressure_pa=pmap, affine=affine,
                           transducer_points=subsample_points(data["coords"], points), meta=meta)


def _key(subject: str, exp: str, path: Path) -> str:
    """Deterministic sample key: the published entry name and the file size (cheap; no content read)."""
    text = f"tfuscapes/v1/{subject}/{exp}.npz/{path.stat().st_size}"
    return hashlib.sha256(text.encode()).hexdigest()


def _load(path: Path, shape: tuple) -> dict:
    with np.load(path) as npz:
        ct = np.asarray(npz["ct"], dtype=np.float32)
        pmap = np.asarray(npz["pmap"], dtype=np.float32)
        coords = np.asarray(npz["tr_coords"])
    for name, arr in (("ct", ct), ("pmap", pmap), ("tr_coords", coords)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{path}: `{name}` holds NaN or inf values")
    if np.any(coords < 0) or np.any(coords >= np.array(shape)):
        raise ValueError(f"{path}: `tr_coords` has voxel indices outside the {shape} grid")
    return {"ct": ct, "pmap": pmap, "coords": coords}


def _plan(src: Path, n_points: int | None):
    """Entries, window shape and P, with every file's header checked before the store is touched."""
    entries = read_splits(src)
    if not entries:
        raise ValueError(f"{src / 'splits'}: the split lists are empty")
    shape, plan, min_points = None, [], None
    for subject, exp, split in entries:
        path = src / "data" / subject / f"{exp}.npz"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: listed in splits/{split}.txt but missing")
        header = npz_header(path)
        check_header(path, header, shape)
        shape = shape or header["ct"][0]
        m = header["tr_coords"][0][0]
        min_points = m if min_points is None else min(min_points, m)
        plan.append((subject, exp, split, path))
    points = n_points if n_points is not None else min(DEFAULT_POINTS, min_points)
    if points < 1:
        raise ValueError(f"`n_points` must be a positive integer, got {n_points}")
    return plan, shape, points


def import_tfuscapes(src_dir, url, progress: bool = True, n_points: int | None = None,
                     attrs: dict | None = None, commit_every: int = 200) -> dict:
    """Import (or resume importing) TFUScapes files into the dataset at ``url``; returns counts.

    n_points: transducer points kept per sample (default min(512, fewest tr_coords in any file));
    attrs: extra dataset attributes (e.g. ``sim_config``). Samples already complete are skipped.
    """
    from tqdm import tqdm
    src = Path(src_dir)
    if not (src / "data").is_dir():
        raise FileNotFoundError(f"{src}: not a TFUScapes directory (no data/ folder)")
    plan, shape, points = _plan(src, n_points)
    affine = np.diag([SPACING_MM, SPACING_MM, SPACING_MM, 1.0])
    base = {"source": "TFUScapes", "source_dir": str(src.resolve()), "frequency_hz": FREQUENCY_HZ,
            "transducer_points_method": f"farthest-point subsample of tr_coords to {points} points",
            "affine_note": "npz files carry no affine: diag(0.5 mm), origin 0"}
    attrs = dict(attrs or {})
    if isinstance(attrs.get("sim_config"), dict):   # make the given SimConfig describe these windows
        attrs["sim_config"] = {**attrs["sim_config"], "window_shape": list(shape), "n_transducer_points": points,
                               "spacing_mm": SPACING_MM}
    ds = create_dataset(url, DatasetSpec(shape, SPACING_MM, points), {**base, **attrs})
    records = {}
    for subject, exp, split, path in plan:
        config = {"source": "TFUScapes", "file": f"{subject}/{exp}.npz", "frequency_hz": FREQUENCY_HZ,
                  "spacing_mm": SPACING_MM}
        rec = SampleRecord(key=_key(subject, exp, path), sample_id=f"{subject}-{exp}", subject_id=subject,
                           split=split, position_mm=(0.0, 0.0, 0.0), target_mm=(0.0, 0.0, 0.0),
                           frequency_hz=FREQUENCY_HZ, config_json=to_json(config))
        records[rec.key] = (rec, path)
    done = ds.complete_keys()
    todo = [(rec, path) for key, (rec, path) in records.items() if key not in done]
    _reserve_with_placement(ds, todo, affine)
    written = 0
    for i, (rec, path) in enumerate(tqdm(todo, desc="import TFUScapes", unit="sample", disable=not progress)):
        data = _load(path, shape)
        written += _write_one(ds, rec.key, data, affine, points)
        if commit_every and (i + 1) % commit_every == 0:
            ds.commit()
    ds.commit()
    return {"store": str(url), "entries": len(plan), "imported": written,
            "skipped": len(plan) - len(todo), "window_shape": list(shape), "n_transducer_points": points}
