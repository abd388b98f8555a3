"""What ``generate_dataset`` reports: the summary dict and its Prefect artifacts.

Prefect artifacts hold text only (tables, markdown, links), not binary: the preview PNG is rendered by
``storage.render_sample_png`` into ``<store>.previews/`` (next to a local store; a user cache directory for
remote stores) and the artifacts link to it with a ``file://`` URL (an image artifact and a markdown link).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

ARTIFACT_KEY = "generate-dataset"


def previews_dir(store_url: str) -> Path:
    if "://" not in store_url or store_url.startswith("file://"):
        return Path(store_url.removeprefix("file://").rstrip("/") + ".previews")
    tag = hashlib.sha256(store_url.encode()).hexdigest()[:16]
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "tfus" / "previews" / tag


def sample_rows(samples, skipped: set[str]) -> list[dict]:
    """One row per planned sample: status, runtime, reason (the table artifact)."""
    rows = []
    for s in samples:
        status = "skipped" if s.key in skipped else "failed" if s.failed_reason else "done"
        rows.append({"sample_id": s.sample_id, "subject_id": s.subject.subject_id, "split": s.split,
                     "status": status, "attempts": s.attempts,
                     "runtime_s": round(s.result.get("runtime_s", 0.0), 3) if s.result else None,
                     "sim_runtime_s": round(s.result.get("sim_runtime_s", 0.0), 3) if s.result else None,
                     "peak_pressure_pa": s.result.get("peak_pressure_pa") if s.result else None,
                     "worker_pid": s.result.get("worker_pid") if s.result else None,
                     "reason": s.failed_reason or ""})
    return rows


def summarise(store_url: str, rows: list[dict], wall_s: float) -> dict:
    done = [r for r in rows if r["status"] == "done"]
    runtimes = [r["runtime_s"] for r in done if r["runtime_s"] is not None]
    return {
        "store": store_url, "planned": len(rows), "done": len(done),
        "skipped": sum(r["status"] == "skipped" for r in rows),
        "failed": sum(r["status"] == "failed" for r in rows),
        "failures": [{"sample_id": r["sample_id"], "subject_id": r["subject_id"], "reason": r["reason"]}
                     for r in rows if r["status"] == "failed"],
        "runtime_s_per_sample": (sum(runtimes) / len(runtimes)) if runtimes else None,
        "wall_s": round(wall_s, 3), "preview_png": None, "samples": rows,
    }


def render_preview(store_url: str, rows: list[dict]) -> str | None:
    """``storage.render_sample_png`` of the first completed sample; None when there is none."""
    candidates = [r for r in rows if r["status"] in ("done", "skipped")]
    if not candidates:
        return None
    from tfus.storage import render_sample_png  # noqa: PLC0415

    sample_id = candidates[0]["sample_id"]
    out = previews_dir(store_url)
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"{sample_id}.png"
    try:
        render_sample_png(store_url, sample_id, png)
    except Exception as exc:  # noqa: BLE001 - a preview must not fail a finished generation
        log.warning("preview of %s not rendered: %s", sample_id, exc)
        return None
    return str(png.resolve())


def publish(summary: dict) -> None:
    """Table artifact (counts, per-sample rows with runtimes and reasons) and a markdown preview."""
    from prefect.artifacts import (  # noqa: PLC0415
        create_image_artifact, create_markdown_artifact, create_table_artifact)

    counts = f"done {summary['done']}, skipped {summary['skipped']}, failed {summary['failed']}"
    create_table_artifact(table=summary["samples"], key=ARTIFACT_KEY,
                          description=f"{summary['store']}: {counts} of {summary['planned']} samples")
    lines = [f"# Dataset generation: {summary['store']}", "",
             "| planned | done | skipped | failed | mean runtime per sample (s) | wall (s) |",
             "|---|---|---|---|---|---|",
             f"| {summary['planned']} | {summary['done']} | {summary['skipped']} | {summary['failed']} | "
             f"{_fmt(summary['runtime_s_per_sample'])} | {summary['wall_s']} |", ""]
    if summary["failures"]:
        lines += ["## Failures", ""] + [f"- `{f['sample_id']}`: {f['reason']}" for f in summary["failures"]]
        lines.append("")
    png = summary.get("preview_png")
    if png:
        uri = Path(png).as_uri()
        lines += ["## Preview", "", f"Rendered by `storage.render_sample_png` (artifacts cannot hold binary): "
                  f"[{Path(png).name}]({uri})", "", f"![preview]({uri})"]
        create_image_artifact(image_url=uri, key=f"{ARTIFACT_KEY}-preview", description=f"preview: {png}")
    create_markdown_artifact(markdown="\n".join(lines), key=f"{ARTIFACT_KEY}-report", description=counts)


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.2f}"
