"""Fixtures for flow tests: tiny phantom heads, one shared Dask LocalCluster, and deploy/start-local.sh's
separately started scheduler + workers. All real processes on 127.0.0.1, reporting to the session's
Prefect server (``prefect_api``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Simulation config of the flow tests: the test preset, shrunk (see the file for why).
PRESET = str(Path(__file__).parent / "data" / "tiny-sim.yaml")
# Tiny heads on the test preset's grid: half-size outline, 1.5 mm voxels (a few MB per file).
PHANTOM_OPTIONS = {"scale": 0.5, "spacing_mm": 1.5, "margin_mm": 10.0}


@pytest.fixture(autouse=True)
def _prefect_settings(prefect_api):
    """Point Prefect at the session server even when prefect was imported before PREFECT_API_URL was set
    (Prefect 3 reads its settings once, at import; a later os.environ change is not seen)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_api}):
        yield


@pytest.fixture(scope="session")
def phantom_files(tmp_path_factory) -> list[Path]:
    """Three tiny phantom NIfTI files (seeds 0, 1, 2), written once per session."""
    from tfus.sim import write_phantom

    out = tmp_path_factory.mktemp("heads")
    return [write_phantom(seed, out / f"head{seed}.nii.gz", **PHANTOM_OPTIONS) for seed in range(3)]


@pytest.fixture(scope="session")
def dask_cluster(prefect_api):
    """One LocalCluster (2 single-threaded worker processes) shared by the flow tests.

    Created after ``prefect_api`` so that worker processes inherit PREFECT_API_URL.
    """
    from tfus.flows.runtime import local_cluster

    cluster = local_cluster(n_workers=2)
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture()
def dask_client(dask_cluster):
    from distributed import Client

    with Client(dask_cluster.scheduler_address, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=120)
        yield client


@pytest.fixture(scope="session")
def local_deploy(prefect_api, tmp_path_factory):
    """deploy/start-local.sh: a separately started `dask scheduler` + 2 `dask worker`s on loopback.

    PREFECT_API_URL is already set (the session server), so the script starts no second Prefect server.
    """
    run_dir = tmp_path_factory.mktemp("tfus-local")
    env = {**os.environ, "PYTHON_BIN_DIR": str(Path(sys.executable).parent)}
    try:
        subprocess.run(["bash", str(REPO / "deploy" / "start-local.sh"), str(run_dir), "2"], env=env,
                       check=True, timeout=300, capture_output=True)
        yield {"address": (run_dir / "dask_address").read_text().strip(), "run_dir": run_dir}
    finally:
        subprocess.run(["bash", str(REPO / "deploy" / "stop-local.sh"), str(run_dir)], timeout=120,
                       capture_output=True)
