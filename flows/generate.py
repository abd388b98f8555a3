"""The ``generate_dataset`` flow: subjects × placements → k-Wave simulations on Dask → the Zarr dataset.

Order of work (nothing is simulated before everything that can be checked has been checked):
1. validate: subjects readable, simulation config valid, memory estimate fits a worker, store writable;
2. plan: placements per subject (a task each, seeded), subject-disjoint split, sample keys; reserve the
   rows in the store (this process only) and skip samples already complete;
3. run: one Prefect task per sample through ``DaskTaskRunner``; the task simulates and writes its own
   sample to Zarr and returns a small dict (arrays never travel back);
4. failures: a deterministic error (bad CT, bad config) fails its sample once, recorded with its reason;
   a dead worker is an infrastructure fault: Dask reschedules the task (``allowed-failures``), and if
   Dask gives up (``KilledWorker``) or the connection drops, the flow resubmits it;
5. report: ``commit()`` the store, publish a table artifact and a markdown preview, return a summary.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tfus.flows import generate_report as report
from tfus.flows.runtime import configure_dask, prefect_environment
from tfus.flows.subjects import (Subject, assign_splits, check_fractions, describe_split, placement_seed,
                                 resolve_subjects, sample_key)

prefect_environment()
log = logging.getLogger(__name__)

MAX_INFRA_RESUBMITS = 3
DEFAULT_WORKERS = 2


def is_infrastructure_error(exc: BaseException) -> bool:
    """True for faults of the machinery (worker/connection/IO), never for deterministic input errors."""
    from distributed import KilledWorker  # noqa: PLC0415
    from distributed.comm.core import CommClosedError  # noqa: PLC0415

    if isinstance(exc, (ValueError, TypeError, KeyError, FileNotFoundError, NotADirectoryError,
                        PermissionError, ArithmeticError, AssertionError, NotImplementedError)):
        return False
    return isinstance(exc, (KilledWorker, CommClosedError, ConnectionError, TimeoutError, OSError,
                            MemoryError))


def _retry_on_infrastructure(task_, task_run, state) -> bool:
    """Prefect ``retry_condition_fn``: retry only infrastructure faults raised inside the task."""
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - the state's exception is what we classify
        return is_infrastructure_error(exc)
    return False


# --- tasks: one library call each ---------------------------------------------------------------------
@task(name="plan-placements", retries=2, retry_delay_seconds=1, retry_condition_fn=_retry_on_infrastructure,
      cache_policy=NO_CACHE, persist_result=False)
def plan_subject(subject_path: str, n_placements: int, seed: int, config) -> list[dict]:
    """``sim.plan_placements`` on one CT (loaded here, on the worker)."""
    from tfus.sim import load_volume, plan_placements  # noqa: PLC0415

    placements = plan_placements(load_volume(subject_path), n_placements, seed, config)
    return [p.to_dict() for p in placements]


@task(name="simulate-sample", retries=2, retry_delay_seconds=1, retry_condition_fn=_retry_on_infrastructure,
      cache_policy=NO_CACHE, persist_result=False)
def simulate_sample(store_url: str, key: str, subject_path: str, position_mm, target_mm, config) -> dict:
    """``sim.simulate`` one placement and ``storage.write_sample`` it (the window's transducer points and
    their ring drive, so that a steered array is in the sample); returns a small dict."""
    from tfus.sim import simulate  # noqa: PLC0415
    from tfus.storage import write_sample  # noqa: PLC0415

    started = time.perf_counter()
    result = simulate(subject_path, position_mm, target_mm, config, progress=False)
    summary = result.summary
    written = write_sample(store_url, key, ct_hu=result.window.ct_hu, pressure_pa=result.pressure_pa,
                           affine=result.window.affine, transducer_points=result.window.transducer_points_vox,
                           transducer_drive=result.window.transducer_drive, meta={"focal_point_mm": summary["focal_point_mm"],
                                 "peak_pressure_pa": summary["peak_pressure_pa"],
                                 "runtime_s": summary["runtime_s"], "summary": summary})
    return {"key": key, "written": bool(written), "runtime_s": time.perf_counter() - started,
            "sim_runtime_s": float(summary["runtime_s"]), "peak_pressure_pa": float(summary["peak_pressure_pa"]),
            "worker_pid": os.getpid()}


# --- planning -----------------------------------------------------------------------------------------
@dataclass
class PlannedSample:
    key: str
    sample_id: str
    subject: Subject
    split: str
    position_mm: list[float]
    target_mm: list[float]
    failed_reason: str | None = None   # set when the subject could not be planned
    focal_distance_mm: float | None = None  # an array aimed at a planned target: its steering distance
    attempts: int = 0
    result: dict = field(default_factory=dict)


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _subject_samples(subject: Subject, split: str, placements: list[dict] | None, n: int, config_key: str,
                     reason: str | None) -> list[PlannedSample]:
    out = []
    for i in range(n):
        if placements is None:  # unplannable subject: keys from the content, rows marked failed
            pos = tgt = [0.0, 0.0, 0.0]
            key = sample_key(subject.content_hash, i, pos, tgt, config_key + ":unplanned")
        else:
            pos, tgt = placements[i]["position_mm"], placements[i]["target_mm"]
            focal = placements[i].get("focal_distance_mm")
            key = sample_key(subject.content_hash, i, pos, tgt,
                             config_key if focal is None else f"{config_key}:focal={float(focal):.6f}")
        out.append(PlannedSample(key, f"{subject.subject_id}-p{i:03d}-{key[:8]}", subject, split, pos, tgt,
                                 failed_reason=reason,
                                 focal_distance_mm=None if placements is None else focal))
    return out


def plan_samples(runner, subjects: list[Subject], n_placements: int, seed: int, config,
                 splits: dict[str, str]) -> list[PlannedSample]:
    """Placements for every subject (in parallel on the cluster) and the sample keys; ``splits``: the
    subject-disjoint split (:func:`plan_splits`)."""
    futures = [runner.submit(plan_subject, {"subject_path": s.path, "n_placements": n_placements,
                                            "seed": placement_seed(seed, s.content_hash), "config": config})
               for s in subjects]
    samples: list[PlannedSample] = []
    for subject, future in zip(subjects, futures):
        try:
            placements, reason = future.result(), None
            if len(placements) != n_placements:
                placements, reason = None, f"planned {len(placements)} placements, expected {n_placements}"
        except Exception as exc:  # noqa: BLE001 - a bad subject fails its samples, not the run
            placements, reason = None, f"subject {subject.subject_id} ({subject.path}): {_error_text(exc)}"
        samples += _subject_samples(subject, splits[subject.subject_id], placements, n_placements,
                                    config.key(), reason)
    return samples


def plan_splits(dataset, subjects: list[Subject], fractions, seed: int) -> dict[str, str]:
    """Each subject's split: the one it already has in the store, else :func:`flows.subjects.assign_splits`;
    logged before anything is simulated (with what fewer than 3 subjects mean for training)."""
    table = dataset.query(status=None)
    recorded = dict(zip(table["subject_id"], table["split"])) if len(table) else {}
    splits = assign_splits([s.subject_id for s in subjects], fractions, seed, recorded)
    logger = get_run_logger()
    logger.info("split: %s", describe_split(splits))
    if 0 < len(subjects) < 3:
        logger.warning("only %d subject(s): some splits are empty (%s); `tfus train --no-val` trains without "
                       "validation, and 3 or more subjects give every split one", len(subjects),
                       describe_split(splits))
    return splits


# --- running ------------------------------------------------------------------------------------------
def sample_config(s: PlannedSample, config):
    """The run's config, with the sample's own steering distance where planning chose one."""
    if s.focal_distance_mm is None:
        return config
    return config.replace(transducer=dataclasses.replace(config.transducer, focal_distance_mm=float(s.focal_distance_mm)))


def _sample_params(s: PlannedSample, store_url: str, config) -> dict:
    return {"store_url": store_url, "key": s.key, "subject_path": s.subject.path,
            "position_mm": s.position_mm, "target_mm": s.target_mm, "config": sample_config(s, config)}


def run_samples(runner, samples: list[PlannedSample], store_url: str, config, progress: bool = False) -> None:
    """Submit every sample, collect results as they complete; resubmit after infrastructure faults."""
    from distributed import as_completed  # noqa: PLC0415
    from tqdm.auto import tqdm  # noqa: PLC0415

    pending: dict = {}

    def submit(s: PlannedSample):
        s.attempts += 1
        future = runner.submit(simulate_sample, _sample_params(s, store_url, config))
        pending[future.wrapped_future.key] = (s, future)
        return future.wrapped_future

    queue = as_completed([submit(s) for s in samples], loop=runner.client.loop)
    with tqdm(total=len(samples), desc="samples", unit="sample", disable=not progress) as bar:
        for dask_future in queue:
            s, future = pending.pop(dask_future.key)
            try:
                s.result = future.result()
            except Exception as exc:  # noqa: BLE001 - classified below
                if is_infrastructure_error(exc) and s.attempts <= MAX_INFRA_RESUBMITS:
                    log.warning("sample %s: %s; resubmitting", s.sample_id, _error_text(exc))
                    queue.add(submit(s))
                    continue
                s.failed_reason = _error_text(exc)
            bar.set_postfix_str(f"failed {sum(1 for x in samples if x.failed_reason)}", refresh=False)
            bar.update(1)


def make_runner(workers: int | None, dask_address: str | None, local_directory: str | None = None,
                slurm=None, needed_bytes: int = 0):
    """A DaskTaskRunner on an existing scheduler, on SLURM jobs (``slurm``: ``flows.slurm.SlurmOptions``;
    adaptive from 0 to ``max_jobs`` workers, released at the end), or on a LocalCluster with tfus's Dask
    settings."""
    from prefect_dask import DaskTaskRunner  # noqa: PLC0415

    from tfus.flows.runtime import local_cluster  # noqa: PLC0415

    configure_dask()  # also in this process: the scheduler of a LocalCluster lives here
    if dask_address:
        return DaskTaskRunner(address=dask_address)
    if slurm is not None:
        from tfus.flows.slurm import cluster_kwargs  # noqa: PLC0415

        return DaskTaskRunner(cluster_class="dask_jobqueue.SLURMCluster",
                              cluster_kwargs=cluster_kwargs(slurm, needed_bytes),
                              adapt_kwargs={"minimum": 0, "maximum": int(slurm.max_jobs)})
    return DaskTaskRunner(cluster_class=local_cluster,
                          cluster_kwargs={"n_workers": int(workers), "local_directory": local_directory})


def _prepare(subjects, store: str, placements: int, preset: str, seed: int, split, workers, dask_address,
             phantom_options, slurm=None, grid: str | None = None):
    """Every check before compute, then the store's lease; returns (config, subjects, dataset, lease)."""
    from tfus.flows import generate_checks as checks  # noqa: PLC0415
    from tfus.storage import DatasetSpec, acquire_lease, create_dataset  # noqa: PLC0415

    checks.check_counts(placements, workers, dask_address, slurm)
    check_fractions(split)
    config = checks.load_config(preset)
    if grid is not None:
        config = config.replace(grid=grid)
    checks.check_store_writable(store)
    needed = checks.check_memory(config, workers, dask_address)  # on an existing cluster: its workers, once
    if slurm is not None:
        slurm.memory_bytes(needed)  # a --slurm-memory below one simulation's estimate fails here
    phantom_kwargs = {"spacing_mm": config.spacing_mm, **(phantom_options or {})}
    resolved = resolve_subjects(subjects, store, seed, phantom_kwargs) if subjects else []
    spec = DatasetSpec(window_shape=tuple(config.window_shape), spacing_mm=config.spacing_mm,
                       n_transducer_points=config.n_transducer_points)
    lease = acquire_lease(store, label="tfus generate")  # one coordinating run per store (StoreBusy otherwise)
    try:
        checks.check_grid(store, config.grid)  # before anything is written to the store
        dataset = create_dataset(store, spec, {"sim_config": config.to_dict(), "grid": config.grid})
    except BaseException:
        lease.release()
        raise
    return config, resolved, dataset, lease, needed


def _reserve(dataset, samples: list[PlannedSample], config) -> set[str]:
    """Reserve rows for every planned sample; returns the keys already complete."""
    import json  # noqa: PLC0415

    from tfus.storage import SampleRecord  # noqa: PLC0415

    records, described = [], {}
    for s in samples:
        cfg = sample_config(s, config)
        tr = cfg.transducer
        if tr.focal_distance_mm not in described:  # the steering phases once per distance, not per sample
            described[tr.focal_distance_mm] = (json.dumps(cfg.to_dict(), sort_keys=True),
                                               tr.ring_phases() if tr.is_array else ())
        config_json, phases = described[tr.focal_distance_mm]
        records.append(SampleRecord(s.key, s.sample_id, s.subject.subject_id, s.split, tuple(s.position_mm),
                                    tuple(s.target_mm), tr.frequency_hz, config_json, transducer=tr.name,
                                    focal_distance_mm=tr.focal_distance_mm or float("nan"),
                                    ring_phases_rad=phases))
    dataset.reserve(records)
    return dataset.refresh().complete_keys() & {s.key for s in samples}


@flow(name="generate-dataset", validate_parameters=False)
def generate_dataset(subjects: str | list[str], store: str, placements: int = 4, preset: str = "demo",
                     seed: int = 0, split: tuple[float, float, float] = (0.7, 0.15, 0.15),
                     workers: int | None = None, dask_address: str | None = None, progress: bool = False,
                     phantom_options: dict | None = None, slurm: dict | None = None,
                     subjects_t1: str | list[str] | None = None, grid: str | None = None) -> dict:
    """Simulate ``placements`` transducer placements for each subject into the dataset at ``store``.

    ``subjects``: ``"phantom:N"``, a CT path or glob, or a list of those (or None with ``subjects_t1``);
    ``subjects_t1``: T1-weighted MRIs (paths/globs), each turned into a pseudo-CT first. ``preset``: a preset name or a
    config file. Runs on the scheduler at ``dask_address``, else on a LocalCluster of ``workers`` processes
    (neither given: ``$TFUS_DASK_ADDRESS`` if set, else 2 local workers), or on SLURM jobs (``slurm``: the
    fields of ``flows.slurm.SlurmOptions``, e.g. ``{"partition": "gpu", "max_jobs": 8}``).
    Returns the summary (counts, failures with reasons, per-sample rows); see ``generate_report``.
    """
    started = time.perf_counter()
    logger = get_run_logger()
    store = str(store)
    slurm_options = None
    if slurm is not None:
        from tfus.flows.slurm import SlurmOptions  # noqa: PLC0415

        if dask_address or workers:
            raise ValueError("`slurm` starts its own workers: give it without `workers` / `dask_address`")
        slurm_options = slurm if isinstance(slurm, SlurmOptions) else SlurmOptions(**slurm)
    elif dask_address is None and workers is None:  # TFUS_DASK_ADDRESS: set by deploy/start-local.sh's env.sh
        dask_address = os.environ.get("TFUS_DASK_ADDRESS") or None
        workers = None if dask_address else DEFAULT_WORKERS
    if subjects_t1:
        from tfus.flows.subjects import expand_paths  # noqa: PLC0415

        expand_paths([subjects_t1] if isinstance(subjects_t1, str) else list(subjects_t1))  # missing files: now
    elif not subjects:
        raise ValueError("subjects: none given (phantom:N, CT paths/globs, or subjects_t1)")
    config, resolved, dataset, lease, needed = _prepare(subjects, store, placements, preset, seed, split,
                                                        workers, dask_address, phantom_options, slurm_options,
                                                        grid)
    with lease:
        logger.info("%d subjects × %d placements, preset %s, store %s", len(resolved), placements,
                    config.preset, store)
        with make_runner(workers, dask_address, slurm=slurm_options, needed_bytes=needed) as runner:
            if subjects_t1:
                from tfus.flows.mri_subjects import t1_subjects  # noqa: PLC0415

                mri, facts, bad = t1_subjects(runner, [subjects_t1] if isinstance(subjects_t1, str) else
                                              list(subjects_t1), store, config.transducer.frequency_hz)
                if bad:  # input that is not a head T1 stops the run before anything is simulated
                    raise ValueError(next(iter(bad.values())))
                dataset.record_subjects(facts)
                resolved = resolved + mri
            samples = plan_samples(runner, resolved, placements, seed, config,
                                   plan_splits(dataset, resolved, split, seed))
            lease.check()
            done_before = _reserve(dataset, samples, config)
            todo = [s for s in samples if s.key not in done_before and not s.failed_reason]
            logger.info("%d samples planned, %d already complete, %d to run", len(samples), len(done_before),
                        len(todo))
            run_samples(runner, todo, store, config, progress)
        lease.check()
        return _finish(dataset, samples, done_before, store, started)


def _finish(dataset, samples: list[PlannedSample], done_before: set[str], store: str, started: float) -> dict:
    for s in samples:
        if s.failed_reason and s.key not in done_before:
            dataset.mark_failed(s.key, s.failed_reason)
    dataset.commit()
    rows = report.sample_rows(samples, done_before)
    summary = report.summarise(store, rows, time.perf_counter() - started)
    summary["preview_png"] = report.render_preview(store, rows)
    report.publish(summary)
    if summary["failed"]:
        get_run_logger().error("%d of %d samples failed: %s", summary["failed"], summary["planned"],
                               "; ".join(f"{f['sample_id']}: {f['reason']}" for f in summary["failures"]))
    return summary
