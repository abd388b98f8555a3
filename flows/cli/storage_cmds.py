"""Dataset commands: query, show, export, stats, import-tfuscapes (thin wrappers over ``storage``)."""

from __future__ import annotations

import json
import sys

_TABLE_COLUMNS = ("sample_id", "subject_id", "split", "status", "peak_pressure_pa", "frequency_hz",
                  "focal_point_mm")


def register(subparsers) -> None:
    p = subparsers.add_parser("query", help="list the samples of a dataset (table, or --json)")
    p.add_argument("store", help="dataset path or fsspec URL")
    p.add_argument("--subject", action="append", help="subject id (repeatable)")
    p.add_argument("--split", action="append", help="train / val / test … (repeatable)")
    p.add_argument("--where", help="pandas query over the table, e.g. 'peak_pressure_pa > 1e5'")
    p.add_argument("--status", default="complete", help="complete (default), pending, failed or all")
    p.add_argument("--limit", type=int, default=None, help="show at most this many rows")
    p.add_argument("--json", action="store_true", help="JSON lines for programs")
    p.set_defaults(handler=_query)

    p = subparsers.add_parser("show", help="PNG of three slices through a sample's focus")
    p.add_argument("store")
    p.add_argument("sample_id")
    p.add_argument("--png", required=True, help="output PNG file")
    p.set_defaults(handler=_show)

    p = subparsers.add_parser("export", help="write a sample as ct.nii.gz, pressure.nii.gz, sample.json")
    p.add_argument("store")
    p.add_argument("sample_id")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(handler=_export)

    p = subparsers.add_parser("stats", help="counts per status/split/subject, failures, size")
    p.add_argument("store")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_stats)

    p = subparsers.add_parser("import-tfuscapes", help="import TFUScapes npz files (resumable)")
    p.add_argument("src", help="TFUScapes directory (data/, splits/)")
    p.add_argument("--out", required=True, help="dataset path or fsspec URL")
    p.add_argument("--points", type=int, default=None,
                   help="transducer points kept per sample (default: min(512, fewest in any file))")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_import)


def _query(args) -> int:
    from tfus.storage import open_dataset
    table = open_dataset(args.store).query(subject=args.subject, split=args.split, where=args.where,
                                           status=args.status)
    if args.limit is not None:
        table = table.head(args.limit)
    if args.json:
        for row in table.to_dict(orient="records"):
            print(json.dumps({k: _plain(v) for k, v in row.items()}))
        return 0
    print(format_table(table))
    print(f"{len(table)} samples", file=sys.stderr)
    return 0


def _plain(value):
    """JSON-safe value: NaN → null, tuples → lists, numpy scalars → Python."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def format_table(table) -> str:
    """Aligned columns for people (vectors in mm rounded to 0.1)."""
    def cell(value) -> str:
        if isinstance(value, tuple):
            return "(" + ", ".join(f"{v:.1f}" for v in value) + ")"
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)
    rows = [[cell(v) for v in row] for row in table[list(_TABLE_COLUMNS)].itertuples(index=False)]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(_TABLE_COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(_TABLE_COLUMNS, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _show(args) -> int:
    from tfus.storage import render_sample_png
    print(render_sample_png(args.store, args.sample_id, args.png))
    return 0


def _export(args) -> int:
    from tfus.storage import export_sample
    for path in export_sample(args.store, args.sample_id, args.out).values():
        print(path)
    return 0


def _stats(args) -> int:
    from tfus.storage import stats
    summary = stats(args.store)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"store      {summary['store']} (schema v{summary['schema_version']}, {summary['bytes'] / 1e6:.1f} MB)")
    print(f"window     {summary['window_shape']} voxels at {summary['spacing_mm']} mm, "
          f"{summary['n_transducer_points']} transducer points")
    print(f"samples    {summary['n_samples']}: " + ", ".join(f"{k} {v}" for k, v in summary["status"].items()))
    print("splits     " + (", ".join(f"{k} {v}" for k, v in summary["split"].items()) or "-"))
    print(f"subjects   {len(summary['subjects'])}: "
          + ", ".join(f"{k} {v}" for k, v in list(summary["subjects"].items())[:20]))
    if summary["aux"]:
        print("aux        " + ", ".join(summary["aux"]))
    for f in summary["failures"]:
        print(f"failed     {f['sample_id']}: {f['reason']}")
    return 0


def _import(args) -> int:
    from tfus.storage import import_tfuscapes
    attrs = {}
    try:  # the SimConfig that reproduces TFUScapes windows, so models can rebuild them for a new CT
        from tfus.sim import get_preset
        attrs["sim_config"] = get_preset("tfuscapes").to_dict()
    except (ImportError, AttributeError, ValueError):
        pass
    result = import_tfuscapes(args.src, args.out, progress=not args.no_progress, n_points=args.points,
                              attrs=attrs)
    print(json.dumps(result))
    return 0
