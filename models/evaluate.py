"""Evaluation of a trained run (and baselines) on one split of a store.

Writes ``out_dir/metrics.json``: one entry per model – ``deeptfus``, ``unet_plain`` (when a baseline run is
given), ``free_field`` (when free-field fields are given) – each with ``rel_l2``, ``focal_error_mm``,
``max_pressure_error``, ``dice_6db`` and ``intracranial_focal_error_mm`` as mean/std/median, the mean's 95 %
interval by the subject bootstrap (``ci95``), plus per-sample ``values`` (see models.metrics, models.stats);
``_comparison``: every pair of models compared per sample (``models.stats.paired_comparison``).
``out_dir/per_sample.csv``: one row per model and sample, with its subject.
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
from tfus.models.metrics import INTRACRANIAL, METRICS, aggregate, focal_point_vox, metric_names, sample_metrics
from tfus.models.predict import Predictor
from tfus.models.stats import paired_comparison

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


def focus_masks(store_url: str, split: str):
    """``mask(sample_id, ct_hu, affine)`` → where the simulation summary searches the focus (outside bone,
    beyond the rim plane, near the geometric focus; ``sim.fieldstats``), from the sample's placement and the
    store's simulation config."""
    from tfus import storage  # noqa: PLC0415
    from tfus.sim.config import SimConfig  # noqa: PLC0415
    from tfus.sim.fieldstats import focal_search_mask  # noqa: PLC0415
    from tfus.sim.transducer import Bowl  # noqa: PLC0415

    dataset = storage.open_dataset(store_url)
    config = SimConfig.from_dict(dataset.attrs["sim_config"])
    rows = dataset.query(split=split).set_index("sample_id")

    def mask(sample_id: str, ct_hu: np.ndarray, affine: np.ndarray) -> np.ndarray:
        row = rows.loc[sample_id]
        bowl = Bowl.from_config(tuple(row["position_mm"]), tuple(row["target_mm"]), config.transducer)
        skull = np.asarray(ct_hu) > config.medium.skull_threshold_hu
        found = focal_search_mask(ct_hu.shape, affine, bowl, config.transducer.frequency_hz, skull)
        return found if found.any() else np.ones(ct_hu.shape, bool)

    return mask, rows["subject_id"].to_dict()


def write_per_sample(path: Path, result: dict) -> None:
    """One CSV row per model and sample: model, sample_id, subject_id, every metric."""
    models = [m for m in result if not m.startswith("_")]
    names = [n for n in (*METRICS, INTRACRANIAL) if n in result[models[0]]]
    lines = [",".join(["model", "sample_id", "subject_id", *names])]
    for m in models:
        r = result[m]
        for i, (sid, subj) in enumerate(zip(r["sample_ids"], r["subject_ids"])):
            lines.append(",".join([m, sid, subj, *(f"{r[n]['values'][i]:.6g}" for n in names)]))
    tmp = Path(str(path) + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)


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
    focus_mask, subject_of = focus_masks(store_url, split)
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
        mask = focus_mask(sid, ct_hu, sample["affine"])
        for name, pred in fields.items():
            per_model[name].append(sample_metrics(pred, target, spacing, mask))
        if i < max_figures:
            plot_sample(out / f"sample_{sid}.png", sid, fields, target)
    subjects = [subject_of[sid] for sid in ids]
    result = {name: aggregate(rows, ids, subjects) for name, rows in per_model.items()}
    names = list(per_model)
    result["_comparison"] = {
        f"{a}_vs_{b}": paired_comparison({m: result[a][m]["values"] for m in metric_names(per_model[a])},
                                         {m: result[b][m]["values"] for m in metric_names(per_model[b])},
                                         subjects, metric_names(per_model[a]))
        for i, a in enumerate(names) for b in names[i + 1:]}
    result["_meta"] = {"split": split, "store": str(store_url), "n_samples": len(ids),
                       "model_id": predictor.model_id, "config_hash": predictor.config_hash,
                       "baseline_model_id": baseline.model_id if baseline else None,
                       "space": "metrics on log(1 + p/max p); dice on the linear -6 dB masks"}
    write_per_sample(out / "per_sample.csv", result)
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, out / "metrics.json")
    return result
