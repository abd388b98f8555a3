"""``tfus serve``: register the tfus deployments with the Prefect API and execute their flow runs.

Registration is Prefect's own (``flow.to_deployment(name="default").apply()``, the step ``prefect.serve``
does), so ``prefect deployment run``, ``run_deployment`` and the REST API all work unchanged. Execution
differs from ``prefect.serve`` on purpose: Prefect 3.9's runner starts a fresh interpreter for every flow run
(``import prefect`` alone costs ~2.5 s of CPU here) and would reload the model on every request. So:

* ``predict-field`` runs in *this* process (one worker thread, runs one at a time), with the model cached
  (:mod:`flows.serving`) – a request costs the poll delay plus the inference.
* ``generate-dataset`` and ``train-deeptfus`` run in a spawned subprocess each (Prefect's
  ``run_flow_in_subprocess``), at most ``limit`` at once, so that a long job never blocks predictions and a
  crash there cannot take the server down.

The loop polls every ``poll_s`` seconds (Prefect's default is 10 s) and again as soon as a run finishes.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from tfus.flows import serving
from tfus.flows.runtime import prefect_environment, require_api

log = logging.getLogger(__name__)

DEPLOYMENT = "default"
# deployment flow name -> (module, attribute, runs in this process)
FLOWS = {
    "predict-field": ("tfus.flows.predict", "predict_field", True),
    "generate-dataset": ("tfus.flows.generate", "generate_dataset", False),
    "train-deeptfus": ("tfus.flows.train", "train_model", False),
    "plan-placement": ("tfus.flows.plan_placement", "plan_placement", False),  # --verify simulates: own process
}
RETRY_REGISTER_S = 30.0
# Prefect marks served deployments "ready" when they are polled through get_scheduled_flow_runs, a write to
# the server's database. Under load SQLite then answers "database is locked" (HTTP 503) to other clients, so
# the frequent polls are read-only queries and the marking poll runs only this often.
READY_POLL_S = 10.0


@dataclass
class ServeState:
    """What the loop tracks: registered deployment ids and the runs it has claimed."""

    deployments: dict = field(default_factory=dict)       # deployment id -> (flow name, flow)
    missing: dict = field(default_factory=dict)           # flow name -> reason it is not served yet
    in_process: dict = field(default_factory=dict)        # flow run id -> Future
    subprocesses: dict = field(default_factory=dict)      # flow run id -> SpawnProcess
    last_register_try: float = 0.0
    last_ready_poll: float = 0.0


def _load_flow(name: str):
    module, attribute, _ = FLOWS[name]
    return getattr(importlib.import_module(module), attribute).with_options(name=name)


def register(state: ServeState) -> None:
    """Register every deployment not registered yet; a flow whose module is missing is retried later."""
    from prefect.deployments.runner import EntrypointType  # noqa: PLC0415

    state.last_register_try = time.monotonic()
    registered = {name for name, _ in state.deployments.values()}
    for name in FLOWS:
        if name in registered:
            continue
        try:
            flow = _load_flow(name)
        except (ImportError, AttributeError) as exc:
            if state.missing.get(name) != str(exc):
                log.warning("not serving %s/%s yet: %s", name, DEPLOYMENT, exc)
            state.missing[name] = str(exc)
            continue
        deployment = flow.to_deployment(name=DEPLOYMENT, tags=["tfus"], enforce_parameter_schema=False,
                                        entrypoint_type=EntrypointType.MODULE_PATH,
                                        description=(flow.description or "").strip().split("\n")[0])
        state.deployments[deployment.apply()] = (name, flow)
        state.missing.pop(name, None)
        log.info("serving %s/%s", name, DEPLOYMENT)


def _now_plus(seconds: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=seconds)


def _claim(client, flow_run) -> bool:
    """Scheduled → Pending; False when someone else took the run (or it was cancelled meanwhile)."""
    from prefect.client.schemas.responses import SetStateStatus  # noqa: PLC0415
    from prefect.states import Pending  # noqa: PLC0415

    result = client.set_flow_run_state(flow_run.id, Pending())
    return result.status == SetStateStatus.ACCEPT


def _run_in_process(flow, flow_run, wake: threading.Event) -> None:
    from prefect.flow_engine import run_flow  # noqa: PLC0415

    try:
        state = run_flow(flow, flow_run=flow_run, return_type="state")
        log.info("flow run %s (%s) ended %s", flow_run.name, flow.name, getattr(state, "type", state))
    except BaseException:  # the engine records the failure; the server must survive it
        log.exception("flow run %s raised outside the engine", flow_run.id)
    finally:
        wake.set()


def _crash(client, flow_run_id, message: str) -> None:
    from prefect.states import Crashed  # noqa: PLC0415

    run = client.read_flow_run(flow_run_id)
    if run.state is None or not run.state.is_final():
        client.set_flow_run_state(flow_run_id, Crashed(message=message), force=True)


class DeploymentServer:
    """Polls the API for scheduled runs of the registered deployments and executes them."""

    def __init__(self, poll_s: float = 0.5, limit: int = 1):
        if not 0.05 <= poll_s <= 60:
            raise ValueError(f"`poll_s` must be in [0.05, 60] seconds, got {poll_s}")
        if limit < 1:
            raise ValueError(f"`limit` must be >= 1, got {limit}")
        self.poll_s, self.limit = poll_s, limit
        self.state = ServeState()
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tfus-predict")

    def _submit(self, client, flow_run) -> None:
        name, flow = self.state.deployments[flow_run.deployment_id]
        in_process = FLOWS[name][2]
        if in_process and self.state.in_process:
            return  # one prediction at a time; the next poll (woken when it ends) takes this one
        if not in_process and len(self.state.subprocesses) >= self.limit:
            return
        if not _claim(client, flow_run):
            return
        log.info("starting flow run %s of %s/%s", flow_run.name, name, DEPLOYMENT)
        if in_process:
            self.state.in_process[flow_run.id] = self.pool.submit(_run_in_process, flow, flow_run, self.wake)
        else:
            from prefect.flow_engine import run_flow_in_subprocess  # noqa: PLC0415

            try:
                self.state.subprocesses[flow_run.id] = run_flow_in_subprocess(flow, flow_run=flow_run)
            except Exception as exc:  # noqa: BLE001 - the run must not stay Pending forever
                log.exception("could not start flow run %s", flow_run.id)
                _crash(client, flow_run.id, f"tfus serve could not start the run's process: {exc}")

    def _reap(self, client) -> None:
        for run_id, future in list(self.state.in_process.items()):
            if future.done():
                del self.state.in_process[run_id]
        for run_id, proc in list(self.state.subprocesses.items()):
            if proc.exitcode is not None:
                del self.state.subprocesses[run_id]
                _crash(client, run_id, f"flow run process exited with code {proc.exitcode} "
                                       "before the run reached a final state")

    def poll_once(self, client) -> None:
        self._reap(client)
        if self.state.missing and time.monotonic() - self.state.last_register_try > RETRY_REGISTER_S:
            register(self.state)
        runs = self._scheduled_runs(client)
        for flow_run in sorted(runs, key=lambda r: r.expected_start_time or _now_plus(0)):
            if flow_run.id not in self.state.in_process and flow_run.id not in self.state.subprocesses:
                self._submit(client, flow_run)

    def _scheduled_runs(self, client) -> list:
        ids = list(self.state.deployments)
        if time.monotonic() - self.state.last_ready_poll > READY_POLL_S:
            self.state.last_ready_poll = time.monotonic()
            return client.get_scheduled_flow_runs_for_deployments(deployment_ids=ids,
                                                                  scheduled_before=_now_plus(self.poll_s))
        from prefect.client.schemas import filters as f  # noqa: PLC0415
        from prefect.client.schemas.objects import StateType  # noqa: PLC0415

        return client.read_flow_runs(flow_run_filter=f.FlowRunFilter(
            deployment_id=f.FlowRunFilterDeploymentId(any_=ids),
            state=f.FlowRunFilterState(type=f.FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
            next_scheduled_start_time=f.FlowRunFilterNextScheduledStartTime(before_=_now_plus(self.poll_s))),
            limit=20)

    def run(self) -> None:
        from prefect.client.orchestration import get_client  # noqa: PLC0415

        register(self.state)
        with get_client(sync_client=True) as client:
            try:
                while not self.stop.is_set():
                    try:
                        self.poll_once(client)
                    except Exception:  # a transient API error must not stop serving
                        log.exception("polling the Prefect API failed; retrying")
                    self.wake.wait(self.poll_s)
                    self.wake.clear()
            finally:
                self.shutdown(client)

    def shutdown(self, client) -> None:
        for run_id, proc in self.state.subprocesses.items():
            proc.terminate()
            proc.join(timeout=20)
            _crash(client, run_id, "tfus serve stopped while the run was in progress")
        self.pool.shutdown(wait=True, cancel_futures=True)


def _warm_up(model_dir: str | None) -> None:
    """Load the default model and the prediction modules now, so the first request is as fast as the rest."""
    import tfus.flows.predict  # noqa: F401, PLC0415
    import tfus.sim.window  # noqa: F401, PLC0415

    if model_dir:
        loaded = serving.get_model(model_dir)
        log.info("model %s ready (%.2f s)", loaded.run_dir, loaded.load_s)


def serve(model_dir: str | None = None, output_root: str | None = None, poll_s: float = 0.5,
          limit: int = 1, install_signal_handlers: bool = True) -> None:
    """Register ``predict-field/default``, ``generate-dataset/default`` and ``train-deeptfus/default`` and
    execute their runs until SIGINT/SIGTERM. Needs ``PREFECT_API_URL`` (a running Prefect server)."""
    prefect_environment()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll otherwise
    if not os.environ.get("PREFECT_API_URL"):
        raise ValueError("PREFECT_API_URL is not set: start a Prefect server first "
                         "(deploy/serve-local.sh starts one with tfus serve)")
    require_api(os.environ["PREFECT_API_URL"], timeout_s=30.0)  # a server started alongside gets time to come up
    serving.configure(model_dir=model_dir)  # checked before any folder is created
    # Always export the root, so that generation/training subprocesses are confined to it too.
    serving.configure(output_root_dir=output_root if output_root is not None else serving.output_root())
    server = DeploymentServer(poll_s=poll_s, limit=limit)
    _warm_up(serving.default_model())
    if install_signal_handlers:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: (server.stop.set(), server.wake.set()))
    log.info("tfus serve: output root %s, model %s, API %s", serving.output_root(),
             serving.default_model(), os.environ["PREFECT_API_URL"])
    server.run()
