"""Placements chosen by the model (flows.plan_placement): ranking, outputs in Pa, verification by simulation,
the Prefect flow's table artifact, and one clear line for each kind of bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.flows import serving_helpers as helpers

TFUS = str(Path(sys.executable).with_name("tfus"))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("plan")
    ct = helpers.write_ct(base / "ct.nii.gz")
    return {"base": base, "ct": ct, "run": helpers.plan_run(base / "run"), "target": helpers.plan_target(ct)}


def test_plan_ranks_candidates_and_verifies_the_top_one(setup, tmp_path):
    from scipy.ndimage import map_coordinates

    from tfus.flows.plan_placement import PlanRequest, plan

    out = tmp_path / "plan"
    summary = plan(PlanRequest(ct=str(setup["ct"]), target_mm=setup["target"], model=str(setup["run"]),
                               candidates=5, verify=1, out_dir=str(out)))
    rows = summary["rows"]
    assert summary["n_candidates"] == len(rows) == 5 and [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    pressures = [r["pressure_at_target_pa"] for r in rows]
    assert pressures == sorted(pressures, reverse=True) and pressures[-1] > 0
    assert all(r["tilt_deg"] <= 20.0 + 1e-6 and r["target_mm"] == list(setup["target"]) for r in rows)
    # the pick's field in Pa: its maximum is the predicted peak, and the ranked value is read from it
    image = nib.load(str(out / "pick_pressure_pa.nii.gz"))
    field = np.asarray(image.dataobj, np.float32)
    assert field.max() == pytest.approx(rows[0]["peak_pressure_pa"], rel=1e-4)
    vox = np.linalg.inv(image.affine) @ [*setup["target"], 1.0]
    at = map_coordinates(field, vox[:3].reshape(3, 1), order=1, mode="nearest")[0]
    assert at == pytest.approx(rows[0]["field_pressure_at_target_pa"], rel=1e-4)
    # the ranked estimate: the free field at the target (the Rayleigh beam) × the head's intracranial transmission
    from tfus.models.predict import Predictor
    predictor = Predictor.from_run(setup["run"])
    for r in rows:
        assert r["pressure_at_target_pa"] == pytest.approx(
            r["free_field_at_target_pa"] * r["focal_pressure_pa"] / predictor.peak.p_ref_pa, rel=1e-6)
        assert 0 < r["free_field_at_target_pa"] < 2 * predictor.peak.p_ref_pa
    assert rows[0]["mechanical_index"] == pytest.approx(rows[0]["peak_pressure_pa"] / 1e6 / np.sqrt(0.2))
    # verified by the solver: a real field with its focus in the head
    assert rows[0]["sim_pressure_at_target_pa"] > 0 and rows[0]["sim_runtime_s"] > 0
    assert np.isfinite(rows[0]["sim_focus_distance_mm"]) and "sim_pressure_at_target_pa" not in rows[1]
    with open(out / "ranking.csv") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 5 and float(table[0]["sim_pressure_at_target_pa"]) > 0 and table[1]["sim_runtime_s"] == ""
    plan_json = json.loads((out / "plan.json").read_text())
    assert plan_json["pick"]["rank"] == 1 and plan_json["model_pick"]["rank"] == 1  # one verified: the model's first
    assert (out / "ranking.png").stat().st_size > 10_000
    assert summary["timings_s"]["per_candidate_inference_s"] > 0


def test_plan_flow_publishes_the_ranking_table(setup, tmp_path, monkeypatch):
    from prefect.client.orchestration import get_client

    from tfus.flows import serving
    from tfus.flows.plan_placement import RANKING_ARTIFACT_KEY, plan_placement

    monkeypatch.setenv(serving.OUTPUT_ROOT_ENV, str(tmp_path))
    brief = plan_placement(ct=str(setup["ct"]), target_mm=list(setup["target"]), model=str(setup["run"]),
                           candidates=3, out_dir="flow")
    assert Path(brief["out_dir"]) == (tmp_path / "flow").resolve() and brief["n_candidates"] == 3

    async def latest():
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
        async with get_client() as client:
            found = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(
                any_=[RANKING_ARTIFACT_KEY])), limit=1, sort="CREATED_DESC")
            return found[0]

    import asyncio
    artifact = asyncio.run(latest())
    data = artifact.data if isinstance(artifact.data, list) else json.loads(artifact.data)
    assert artifact.type == "table" and [r["rank"] for r in data] == [1, 2, 3]
    assert data[0]["pred_kpa_at_target"] >= data[1]["pred_kpa_at_target"]


def _cli(*args):
    return subprocess.run([TFUS, "plan", *args], capture_output=True, text=True, timeout=300)


def test_plan_cli_optimize(setup, tmp_path):
    result = _cli("--ct", str(setup["ct"]), "--target", *map(str, setup["target"]), "--optimize",
                  "--model", str(setup["run"]), "--candidates", "3", "--out", str(tmp_path / "cli"))
    assert result.returncode == 0, result.stderr
    assert "3 candidates scored" in result.stdout and (tmp_path / "cli" / "ranking.csv").is_file()


@pytest.mark.parametrize("case, expected", [
    ("outside", "is outside the head"),
    ("bone", "is in bone"),
    ("frequency", "was trained at 200 kHz, not the 500 kHz asked"),
    ("window", "was trained on (32, 32, 32) windows, not the (48, 48, 48) asked"),
    ("no_head", "has no pressure head"),
    ("deep", "is outside the subject's fixed window"),
    ("unreachable", "no candidate placement reaches the target"),
])
def test_bad_input_one_clear_error(setup, tmp_path, case, expected):
    import shutil

    from tfus.flows.plan_placement import PlanRequest, plan
    from tfus.sim.ingest import load_volume

    run, target, extra = setup["run"], list(setup["target"]), {}
    if case == "outside":
        target = [0.0, 0.0, 48.0]
    elif case == "bone":
        volume = load_volume(setup["ct"])
        column = np.array([[target[0], target[1], z] for z in np.arange(45.0, target[2], -0.5)])
        hu = volume.hu[tuple(np.rint(volume.world_to_voxel(column)).astype(int).T)]
        target = list(column[np.flatnonzero(hu > 800)[0]])
    elif case == "frequency":
        extra = {"frequency_hz": 5e5}
    elif case == "window":
        extra = {"window_shape": (48, 48, 48)}  # what `--preset subject` asks of a model trained on 32³
    elif case == "no_head":
        run = tmp_path / "nohead"
        shutil.copytree(setup["run"], run)
        shutil.rmtree(run / "peak")
    elif case == "deep":
        target = [target[0], target[1], target[2] - 14.0]  # deep in the head: below the model's grid
    elif case == "unreachable":
        target = [target[0] + 6.0, target[1], target[2]]
        extra = {"max_tilt_deg": 0.5}  # no scalp normal points at this target this exactly
    with pytest.raises(ValueError) as info:
        plan(PlanRequest(ct=str(setup["ct"]), target_mm=target, model=str(run), out_dir=str(tmp_path / "out"),
                         **extra))
    assert expected in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "out" / "plan.json").exists()


def test_plan_cli_bad_input_exits_with_one_line(setup, tmp_path):
    result = _cli("--ct", str(setup["ct"]), "--target", *map(str, setup["target"]), "--optimize", "--model",
                  str(setup["run"]), "--preset", "subject", "--out", str(tmp_path / "out"))
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "not the (48, 48, 48) asked" in result.stderr and not (tmp_path / "out").exists()


def test_prediction_carries_pressure_in_pa(setup, tmp_path):
    from tfus.models.predict import Predictor, predict_from_ct
    from tfus.sim.ingest import load_volume
    from tfus.sim.placement import plan_placements

    predictor = Predictor.from_run(setup["run"])
    p = plan_placements(load_volume(setup["ct"]), 1, 0, helpers.sim_config().replace(grid="subject"))[0]
    summary = predict_from_ct(predictor, setup["ct"], p.position_mm, p.target_mm, tmp_path / "pred")
    pa = np.asarray(nib.load(str(tmp_path / "pred" / "pressure_pa.nii.gz")).dataobj, np.float32)
    norm = np.asarray(nib.load(str(tmp_path / "pred" / "pressure_pred.nii.gz")).dataobj, np.float32)
    assert pa.max() == pytest.approx(summary["peak_pressure_pa"], rel=1e-4) and summary["focal_pressure_pa"] > 0
    np.testing.assert_allclose(pa / pa.max(), np.maximum(np.expm1(norm), 0) / np.expm1(norm).max(), atol=1e-5)
    assert summary["mechanical_index"] == pytest.approx(summary["peak_pressure_pa"] / 1e6 / np.sqrt(0.2))
    assert summary["source_amplitude_pa"] == helpers.sim_config().transducer.amplitude_pa


def test_the_pick_after_verification_is_the_best_simulated():
    from tfus.flows.plan_placement import choose_pick

    rows = [{"rank": 1, "sim_pressure_at_target_pa": 80e3}, {"rank": 2, "sim_pressure_at_target_pa": 95e3},
            {"rank": 3, "sim_pressure_at_target_pa": 90e3}, {"rank": 4}]
    assert choose_pick(rows, 3) == 1          # the solver decides among the shortlist
    assert choose_pick(rows, 1) == 0
    assert choose_pick(rows, 0) == 0          # no verification: the model's first
    assert choose_pick([{"rank": 1}, {"rank": 2}], 2) == 0
