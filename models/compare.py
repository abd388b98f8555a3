"""Compare one predicted field (a NIfTI written by `tfus predict` or the predict-field flow) with the
simulation of the same placement stored in a dataset: the check a user makes before trusting a model."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from tfus.models.data import normalise_pressure
from tfus.models.evaluate import plot_sample
from tfus.models.metrics import sample_metrics


def compare_with_simulation(pred_path, store_url: str, sample_id: str, png_path=None) -> dict:
    """Metrics (rel_l2, focal_error_mm, max_pressure_error, dice_6db) of a predicted normalised field against
    the sample's simulated field; both must be on the sample's window grid (same shape and affine).

    Writes a prediction / simulation / error figure to ``png_path`` when given.
    """
    from tfus import storage  # noqa: PLC0415

    img = nib.load(str(pred_path))
    pred = np.asarray(img.dataobj, dtype=np.float32)
    sample = storage.open_dataset(store_url).sample(sample_id)
    if pred.shape != sample.pressure_pa.shape:
        raise ValueError(f"{pred_path}: shape {pred.shape} differs from sample {sample_id}'s window "
                         f"{sample.pressure_pa.shape}")
    if not np.allclose(img.affine, sample.affine, atol=1e-3):
        raise ValueError(f"{pred_path}: affine differs from sample {sample_id}'s window affine")
    target = normalise_pressure(sample.pressure_pa, f"pressure of sample {sample_id}")
    spacing_mm = float(np.linalg.norm(sample.affine[:3, 0]))
    metrics = sample_metrics(pred, target, spacing_mm)
    if png_path is not None:
        plot_sample(Path(png_path), sample_id, {"prediction (flow API)": pred}, target)
    return metrics
