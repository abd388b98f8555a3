"""T1-weighted subjects of a generation: each T1 → a pseudo-CT (a Prefect task on the cluster), cached.

The pseudo-CT of a T1 is written once into the store's subject folder (``<store>.subjects/``) under a name
made of the T1's id, the sha256 of its bytes and a hash of the pseudo-CT settings (its bone HU depend on the
generation's frequency), with its QC files beside it; a rerun (or another store sharing the folder) with the
same settings finds it there and does not recompute it, and other settings never reuse it. The subject's id
is the T1's; its content hash is the pseudo-CT's (sample keys follow the simulated image). A T1 that is not
a head T1 fails that subject's samples with the one-line reason, not the run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from tfus.flows.subjects import Subject, content_hash, expand_paths, subject_id_for, subjects_cache_dir


@task(name="pseudo-ct", retries=1, retry_delay_seconds=1, cache_policy=NO_CACHE, persist_result=False)
def pseudo_ct_task(t1_path: str, out_path: str, frequency_hz: float) -> dict:
    """``sim.mri.make_pseudo_ct`` on one T1 for ``frequency_hz`` (on a worker); returns its QC dict."""
    from tfus.sim.mri import make_pseudo_ct  # noqa: PLC0415
    from tfus.sim.pseudoct import PseudoCTConfig  # noqa: PLC0415

    return make_pseudo_ct(t1_path, out_path, config=PseudoCTConfig(frequency_hz=frequency_hz))


def settings_hash(frequency_hz: float) -> str:
    """8 hex digits of the pseudo-CT settings used for ``frequency_hz`` (their resolved values)."""
    from tfus.sim.pseudoct import PseudoCTConfig  # noqa: PLC0415

    text = json.dumps(PseudoCTConfig(frequency_hz=frequency_hz).to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def pseudo_ct_path(t1: Path, t1_hash: str, store_url: str, frequency_hz: float) -> Path:
    return subjects_cache_dir(store_url) / (f"{subject_id_for(t1)}-pct-{t1_hash[:16]}-"
                                            f"{settings_hash(frequency_hz)}.nii.gz")


def t1_subjects(runner, specs: list[str], store_url: str,
                frequency_hz: float) -> tuple[list[Subject], dict[str, dict], dict[str, str]]:
    """(subjects with their pseudo-CTs for ``frequency_hz``, per-subject table facts, failures by T1 path with
    the reason)."""
    from tfus.sim.mri import qc_paths  # noqa: PLC0415

    paths = expand_paths(specs)
    jobs = {}
    for t1 in paths:
        t1_hash = content_hash(t1)
        out = pseudo_ct_path(t1, t1_hash, store_url, frequency_hz)
        cached = out.exists() and qc_paths(out)[0].exists()  # the NIfTI is written last: complete when present
        jobs[t1] = (t1_hash, out, None if cached else runner.submit(
            pseudo_ct_task, {"t1_path": str(t1), "out_path": str(out), "frequency_hz": float(frequency_hz)}))
    subjects, facts, failed = [], {}, {}
    for t1, (t1_hash, out, future) in jobs.items():
        try:
            qc = future.result() if future is not None else json.loads(qc_paths(out)[0].read_text())
        except Exception as exc:  # noqa: BLE001 - a bad T1 fails its subject, not the run
            failed[str(t1)] = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            continue
        sid = subject_id_for(t1)
        subjects.append(Subject(sid, str(out.resolve()), content_hash(out)))
        facts[sid] = {"source": "t1", "source_t1": f"{t1.resolve()} (sha256 {t1_hash[:16]})",
                      **{k: qc.get(k) for k in ("skull_volume_ml", "skull_thickness_median_mm",
                                                "skull_thickness_p5_mm", "skull_thickness_p95_mm",
                                                "vault_enclosed_fraction")}}
    return subjects, facts, failed
