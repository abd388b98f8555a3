"""How close the free-field prior (sim.beam_prior, a Rayleigh table placed from the stored transducer points)
is to the solver's own water simulation of each placement (the store's cached aux ``free_field``, written by
``tfus evaluate --free-field``), and what placing it costs.

Per sample: rel-L2 of the log-normalised fields (the space the models work in), peak ratio, distance between
the two maxima (voxels), and the time to place the prior; the template's build time once.

    python benchmarks/prior_check.py --store data/fixed.zarr --split test --out docs/results/prior_check.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    from tfus import storage
    from tfus.models.data import beam_template, normalise_pressure, store_spacing_mm
    from tfus.sim.beam_prior import free_field_prior

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", required=True, help="JSON file")
    args = ap.parse_args(argv)
    ds = storage.open_dataset(args.store)
    if "free_field" not in ds.aux_names():
        raise SystemExit(f"{args.store} caches no free fields; run `tfus evaluate --free-field` on it first")
    spacing = store_spacing_mm(ds.attrs.get("spacing_mm"))
    t0 = time.perf_counter()
    template = beam_template(ds.attrs.get("sim_config"), ds.attrs.get("window_shape"), spacing)
    template_s = time.perf_counter() - t0
    reader = storage.SampleReader(args.store, args.split)
    rows = []
    for i, sid in enumerate(reader.sample_ids):
        water = ds.read_aux("free_field", sid)
        if water is None:
            continue
        s = reader[i]
        t = time.perf_counter()
        prior = free_field_prior(template, s["transducer_points"], s["ct_hu"].shape, spacing)
        place_s = time.perf_counter() - t
        water = np.abs(water)
        a, b = normalise_pressure(prior), normalise_pressure(water)
        shift = np.subtract(np.unravel_index(prior.argmax(), prior.shape), np.unravel_index(water.argmax(), water.shape))
        rows.append({"sample_id": sid, "rel_l2": float(np.linalg.norm(a - b) / np.linalg.norm(b)),
                     "peak_ratio": float(prior.max() / water.max()), "max_shift_vox": float(np.linalg.norm(shift)),
                     "place_s": place_s})
    if not rows:
        raise SystemExit(f"no cached free fields in split {args.split!r} of {args.store}")
    col = lambda k: np.array([r[k] for r in rows])  # noqa: E731
    summary = {"store": args.store, "split": args.split, "n": len(rows), "template_s": template_s,
               "template_shape": list(template.table.shape),
               **{f"{k}_{stat}": float(getattr(np, stat)(col(k))) for k in ("rel_l2", "peak_ratio", "max_shift_vox")
                  for stat in ("mean", "median", "max", "min")},
               "place_ms_median": 1e3 * float(np.median(col("place_s")[1:] if len(rows) > 1 else col("place_s"))),
               "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
