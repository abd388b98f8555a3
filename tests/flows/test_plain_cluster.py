"""generate_dataset on a Dask cluster started the way users start one: `dask scheduler` and `dask worker`
subprocesses with Dask's defaults (no DASK_CONFIG, no tfus keys, the default local directory with spilling
on, the nanny's default environment, no PREFECT_API_URL), and workers whose environment differs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

import pytest

from tests.flows.conftest import PRESET, REPO
from tests.flows.flowcheck import assert_store_complete
from tests.flows.test_reliability import _kill_one_mid_simulation
from tfus.flows.cli import main

BIN = Path(sys.executable).parent
SITE_PACKAGES = sysconfig.get_paths()["purelib"]


def _plain_env() -> dict[str, str]:
    """The environment of a user's shell: nothing of tfus's, Dask's or Prefect's settings."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("DASK_", "PREFECT_", "TFUS_", "MALLOC_"))}


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class PlainCluster:
    """Scheduler and workers as subprocesses in ``cwd`` (outside the repository). Loopback only."""

    def __init__(self, cwd: Path):
        from tfus.flows.runtime import free_port

        self.cwd, self.port, self.procs = cwd, free_port(), []
        self.address = f"tcp://127.0.0.1:{self.port}"

    def _start(self, cmd: list[str], env: dict | None = None, name: str = "proc") -> subprocess.Popen:
        log = open(self.cwd / f"{name}-{len(self.procs)}.log", "wb")
        proc = subprocess.Popen(cmd, cwd=self.cwd, env=env or _plain_env(), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(proc)
        return proc

    def start_scheduler(self) -> "PlainCluster":
        self._start([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                     "--dashboard-address", "127.0.0.1:0"], name="scheduler")
        deadline = time.monotonic() + 120
        while not _port_open(self.port):
            assert time.monotonic() < deadline, "dask scheduler did not start"
            time.sleep(0.3)
        return self

    def start_worker(self, python: list[str] | None = None, env: dict | None = None) -> subprocess.Popen:
        """``dask worker ADDRESS --nworkers 1 --nthreads 1`` (loopback: --host and --dashboard-address)."""
        cmd = [*(python or [str(BIN / "dask"), "worker"]), self.address, "--nworkers", "1", "--nthreads", "1",
               "--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0"]
        return self._start(cmd, env=env, name="worker")

    def wait_for_workers(self, n: int, timeout_s: float = 180) -> None:
        from distributed import Client

        with Client(self.address, set_as_default=False, timeout="60s") as client:
            client.wait_for_workers(n, timeout=timeout_s)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture()
def plain_cluster(tmp_path):
    cluster = PlainCluster(tmp_path).start_scheduler()
    try:
        yield cluster
    finally:
        cluster.stop()


def _worker_defaults(dask_worker) -> tuple:
    local = dask_worker.local_directory
    return (type(dask_worker.data).__name__, os.path.isdir(os.path.join(local, "storage")), local in sys.path,
            os.environ.get("DASK_CONFIG"))


@pytest.fixture(autouse=True)
def _probes_by_value():
    """Plain workers cannot import the tests: send this module's (and the kill helper's) functions by value."""
    import cloudpickle

    from tests.flows import test_reliability

    modules = (sys.modules[__name__], test_reliability)
    for module in modules:
        cloudpickle.register_pickle_by_value(module)
    yield
    for module in modules:
        cloudpickle.unregister_pickle_by_value(module)


def _address_of(cluster: PlainCluster, python: Path) -> str:
    """The address of the worker whose interpreter is ``python``."""
    from distributed import Client

    with Client(cluster.address, set_as_default=False) as client:
        found = [w for w, exe in client.run(lambda: sys.executable).items() if exe == str(python)]
    assert len(found) == 1, found
    return found[0]


def _generate(cluster: PlainCluster, subjects, store: Path, placements: int, capsys, seed: int = 0):
    rc = main(["generate", "--subjects", *map(str, subjects), "--placements", str(placements), "--preset", PRESET,
               "--store", str(store), "--dask-address", cluster.address, "--seed", str(seed), "--json",
               "--no-progress"])
    captured = capsys.readouterr()
    return rc, (json.loads(captured.out) if rc in (0, 1) else None), captured.err


def test_plain_dask_workers_run_every_sample_and_survive_a_killed_worker(prefect_api, plain_cluster,
                                                                          phantom_files, tmp_path, capsys):
    from distributed import Client

    for _ in range(2):
        plain_cluster.start_worker()
    plain_cluster.wait_for_workers(2)
    with Client(plain_cluster.address, set_as_default=False) as client:
        seen = set(client.run(_worker_defaults).values())
    # Dask's defaults: spilling on, into <local directory>/storage, that directory first on sys.path
    assert seen == {("SpillBuffer", True, True, None)}, seen

    store = tmp_path / "plain.zarr"
    rc, summary, err = _generate(plain_cluster, phantom_files[:2], store, 2, capsys)
    assert rc == 0, err
    assert (summary["done"], summary["failed"]) == (4, 0), summary["failures"]
    assert_store_complete(store, 4)

    # One worker SIGKILLed in the middle of a simulation while a replacement worker joins.
    killed: dict = {}
    stop = threading.Event()
    with Client(plain_cluster.address, set_as_default=False) as client:
        def kill_and_replace():
            _kill_one_mid_simulation(client, killed, stop)
            if killed:
                plain_cluster.start_worker()
        killer = threading.Thread(target=kill_and_replace, daemon=True)
        killer.start()
        try:
            store2 = tmp_path / "plain-killed.zarr"
            rc, summary, err = _generate(plain_cluster, phantom_files, store2, 2, capsys, seed=3)
        finally:
            stop.set()
            killer.join(timeout=60)
    assert killed, "no worker was killed during a simulation"
    assert rc == 0, err
    assert (summary["planned"], summary["done"], summary["failed"]) == (6, 6, 0), summary["failures"]
    assert killed["pid"] not in {r["worker_pid"] for r in summary["samples"]}
    assert_store_complete(store2, 6)  # every planned sample exactly once


def _scratch_venv(root: Path, wheel: Path | None) -> Path:
    """A venv without tfus's editable install: the project's packages through a plain path entry (its .pth
    files, the editable finder among them, are not processed), plus ``wheel`` installed when given."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "project-deps.pth").write_text(SITE_PACKAGES + "\n")
    if wheel is not None:
        subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet",
                        "--no-index", str(wheel)], check=True, timeout=300, capture_output=True)
    return python


def _build_wheel(source: Path, out: Path, version: str | None = None) -> Path:
    """``pip wheel .`` of the repository (a copy with another ``__version__`` when given)."""
    if version is not None:
        copy = out / "src"
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=source, check=True,
                               capture_output=True, text=True).stdout.split()
        for rel in files:
            if (source / rel).is_file():
                (copy / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source / rel, copy / rel)
        init = copy / "tfus" / "__init__.py"
        init.write_text(init.read_text().replace('__version__ = "', f'__version__ = "{version}"  # was "', 1))
        source = copy
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "-w", str(out), str(source)], check=True, timeout=600, capture_output=True)
    return next(out.glob("tfus-*.whl"))


@pytest.fixture(scope="session")
def tfus_wheel(tmp_path_factory) -> Path:
    return _build_wheel(REPO, tmp_path_factory.mktemp("wheel"))


IMPORTS = """
import importlib, json
found = {}
for name in ("sim", "storage", "models", "flows", "tfus.sim", "tfus.storage", "tfus.models", "tfus.flows",
             "tfus.flows.cli"):
    try:
        importlib.import_module(name)
        found[name] = "ok"
    except ModuleNotFoundError as exc:
        found[name] = "ModuleNotFoundError"
import tfus
found["file"] = tfus.__file__
print(json.dumps(found))
"""


def _imports_from(python: Path, cwd: Path) -> dict:
    out = subprocess.run([str(python), "-c", IMPORTS], cwd=cwd, capture_output=True, text=True, timeout=300,
                         env=_plain_env())
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


@pytest.mark.parametrize("install", ["editable", "wheel"])
def test_only_the_tfus_namespace_is_installed(install, tfus_wheel, tmp_path):
    python = Path(sys.executable) if install == "editable" else _scratch_venv(tmp_path / "venv", tfus_wheel)
    found = _imports_from(python, cwd=tmp_path)
    for old in ("sim", "storage", "models", "flows"):
        assert found[old] == "ModuleNotFoundError", found
    for new in ("tfus.sim", "tfus.storage", "tfus.models", "tfus.flows", "tfus.flows.cli"):
        assert found[new] == "ok", found
    if install == "wheel":
        assert "site-packages" in found["file"] and str(REPO) not in found["file"], found


def _refused(cluster: PlainCluster, phantom_files, tmp_path, capsys) -> str:
    store = tmp_path / "refused.zarr"
    rc, _, err = _generate(cluster, phantom_files[:1], store, 1, capsys)
    assert rc == 2, err
    assert not store.exists() and not Path(str(store) + ".subjects").exists()  # refused before planning
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_a_worker_without_tfus_is_refused_before_planning(prefect_api, plain_cluster, phantom_files,
                                                          tmp_path, capsys):
    plain_cluster.start_worker()
    python = _scratch_venv(tmp_path / "no-tfus", wheel=None)
    plain_cluster.start_worker(python=[str(python), "-m", "distributed.cli.dask_worker"])
    plain_cluster.wait_for_workers(2)
    line = _refused(plain_cluster, phantom_files, tmp_path, capsys)
    assert line.startswith(f"error: dask worker {_address_of(plain_cluster, python)} "), line
    assert "cannot import tfus.flows.generate" in line and "ModuleNotFoundError" in line, line


def test_a_worker_with_another_tfus_version_is_refused(prefect_api, plain_cluster, phantom_files, tmp_path,
                                                       capsys):
    other = _build_wheel(REPO, tmp_path / "other", version="0.0.1")
    python = _scratch_venv(tmp_path / "other-venv", other)
    plain_cluster.start_worker()
    plain_cluster.start_worker(python=[str(python), "-m", "distributed.cli.dask_worker"])
    plain_cluster.wait_for_workers(2)
    line = _refused(plain_cluster, phantom_files, tmp_path, capsys)
    import tfus

    assert line.startswith(f"error: dask worker {_address_of(plain_cluster, python)} "), line
    assert f"tfus 0.0.1 (this client: {tfus.__version__})" in line, line
