"""`tfus train`, `tfus evaluate`, `tfus predict`: thin wrappers over models.* and flows.evaluate."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train DeepTFUS (or the plain U-Net baseline) on a dataset store")
    p.add_argument("--store", required=True, help="dataset store URL or path")
    p.add_argument("--config", default="deeptfus-tiny", help="model preset: deeptfus | deeptfus-tiny")
    p.add_argument("--out", required=True, help="run directory (resumes when it holds the same run)")
    p.add_argument("--epochs", type=int, help="number of epochs (default: the train config's 50)")
    p.add_argument("--batch-size", type=int, help="batch size (default 4)")
    p.add_argument("--lr", type=float, help="peak learning rate (default 1e-3)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader worker processes")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--baseline", action="store_true",
                   help="train the unet_plain baseline (no conditioning, transducer-mask channel)")
    p.add_argument("--mask-channel", action="store_true",
                   help="give the conditioned network the transducer-mask input channel too (the baseline has it)")
    p.add_argument("--prior", action="store_true",
                   help="correct the transducer's free-field beam (an input channel and the starting output: the "
                        "untrained network is the free field); works with --baseline too")
    p.add_argument("--no-val", action="store_true",
                   help="train without a validation split (e.g. fewer than 3 subjects); the last epoch is kept")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_train)

    p = subparsers.add_parser("train-peak", help="add a pressure head to a trained run: peak and focal pressure "
                              "in Pa (transmission factors vs the free field), evaluated on held-out subjects")
    p.add_argument("--model", required=True, help="run directory of the trained model (gets RUN/peak/)")
    p.add_argument("--store", required=True, help="the dataset store the run was trained on")
    p.add_argument("--epochs", type=int, default=40, help="epochs (default 40)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--eval-split", default="test", help="held-out split scored afterwards (default test)")
    p.add_argument("--no-val", action="store_true", help="no validation split: keep the last epoch")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_train_peak)

    p = subparsers.add_parser("evaluate", help="metrics of a trained model (and baselines) on a split: "
                              "means with 95%% intervals (bootstrap over subjects), paired model comparisons")
    p.add_argument("--model", required=True, help="run directory of the trained model")
    p.add_argument("--store", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--out", required=True)
    p.add_argument("--baseline-model", help="run directory of a trained plain U-Net (tfus train --baseline)")
    p.add_argument("--free-field", action="store_true",
                   help="add the free-field baseline (simulated in water once per sample, cached in the store)")
    p.add_argument("--figures", type=int, default=4, help="samples to plot (default 4)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_evaluate)

    p = subparsers.add_parser("predict", help="predict the normalised field for a CT and a transducer placement")
    p.add_argument("--model", required=True, help="run directory of the trained model")
    p.add_argument("--ct", required=True, help="CT volume (NIfTI, .mha, .nrrd, DICOM folder)")
    p.add_argument("--position", required=True, type=float, nargs=3, metavar=("X", "Y", "Z"),
                   help="transducer position, world mm")
    p.add_argument("--target", required=True, type=float, nargs=3, metavar=("X", "Y", "Z"),
                   help="focus target, world mm")
    p.add_argument("--out", required=True)
    p.set_defaults(handler=_predict)


def _train(args) -> int:
    from tfus.models.train import train_named
    summary = train_named(args.store, args.config, args.out, baseline=args.baseline, mask_channel=args.mask_channel,
                          prior=args.prior, progress=not args.no_progress, epochs=args.epochs, batch_size=args.batch_size,
                          lr=args.lr, num_workers=args.workers, device=args.device,
                          no_val=True if args.no_val else None)
    summary.pop("history")
    print(json.dumps(summary, indent=2))
    return 0


def _train_peak(args) -> int:
    from tfus.flows.peak import train_peak
    from tfus.models.peak import PeakConfig
    config = PeakConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
    metrics = train_peak(args.model, args.store, config, no_val=args.no_val, eval_split=args.eval_split,
                         progress=not args.no_progress)
    meta = metrics["_meta"]
    if not meta.get("n_samples"):
        print(f"pressure head saved in {args.model}/peak; split {args.eval_split!r} is empty, nothing scored")
        return 0
    print(f"pressure head saved in {args.model}/peak; {meta['n_samples']} samples of {meta['n_subjects']} subjects "
          f"in split {args.eval_split!r}, relative error (%), mean [95% CI over subjects] / median:")
    for name in ("pressure_head", "free_field_scaled"):
        parts = [f"{m.split('_')[0]} {v['mean']:.1f} [{v['ci95'][0]:.1f}, {v['ci95'][1]:.1f}] / {v['median']:.1f}"
                 for m, v in metrics[name].items()]
        print(f"  {name:18s} " + "; ".join(parts))
    return 0


def _evaluate(args) -> int:
    from tfus.flows.evaluate import evaluate_model
    result = evaluate_model(args.model, args.store, args.split, args.out, baseline_run_dir=args.baseline_model,
                            free_field=args.free_field, progress=not args.no_progress,
                            max_figures=args.figures)
    for name, entry in result.items():
        if name.startswith("_"):
            continue
        cells = [f"{m} {entry[m]['mean']:.3g} [95% CI {entry[m]['ci95'][0]:.3g}, {entry[m]['ci95'][1]:.3g}] "
                 f"±{entry[m]['std']:.2g} (median {entry[m]['median']:.3g})"
                 for m in ("rel_l2", "focal_error_mm", "intracranial_focal_error_mm", "max_pressure_error",
                           "dice_6db") if m in entry]
        print(f"{name} (n={entry['n']}, {entry['n_subjects']} subjects): " + "; ".join(cells))
    for pair, metrics in result.get("_comparison", {}).items():
        m = metrics["rel_l2"]
        p = m["wilcoxon_p_subjects"]
        print(f"{pair}: rel_l2 difference {m['mean_difference']:+.3g} [95% CI {m['ci95'][0]:+.3g}, "
              f"{m['ci95'][1]:+.3g}], first better on {m['a_better_fraction']:.0%} of samples, Wilcoxon over "
              f"subjects p = {'n/a' if p is None else f'{p:.3g}'}")
    print(f"wrote {args.out}/metrics.json and per_sample.csv (per-sample metrics with the subject)")
    return 0


def _predict(args) -> int:
    from tfus.models.predict import Predictor, predict_from_ct
    predictor = Predictor.from_run(args.model)
    summary = predict_from_ct(predictor, args.ct, args.position, args.target, args.out)
    print(json.dumps(summary, indent=2))
    return 0
