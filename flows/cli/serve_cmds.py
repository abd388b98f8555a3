"""`tfus serve` (the deployments behind the flow API) and `tfus request predict` (a thin client of them)."""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "serve", help="serve predict-field, generate-dataset and train-deeptfus as Prefect deployments",
        description="Register predict-field/default, generate-dataset/default and train-deeptfus/default with "
                    "the Prefect API at PREFECT_API_URL and execute their runs until Ctrl-C. Predictions run in "
                    "this process with the model loaded once. deploy/serve-local.sh starts a local server too.")
    p.add_argument("--model", metavar="RUN_DIR", help="default model run directory (e.g. runs/NAME)")
    p.add_argument("--output-root", metavar="DIR",
                   help="every output path must lie under this folder (default $TFUS_OUTPUT_ROOT or ./predictions)")
    p.add_argument("--poll-s", type=float, default=0.5, help="seconds between polls for new runs (default 0.5)")
    p.add_argument("--limit", type=int, default=1,
                   help="generation/training runs at once, each in its own process (default 1)")
    p.set_defaults(handler=_serve)

    r = sub.add_parser("request", help="request work from a running `tfus serve` through the Prefect API")
    rsub = r.add_subparsers(dest="request_command", metavar="WHAT", required=True)
    q = rsub.add_parser(
        "predict", help="predict a pressure field through predict-field/default and print its summary",
        description="Trigger predict-field/default, wait for it and print the JSON summary. Exit status 1 when "
                    "the run fails (its message is printed), 2 for bad arguments.")
    src = q.add_mutually_exclusive_group(required=True)
    src.add_argument("--ct", help="CT path or URL, as the serving machine sees it")
    src.add_argument("--store", help="dataset path or URL (with --sample-id)")
    q.add_argument("--sample-id", help="sample of --store; its stored placement is used unless given")
    q.add_argument("--position", type=float, nargs=3, metavar=("X", "Y", "Z"), help="transducer apex, world mm")
    q.add_argument("--target", type=float, nargs=3, metavar=("X", "Y", "Z"), help="aim point, world mm")
    q.add_argument("--model", metavar="RUN_DIR", help="model run directory (default: the served model)")
    q.add_argument("--out-dir", help="output folder under the server's output root (default: one per run)")
    q.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the run (default 300)")
    q.set_defaults(handler=_request_predict)


def _serve(args) -> int:
    from tfus.flows.serve import serve  # noqa: PLC0415

    serve(model_dir=args.model, output_root=args.output_root, poll_s=args.poll_s, limit=args.limit)
    return 0


def _request_predict(args) -> int:
    import os  # noqa: PLC0415

    if not os.environ.get("PREFECT_API_URL"):
        raise ValueError("PREFECT_API_URL is not set: point it at the server `tfus serve` uses")
    from tfus.flows.runtime import require_api  # noqa: PLC0415

    require_api(os.environ["PREFECT_API_URL"])
    if args.store and not args.sample_id:
        raise ValueError("--store needs --sample-id")
    if args.ct and (args.position is None or args.target is None):
        raise ValueError("--ct needs --position X Y Z and --target X Y Z")
    from tfus.flows.client import RunFailed, prediction_parameters, request_prediction  # noqa: PLC0415

    params = prediction_parameters(ct=args.ct, position_mm=args.position, target_mm=args.target,
                                   store=args.store, sample_id=args.sample_id, model=args.model,
                                   out_dir=args.out_dir)
    import httpx  # noqa: PLC0415

    try:
        summary = request_prediction(params, timeout_s=args.timeout)
    except RunFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"error: cannot reach the Prefect API at {os.environ['PREFECT_API_URL']}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0
