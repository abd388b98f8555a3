"""``tfus train-peak``: the pressure head of a trained run (``models.peak``), from the run's dataset store.

1. ``p_ref``: the peak of the transducer's free field in water on the store's grid — the median of the free
   fields the store caches (aux ``free_field``, written by ``tfus evaluate --free-field``), or one free-field
   simulation of the first training sample, cached the same way.
2. Targets: log(max p / p_ref) and log(p_focus / p_ref) of every complete sample, p_focus = the table's
   ``peak_pressure_pa`` (the intracranial focus of the simulation summary).
3. ``models.peak.fit`` on the training split (validation picks the epoch; ``--no-val`` keeps the last), saved
   into ``RUN/peak/``; then the held-out split is scored against the simulations next to the baseline that
   a user without the head would use: the sample's free-field peak (its cached free field, else ``p_ref``)
   scaled by the training set's mean transmission factor. ``RUN/peak/metrics.json``: mean, median, 95 %
   subject-bootstrap interval of the relative error (%) per output, and the paired comparison.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from tfus.flows.evaluate import AUX_NAME

log = logging.getLogger(__name__)


def reference_pressure(store: str, progress: bool = True) -> tuple[float, str]:
    """(p_ref in Pa, how it was obtained) for ``store`` (see the module docstring)."""
    from tfus import storage
    from tfus.sim import simulate_free_field
    from tfus.sim.config import SimConfig

    dataset = storage.open_dataset(store)
    table = dataset.query()
    peaks = []
    for sid in table["sample_id"]:
        cached = dataset.read_aux(AUX_NAME, sid)
        if cached is not None:
            peaks.append(float(np.max(np.abs(cached))))
    if peaks:
        spread = float(np.std(peaks) / np.mean(peaks)) if len(peaks) > 1 else 0.0
        return float(np.median(peaks)), (f"median peak of {len(peaks)} cached free fields "
                                         f"(spread {100 * spread:.1f} % between placements)")
    train = table[table["split"] == "train"]
    if train.empty:
        raise ValueError(f"store {store} has no complete training samples; cannot form the pressure reference")
    attrs = dataset.attrs
    if not attrs.get("sim_config"):
        raise ValueError(f"store {store} has no sim_config attribute; cannot simulate the free-field reference")
    row = train.iloc[0]
    sample = dataset.sample(row.sample_id)
    log.info("simulating the free-field reference (sample %s in water)", row.sample_id)
    result = simulate_free_field(tuple(row.position_mm), tuple(row.target_mm), SimConfig.from_dict(attrs["sim_config"]),
                                 sample.affine, shape=sample.ct_hu.shape, progress=progress)
    storage.open_dataset(store, mode="a").write_aux(AUX_NAME, row.sample_id, result.pressure_pa)
    return float(np.max(result.pressure_pa)), f"free field of sample {row.sample_id} (simulated, cached)"


def _split(store: str, split: str, p_ref: float, focal: dict, progress: bool):
    from tfus import storage
    from tfus.models.peak import load_split
    reader = storage.SampleReader(store, split, fields=("ct_hu", "pressure_pa", "transducer_points"))
    if len(reader) == 0:
        return None
    return load_split(reader, p_ref, focal, progress)


def _check_run(run_dir: Path, store: str) -> dict:
    from tfus import storage
    if not (run_dir / "config.json").is_file():
        raise FileNotFoundError(f"no trained model in {run_dir}: config.json missing (train it with tfus train)")
    run = json.loads((run_dir / "config.json").read_text())
    attrs = storage.open_dataset(store).attrs
    if run.get("sim_config") and attrs.get("sim_config"):
        from tfus.sim.config import SimConfig
        if SimConfig.from_dict(run["sim_config"]).key() != SimConfig.from_dict(attrs["sim_config"]).key():
            raise ValueError(f"store {store} was simulated with another config than run {run_dir} was trained on")
    return run


def train_peak(run_dir, store: str, config=None, no_val: bool = False, eval_split: str = "test",
               progress: bool = True) -> dict:
    """Train and save the pressure head of ``run_dir`` on ``store``; returns the metrics (also in
    ``RUN/peak/metrics.json``)."""
    from tfus import storage
    from tfus.models.peak import PeakConfig, fit, save

    run_dir = Path(run_dir)
    _check_run(run_dir, store)
    config = config or PeakConfig()
    table = storage.open_dataset(store).query()
    focal = dict(zip(table["sample_id"], table["peak_pressure_pa"].astype(float)))
    p_ref, how = reference_pressure(store, progress)
    train = _split(store, "train", p_ref, focal, progress)
    if train is None:
        raise ValueError(f"store {store} has no complete samples in split 'train'")
    val = None if no_val else _split(store, "val", p_ref, focal, progress)
    if val is None and not no_val:
        raise ValueError(f"store {store} has 0 complete samples in split 'val'; pass --no-val to keep the last epoch")
    net, history = fit(train[0], train[1], val[0] if val else None, val[1] if val else None, config, progress)
    mean_t = np.exp(train[1]).mean(axis=0)
    info = {"p_ref_pa": p_ref, "p_ref_source": how, "store": str(store),
            "train_mean_transmission": {"max": float(mean_t[0]), "focus": float(mean_t[1])},
            "n_train": len(train[2]), "n_val": len(val[2]) if val else 0, "validated": val is not None,
            "targets": "log(max p / p_ref), log(p_focus / p_ref); p_focus = intracranial focus (sim.fieldstats)"}
    folder = save(run_dir, net, info, history)
    metrics = evaluate_peak(run_dir, store, eval_split, progress=progress)
    metrics["_train"] = {"epochs": len(history), "final_train_loss": history[-1]["train_loss"],
                         "best_val_loss": min((h["val_loss"] for h in history if "val_loss" in h), default=None)}
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def evaluate_peak(run_dir, store: str, split: str = "test", progress: bool = True) -> dict:
    """Relative peak-pressure errors of the run's pressure head and of the scaled free field on ``split``."""
    from tfus import storage
    from tfus.models.peak import OUTPUTS, PeakModel, predict_log, pressure_errors
    from tfus.models.stats import bootstrap_ci, paired_comparison

    head = PeakModel.from_run(run_dir)
    if head is None:
        raise ValueError(f"run {run_dir} has no pressure head; train one with tfus train-peak")
    dataset = storage.open_dataset(store)
    table = dataset.query()
    focal = dict(zip(table["sample_id"], table["peak_pressure_pa"].astype(float)))
    subject_of = dict(zip(table["sample_id"], table["subject_id"]))
    data = _split(store, split, head.p_ref_pa, focal, progress)
    if data is None:
        return {"_meta": {"split": split, "n_samples": 0}}
    x, y, ids = data
    true_pa = head.p_ref_pa * np.exp(y)
    pred_pa = head.p_ref_pa * np.exp(predict_log(head.net, x))
    mean_t = np.array([head.info["train_mean_transmission"][k] for k in OUTPUTS])
    free = []
    for sid in ids:
        cached = dataset.read_aux(AUX_NAME, sid)
        free.append(float(np.max(np.abs(cached))) if cached is not None else head.p_ref_pa)
    base_pa = np.asarray(free)[:, None] * mean_t[None]
    subjects = [subject_of[s] for s in ids]
    result = {}
    for name, est in (("pressure_head", pred_pa), ("free_field_scaled", base_pa)):
        err = 100 * pressure_errors(est, true_pa)
        result[name] = {f"{out}_pressure_error_pct": {
            "mean": float(err[:, k].mean()), "std": float(err[:, k].std()), "median": float(np.median(err[:, k])),
            "ci95": list(bootstrap_ci(err[:, k], subjects)), "values": [float(v) for v in err[:, k]]}
            for k, out in enumerate(OUTPUTS)}
    metrics = [f"{out}_pressure_error_pct" for out in OUTPUTS]
    result["_comparison"] = {"pressure_head_vs_free_field_scaled": paired_comparison(
        {m: result["pressure_head"][m]["values"] for m in metrics},
        {m: result["free_field_scaled"][m]["values"] for m in metrics}, subjects, metrics)}
    result["_meta"] = {"split": split, "n_samples": len(ids), "n_subjects": len(set(subjects)),
                       "sample_ids": ids, "subject_ids": subjects, "p_ref_pa": head.p_ref_pa,
                       "true_focal_pressure_pa_mean": float(true_pa[:, 1].mean()),
                       "definition": "|p_pred - p_sim| / p_sim in Pa; max = field maximum, focus = intracranial"}
    return result
