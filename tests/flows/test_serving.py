"""Serving through the flow API: a real Prefect server, `tfus serve` as a subprocess, a tiny trained model.

Predictions are requested the three documented ways (the CLIs, `run_deployment`, plain HTTP); the written
field, the summary artifact, the model cache and the bad-input cases are checked against the server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import nibabel as nib
import numpy as np
import pytest

from tests.flows import serving_helpers as helpers

ROOT = Path(__file__).resolve().parents[2]
TFUS = str(Path(sys.executable).with_name("tfus"))
PREFECT = str(Path(sys.executable).with_name("prefect"))
POSITION, TARGET = [-43.0, 1.0, -2.0], [0.0, 3.0, 2.0]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("serving")
    store = helpers.make_store(base / "ds.zarr", n_subjects=2)  # subj00 train, subj01 val
    run = helpers.train_tiny(store, base / "runs" / "tiny")
    return {"base": base, "store": store, "run": run, "ct": helpers.write_ct(base / "ct.nii.gz")}


@pytest.fixture(scope="module")
def served(prefect_api, tiny_run):
    """`tfus serve --model RUN --output-root OUT` against the session's Prefect server, until the module ends."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    out_root = tiny_run["base"] / "out"
    log_path = tiny_run["base"] / "serve.log"
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    with open(log_path, "wb") as log, temporary_settings({PREFECT_API_URL: prefect_api}):
        proc = subprocess.Popen([TFUS, "-v", "serve", "--model", str(tiny_run["run"]), "--output-root",
                                 str(out_root), "--poll-s", "0.3"], env=env, stdout=log,
                                stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            _wait_registered(prefect_api, proc, log_path)
            yield {**tiny_run, "api": prefect_api, "out_root": out_root, "proc": proc, "env": env,
                   "log": log_path}
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_registered(api: str, proc, log_path: Path, timeout_s: float = 150.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tfus serve exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
        for name in ("predict-field", "train-deeptfus"):
            if httpx.get(f"{api}/deployments/name/{name}/default", timeout=30).status_code != 200:
                break
        else:
            return
        time.sleep(0.5)
    raise RuntimeError(f"deployments not registered after {timeout_s} s:\n{log_path.read_text()[-3000:]}")


def _expected_affine(ct: Path, position, target) -> np.ndarray:
    """The window grid the prediction must be on: the one the simulation would use."""
    from tfus.sim.window import make_window

    return make_window(ct, position, target, helpers.sim_config()).affine


def _check_field(summary: dict, out_root: Path, expected_affine: np.ndarray) -> np.ndarray:
    path = Path(summary["pressure_path"])
    assert path.is_file() and path.resolve().is_relative_to(out_root.resolve())
    image = nib.load(str(path))
    field = np.asarray(image.dataobj, dtype=np.float32)
    assert field.shape == (32, 32, 32) and np.isfinite(field).all()
    np.testing.assert_allclose(image.affine, expected_affine, atol=1e-4)
    peak = np.unravel_index(int(np.argmax(field)), field.shape)
    np.testing.assert_allclose(summary["focal_point_mm"], (expected_affine @ [*peak, 1.0])[:3], atol=1e-4)
    assert summary["peak_normalised"] == pytest.approx(float(field.max()), rel=1e-5)
    assert summary["focal_volume_mm3"] > 0 and summary["inference_s"] > 0
    assert summary["model_id"].startswith("serve-test-") and len(summary["config_hash"]) == 64
    return field


def _assert_not_reloaded(summary: dict, served: dict) -> None:
    """Every request is served by the one `tfus serve` process, with the model it loaded at start."""
    assert summary["server_pid"] == served["proc"].pid
    assert summary["model_load_number"] == 1 and summary["model_loads_in_process"] == 1


def test_deployments_registered(served):
    for name in ("predict-field", "train-deeptfus", "generate-dataset", "plan-placement"):
        assert _http("GET", f"{served['api']}/deployments/name/{name}/default")["name"] == "default"


def test_predict_with_tfus_request_cli(served):
    result = subprocess.run(
        [TFUS, "request", "predict", "--ct", str(served["ct"]), "--position", *map(str, POSITION),
         "--target", *map(str, TARGET), "--out-dir", "cli/run1", "--timeout", "120"],
        env=served["env"], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert Path(summary["out_dir"]) == (served["out_root"] / "cli" / "run1").resolve()
    _check_field(summary, served["out_root"], _expected_affine(served["ct"], POSITION, TARGET))
    _assert_not_reloaded(summary, served)
    assert json.loads((Path(summary["out_dir"]) / "summary.json").read_text())["focal_point_mm"] == \
        summary["focal_point_mm"]


def test_predict_with_prefect_deployment_run(served):
    result = subprocess.run(
        [PREFECT, "deployment", "run", "predict-field/default", "--param", f"ct={served['ct']}",
         "--param", f"position_mm={json.dumps(POSITION)}", "--param", f"target_mm={json.dumps(TARGET)}",
         "--param", "out_dir=prefect-cli", "--watch", "--watch-interval", "1", "--watch-timeout", "120"],
        env=served["env"], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    field = nib.load(str(served["out_root"] / "prefect-cli" / "pressure_pred.nii.gz")).get_fdata()
    assert field.shape == (32, 32, 32) and np.isfinite(field).all()


def test_predict_with_run_deployment_and_reuse_the_model(served):
    from prefect.deployments import run_deployment

    from tfus.flows.client import read_summary

    summaries = []
    for _ in range(2):
        flow_run = run_deployment("predict-field/default", parameters={"store": served["store"],
                                  "sample_id": "subj01-p0"}, timeout=120, poll_interval=0.2)
        assert flow_run.state.is_completed(), flow_run.state.message
        summaries.append(read_summary(flow_run.id))
    from tfus import storage

    sample = storage.open_dataset(served["store"]).sample("subj01-p0")
    first = summaries[0]
    _check_field(first, served["out_root"], sample.affine)
    np.testing.assert_allclose(first["position_mm"], helpers.placement(1, 0)[0])
    for summary in summaries:
        _assert_not_reloaded(summary, served)
    assert summaries[0]["model_loaded_at"] == summaries[1]["model_loaded_at"]
    assert summaries[0]["out_dir"] != summaries[1]["out_dir"]  # one folder per run by default


def _http(method: str, url: str, **kwargs):
    """One API call; retried on 503 (the server's "busy, retry" answer, e.g. SQLite locked) like curl --retry."""
    for _ in range(20):
        response = httpx.request(method, url, timeout=30.0, **kwargs)
        if response.status_code != 503:
            response.raise_for_status()
            return response.json()
        time.sleep(0.5)
    response.raise_for_status()


def _http_run(api: str, parameters: dict, timeout_s: float = 120.0) -> tuple[dict, list]:
    """The curl recipe of docs/SERVING.md with httpx: find the deployment, create a run, poll, read artifacts."""
    deployment = _http("GET", f"{api}/deployments/name/predict-field/default")
    run = _http("POST", f"{api}/deployments/{deployment['id']}/create_flow_run",
                json={"parameters": parameters, "idempotency_key": uuid.uuid4().hex})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = _http("GET", f"{api}/flow_runs/{run['id']}")
        if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            break
        time.sleep(0.2)
    artifacts = _http("POST", f"{api}/artifacts/filter",
                      json={"artifacts": {"flow_run_id": {"any_": [run["id"]]}}})
    return run, artifacts


def test_predict_over_plain_http(served):
    run, artifacts = _http_run(served["api"], {"ct": str(served["ct"]), "position_mm": POSITION,
                                               "target_mm": TARGET, "out_dir": "http"})
    assert run["state"]["type"] == "COMPLETED", run["state"]["message"]
    by_key = {a["key"]: a for a in artifacts}
    assert by_key["prediction-summary"]["type"] == "markdown"
    summary = json.loads("\n".join(by_key["prediction-summary"]["data"].strip().splitlines()[1:-1]))
    _check_field(summary, served["out_root"], _expected_affine(served["ct"], POSITION, TARGET))
    _assert_not_reloaded(summary, served)
    assert by_key["prediction-output"]["data"].startswith("[")  # markdown link to the output folder
    assert (served["out_root"] / "http").as_uri() in by_key["prediction-output"]["data"]


@pytest.fixture(scope="module")
def flat_ct(tiny_run):
    path = tiny_run["base"] / "slice.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((20, 20), np.float32), np.eye(4)), str(path))
    return path


@pytest.mark.parametrize("case, expected", [
    ("unknown_sample", "unknown `sample_id` 'no-such-sample'"),
    ("missing_model", "`model` run directory not found"),
    ("escaping_out_dir", "is outside the output root"),
    ("ct_not_3d", "expected a 3D image"),
    ("ct_missing", "`ct` not found"),
    ("no_input", "missing input"),
])
def test_bad_input_fails_the_run_with_a_clear_message(served, flat_ct, case, expected):
    ct_request = {"ct": str(served["ct"]), "position_mm": POSITION, "target_mm": TARGET}
    parameters = {
        "unknown_sample": {"store": served["store"], "sample_id": "no-such-sample"},
        "missing_model": {**ct_request, "model": str(served["base"] / "runs" / "absent")},
        "escaping_out_dir": {**ct_request, "out_dir": "../../etc"},
        "ct_not_3d": {**ct_request, "ct": str(flat_ct)},
        "ct_missing": {**ct_request, "ct": str(served["base"] / "nope.nii.gz")},
        "no_input": {"position_mm": POSITION, "target_mm": TARGET},
    }[case]
    run, artifacts = _http_run(served["api"], parameters)
    assert run["state"]["type"] == "FAILED"
    assert expected in run["state"]["message"]
    assert not [a for a in artifacts if a["key"] in ("prediction-summary", "prediction-output")]
    assert not (served["out_root"].parent / "etc").exists()
    assert served["proc"].poll() is None


def test_failed_run_reports_through_tfus_request_and_server_keeps_serving(served):
    bad = subprocess.run([TFUS, "request", "predict", "--store", served["store"], "--sample-id", "ghost",
                          "--timeout", "120"], env=served["env"], capture_output=True, text=True, timeout=180)
    assert bad.returncode == 1 and "unknown `sample_id` 'ghost'" in bad.stderr
    run, _ = _http_run(served["api"], {"store": served["store"], "sample_id": "subj00-p1"})
    assert run["state"]["type"] == "COMPLETED", run["state"]["message"]


def test_plan_placement_deployment_ranks_and_fails_cleanly(served):
    from prefect.deployments import run_deployment

    run = helpers.plan_run(served["base"] / "runs" / "plan")
    target = list(helpers.plan_target(served["ct"]))
    flow_run = run_deployment("plan-placement/default", timeout=300, poll_interval=0.5, parameters={
        "ct": str(served["ct"]), "target_mm": target, "model": str(run), "candidates": 3, "out_dir": "plans/a"})
    assert flow_run.state.is_completed(), flow_run.state.message
    artifacts = _http("POST", f"{served['api']}/artifacts/filter",
                      json={"artifacts": {"flow_run_id": {"any_": [str(flow_run.id)]}}})
    table = {a["key"]: a for a in artifacts}["placement-ranking"]
    rows = table["data"] if isinstance(table["data"], list) else json.loads(table["data"])
    assert table["type"] == "table" and [r["rank"] for r in rows] == [1, 2, 3]
    assert (served["out_root"] / "plans" / "a" / "ranking.csv").is_file()
    # the served model has no pressure head: a Failed run with the reason, and the server carries on
    failed = run_deployment("plan-placement/default", timeout=300, poll_interval=0.5, parameters={
        "ct": str(served["ct"]), "target_mm": target, "out_dir": "plans/b"})
    assert failed.state.is_failed() and "has no pressure head" in failed.state.message
    assert not (served["out_root"] / "plans" / "b" / "plan.json").exists()
    ok, _ = _http_run(served["api"], {"store": served["store"], "sample_id": "subj00-p1"})
    assert ok["state"]["type"] == "COMPLETED" and served["proc"].poll() is None


@pytest.mark.slow
def test_train_through_the_api_runs_in_its_own_process_under_the_output_root(served):
    from prefect.deployments import run_deployment

    flow_run = run_deployment("train-deeptfus/default", timeout=600, poll_interval=1, parameters={
        "store": served["store"], "out_dir": "runs/api", "epochs": 1, "batch_size": 2, "device": "cpu",
        "model_overrides": {"base_width": 4, "norm_groups": 2, "embed_dim": 16, "n_points": 32}})
    assert flow_run.state.is_completed(), flow_run.state.message
    assert (served["out_root"] / "runs" / "api" / "best.safetensors").is_file()
    escaped = run_deployment("train-deeptfus/default", timeout=600, poll_interval=1, parameters={
        "store": served["store"], "out_dir": "../../runs/evil", "epochs": 1})
    assert escaped.state.is_failed() and "outside the output root" in escaped.state.message
    assert served["proc"].poll() is None
