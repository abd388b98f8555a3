"""Evaluation flow step: gather (or simulate and cache) the free-field baseline, then ``models.evaluate``.

A plain function (the Prefect wrapping, if any, belongs to whoever schedules it): ``evaluate_model``.
"""

from __future__ import annotations

import logging

from tqdm.auto import tqdm

log = logging.getLogger(__name__)

AUX_NAME = "free_field"


def free_field_fields(store: str, split: str, progress: bool = True) -> dict:
    """{sample_id: free-field pressure (Pa)} for the split; simulated in water once and cached as aux."""
    from tfus import storage
    from tfus.sim import simulate_free_field
    from tfus.sim.config import SimConfig
    dataset = storage.open_dataset(store, mode="a")
    attrs = dataset.attrs
    if not attrs.get("sim_config"):
        raise ValueError(f"store {store} has no sim_config attribute; cannot simulate the free-field baseline")
    config = SimConfig.from_dict(attrs["sim_config"])
    rows = dataset.query(split=split)
    fields = {}
    for row in tqdm(list(rows.itertuples()), desc="free field", disable=not progress):
        cached = dataset.read_aux(AUX_NAME, row.sample_id)
        if cached is None:
            sample = dataset.sample(row.sample_id)
            result = simulate_free_field(tuple(row.position_mm), tuple(row.target_mm), config, sample.affine,
                                         shape=sample.ct_hu.shape, progress=False)
            cached = result.pressure_pa
            dataset.write_aux(AUX_NAME, row.sample_id, cached)
        fields[row.sample_id] = cached
    return fields


def evaluate_model(run_dir, store: str, split: str, out_dir, baseline_run_dir=None, free_field: bool = True,
                   progress: bool = True, max_figures: int = 4) -> dict:
    """Metrics of the run (+ the plain U-Net when given, + the free-field baseline) → ``out_dir/metrics.json``."""
    from tfus.models.evaluate import evaluate
    fields = free_field_fields(store, split, progress) if free_field else None
    return evaluate(run_dir, store, split, out_dir, free_field=fields, baseline_run_dir=baseline_run_dir,
                    progress=progress, max_figures=max_figures)
