"""Writing a simulation result directory atomically (temporary sibling directory, then rename)."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from tfus.sim.ingest import save_nifti
from tfus.sim.preview import render_preview

OUTPUT_FILES = ("pressure.nii.gz", "ct.nii.gz", "summary.json", "preview.png")


def write_outputs(result, out_dir: Path) -> Path:
    """Write the four files of ``result`` (a ``SimResult``) into ``out_dir``; nothing half-written on failure."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir}: exists and is not a directory")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        window = result.window
        save_nifti(np.asarray(result.pressure_pa, np.float32), window.affine, tmp / "pressure.nii.gz")
        save_nifti(np.asarray(window.ct_hu, np.float32), window.affine, tmp / "ct.nii.gz")
        render_preview(window.ct_hu, result.pressure_pa, result.summary["focal_index"], tmp / "preview.png",
                       spacing_mm=window.spacing_mm,
                       title=f"peak {result.summary['peak_pressure_pa'] / 1e3:.1f} kPa at "
                             f"{[round(x, 1) for x in result.summary['focal_point_mm']]} mm")
        (tmp / "summary.json").write_text(json.dumps(result.summary, indent=2, sort_keys=True) + "\n")
        _swap_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out_dir)
