"""Per-sample field metrics as the paper reports them, and their aggregation (numpy only).

Fields are normalised pressures P = log(1 + p/max p) on the same (X, Y, Z) grid; the first three metrics are
computed in that log-normalised space, as the reproduction does:
- ``rel_l2`` = ‖P̂ − P‖₂ / ‖P‖₂;
- ``focal_error_mm`` = ‖argmax P̂ − argmax P‖₂ (voxel indices) × spacing (mm, isotropic or per axis);
- ``max_pressure_error`` = |max P̂ − max P| / max P;
- ``dice_6db``: Dice of the −6 dB focal masks, each field's linear amplitude p/pmax = exp(P) − 1 thresholded
  at half of its own maximum;
- ``intracranial_focal_error_mm`` (when a focus-search mask is given): the same distance between the maxima
  *inside the mask* — the focus as the simulation summary defines it (outside bone, beyond the rim plane,
  near the geometric focus: ``sim.fieldstats.focal_search_mask``), which is what a user aims; the whole-field
  maximum often sits in or at the skull.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

METRICS = ("rel_l2", "focal_error_mm", "max_pressure_error", "dice_6db")
INTRACRANIAL = "intracranial_focal_error_mm"


def _check(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, target = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from target shape {target.shape}")
    if not (np.isfinite(pred).all() and np.isfinite(target).all()):
        raise ValueError("fields must be finite")
    return pred, target


def rel_l2(pred: np.ndarray, target: np.ndarray) -> float:
    pred, target = _check(pred, target)
    norm = np.linalg.norm(target)
    if norm == 0:
        raise ValueError("target field is all zero: relative L2 undefined")
    return float(np.linalg.norm(pred - target) / norm)


def focal_point_vox(field: np.ndarray) -> np.ndarray:
    """Index (3,) of the field's maximum."""
    return np.array(np.unravel_index(int(np.argmax(field)), field.shape), dtype=np.float64)


def focal_error_mm(pred: np.ndarray, target: np.ndarray, spacing_mm: float | Sequence[float]) -> float:
    pred, target = _check(pred, target)
    delta = (focal_point_vox(pred) - focal_point_vox(target)) * np.asarray(spacing_mm, dtype=np.float64)
    return float(np.linalg.norm(delta))


def max_pressure_error(pred: np.ndarray, target: np.ndarray) -> float:
    pred, target = _check(pred, target)
    peak = target.max()
    if peak <= 0:
        raise ValueError("target maximum is not positive: max pressure error undefined")
    return float(abs(pred.max() - peak) / peak)


def focal_mask_6db(field: np.ndarray) -> np.ndarray:
    """Voxels whose linear amplitude exp(P) − 1 is at least half of the field's own maximum."""
    linear = np.expm1(np.asarray(field, dtype=np.float64))
    return linear >= 0.5 * linear.max()


def dice_6db(pred: np.ndarray, target: np.ndarray) -> float:
    pred, target = _check(pred, target)
    a, b = focal_mask_6db(pred), focal_mask_6db(target)
    total = a.sum() + b.sum()
    return float(2.0 * np.logical_and(a, b).sum() / total) if total else 1.0


def masked_focal_error_mm(pred: np.ndarray, target: np.ndarray, mask: np.ndarray, spacing_mm) -> float:
    """Distance between the maxima of the two fields inside ``mask`` (mm)."""
    pred, target = _check(pred, target)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != pred.shape or not mask.any():
        raise ValueError(f"focus mask must be a non-empty boolean array of shape {pred.shape}")
    delta = focal_point_vox(np.where(mask, pred, -np.inf)) - focal_point_vox(np.where(mask, target, -np.inf))
    return float(np.linalg.norm(delta * np.asarray(spacing_mm, dtype=np.float64)))


def sample_metrics(pred: np.ndarray, target: np.ndarray, spacing_mm, focus_mask=None) -> dict[str, float]:
    out = {"rel_l2": rel_l2(pred, target), "focal_error_mm": focal_error_mm(pred, target, spacing_mm),
           "max_pressure_error": max_pressure_error(pred, target), "dice_6db": dice_6db(pred, target)}
    if focus_mask is not None:
        out[INTRACRANIAL] = masked_focal_error_mm(pred, target, focus_mask, spacing_mm)
    return out


def metric_names(rows: Sequence[Mapping[str, float]]) -> list[str]:
    """The paper's metrics, plus the intracranial focus error when every row has it."""
    return list(METRICS) + ([INTRACRANIAL] if rows and all(INTRACRANIAL in r for r in rows) else [])


def aggregate(per_sample: Iterable[Mapping[str, float]], sample_ids: Sequence[str] | None = None,
              subject_ids: Sequence[str] | None = None) -> dict:
    """{metric: {mean, std, median, values}} (+ ``sample_ids`` and ``n``) over per-sample metric dicts;
    with ``subject_ids`` also ``ci95`` (the mean's subject-bootstrap interval, ``models.stats``),
    ``subject_ids`` and ``n_subjects``."""
    from tfus.models.stats import bootstrap_ci  # noqa: PLC0415

    rows = list(per_sample)
    if not rows:
        raise ValueError("no samples to aggregate")
    out: dict = {"n": len(rows)}
    if sample_ids is not None:
        out["sample_ids"] = [str(s) for s in sample_ids]
    if subject_ids is not None:
        out["subject_ids"] = [str(s) for s in subject_ids]
        out["n_subjects"] = len(set(out["subject_ids"]))
    for name in metric_names(rows):
        values = np.array([row[name] for row in rows], dtype=np.float64)
        out[name] = {"mean": float(values.mean()), "std": float(values.std()),
                     "median": float(np.median(values)), "values": values.tolist()}
        if subject_ids is not None:
            out[name]["ci95"] = list(bootstrap_ci(values, subject_ids))
    return out
