import json
import shutil

import numpy as np
import pytest

from tfus import storage
from tfus.models.evaluate import evaluate
from tfus.models.metrics import INTRACRANIAL, METRICS


def test_evaluate_all_models(trained_runs, tmp_path):
    store = trained_runs["store"]
    ds = storage.open_dataset(store)
    ids = list(ds.query(split="test")["sample_id"])
    # a "free field" that is the simulation itself: must score perfectly, after the same normalisation
    free = {sid: 3.0 * ds.sample(sid).pressure_pa for sid in ids}
    out = tmp_path / "eval"
    result = evaluate(trained_runs["deeptfus"], store, "test", out, free_field=free,
                      baseline_run_dir=trained_runs["plain"], max_figures=1, progress=False)
    saved = json.loads((out / "metrics.json").read_text())
    assert set(saved) == {"deeptfus", "unet_plain", "free_field", "_meta", "_comparison"}
    subjects = list(ds.query(split="test")["subject_id"])
    for name in ("deeptfus", "unet_plain", "free_field"):
        assert saved[name]["n"] == len(ids) == 4 and saved[name]["sample_ids"] == ids
        assert saved[name]["subject_ids"] == subjects
        for m in (*METRICS, INTRACRANIAL):
            entry = saved[name][m]
            assert set(entry) == {"mean", "std", "median", "values", "ci95"} and len(entry["values"]) == 4
            assert entry["ci95"][0] <= entry["mean"] <= entry["ci95"][1]
    assert result["free_field"]["rel_l2"]["mean"] < 1e-6 and result["free_field"]["dice_6db"]["mean"] == 1.0
    assert result["free_field"][INTRACRANIAL]["mean"] == 0.0  # the simulation itself: the same focus
    assert result["deeptfus"]["rel_l2"]["mean"] > 0
    pair = saved["_comparison"]["deeptfus_vs_free_field"]["rel_l2"]
    assert pair["b_better_fraction"] == 1.0 and pair["mean_difference"] > 0  # the exact field wins every sample
    rows = (out / "per_sample.csv").read_text().splitlines()
    assert rows[0].startswith("model,sample_id,subject_id,rel_l2") and len(rows) == 1 + 3 * 4
    assert rows[1].split(",")[2] == subjects[0]
    assert len(list(out.glob("sample_*.png"))) == 1


def test_evaluate_bad_inputs(trained_runs, tmp_path):
    with pytest.raises(ValueError, match="free-field fields missing"):
        evaluate(trained_runs["deeptfus"], trained_runs["store"], "test", tmp_path, free_field={}, progress=False)
    with pytest.raises(ValueError, match="no complete samples in split 'nope'"):
        evaluate(trained_runs["deeptfus"], trained_runs["store"], "nope", tmp_path, progress=False)


def test_flow_uses_cached_free_field(trained_runs, tmp_path):
    from tfus.flows.evaluate import evaluate_model
    store = str(tmp_path / "copy.zarr")
    shutil.copytree(trained_runs["store"], store)
    ds = storage.open_dataset(store, mode="a")
    for sid in ds.query(split="test")["sample_id"]:
        ds.write_aux("free_field", sid, np.roll(ds.sample(sid).pressure_pa, 2, axis=1))
    result = evaluate_model(trained_runs["deeptfus"], store, "test", tmp_path / "eval",
                            baseline_run_dir=None, free_field=True, progress=False, max_figures=0)
    assert set(result) == {"deeptfus", "free_field", "_meta", "_comparison"}
    assert np.allclose(result["free_field"]["focal_error_mm"]["values"], 2 * 1.5)  # rolled by 2 voxels
