"""Getting one sample out for people: NIfTI export and a three-slice PNG through the focus."""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path

import numpy as np

from tfus.storage.dataset import open_dataset
from tfus.storage.store import to_json

log = logging.getLogger(__name__)


def _replace_into(path: Path, write) -> None:
    """Write through a temporary sibling and rename, so a file is either old, absent or whole."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp{''.join(path.suffixes)}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def export_sample(url, sample_id: str, out_dir) -> dict:
    """Write ``ct.nii.gz`` (HU), ``pressure.nii.gz`` (Pa) with the sample's affine (voxel → world mm, RAS)
    and ``sample.json`` (table row, config, summary) into ``out_dir``; returns the paths."""
    import nibabel as nib
    sample = open_dataset(url).sample(sample_id)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"ct": out / "ct.nii.gz", "pressure": out / "pressure.nii.gz", "meta": out / "sample.json"}
    for name, data in (("ct", sample.ct_hu), ("pressure", sample.pressure_pa)):
        img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), sample.affine)
        img.header.set_xyzt_units("mm")
        img.header["descrip"] = b"HU" if name == "ct" else b"Pa"
        _replace_into(paths[name], lambda p, img=img: nib.save(img, str(p)))
    meta = {k: v for k, v in sample.meta.items()}
    _replace_into(paths["meta"], lambda p: p.write_text(json.dumps(json.loads(to_json(meta)), indent=2)))
    log.info("exported %s from %s to %s", sample_id, url, out)
    return {k: str(v) for k, v in paths.items()}


def focus_voxel(sample) -> tuple[int, int, int]:
    """Voxel of the focal point (from the stored focal_point_mm, else the pressure maximum)."""
    focal = np.asarray(sample.meta.get("focal_point_mm", (np.nan,) * 3), dtype=float)
    shape = sample.pressure_pa.shape
    if np.all(np.isfinite(focal)):
        vox = np.linalg.inv(sample.affine) @ np.append(focal, 1.0)
        idx = np.clip(np.rint(vox[:3]).astype(int), 0, np.array(shape) - 1)
        return tuple(int(i) for i in idx)
    return tuple(int(i) for i in np.unravel_index(np.argmax(sample.pressure_pa), shape))


def render_sample_png(url, sample_id: str, png) -> str:
    """Three orthogonal slices through the focus: CT in grey, pressure (Pa) overlaid where > 5 % of peak."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    sample = open_dataset(url).sample(sample_id)
    fx, fy, fz = focus_voxel(sample)
    ct, p = sample.ct_hu, sample.pressure_pa
    peak = float(p.max()) or 1.0
    slices = (("x", ct[fx], p[fx], ("y", "z")), ("y", ct[:, fy], p[:, fy], ("x", "z")),
              ("z", ct[:, :, fz], p[:, :, fz], ("x", "y")))
    fig = Figure(figsize=(12, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    image = None
    for ax, (axis, ct_slice, p_slice, (a, b)) in zip(axes, slices):
        ax.imshow(ct_slice.T, cmap="gray", origin="lower", vmin=-200, vmax=2000)
        image = ax.imshow(np.ma.masked_less(p_slice, 0.05 * peak).T, cmap="inferno", origin="lower",
                          alpha=0.7, vmin=0, vmax=peak)
        ax.set_title(f"{axis} = {dict(x=fx, y=fy, z=fz)[axis]}")
        ax.set_xlabel(f"{a} (voxel)")
        ax.set_ylabel(f"{b} (voxel)")
    fig.colorbar(image, ax=list(axes), label="pressure amplitude (Pa)", shrink=0.8)
    fig.suptitle(f"{sample_id}: peak {peak / 1e3:.1f} kPa at voxel ({fx}, {fy}, {fz})")
    path = Path(png)
    path.parent.mkdir(parents=True, exist_ok=True)
    _replace_into(path, lambda t: fig.savefig(str(t), format="png"))
    return str(path)
