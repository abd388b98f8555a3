"""Dask workers as SLURM jobs (dask-jobqueue's ``SLURMCluster``) for ``tfus generate --cluster slurm``.

One job = one single-threaded worker process = one simulation at a time. The flow scales the jobs to the
work (adaptive, 0 to ``max_jobs``) and releases them at the end. Each job script activates this Python
environment (the one running the flow: the site's shared filesystem must hold it) and exports the worker
settings of ``flows.runtime.configure_dask`` and ``PREFECT_API_URL``. Job logs go to ``log_directory``
(``slurm-logs/`` next to where the command runs unless given). docs/DEPLOY.md says what changes on a site.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from dataclasses import dataclass

_WALLTIME = re.compile(r"^(\d+-)?\d{1,3}:\d{2}(:\d{2})?$")

# flows.runtime.configure_dask's worker settings, as the environment of a job (its own process tree)
WORKER_ENV = {
    "MALLOC_ARENA_MAX": "1",
    "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False",
    "DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON__MALLOC_ARENA_MAX": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
}


@dataclass(frozen=True)
class SlurmOptions:
    """``partition``/``account`` as the site names them (None: the site's default); ``walltime`` per job
    (``[D-]HH:MM[:SS]``); ``memory`` per job (e.g. ``"8GiB"``; None: the simulation's estimate + 1 GiB);
    ``max_jobs`` at once; ``log_directory`` for the jobs' output."""

    partition: str | None = None
    account: str | None = None
    walltime: str = "04:00:00"
    memory: str | None = None
    max_jobs: int = 4
    log_directory: str = "slurm-logs"

    def __post_init__(self) -> None:
        if not isinstance(self.walltime, str) or not _WALLTIME.match(self.walltime):
            raise ValueError(f"--slurm-walltime must look like HH:MM:SS or D-HH:MM:SS, got {self.walltime!r}")
        if int(self.max_jobs) != self.max_jobs or self.max_jobs < 1:
            raise ValueError(f"--max-jobs must be a positive integer, got {self.max_jobs!r}")
        if self.memory is not None:
            from dask.utils import parse_bytes  # noqa: PLC0415

            try:
                parse_bytes(self.memory)
            except (ValueError, TypeError):
                raise ValueError(f"--slurm-memory must be a size such as 8GiB, got {self.memory!r}") from None
        for name in ("partition", "account"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not re.match(r"^[\w.-]+$", value)):
                raise ValueError(f"--slurm-{name} must be a SLURM name, got {value!r}")

    def memory_bytes(self, needed_bytes: int) -> int:
        """Memory per job: the given one (refused when below what a simulation needs), else the estimate
        plus 1 GiB for the worker process."""
        from dask.utils import format_bytes, parse_bytes  # noqa: PLC0415

        if self.memory is None:
            return int(needed_bytes) + 2**30
        given = int(parse_bytes(self.memory))
        if given < needed_bytes:
            raise ValueError(f"--slurm-memory {self.memory} is below what one simulation needs "
                             f"(~{format_bytes(needed_bytes)}); ask for more")
        return given


def job_prologue() -> list[str]:
    """Shell lines run by every job before the worker: this environment, the worker settings, the API."""
    bindir = os.path.dirname(sys.executable)
    activate = os.path.join(bindir, "activate")
    lines = [f"source {shlex.quote(activate)}" if os.path.exists(activate)
             else f"export PATH={shlex.quote(bindir)}:$PATH"]
    env = dict(WORKER_ENV)
    if os.environ.get("PREFECT_API_URL"):
        env["PREFECT_API_URL"] = os.environ["PREFECT_API_URL"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    return lines


def cluster_kwargs(options: SlurmOptions, needed_bytes: int) -> dict:
    """``SLURMCluster`` arguments for ``options`` (one single-threaded worker per job)."""
    from dask.utils import format_bytes  # noqa: PLC0415

    kwargs = {"name": "tfus-worker", "cores": 1, "processes": 1,
              "memory": format_bytes(options.memory_bytes(needed_bytes)).replace(" ", ""),
              "walltime": options.walltime, "job_script_prologue": job_prologue(),
              "python": sys.executable, "log_directory": os.path.abspath(options.log_directory),
              "scheduler_options": {"dashboard_address": ":0"}}
    if options.partition:
        kwargs["queue"] = options.partition
    if options.account:
        kwargs["account"] = options.account
    return kwargs
