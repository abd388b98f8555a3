"""Reliability of generate_dataset with real processes: a corrupt subject, a Dask worker killed in the
middle of a simulation, the flow process killed mid-generation, and a separately started cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dask
import pytest

from tfus.flows.cli import main
from tfus.flows.generate import generate_dataset
from tests.flows.conftest import PRESET
from tests.flows.flowcheck import assert_store_complete

TFUS = str(Path(sys.executable).with_name("tfus"))


def _latest_artifact(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                      sort=ArtifactSort.CREATED_DESC, limit=1)
    return found[0]


def test_corrupt_subject_fails_its_samples_only(prefect_api, dask_client, phantom_files, tmp_path, capsys):
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00" + os.urandom(4096))  # gzip magic, then garbage
    store = tmp_path / "mixed.zarr"
    rc = main(["generate", "--subjects", str(phantom_files[0]), str(broken), "--placements", "2",
               "--preset", PRESET, "--store", str(store), "--dask-address", dask_client.scheduler.address,
               "--split", "1", "0", "0", "--json", "--no-progress"])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert (summary["done"], summary["failed"]) == (2, 2)
    assert all("broken" in f["reason"] and f["subject_id"] == "broken" for f in summary["failures"])

    from tfus.storage import open_dataset

    table = open_dataset(str(store)).table
    bad = table[table["subject_id"] == "broken"]
    good = table[table["subject_id"] != "broken"]
    assert len(bad) == 2 and (bad["status"] == "failed").all()
    assert bad["reason"].str.contains("broken.nii.gz").all(), bad["reason"].tolist()
    assert len(good) == 2 and (good["status"] == "complete").all()
    report = _latest_artifact("generate-dataset-report")
    assert "broken.nii.gz" in report.data and "failed 2" in report.description


def _executing_simulations(dask_worker) -> tuple[int, list[str]]:
    return os.getpid(), [str(ts.key) for ts in dask_worker.state.executing if "simulate" in str(ts.key)]


def _kill_one_mid_simulation(client, killed: dict, stop: threading.Event) -> None:
    """SIGKILL the first worker seen running a simulation for 0.4 s (still running then; a tiny simulation on a
    warm worker takes about a second, so a longer wait can miss both)."""
    while not stop.is_set():
        busy = {a: v for a, v in client.run(_executing_simulations).items() if v[1]}
        if busy:
            address, (pid, keys) = next(iter(busy.items()))
            time.sleep(0.4)
            still = client.run(_executing_simulations, workers=[address]).get(address, (0, []))
            if set(keys) & set(still[1]):
                os.kill(pid, signal.SIGKILL)
                killed.update(pid=pid, keys=keys)
                return
        time.sleep(0.2)


def test_worker_killed_mid_simulation_is_retried_elsewhere(prefect_api, dask_client, phantom_files, tmp_path):
    store = tmp_path / "killed-worker.zarr"
    killed: dict = {}
    stop = threading.Event()
    killer = threading.Thread(target=_kill_one_mid_simulation, args=(dask_client, killed, stop), daemon=True)
    killer.start()
    try:
        summary = generate_dataset(subjects=[str(phantom_files[1])], store=str(store), placements=2,
                                   preset=PRESET, seed=11, dask_address=dask_client.scheduler.address)
    finally:
        stop.set()
        killer.join(timeout=30)
    assert killed, "no worker was killed during a simulation"
    assert (summary["done"], summary["failed"]) == (2, 0), summary["failures"]
    assert killed["pid"] not in {r["worker_pid"] for r in summary["samples"]}
    assert_store_complete(store, 2)
    dask_client.wait_for_workers(2, timeout=120)  # the nanny restarts the killed worker for later tests


def _wait_for_complete(store: Path, proc: subprocess.Popen, timeout_s: float = 300) -> set[str]:
    from tfus.storage import open_dataset

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"tfus generate exited early ({proc.returncode})"
        try:
            done = open_dataset(str(store)).complete_keys()
        except (FileNotFoundError, ValueError, KeyError):
            done = set()
        if done:
            return done
        time.sleep(0.3)
    raise AssertionError("no sample completed in time")


def test_flow_process_killed_then_rerun_runs_only_missing(prefect_api, dask_client, phantom_files, tmp_path,
                                                          capsys):
    from tfus.storage import open_dataset

    store = tmp_path / "interrupted.zarr"
    args = ["generate", "--subjects", *map(str, phantom_files), "--placements", "1", "--preset", PRESET,
            "--store", str(store), "--seed", "7", "--no-progress"]
    proc = subprocess.Popen([TFUS, *args, "--workers", "1"], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_complete(store, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the flow process and its LocalCluster
        proc.wait(timeout=30)
    done_before = open_dataset(str(store)).complete_keys()
    assert 1 <= len(done_before) < 3

    rc = main([*args, "--dask-address", dask_client.scheduler.address, "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert (summary["planned"], summary["skipped"], summary["done"]) == (3, len(done_before), 3 - len(done_before))
    assert_store_complete(store, 3)


@pytest.mark.parametrize("order", ["heads01-first", "heads12-first"])
def test_a_second_run_on_a_held_store_is_refused_and_a_killed_holder_is_taken_over(
        prefect_api, dask_client, phantom_files, tmp_path, capsys, order):
    """Two generations on one store with an overlapping subject, in both orders: while the first holds the
    store the second stops in one line naming it; the first is killed mid-run; the second, rerun, takes the
    stale lease over; the first, rerun, completes the rest: every planned sample complete exactly once."""
    store = tmp_path / "shared.zarr"
    # 2 placements: the first run still has samples to go when the second one starts
    common = ["--placements", "2", "--preset", PRESET, "--store", str(store), "--seed", "7", "--no-progress"]
    first = ["generate", "--subjects", str(phantom_files[0]), str(phantom_files[1]), *common]
    second = ["generate", "--subjects", str(phantom_files[1]), str(phantom_files[2]), *common]
    if order == "heads12-first":
        first, second = second, first
    proc = subprocess.Popen([TFUS, *first, "--workers", "1"], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_complete(store, proc)  # the first run is simulating: it holds the store
        assert proc.poll() is None and (store / "_lease.json").exists()
        capsys.readouterr()
        assert main([*second, "--dask-address", dask_client.scheduler.address]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "in use by another run" in err[0] and f"pid {proc.pid}" in err[0], err
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # killed while it holds the store
        proc.wait(timeout=30)
    for args in (second, first):
        assert main([*args, "--dask-address", dask_client.scheduler.address, "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["planned"] == 4 and summary["failed"] == 0
    assert_store_complete(store, 6)
    assert not (store / "_lease.json").exists()


@pytest.mark.parametrize("down_s", [5, pytest.param(60, marks=pytest.mark.slow)], ids=["5s", "60s"])
def test_prefect_server_restarted_mid_generation_loses_nothing(phantom_files, tmp_path, down_s):
    """The Prefect server stopped for ``down_s`` seconds and restarted (same home, same port) while a generation
    simulates: the run completes, or ends with a clear message and a rerun completes exactly the missing
    samples; nothing is lost or duplicated."""
    from tfus.flows.runtime import PrefectServer
    from tfus.storage import open_dataset

    server = PrefectServer(home=tmp_path / "prefect").start()
    env = {**os.environ, "PREFECT_API_URL": server.api_url}
    store = tmp_path / "restart.zarr"
    args = [TFUS, "generate", "--subjects", *map(str, phantom_files), "--placements", "2", "--preset", PRESET,
            "--store", str(store), "--seed", "5", "--workers", "1", "--no-progress", "--json"]
    try:
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_for_complete(store, proc)
        server.stop()
        time.sleep(down_s)
        server.start()
        out, err = proc.communicate(timeout=600)
        done_first = open_dataset(str(store)).complete_keys()
        print(f"first run: exit {proc.returncode}, {len(done_first)} of 6 complete; stderr tail: {err[-300:]!r}")
        if proc.returncode != 0:  # ended: with one clear line, and the rerun does exactly the rest
            assert err.strip() and "Traceback" not in err.strip().splitlines()[-1], err[-2000:]
            rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
            assert rerun.returncode == 0, rerun.stderr[-2000:]
            summary = json.loads(rerun.stdout)
            assert summary["skipped"] == len(done_first) and summary["done"] == 6 - len(done_first)
        else:
            assert json.loads(out)["done"] == 6
    finally:
        server.stop()
    assert_store_complete(store, 6)


def _malloc_env(client) -> set:
    """(MALLOC_TRIM_THRESHOLD_, MALLOC_ARENA_MAX, profiler on, tick interval) of every worker, and the
    scheduler's work stealing (functions pickled by reference)."""
    trim, arenas = (client.run(os.getenv, name) for name in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX"))
    profile = client.run(dask.config.get, "distributed.worker.profile.enabled")
    tick = client.run(dask.config.get, "distributed.admin.tick.interval")
    stealing = client.run_on_scheduler(dask.config.get, "distributed.scheduler.work-stealing")
    return {(trim[w], arenas[w], profile[w], str(tick[w]), stealing) for w in trim}


def test_local_cluster_workers_get_the_worker_settings(dask_client):
    """Without them the solver ran 17-30 % slower in a worker than in a plain process (docs/PERFORMANCE.md)."""
    assert _malloc_env(dask_client) == {(None, "1", False, "1s", False)}


def test_generate_on_separately_started_cluster(prefect_api, local_deploy, phantom_files, tmp_path, capsys):
    from distributed import Client

    with Client(local_deploy["address"], set_as_default=False) as client:
        worker_pids = set(client.run(os.getpid).values())
        envs = _malloc_env(client)
    assert envs == {(None, "1", False, "1s", False)}  # deploy/dask-tfus.yaml reached the workers
    store = tmp_path / "deployed.zarr"
    rc = main(["generate", "--subjects", str(phantom_files[2]), "--placements", "2", "--preset", PRESET,
               "--store", str(store), "--dask-address", local_deploy["address"], "--json", "--no-progress"])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0
    table = assert_store_complete(store, 2)
    assert set(table["subject_id"]) == {"head2"}
    assert {r["worker_pid"] for r in summary["samples"]} <= worker_pids  # ran on deploy/'s workers


@pytest.mark.slow
def test_cli_with_nothing_configured_on_the_test_preset(tmp_path):
    """`tfus generate` as a user runs it: no PREFECT_API_URL (it starts and stops its own server), its own
    LocalCluster, phantoms written by the flow, the real `test` preset (tens of seconds per sample)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "TFUS_DASK_ADDRESS")}
    store = tmp_path / "default.zarr"
    proc = subprocess.run([TFUS, "generate", "--phantoms", "2", "--placements", "1", "--preset", "test",
                           "--store", str(store), "--workers", "2", "--phantom-scale", "0.5", "--no-progress"],
                          env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 done, 0 skipped, 0 failed" in proc.stdout
    assert_store_complete(store, 2)
    assert len(list(Path(str(store) + ".subjects").glob("phantom-*.nii.gz"))) == 2
