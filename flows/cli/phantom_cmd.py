"""`tfus phantom` (a synthetic CT-like head) and `tfus plan` (scalp placements for a CT, as JSON).

``register_phantom(subparsers)`` is called by ``flows/cli/sim_cmds.py``'s ``register``.
"""

from __future__ import annotations

import argparse
import json


def register_phantom(subparsers) -> None:
    p = subparsers.add_parser("phantom", help="write a synthetic CT-like head (NIfTI), deterministic from a seed")
    p.add_argument("--seed", type=int, required=True, help="random seed (non-negative integer)")
    p.add_argument("--out", required=True, help="output .nii or .nii.gz")
    p.add_argument("--spacing-mm", type=float, default=1.0, help="voxel size in mm (default 1.0)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="head size relative to an adult (~150x180x160 mm); layer thicknesses stay adult")
    p.set_defaults(handler=_phantom)

    q = subparsers.add_parser("plan", help="plan transducer placements on a CT's scalp (prints JSON); with "
                              "--optimize, rank candidate placements for a target by a trained model")
    q.add_argument("--ct", required=True, help="CT: .nii/.nii.gz/.mha/.nrrd or a DICOM folder")
    q.add_argument("--n", type=int, help="number of placements (without --optimize)")
    q.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    q.add_argument("--preset", help="preset name or YAML/JSON config file (default demo); with --optimize the "
                                    "model's own config is used and a preset of another frequency or window is refused")
    q.add_argument("--target", type=float, nargs=3, action="append", metavar=("X", "Y", "Z"),
                   help="aim at this world target (mm); repeat for several; default: along the scalp normal")
    q.add_argument("--transducer", help="a named transducer (ctx250, ctx500, ...) or a YAML file; an annular "
                                        "array sits on its exit plane and gets the focal distance to --target")
    q.add_argument("--focal-distance-mm", type=float,
                   help="annular arrays without --target: steer this far past the exit plane")
    o = q.add_argument_group("--optimize: placements chosen by the model for one --target")
    o.add_argument("--optimize", action="store_true",
                   help="score --candidates placements aimed at --target with --model and rank them by predicted "
                        "pressure at the target")
    o.add_argument("--model", help="run directory with a pressure head (tfus train + tfus train-peak)")
    o.add_argument("--candidates", type=int, default=32, help="candidate placements to score (default 32)")
    o.add_argument("--verify", type=int, default=0, help="simulate the top K with k-Wave (default 0)")
    o.add_argument("--max-tilt-deg", type=float, default=20.0,
                   help="largest angle between beam axis and scalp normal (default 20)")
    o.add_argument("--frequency-hz", type=float, help="refuse a model trained at another frequency")
    o.add_argument("--out", help="output folder (ranking.csv, plan.json, ranking.png, pick_pressure_pa.nii.gz)")
    q.set_defaults(handler=_plan)


def _phantom(args: argparse.Namespace) -> int:
    from tfus.sim.phantom import make_phantom  # noqa: PLC0415
    from tfus.sim.ingest import save_nifti  # noqa: PLC0415

    if not str(args.out).lower().endswith((".nii", ".nii.gz")):
        raise ValueError(f"--out {args.out}: must end in .nii or .nii.gz")
    volume = make_phantom(args.seed, spacing_mm=args.spacing_mm, scale=args.scale)
    path = save_nifti(volume.hu, volume.affine, args.out)
    lo, hi = volume.corners_mm().min(axis=0), volume.corners_mm().max(axis=0)
    print(f"{path}: shape {volume.shape}, spacing {args.spacing_mm} mm, "
          f"extent {lo.round(1).tolist()} .. {hi.round(1).tolist()} mm")
    return 0


def _optimize(args: argparse.Namespace) -> int:
    from tfus.flows.plan_placement import PlanRequest, plan  # noqa: PLC0415

    if not args.target or len(args.target) != 1:
        raise ValueError("--optimize needs exactly one --target X Y Z (world mm)")
    if not args.model:
        raise ValueError("--optimize needs --model RUN (a run directory with a pressure head)")
    if args.transducer or args.focal_distance_mm is not None or args.n is not None:
        raise ValueError("--optimize uses the model's transducer and configuration; drop --transducer, "
                         "--focal-distance-mm and --n")
    frequency, window = args.frequency_hz, None
    if args.preset:  # what the user asks for: the model must have been trained on it
        from tfus.sim.config import load_sim_config  # noqa: PLC0415
        asked = load_sim_config(args.preset)
        frequency = frequency or asked.transducer.frequency_hz
        window = asked.window_shape
    request = PlanRequest(ct=args.ct, target_mm=tuple(args.target[0]), model=args.model, candidates=args.candidates,
                          verify=args.verify, seed=args.seed, max_tilt_deg=args.max_tilt_deg,
                          frequency_hz=frequency, window_shape=window, out_dir=args.out)
    summary = plan(request, progress=args.verify > 0)
    print(f"{'rank':>4} {'position (mm)':>24} {'tilt':>5} {'pred kPa@target':>15} {'focus-target mm':>15} {'MI':>6}"
          + (f" {'sim kPa@target':>14} {'sim focus mm':>12}" if args.verify else ""))
    for r in summary["rows"]:
        pos = " ".join(f"{v:7.1f}" for v in r["position_mm"])
        line = (f"{r['rank']:>4} {pos:>24} {r['tilt_deg']:5.1f} {r['pressure_at_target_pa'] / 1e3:15.1f} "
                f"{r['focus_distance_mm']:15.1f} {r['mechanical_index']:6.3f}")
        if r.get("sim_pressure_at_target_pa") is not None:
            line += f" {r['sim_pressure_at_target_pa'] / 1e3:14.1f} {r['sim_focus_distance_mm']:12.1f}"
        print(line)
    t = summary["timings_s"]
    print(f"{summary['n_candidates']} candidates scored in {t['scoring_s']:.1f} s "
          f"({t['per_candidate_inference_s'] * 1e3:.0f} ms each)"
          + (f"; {args.verify} verified by simulation in {t['verify_s']:.0f} s" if args.verify else "")
          + f"; outputs in {summary['out_dir']}")
    pick = summary["pick"]
    print(f"pick: rank {pick['rank']} at {' '.join(f'{v:.1f}' for v in pick['position_mm'])} mm ({summary['picked_by']})")
    return 0


def _plan(args: argparse.Namespace) -> int:
    if args.optimize:
        return _optimize(args)
    if args.n is None:
        raise ValueError("--n (number of placements) is required without --optimize")
    from tfus.sim.config import load_sim_config, with_overrides  # noqa: PLC0415
    from tfus.sim.ingest import load_volume  # noqa: PLC0415
    from tfus.sim.placement import plan_placements  # noqa: PLC0415

    config = with_overrides(load_sim_config(args.preset or "demo"), transducer=getattr(args, "transducer", None),
                            focal_distance_mm=getattr(args, "focal_distance_mm", None))
    volume = load_volume(args.ct)
    placements = plan_placements(volume, args.n, args.seed, config, targets_mm=args.target)
    print(json.dumps([p.to_dict() for p in placements], indent=2))
    return 0
