"""The ``predict-field`` flow: DeepTFUS on a CT (or a dataset sample) and a transducer placement.

The flow validates its parameters, takes the model from the process cache (:mod:`flows.serving` – loaded once
per serving process), runs the in-process prediction path of :mod:`models.predict`, writes
``pressure_pred.nii.gz`` (world affine) + ``summary.json`` under the output root, and publishes the JSON
summary as a markdown artifact (``prediction-summary``) and the output folder as a link artifact
(``prediction-output``): REST clients get flow results only as references to pickles, artifacts are plain JSON.

Bad input raises ``ValueError``/``FileNotFoundError`` with one clear line; the flow run ends Failed with that
message and the serving process carries on.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from prefect import flow

from tfus.flows import serving

log = logging.getLogger(__name__)

SUMMARY_ARTIFACT_KEY = "prediction-summary"
OUTPUT_ARTIFACT_KEY = "prediction-output"
REMOTE_SCHEMES = ("http://", "https://", "s3://", "gs://", "gcs://", "az://", "abfs://", "memory://")


def _point(value, name: str) -> tuple[float, float, float] | None:
    if value is None:
        return None
    try:
        point = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be three numbers (x, y, z) in mm, got {value!r}") from None
    if len(point) != 3 or not all(math.isfinite(v) for v in point):
        raise ValueError(f"`{name}` must be three finite numbers (x, y, z) in mm, got {value!r}")
    return point


@dataclass(frozen=True)
class PredictionRequest:
    """The flow's parameters, checked for consistency before anything is loaded."""

    ct: str | None = None
    store: str | None = None
    sample_id: str | None = None
    position_mm: tuple[float, float, float] | None = None
    target_mm: tuple[float, float, float] | None = None
    model: str | None = None
    out_dir: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "position_mm", _point(self.position_mm, "position_mm"))
        object.__setattr__(self, "target_mm", _point(self.target_mm, "target_mm"))
        if self.ct and (self.store or self.sample_id):
            raise ValueError("give either `ct` or `store` + `sample_id`, not both")
        if not self.ct and not (self.store or self.sample_id):
            raise ValueError("missing input: give `ct` (a CT path or URL) or `store` + `sample_id`")
        if not self.ct and not (self.store and self.sample_id):
            raise ValueError("`store` and `sample_id` must be given together")
        if (self.position_mm is None) != (self.target_mm is None):
            raise ValueError("`position_mm` and `target_mm` must be given together")
        if self.ct and self.position_mm is None:
            raise ValueError("`position_mm` and `target_mm` are required with `ct` "
                             "(the transducer apex and aim point, world mm)")


def fetch_ct(ct: str, scratch: Path) -> Path:
    """A local path for ``ct``: a path or ``file://`` URL as is, a remote URL copied into ``scratch``."""
    if ct.startswith(REMOTE_SCHEMES):
        import fsspec  # noqa: PLC0415

        name = Path(ct.split("?", 1)[0]).name or "ct.nii.gz"
        local = scratch / name
        try:
            with fsspec.open(ct, "rb") as src, open(local, "wb") as dst:
                dst.write(src.read())
        except (OSError, ValueError) as exc:
            raise FileNotFoundError(f"`ct` {ct}: cannot read ({exc})") from exc
        return local
    path = Path(ct.removeprefix("file://")).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"`ct` not found: {ct}")
    return path


def sample_input(store: str, sample_id: str):
    """(CT window as a ``sim`` Volume, stored position_mm, stored target_mm) of one dataset sample."""
    from tfus import storage  # noqa: PLC0415
    from tfus.sim.ingest import Volume  # noqa: PLC0415

    dataset = storage.open_dataset(store)
    table = dataset.query()
    rows = table[table["sample_id"] == sample_id]
    if rows.empty:
        raise ValueError(f"unknown `sample_id` {sample_id!r} in store {store} "
                         f"({len(table)} complete samples)")
    row = rows.iloc[0]
    sample = dataset.sample(sample_id)
    return Volume(sample.ct_hu, sample.affine), tuple(row["position_mm"]), tuple(row["target_mm"])


def run_prediction(request: PredictionRequest, default_name: str | None = None) -> dict:
    """Predict in this process with the cached model; returns the JSON-serialisable summary."""
    from tfus.models.predict import predict_from_ct  # noqa: PLC0415

    t0 = time.perf_counter()
    model_dir = request.model or serving.default_model()
    if not model_dir:
        raise ValueError("no model: pass `model` (a run directory) or start `tfus serve --model runs/NAME`")
    out = serving.confine(request.out_dir, default_name or f"prediction-{uuid.uuid4().hex[:12]}")
    loaded = serving.get_model(model_dir)
    with tempfile.TemporaryDirectory(prefix="tfus-ct-") as scratch:
        if request.ct:
            source, position, target = fetch_ct(request.ct, Path(scratch)), request.position_mm, request.target_mm
        else:
            source, position, target = sample_input(request.store, request.sample_id)
            position, target = request.position_mm or position, request.target_mm or target
        summary = predict_from_ct(loaded.predictor, source, position, target, out)
    summary.update({
        "input": {"ct": request.ct} if request.ct else {"store": request.store, "sample_id": request.sample_id},
        "out_dir": str(out), "model_dir": loaded.run_dir, "model_load_number": loaded.load_number,
        "model_loaded_at": loaded.loaded_at, "model_loads_in_process": serving.model_loads(),
        "server_pid": os.getpid(), "request_s": time.perf_counter() - t0})
    return summary


def summary_markdown(summary: dict) -> str:
    """The artifact body: one fenced JSON block (drop the first and last line to get plain JSON)."""
    return "```json\n" + json.dumps(summary, indent=2, sort_keys=True) + "\n```"


def parse_summary_markdown(text: str) -> dict:
    """Inverse of :func:`summary_markdown`."""
    lines = text.strip().splitlines()
    if len(lines) < 2 or not lines[0].startswith("```"):
        raise ValueError("artifact is not a fenced JSON block")
    return json.loads("\n".join(lines[1:-1]))


def publish(summary: dict) -> None:
    from prefect.artifacts import create_link_artifact, create_markdown_artifact  # noqa: PLC0415

    create_markdown_artifact(summary_markdown(summary), key=SUMMARY_ARTIFACT_KEY,
                             description="DeepTFUS prediction summary (JSON)")
    create_link_artifact(Path(summary["out_dir"]).as_uri(), link_text=summary["out_dir"],
                         key=OUTPUT_ARTIFACT_KEY, description="folder with pressure_pred.nii.gz and summary.json")


def _run_name() -> str | None:
    from prefect.runtime import flow_run  # noqa: PLC0415

    return f"prediction-{flow_run.id}" if flow_run.id else None


@flow(name="predict-field", persist_result=False, log_prints=False)
def predict_field(ct: str | None = None, store: str | None = None, sample_id: str | None = None,
                  position_mm: list[float] | None = None, target_mm: list[float] | None = None,
                  model: str | None = None, out_dir: str | None = None) -> dict:
    """Predict the normalised pressure field log(1 + p/max p) for a transducer placement.

    ``ct`` (path or URL of a CT) or ``store`` + ``sample_id`` (a dataset sample; its stored placement is used
    unless ``position_mm``/``target_mm`` are given); ``position_mm``/``target_mm``: apex and aim point in world
    mm; ``model``: run directory (default: the serving process's model); ``out_dir``: under the output root.
    """
    request = PredictionRequest(ct=ct, store=store, sample_id=sample_id, position_mm=position_mm,
                                target_mm=target_mm, model=model, out_dir=out_dir)
    summary = run_prediction(request, default_name=_run_name())
    publish(summary)
    return summary
