"""Preview PNG: three orthogonal slices through the focus, CT in grey with the pressure amplitude overlaid."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def _slices(volume: np.ndarray, index) -> list[np.ndarray]:
    i, j, k = (int(v) for v in index)
    return [volume[i, :, :], volume[:, j, :], volume[:, :, k]]


def render_preview(ct_hu: np.ndarray, pressure_pa: np.ndarray, focal_index, path: str | os.PathLike,
                   spacing_mm: float = 1.0, title: str = "") -> Path:
    """Write a 1×3 panel PNG (planes through ``focal_index``); returns the path.

    The overlay is scaled to the pressure at the focus (hot spots in the skull may saturate), so the focal
    region stays visible even when the outer table carries a higher amplitude.
    """
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt  # noqa: PLC0415

    peak = float(pressure_pa[tuple(int(i) for i in focal_index)]) or float(np.max(pressure_pa)) or 1.0
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2), constrained_layout=True)
    names = [("y", "z"), ("x", "z"), ("x", "y")]
    image = None
    for ax, ct, p, (h, v) in zip(axes, _slices(ct_hu, focal_index), _slices(pressure_pa, focal_index), names):
        extent = (0, ct.shape[0] * spacing_mm, 0, ct.shape[1] * spacing_mm)
        ax.imshow(ct.T, cmap="gray", origin="lower", extent=extent, vmin=-200, vmax=2000)
        overlay = np.ma.masked_less(p.T / peak, 0.05)
        image = ax.imshow(overlay, cmap="inferno", origin="lower", extent=extent, vmin=0, vmax=1, alpha=0.75)
        ax.set_xlabel(f"{h} (mm, grid)")
        ax.set_ylabel(f"{v} (mm, grid)")
    fig.colorbar(image, ax=axes, shrink=0.85, label=f"p / p_focus (p_focus = {peak / 1e3:.1f} kPa)")
    if title:
        fig.suptitle(title)
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
