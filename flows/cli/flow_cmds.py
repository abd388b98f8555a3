"""`tfus generate`: the dataset-generation flow from the command line."""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "generate", help="simulate subjects × placements into a Zarr dataset (Prefect flow on Dask)",
        description="Plan placements for every subject, run one k-Wave simulation per sample on a Dask "
                    "cluster and write them to the dataset. Samples already complete are skipped. Starts a "
                    "Prefect server on 127.0.0.1 for the run when PREFECT_API_URL is unset. Exit status 1 "
                    "when any sample failed, 2 for bad input.")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--phantoms", type=int, metavar="N", help="N synthetic heads (written next to the store)")
    who.add_argument("--subjects", nargs="+", metavar="PATH_OR_GLOB",
                     help="CT files/folders or globs (quote globs: 'heads/*.nii.gz')")
    p.add_argument("--subjects-t1", nargs="+", metavar="PATH_OR_GLOB",
                   help="T1-weighted MRIs or globs: each becomes a pseudo-CT (cached next to the store) first; "
                        "alone or besides --phantoms / --subjects")
    p.add_argument("--placements", type=int, default=4, help="transducer placements per subject (default 4)")
    cfg = p.add_mutually_exclusive_group()
    cfg.add_argument("--preset", default="demo", help="simulation preset: test, small, demo, tfuscapes (default demo)")
    cfg.add_argument("--config", metavar="FILE", help="simulation config file (YAML/JSON SimConfig fields)")
    p.add_argument("--store", required=True, help="dataset path or URL (e.g. data/demo.zarr, s3://bucket/x.zarr)")
    run = p.add_mutually_exclusive_group()
    run.add_argument("--workers", type=int, default=None,
                     help="local Dask worker processes (default 2, or $TFUS_DASK_ADDRESS's cluster when set)")
    run.add_argument("--dask-address", metavar="tcp://HOST:PORT", help="use an existing Dask scheduler")
    run.add_argument("--cluster", choices=("local", "slurm"), default=None,
                     help="slurm: Dask workers as SLURM jobs (dask-jobqueue), scaled to the work, released at "
                          "the end; needs sbatch on PATH (deploy/slurm/test-cluster.sh: a test cluster)")
    sl = p.add_argument_group("SLURM (with --cluster slurm)")
    sl.add_argument("--slurm-partition", help="partition (default: the site's default)")
    sl.add_argument("--slurm-account", help="account to charge, where the site needs one")
    sl.add_argument("--slurm-walltime", default="04:00:00", help="per job, [D-]HH:MM:SS (default 04:00:00)")
    sl.add_argument("--slurm-memory", help="per job, e.g. 8GiB (default: one simulation's estimate + 1 GiB)")
    sl.add_argument("--slurm-log-dir", default="slurm-logs", help="the jobs' output files (default slurm-logs/)")
    sl.add_argument("--max-jobs", type=int, default=4, help="SLURM worker jobs at once (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed for phantoms, placements and split (default 0)")
    p.add_argument("--split", type=float, nargs=3, default=(0.7, 0.15, 0.15), metavar=("TRAIN", "VAL", "TEST"),
                   help="subject-disjoint split fractions (default 0.7 0.15 0.15)")
    p.add_argument("--grid", choices=("beam", "subject"), default=None,
                   help="beam: a window centred on each beam; subject: one fixed window per subject with the "
                        "transducer moving inside it, as in TFUScapes (default: the preset's; `subject` preset: subject)")
    p.add_argument("--phantom-scale", type=float, default=None, help="phantom head size factor (default 1)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_generate)


def _generate(args) -> int:
    from tfus.flows.runtime import local_prefect_server  # noqa: PLC0415

    subjects = f"phantom:{args.phantoms}" if args.phantoms is not None else args.subjects
    subjects_t1 = getattr(args, "subjects_t1", None)
    if not subjects and not subjects_t1:
        raise ValueError("tfus generate: give the subjects: --phantoms N, --subjects CT..., and/or --subjects-t1 T1...")
    if args.phantoms is not None and args.phantoms < 1:
        raise ValueError(f"--phantoms must be >= 1, got {args.phantoms}")
    phantom_options = {"scale": args.phantom_scale} if args.phantom_scale else None
    slurm = None
    if args.cluster == "slurm":
        import shutil  # noqa: PLC0415

        from tfus.flows.slurm import SlurmOptions  # noqa: PLC0415

        slurm = SlurmOptions(partition=args.slurm_partition, account=args.slurm_account,
                             walltime=args.slurm_walltime, memory=args.slurm_memory, max_jobs=args.max_jobs,
                             log_directory=args.slurm_log_dir)
        if shutil.which("sbatch") is None:
            raise ValueError("--cluster slurm needs SLURM's sbatch on PATH (run on a login node, or start "
                             "deploy/slurm/test-cluster.sh and eval its `env`)")
    with local_prefect_server():  # also points an already-imported prefect at the chosen server
        from tfus.flows.generate import generate_dataset  # noqa: PLC0415

        summary = generate_dataset(
            subjects=subjects, store=args.store, placements=args.placements, preset=args.config or args.preset,
            seed=args.seed, split=tuple(args.split), workers=args.workers, dask_address=args.dask_address,
            progress=not args.no_progress, phantom_options=phantom_options, slurm=slurm, subjects_t1=subjects_t1,
            grid=args.grid)
    _print(summary, args.json)
    return 1 if summary["failed"] else 0


def _print(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps({k: v for k, v in summary.items()}, indent=2, default=str))
        return
    print(f"{summary['store']}: {summary['done']} done, {summary['skipped']} skipped, "
          f"{summary['failed']} failed of {summary['planned']} samples ({summary['wall_s']:.1f} s)")
    for failure in summary["failures"]:
        print(f"  failed {failure['sample_id']}: {failure['reason']}", file=sys.stderr)
    if summary.get("preview_png"):
        print(f"preview: {summary['preview_png']}")
