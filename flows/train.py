"""The ``train-deeptfus`` flow: a thin wrapper around :func:`models.train.train`.

Parameters are plain JSON values so that the flow can be triggered through the API. When the process has an
output root (``tfus serve``, or ``TFUS_OUTPUT_ROOT``), ``out_dir`` is confined under it like prediction
outputs; run locally without one, ``out_dir`` is used as given.
"""

from __future__ import annotations

import os
from pathlib import Path

from prefect import flow

from tfus.flows import serving


def resolve_run_dir(out_dir: str) -> Path:
    if not out_dir:
        raise ValueError("`out_dir` (the run directory, e.g. runs/NAME) is required")
    if os.environ.get(serving.OUTPUT_ROOT_ENV):
        return serving.confine(out_dir, default_name=out_dir)
    return Path(out_dir)


@flow(name="train-deeptfus", persist_result=False)
def train_model(store: str, out_dir: str, config: str = "deeptfus-tiny", epochs: int = 50,
                batch_size: int = 4, lr: float = 1e-3, device: str = "auto", num_workers: int = 0,
                model_overrides: dict | None = None, train_overrides: dict | None = None,
                progress: bool = False) -> dict:
    """Train DeepTFUS on ``store`` into ``out_dir`` (resumes a run there); returns the training summary.

    ``config``: ``deeptfus`` or ``deeptfus-tiny``; ``model_overrides``/``train_overrides``: ModelConfig /
    TrainConfig fields to replace.
    """
    from tfus.models.config import TrainConfig, get_model_config  # noqa: PLC0415
    from tfus.models.train import train  # noqa: PLC0415

    model_config = get_model_config(config, **(model_overrides or {}))
    train_config = TrainConfig.from_dict({"epochs": epochs, "batch_size": batch_size, "lr": lr, "device": device,
                                  "num_workers": num_workers, **(train_overrides or {})})
    summary = train(store, model_config, resolve_run_dir(out_dir), train_config, progress=progress)
    summary.pop("history", None)  # per-epoch rows stay in the run directory
    return summary
