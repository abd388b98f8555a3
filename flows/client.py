"""A thin client of the served deployments: trigger ``predict-field/default``, wait, read the summary artifact.

Uses only the public Prefect client (``run_deployment`` and the artifact API), the same calls a user's own
Python makes; no tfus code runs on the caller's side besides parameter packing.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

PREDICT_DEPLOYMENT = "predict-field/default"


class RunFailed(Exception):
    """The flow run ended in a state other than Completed (message: the run's own message)."""


def prediction_parameters(ct=None, position_mm=None, target_mm=None, store=None, sample_id=None,
                          model=None, out_dir=None) -> dict:
    """The ``predict_field`` parameters that are set (unset ones take the deployment's defaults)."""
    params = {"ct": ct, "store": store, "sample_id": sample_id, "model": model, "out_dir": out_dir,
              "position_mm": list(position_mm) if position_mm is not None else None,
              "target_mm": list(target_mm) if target_mm is not None else None}
    return {k: v for k, v in params.items() if v is not None}


def read_summary(flow_run_id) -> dict:
    """The JSON summary a ``predict-field`` run published as its ``prediction-summary`` artifact."""
    from prefect.client.orchestration import get_client  # noqa: PLC0415
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey  # noqa: PLC0415

    from tfus.flows.predict import SUMMARY_ARTIFACT_KEY, parse_summary_markdown  # noqa: PLC0415

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            key=ArtifactFilterKey(any_=[SUMMARY_ARTIFACT_KEY])))
    if not artifacts:
        raise RunFailed(f"flow run {flow_run_id} completed but published no {SUMMARY_ARTIFACT_KEY} artifact")
    return parse_summary_markdown(artifacts[0].data)


def wait_for_deployment(name: str = PREDICT_DEPLOYMENT, timeout_s: float = 120.0, proc=None) -> None:
    """Block until ``name`` is registered (``tfus serve`` registers after loading its model)."""
    import time  # noqa: PLC0415

    from prefect.client.orchestration import get_client  # noqa: PLC0415
    from prefect.exceptions import ObjectNotFound  # noqa: PLC0415

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            try:
                client.read_deployment_by_name(name)
                return
            except ObjectNotFound:
                if proc is not None and proc.poll() is not None:
                    raise RunFailed(f"the serving process exited with code {proc.returncode}") from None
                if time.monotonic() > deadline:
                    raise RunFailed(f"deployment {name} not registered after {timeout_s:g} s") from None
                time.sleep(0.5)


def run_and_wait(deployment: str, parameters: dict, timeout_s: float = 300.0, poll_s: float = 0.2):
    """Create a flow run of ``deployment``, wait for a final state; RunFailed unless it Completed."""
    from prefect.deployments import run_deployment  # noqa: PLC0415
    from prefect.exceptions import ObjectNotFound  # noqa: PLC0415

    try:
        flow_run = run_deployment(name=deployment, parameters=parameters, timeout=timeout_s,
                                  poll_interval=poll_s, as_subflow=False)
    except ObjectNotFound:
        raise RunFailed(f"deployment {deployment} is not registered with this Prefect API: "
                        "is `tfus serve` running against it?") from None
    state = flow_run.state
    if state is None or not state.is_final():
        raise RunFailed(f"flow run {flow_run.name} ({flow_run.id}) did not finish within {timeout_s:g} s "
                        f"(state {state.type.value if state else 'unknown'})")
    if not state.is_completed():
        raise RunFailed(f"flow run {flow_run.name} ({flow_run.id}) ended {state.type.value}: {state.message}")
    return flow_run


def request_prediction(parameters: dict, timeout_s: float = 300.0, poll_s: float = 0.2) -> dict:
    """Run ``predict-field/default`` with ``parameters`` and return its summary (RunFailed on failure)."""
    flow_run = run_and_wait(PREDICT_DEPLOYMENT, parameters, timeout_s, poll_s)
    return {**read_summary(flow_run.id), "flow_run_id": str(flow_run.id)}
