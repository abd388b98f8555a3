"""A T1 file → a pseudo-CT file with its quality figures (JSON + PNG) next to it.

The one entry point shared by ``tfus pseudo-ct``, the generation flow's pseudo-CT task and Python users.
Nothing is written until the pseudo-CT has passed its checks; the NIfTI is written last (atomically), so a
pseudo-CT file on disk always has its QC files beside it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tfus.sim.ingest import Volume, load_volume, resample, save_nifti
from tfus.sim.pseudoct import PseudoCTConfig, t1_to_pseudo_ct
from tfus.sim.skullqc import check_enclosed, render_qc, skull_qc, write_qc


def qc_paths(out: str | os.PathLike) -> tuple[Path, Path]:
    """``pct.nii.gz`` → (``pct.qc.json``, ``pct.qc.png``)."""
    out = Path(out)
    stem = out.name[: -len(".nii.gz")] if out.name.endswith(".nii.gz") else out.stem
    return out.with_name(stem + ".qc.json"), out.with_name(stem + ".qc.png")


def load_brain_mask(path: str | os.PathLike, t1: Volume) -> np.ndarray:
    """A brain mask file (any grid; > 0 is brain) on the T1's grid (nearest-voxel resampling if needed)."""
    mask = load_volume(path)
    if mask.shape == t1.shape and np.allclose(mask.affine, t1.affine, atol=1e-3):
        return mask.hu > 0
    return resample(Volume((mask.hu > 0).astype(np.float32), mask.affine), t1.affine, t1.shape).hu > 0.5


def make_pseudo_ct(t1_path: str | os.PathLike, out: str | os.PathLike, brain_mask: str | os.PathLike | None = None,
                   png: str | os.PathLike | None = None, config: PseudoCTConfig | None = None) -> dict:
    """T1 → ``out`` (pseudo-CT NIfTI, HU) + ``<out>.qc.json`` + the QC PNG (``png`` or ``<out>.qc.png``).

    Returns the QC dict (with the inputs named). ``ValueError`` (one line, naming the file) for an input that
    is not a head T1; nothing is written then.
    """
    out = Path(out)
    if not out.name.lower().endswith((".nii", ".nii.gz")):
        raise ValueError(f"--out {out}: a pseudo-CT must be written as .nii or .nii.gz")
    name = str(t1_path)
    t1 = load_volume(t1_path)
    mask = None if brain_mask is None else load_brain_mask(brain_mask, t1)
    pct = t1_to_pseudo_ct(t1, mask, config, name=name)
    qc = skull_qc(pct.head, pct.skull, pct.intracranial, t1.affine)
    check_enclosed(qc, name)
    qc.update(t1=str(Path(t1_path).resolve()), brain_mask=str(Path(brain_mask).resolve()) if brain_mask else
              "registered Colin27 (mricron-data)", method="segmentation (sim.pseudoct)",
              config=(config or PseudoCTConfig()).to_dict(),
              classes={k: round(float(v), 4) for k, v in pct.classes.items()})
    json_path, png_path = qc_paths(out)
    png_path = Path(png) if png else png_path
    render_qc(t1.hu, pct.skull, pct.intracranial, t1.affine, png_path,
              title=f"{Path(t1_path).name}: skull {qc['skull_volume_ml']:.0f} mL, thickness median "
                    f"{qc.get('skull_thickness_median_mm', float('nan')):.1f} mm")
    write_qc(qc, json_path)
    save_nifti(pct.ct.hu, pct.ct.affine, out)
    return qc
