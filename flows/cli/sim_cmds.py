"""`tfus simulate` (CT + placement → steady-state pressure) and `tfus validate` (water bowl vs O'Neil).

`tfus phantom` / `tfus plan` come from ``flows/cli/phantom_cmd.py`` (``register_phantom``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json


def register(sub) -> None:
    if importlib.util.find_spec("tfus.flows.cli.phantom_cmd") is not None:
        from tfus.flows.cli.phantom_cmd import register_phantom  # noqa: PLC0415

        register_phantom(sub)
    from tfus.flows.cli.mri_cmd import register_pseudo_ct  # noqa: PLC0415

    register_pseudo_ct(sub)
    _register_simulate(sub)
    _register_validate(sub)


def _register_simulate(sub) -> None:
    p = sub.add_parser("simulate", help="steady-state pressure of a focused bowl through a CT (k-Wave)",
                       description="Writes pressure.nii.gz (Pa), ct.nii.gz, summary.json and preview.png.")
    p.add_argument("--ct", required=True, help="CT: .nii/.nii.gz/.mha/.nrrd or a DICOM folder (HU)")
    p.add_argument("--position", type=float, nargs=3, required=True, metavar=("X", "Y", "Z"),
                   help="bowl apex, world mm (RAS)")
    p.add_argument("--target", type=float, nargs=3, required=True, metavar=("X", "Y", "Z"),
                   help="aim point on the bowl axis, world mm (RAS)")
    p.add_argument("--preset", default="demo", help="preset (test, small, demo, tfuscapes) or YAML/JSON file "
                                                    "(default demo)")
    p.add_argument("--frequency-hz", type=float, help="drive frequency (Hz)")
    p.add_argument("--roc-mm", type=float, help="radius of curvature (mm)")
    p.add_argument("--aperture-mm", type=float, help="aperture diameter (mm)")
    p.add_argument("--amplitude-pa", type=float, help="source surface pressure amplitude (Pa)")
    p.add_argument("--transducer", help="a named transducer (ctx250, ctx500, ctx560, dpx500, bowl-demo, ...) "
                                        "or a YAML file of one; replaces the preset's bowl and frequency")
    p.add_argument("--focal-distance-mm", type=float,
                   help="annular arrays: steer the focus this far past the exit plane (mm)")
    res = p.add_mutually_exclusive_group()
    res.add_argument("--spacing-mm", type=float, help="grid spacing (mm)")
    res.add_argument("--ppw", type=float, help="points per wavelength in water (sets the spacing)")
    p.add_argument("--crop-mm", type=float, nargs="+", metavar="MM",
                   help="simulate a box of this size (1 or 3 values, mm) around the beam instead of the "
                        "preset's window (the whole CT when neither is set: --crop-mm 0)")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="NumPy (cpu) or CuPy (gpu)")
    p.add_argument("--engine", choices=("tfus", "kwave"), default=None,
                   help="time stepper: tfus (fast re-implementation of k-wave-python's scheme) or kwave "
                        "(k-wave-python's own step); default: the preset's (tfus)")
    p.add_argument("--kwave-binary", help="run this k-Wave C++/CUDA executable instead (never downloaded)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(handler=_simulate)


def _register_validate(sub) -> None:
    p = sub.add_parser("validate", help="water bowl vs O'Neil's analytic on-axis solution, or grid-spacing "
                                        "convergence through a skull (figure + JSON)")
    p.add_argument("--out", required=True, help="output directory (oneil_water.png/.json, or "
                                                "convergence.png/.json)")
    p.add_argument("--case", default="default", help="O'Neil case: default or small (default: default)")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--no-progress", action="store_true")
    skull = p.add_argument_group("skull convergence (--skull-convergence)")
    skull.add_argument("--skull-convergence", action="store_true",
                       help="simulate one placement through a phantom skull at several spacings instead")
    skull.add_argument("--spacings-mm", type=float, nargs="+", default=[2.0, 1.5, 1.2, 1.0],
                       help="coarse to fine; the last is the reference (default 2 1.5 1.2 1)")
    skull.add_argument("--box-mm", type=float, default=48.0, help="edge of the simulated box (default 48)")
    skull.add_argument("--preset", default="small", help="physics of the study (default small)")
    skull.add_argument("--seed", type=int, default=0, help="phantom and placement seed (default 0)")
    skull.add_argument("--ct", help="a CT or pseudo-CT instead of the phantom (its first planned placement)")
    p.set_defaults(handler=_validate)


def build_config(args: argparse.Namespace):
    """The SimConfig of a `tfus simulate` command line (preset + overrides, ``tfus.sim.config``)."""
    from tfus.sim.config import load_sim_config, with_overrides  # noqa: PLC0415

    if args.crop_mm is not None and len(args.crop_mm) not in (1, 3):
        raise ValueError(f"--crop-mm takes 1 or 3 values, got {len(args.crop_mm)}")
    config = with_overrides(load_sim_config(args.preset), frequency_hz=args.frequency_hz, roc_mm=args.roc_mm,
                            aperture_mm=args.aperture_mm, amplitude_pa=args.amplitude_pa,
                            spacing_mm=args.spacing_mm, ppw=args.ppw, whole_grid=args.crop_mm is not None,
                            transducer=getattr(args, "transducer", None),
                            focal_distance_mm=getattr(args, "focal_distance_mm", None))
    engine = getattr(args, "engine", None)
    return config.replace(engine=engine) if engine else config


def _simulate(args: argparse.Namespace) -> int:
    from pathlib import Path  # noqa: PLC0415

    from tfus.sim.simulation import simulate, write_simulation  # noqa: PLC0415

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a directory")
    config = build_config(args)
    crop = None if args.crop_mm is None or args.crop_mm == [0.0] else args.crop_mm
    result = simulate(args.ct, args.position, args.target, config, progress=not args.no_progress,
                      device=args.device, crop_mm=crop, kwave_binary=args.kwave_binary)
    write_simulation(result, out)
    s = result.summary
    print(f"{out}: peak {s['peak_pressure_pa'] / 1e3:.1f} kPa at {[round(x, 1) for x in s['focal_point_mm']]} mm, "
          f"-6 dB volume {s['focal_volume_mm3']:.0f} mm3, grid {s['grid_shape']} at {s['spacing_mm']:.3g} mm, "
          f"{s['time_steps']} steps, {s['runtime_s']:.1f} s, convergence {s['convergence']:.2e}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    if args.skull_convergence:
        return _skull_convergence(args)
    from tfus.sim.validation import run_oneil_validation  # noqa: PLC0415

    report = run_oneil_validation(args.out, case=args.case, device=args.device, progress=not args.no_progress)
    print(json.dumps(report["metrics"], indent=2))
    return 0 if report["metrics"]["passed"] else 1


def _skull_convergence(args: argparse.Namespace) -> int:
    from tfus.sim.config import load_sim_config  # noqa: PLC0415
    from tfus.sim.convergence import ConvergenceStudy, run_ct_skull_convergence, run_phantom_skull_convergence  # noqa: PLC0415, E501

    study = ConvergenceStudy(tuple(args.spacings_mm), args.box_mm)
    if args.ct:
        report = run_ct_skull_convergence(args.ct, args.seed, load_sim_config(args.preset), study, args.out,
                                          progress=not args.no_progress, device=args.device)
    else:
        report = run_phantom_skull_convergence(args.seed, load_sim_config(args.preset), study, args.out,
                                               progress=not args.no_progress, device=args.device)
    keys = ("spacing_mm", "rel_l2_vs_finest", "peak_rel_error_vs_finest", "focal_shift_vs_finest_mm",
            "observed_order_rel_l2", "runtime_s")
    print(json.dumps([{k: row.get(k) for k in keys} for row in report["levels"]], indent=2))
    return 0
