"""Evaluation of a trained run (and baselines) on one split of a store.

Writes ``out_dir/metrics.json``: one entry per model – ``deeptfus``, ``unet_plain`` (when a baseline run is
given), ``free_field`` (when free-field fields are given) – each with ``rel_l2``, ``focal_error_mm``,
``max_pressure_error``, ``dice_6db`` as mean/std/median plus per-sample ``values`` (see models.metrics).
Free-field pressures are normalised exactly like the targets. Figures ``sample_<id>.png``: prediction vs
simulation vs error, three orthogonal slices through the simulated focus.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from tfus.models.data import StoreDataset, normalise_pressure
from tfus.models.metrics import aggregate, focal_point_vox, sample_metrics
from tfus.models.predict import Predictor

log = logging.getLogger(__name__)


def plot_sample(path: Path, sample_id, fields: dict[str, np.ndarray], target: np.ndarray) -> None:
    """Rows: models' predictions and their |error|; columns: slices through the simulated focus."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    focus = focal_point_vox(target).astype(int)
    rows = [("simulation", target, "magma")]
    for name, pred in fields.items():
        rows += [(name, pred, "magma"), (f"|{name} − sim|", np.abs(pred - target), "viridis")]
    vmax = float(np.log(2.0))
    fig, axes = plt.subplots(len(rows), 3, figsize=(9, 2.8 * len(rows)), squeeze=False)
    for r, (label, vol, cmap) in enumerate(rows):
        slices = (vol[focus[0]], vol[:, focus[1]], vol[:, :, focus[2]])
        for c, (sl, axis_name) in enumerate(zip(slices, ("x", "y", "z"))):
            ax = axes[r, c]
            ax.imshow(sl.T, origin="lower", cmap=cmap, vmin=0, vmax=vmax)
            ax.set_title(f"{label} ({axis_name}={focus[c]})", fontsize=8)
            ax.axis("off")
    fig.suptitle(f"sample {sample_id}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def evaluate(run_dir, store_url: str, split: str, out_dir, free_field: Mapping | None = None,
             baseline_run_dir=None, max_figures: int = 4, progress: bool = True) -> dict:
    """Metrics of the run (and baselines) on ``split``; writes metrics.json and figures; returns the dict."""
    data = StoreDataset(store_url, split, 1)
    ids = data.sample_ids
    predictor = Predictor.from_run(run_dir)
    baseline = Predictor.from_run(baseline_run_dir) if baseline_run_dir else None
    if free_field is not None:
        missing = [sid for sid in ids if sid not in free_field]
        if missing:
            raise ValueError(f"free-field fields missing for samples {missing[:5]} of split {split!r}")
    spacing = (predictor.run_config.get("spacing_mm") or 1.0)
    per_model: dict[str, list] = {"deeptfus": []}
    if baseline:
        per_model["unet_plain"] = []
    if free_field is not None:
        per_model["free_field"] = []
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for i, sid in enumerate(tqdm(ids, desc=f"evaluate {split}", disable=not progress)):
        _, target, _, sample = data.load(i)
        ct_hu, points, drive = sample["ct_hu"], sample["transducer_points"], sample.get("transducer_drive")
        fields = {"deeptfus": predictor.predict_window(ct_hu, points, drive)}
        if baseline:
            fields["unet_plain"] = baseline.predict_window(ct_hu, points, drive)
        if free_field is not None:
            fields["free_field"] = normalise_pressure(free_field[sid], f"free-field field of sample {sid}")
        for name, pred in fields.items():
            per_model[name].append(sample_metrics(pred, target, spacing))
        if i < max_figures:
            plot_sample(out / f"sample_{sid}.png", sid, fields, target)
    result = {name: aggregate(rows, ids) for name, rows in per_model.items()}
    result["_meta"] = {"split": split, "store": str(store_url), "n_samples": len(ids),
                       "model_id": predictor.model_id, "config_hash": predictor.config_hash,
                       "baseline_model_id": baseline.model_id if baseline else None,
                       "space": "metrics on log(1 + p/max p); dice on the linear -6 dB masks"}
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, out / "metrics.json")
    return result
