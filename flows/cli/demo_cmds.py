"""`tfus demo`: the main job end to end (what `make demo` runs)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the whole service in miniature and write a report",
                       description="Synthetic heads → dataset generation (Prefect + Dask) → query → training → "
                                   "evaluation → a prediction through the flow API → report.md.")
    p.add_argument("--out", default="demo", help="output directory (default: demo)")
    p.add_argument("--subjects", type=int, default=4, help="synthetic heads (default 4)")
    p.add_argument("--placements", type=int, default=2, help="placements per head (default 2)")
    p.add_argument("--preset", default="demo", help="simulation preset (default demo)")
    p.add_argument("--workers", type=int, default=2, help="Dask workers (default 2)")
    p.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-prior", action="store_true",
                   help="train the network without the free-field prior (it then starts from nothing)")
    p.set_defaults(handler=_run)


def _run(args) -> int:
    from tfus.flows.demo import DemoConfig, run_demo  # noqa: PLC0415

    cfg = DemoConfig(out_dir=args.out, subjects=args.subjects, placements=args.placements, preset=args.preset,
                     workers=args.workers, epochs=args.epochs, seed=args.seed,
                     prior=not args.no_prior)
    report = run_demo(cfg)
    print(f"\nreport: {report}")
    return 0
