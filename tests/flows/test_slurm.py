"""``tfus generate --cluster slurm``: the job scripts (default tests) and a real one-node SLURM cluster
(``deploy/slurm/test-cluster.sh``, slow tests): a dataset generated on SLURM jobs, one job cancelled in the
middle of the run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tfus.flows.slurm import SlurmOptions, cluster_kwargs
from tests.flows.conftest import PRESET
from tests.flows.flowcheck import assert_store_complete

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "slurm" / "test-cluster.sh"
TFUS = str(Path(sys.executable).with_name("tfus"))


@pytest.mark.parametrize("change, message", [
    ({"walltime": "4h"}, "walltime"), ({"max_jobs": 0}, "max-jobs"), ({"memory": "lots"}, "slurm-memory"),
    ({"partition": "a b"}, "slurm-partition"),
])
def test_bad_slurm_options_are_one_line(change, message):
    with pytest.raises(ValueError, match=message):
        SlurmOptions(**change)


def test_job_script_activates_this_environment_and_asks_for_what_a_simulation_needs(monkeypatch):
    from dask_jobqueue import SLURMCluster

    monkeypatch.setenv("PREFECT_API_URL", "http://login-node:4200/api")
    opts = SlurmOptions(partition="debug", account="tfus-lab", walltime="01:30:00", max_jobs=3)
    with pytest.raises(ValueError, match="below what one simulation needs"):
        SlurmOptions(memory="1MiB").memory_bytes(2**30)
    with SLURMCluster(**cluster_kwargs(opts, needed_bytes=3 * 2**30)) as cluster:
        script = cluster.job_script()
    assert "#SBATCH -p debug" in script and "#SBATCH -A tfus-lab" in script and "#SBATCH -t 01:30:00" in script
    assert "#SBATCH --mem=4G" in script and "#SBATCH --cpus-per-task=1" in script  # estimate + 1 GiB
    assert f"source {Path(sys.executable).parent / 'activate'}" in script and sys.executable in script
    assert "export MALLOC_ARENA_MAX=1" in script and "export PREFECT_API_URL=http://login-node:4200/api" in script


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    if os.geteuid() != 0 and shutil.which("slurmctld") is None:
        pytest.skip("the SLURM test cluster needs slurm-wlm installed, or root to install it")
    env = {**os.environ, "TFUS_SLURM_DIR": str(tmp_path_factory.mktemp("slurm"))}
    subprocess.run(["bash", str(SCRIPT), "start"], env=env, check=True, timeout=600)
    env["SLURM_CONF"] = str(Path(env["TFUS_SLURM_DIR"]) / "slurm.conf")
    yield env
    subprocess.run(["bash", str(SCRIPT), "stop"], env=env, check=False, timeout=120)


def _running_jobs(env) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-t", "R", "-o", "%i"], env=env, capture_output=True, text=True)
    return out.stdout.split()


@pytest.mark.slow
def test_generate_on_slurm_jobs_with_one_job_cancelled(slurm_cluster, prefect_api, phantom_files, tmp_path):
    env = {**slurm_cluster, "PREFECT_API_URL": os.environ["PREFECT_API_URL"]}
    store = tmp_path / "slurm.zarr"
    args = [TFUS, "generate", "--subjects", *map(str, phantom_files), "--placements", "2", "--config", PRESET,
            "--store", str(store), "--cluster", "slurm", "--max-jobs", "2", "--slurm-walltime", "00:30:00",
            "--slurm-log-dir", str(tmp_path / "logs"), "--no-progress", "--split", "1", "0", "0"]
    proc = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    cancelled = None
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        jobs = _running_jobs(env)
        if cancelled is None and jobs and list((tmp_path / "logs").glob("*.err")):
            time.sleep(8)  # the worker has started and taken a simulation
            cancelled = _running_jobs(env)[:1]
            subprocess.run(["scancel", *cancelled], env=env, check=True)
        time.sleep(1)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out[-3000:]
    assert cancelled, "no job was running to cancel"
    assert_store_complete(store, 6)  # 3 subjects × 2 placements, each exactly once
    assert not _running_jobs(env)  # the jobs were released
