"""Local services for running flows on one machine: a Prefect API server and a Dask cluster.

Prefect's ephemeral mode is avoided on purpose: with a DaskTaskRunner every worker process would start its
own temporary server on the same SQLite file. Instead one real ``prefect server`` runs on 127.0.0.1 and
``PREFECT_API_URL`` is exported to the flow process and, through the environment, to the Dask workers.
Nothing binds beyond loopback unless configured otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

# Prefect's telemetry and promotional calls would try the network.
QUIET_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
    "PREFECT_UI_ENABLED": "false",
}


# Server loop services that tfus's own embedded server has no use for (no schedules, work pools, pauses,
# automations or concurrency leases): each wakes every 5-15 s, and with both cores simulating every CPU
# second is taken from a simulation. A server started by deploy/ keeps Prefect's defaults.
IDLE_SERVICES_OFF = {f"PREFECT_SERVER_SERVICES_{name}_ENABLED": "false" for name in
                     ("SCHEDULER", "LATE_RUNS", "FOREMAN", "PAUSE_EXPIRATIONS", "REPOSSESSOR", "TRIGGERS")}


def prefect_environment() -> None:
    """Set the environment every tfus process needs before Prefect is imported (idempotent)."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _healthy(api_url: str) -> bool:
    import httpx  # noqa: PLC0415

    try:
        return httpx.get(f"{api_url}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def require_api(api_url: str, timeout_s: float = 5.0) -> str:
    """``api_url`` (the configured ``PREFECT_API_URL``) if its server answers ``/health`` within
    ``timeout_s``; else one clear ValueError instead of Prefect's traceback at the first API call."""
    import time  # noqa: PLC0415

    deadline = time.monotonic() + timeout_s
    while not _healthy(api_url):
        if time.monotonic() > deadline:
            raise ValueError(f"the Prefect server at PREFECT_API_URL={api_url} does not answer: start the server "
                             "(`prefect server start`, or deploy/start-local.sh), or unset PREFECT_API_URL to use "
                             "the embedded one")
        time.sleep(0.5)
    return api_url


class PrefectServer:
    """A ``prefect server start`` subprocess on 127.0.0.1 with its own PREFECT_HOME (SQLite)."""

    def __init__(self, home: Path | None = None, host: str = "127.0.0.1", port: int | None = None,
                 log_path: Path | None = None):
        self.host = host
        self.port = port or free_port(host)
        self._tmp = None if home else tempfile.mkdtemp(prefix="tfus-prefect-")
        self.home = Path(home or self._tmp)
        self.log_path = log_path or self.home / "server.log"
        self.proc: subprocess.Popen | None = None

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    def env(self) -> dict[str, str]:
        env = {**IDLE_SERVICES_OFF, **os.environ, **QUIET_ENV, "PREFECT_HOME": str(self.home),
               "PREFECT_SERVER_API_HOST": self.host, "PREFECT_SERVER_API_PORT": str(self.port)}
        env.pop("PREFECT_API_URL", None)
        return env

    def start(self, timeout_s: float = 90.0) -> "PrefectServer":
        self.home.mkdir(parents=True, exist_ok=True)
        prefect = Path(sys.executable).with_name("prefect")
        cmd = [str(prefect) if prefect.exists() else "prefect", "server", "start", "--host", self.host,
               "--port", str(self.port), "--no-ui", "--analytics-off", "--log-level", "WARNING"]
        self._log = open(self.log_path, "ab")
        # Own process group: the server spawns children that must go with it.
        self.proc = subprocess.Popen(cmd, env=self.env(), stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prefect server exited with code {self.proc.returncode}; "
                                   f"see {self.log_path}")
            if _healthy(self.api_url):
                log.info("Prefect server healthy at %s", self.api_url)
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"prefect server not healthy after {timeout_s:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        if getattr(self, "_log", None):
            self._log.close()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)


@contextlib.contextmanager
def local_prefect_server(home: Path | None = None) -> Iterator[str]:
    """Yield a Prefect API URL: the configured ``PREFECT_API_URL``, or a server started here.

    A started server is stopped (and its temporary home removed) on exit; ``PREFECT_API_URL`` is restored.
    """
    prefect_environment()
    existing = os.environ.get("PREFECT_API_URL")
    if existing:
        require_api(existing)
        with _api_settings(existing):
            yield existing
        return
    server = PrefectServer(home=home).start()
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        with _api_settings(server.api_url):
            yield server.api_url
    finally:
        _flush_prefect_logs()
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()


@contextlib.contextmanager
def _api_settings(api_url: str) -> Iterator[None]:
    """Prefect 3 reads its settings when imported: a process that imported prefect before the URL was
    chosen must be told through ``temporary_settings`` too (the environment reaches child processes)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings  # noqa: PLC0415

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        yield


def _flush_prefect_logs() -> None:
    """Send buffered flow-run logs before the server goes away (else they fail noisily at exit)."""
    if "prefect" not in sys.modules:
        return
    with contextlib.suppress(Exception):
        from prefect.events.worker import EventsWorker  # noqa: PLC0415
        from prefect.logging.handlers import APILogWorker  # noqa: PLC0415

        APILogWorker.drain_all(timeout=10)
        EventsWorker.drain_all(timeout=10)


ALLOWED_FAILURES = 3


def configure_dask() -> None:
    """Dask settings for the clusters tfus starts itself: performance tuning only.

    Workers need none of them to be correct (a plain ``dask worker`` runs every task right); each one was
    measured to give the simulations CPU time back (docs/PERFORMANCE.md).

    The nanny exports ``MALLOC_TRIM_THRESHOLD_=65536`` to workers, which made the k-Wave time loop 1.8×
    slower (sys time from glibc trimming on every large free); null removes it from the worker env.
    ``MALLOC_ARENA_MAX=1``: a task runs in a worker thread, whose glibc arena handed the solver's per-step
    temporaries back to the kernel and faulted them in again (2.6 M page faults, 8 s sys time in a 32 s
    simulation vs 0.05 M in the main thread); one arena behaves like the main thread (docs/PERFORMANCE.md).
    The worker's statistical profiler is off (it competes with the simulation thread for the GIL).
    """
    import dask  # noqa: PLC0415

    dask.config.set({
        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
        "distributed.nanny.pre-spawn-environ.MALLOC_ARENA_MAX": 1,
        # The statistical profiler (dashboard only) samples every thread's stack every 10 ms under the GIL;
        # a simulation ran 16-20 % faster in a worker without it (docs/PERFORMANCE.md).
        "distributed.worker.profile.enabled": False,
        # Monitoring loops in every scheduler, nanny and worker (event-loop tick at 50 Hz, system monitor at
        # 2 Hz) and work stealing every 100 ms: with both cores simulating they took 0.07 cores from the
        # simulations; slower loops left the workers 1.92 instead of 1.86 cores (docs/PERFORMANCE.md).
        # Stealing has nothing to do here: samples are independent, equal-sized, queued root tasks.
        "distributed.admin.tick.interval": "1s",
        "distributed.admin.system-monitor.interval": "2s",
        "distributed.scheduler.work-stealing": False,
        "distributed.worker.daemon": False,
        # A task whose worker dies is rescheduled elsewhere up to this many times (then KilledWorker,
        # which generate_dataset resubmits as an infrastructure fault).
        "distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
    })


def local_cluster(n_workers: int = 2, threads_per_worker: int = 1, memory_limit: str | int = "auto",
                  local_directory: str | None = None):
    """A Dask LocalCluster of worker processes on 127.0.0.1 with tfus's Dask settings."""
    configure_dask()
    from dask.distributed import LocalCluster  # noqa: PLC0415

    return LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True,
                        host="127.0.0.1", dashboard_address="127.0.0.1:0", memory_limit=memory_limit,
                        local_directory=local_directory or tempfile.gettempdir())
