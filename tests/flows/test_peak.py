"""`tfus train-peak` (flows.peak): the free-field reference is simulated once and cached, the head is trained
on the run's store and scored against the scaled free field on held-out samples."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.flows import serving_helpers as helpers

TFUS = str(Path(sys.executable).with_name("tfus"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("peak")
    store = helpers.make_store(base / "ds.zarr", n_subjects=3, per_subject=2)  # train, val, train
    return {"store": store, "run": helpers.train_tiny(store, base / "run")}


def test_train_peak_caches_the_reference_and_scores_held_out_samples(run):
    from tfus import storage
    from tfus.flows.peak import reference_pressure
    from tfus.models.peak import PeakModel

    result = subprocess.run([TFUS, "train-peak", "--model", str(run["run"]), "--store", run["store"], "--epochs", "2",
                             "--eval-split", "val", "--no-progress"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "pressure_head" in result.stdout and "free_field_scaled" in result.stdout
    info = json.loads((run["run"] / "peak" / "config.json").read_text())
    # the reference is the simulated free field's peak, cached in the store: a second call reads it back
    assert 5e4 < info["p_ref_pa"] < 1e6 and "simulated" in info["p_ref_source"]
    assert storage.open_dataset(run["store"]).aux_names()
    p_ref, how = reference_pressure(run["store"], progress=False)
    assert p_ref == pytest.approx(info["p_ref_pa"]) and "cached" in how
    metrics = json.loads((run["run"] / "peak" / "metrics.json").read_text())
    assert metrics["_meta"]["n_samples"] == 2 and metrics["_meta"]["split"] == "val"
    for name in ("pressure_head", "free_field_scaled"):
        err = metrics[name]["max_pressure_error_pct"]
        assert len(err["values"]) == 2 and np.isfinite(err["mean"]) and err["ci95"][0] <= err["mean"] <= err["ci95"][1]
    head = PeakModel.from_run(run["run"])
    assert head.p_ref_pa == pytest.approx(info["p_ref_pa"])


def test_train_peak_refuses_a_store_of_another_config(run, tmp_path):
    other = helpers.make_store(tmp_path / "other.zarr", window=40, n_subjects=1, per_subject=1)
    result = subprocess.run([TFUS, "train-peak", "--model", str(run["run"]), "--store", other, "--no-progress"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "another config" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
