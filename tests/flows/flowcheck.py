"""Assertions shared by the flow tests: what a generated store and a flow run's artifacts must hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def assert_store_complete(store: Path, expected: int) -> "object":
    """Every planned sample present exactly once, complete, with finite non-zero arrays."""
    from tfus.storage import open_dataset

    ds = open_dataset(str(store))
    table = ds.table
    assert len(table) == expected, table
    assert table["key"].is_unique and table["sample_id"].is_unique
    assert (table["status"] == "complete").all(), table[["sample_id", "status", "reason"]]
    for sample_id in table["sample_id"]:
        sample = ds.sample(sample_id)
        for name in ("ct_hu", "pressure_pa"):
            arr = getattr(sample, name)
            assert np.isfinite(arr).all(), f"{sample_id}.{name} not finite"
            assert np.abs(arr).max() > 0, f"{sample_id}.{name} all zero"
        assert sample.pressure_pa.max() > 1e3  # a real field, Pa
    return table


def artifacts_of(state) -> dict[str, object]:
    """The artifacts (by key) of the flow run behind a ``return_state=True`` state."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {a.key: a for a in found}


def chunk_mtimes(store: Path, array: str = "pressure") -> dict[str, int]:
    """mtime_ns of every file of one per-sample array (to prove nothing was rewritten)."""
    store = Path(store)
    return {str(p.relative_to(store)): p.stat().st_mtime_ns for p in store.rglob("*")
            if p.is_file() and p.name != "zarr.json" and array in p.relative_to(store).parts[:-1]}
