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

    q = subparsers.add_parser("plan", help="plan transducer placements on a CT's scalp; prints JSON")
    q.add_argument("--ct", required=True, help="CT: .nii/.nii.gz/.mha/.nrrd or a DICOM folder")
    q.add_argument("--n", type=int, required=True, help="number of placements")
    q.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    q.add_argument("--preset", default="demo", help="preset name or YAML/JSON config file (default demo)")
    q.add_argument("--target", type=float, nargs=3, action="append", metavar=("X", "Y", "Z"),
                   help="aim at this world target (mm); repeat for several; default: along the scalp normal")
    q.add_argument("--transducer", help="a named transducer (ctx250, ctx500, ...) or a YAML file; an annular "
                                        "array sits on its exit plane and gets the focal distance to --target")
    q.add_argument("--focal-distance-mm", type=float,
                   help="annular arrays without --target: steer this far past the exit plane")
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


def _plan(args: argparse.Namespace) -> int:
    from tfus.sim.config import load_sim_config, with_overrides  # noqa: PLC0415
    from tfus.sim.ingest import load_volume  # noqa: PLC0415
    from tfus.sim.placement import plan_placements  # noqa: PLC0415

    config = with_overrides(load_sim_config(args.preset), transducer=getattr(args, "transducer", None),
                            focal_distance_mm=getattr(args, "focal_distance_mm", None))
    volume = load_volume(args.ct)
    placements = plan_placements(volume, args.n, args.seed, config, targets_mm=args.target)
    print(json.dumps([p.to_dict() for p in placements], indent=2))
    return 0
