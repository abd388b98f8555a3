"""`tfus pseudo-ct`: a T1-weighted MRI → a pseudo-CT in HU with its quality figures."""

from __future__ import annotations

import argparse
import json


def register_pseudo_ct(subparsers) -> None:
    p = subparsers.add_parser("pseudo-ct", help="T1-weighted MRI → pseudo-CT (HU) on the T1's grid, with QC "
                                                "(JSON + PNG next to it)")
    p.add_argument("--t1", required=True, help="T1-weighted head MRI (.nii/.nii.gz/.mha/.nrrd or DICOM folder)")
    p.add_argument("--brain-mask", help="brain mask on any grid (> 0 = brain); default: Colin27's, registered")
    p.add_argument("--out", required=True, help="output pseudo-CT .nii or .nii.gz")
    p.add_argument("--png", help="QC picture (default: <out>.qc.png)")
    p.add_argument("--frequency-khz", type=float, default=250.0,
                   help="frequency the bone HU are made for (Pichardo 2011 sound speeds; default 250)")
    p.add_argument("--cortical-hu", type=float, help="cortical bone HU instead of the frequency's (e.g. 1625: "
                                                      "ITRUSST cortical 2800 m/s on the HU map)")
    p.add_argument("--trabecular-hu", type=float, help="trabecular bone HU instead of the frequency's")
    p.set_defaults(handler=_pseudo_ct)


def _pseudo_ct(args: argparse.Namespace) -> int:
    from tfus.sim.mri import make_pseudo_ct, qc_paths  # noqa: PLC0415
    from tfus.sim.pseudoct import PseudoCTConfig  # noqa: PLC0415

    config = PseudoCTConfig(frequency_hz=args.frequency_khz * 1e3, cortical_hu=args.cortical_hu,
                            trabecular_hu=args.trabecular_hu)
    qc = make_pseudo_ct(args.t1, args.out, brain_mask=args.brain_mask, png=args.png, config=config)
    keys = ("skull_volume_ml", "skull_thickness_median_mm", "skull_thickness_p5_mm", "skull_thickness_p95_mm",
            "vault_enclosed_fraction")
    print(json.dumps({k: qc.get(k) for k in keys}))
    print(f"{args.out}: pseudo-CT; QC {qc_paths(args.out)[0]} and {args.png or qc_paths(args.out)[1]}")
    return 0
