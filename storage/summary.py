"""A summary of a dataset: counts per status, split and subject, failures with reasons, size on disk."""

from __future__ import annotations

from tfus.storage.dataset import open_dataset


def stats(url) -> dict:
    """JSON-serialisable summary of the store at ``url``."""
    ds = open_dataset(url)
    t = ds.table
    complete = t[t["status"] == "complete"]
    failed = t[t["status"] == "failed"]
    committed = ds.array("status")[: ds.array("key").shape[0]] if len(t) else []
    n_committed = int(sum(1 for s in committed if s == "complete"))
    return {
        "store": ds.url,
        "schema_version": ds.attrs.get("schema_version"),
        "window_shape": list(ds.spec.window_shape),
        "spacing_mm": list(ds.spec.spacing_mm),
        "n_transducer_points": ds.spec.n_transducer_points,
        "n_samples": int(len(t)),
        "status": {s: int(n) for s, n in t["status"].value_counts().sort_index().items()},
        "uncommitted_complete": int(len(complete)) - n_committed,
        "split": {s: int(n) for s, n in complete["split"].value_counts().sort_index().items()},
        "subjects": {s: int(n) for s, n in complete["subject_id"].value_counts().sort_index().items()},
        "failures": [{"sample_id": r.sample_id, "key": r.key, "reason": r.reason}
                     for r in failed.itertuples()],
        "aux": ds.aux_names(),
        "bytes": ds.loc.du(),
    }
