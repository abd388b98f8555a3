"""DeepTFUS speed on this CPU: inference on one 64³ window vs the k-Wave simulation of the same window, and
training throughput. Ratios are measured side by side in one run.

    .venv/bin/python benchmarks/bench_models.py [--store STORE] [--threads 2] [--repeats 5] [--json out.json]

Inference is timed for deeptfus-tiny and for the same network with the free-field prior (``--prior``-trained
runs: the prior is placed from the points on every call, part of the time).

The simulation time is the ``runtime_s`` of the store's first complete sample when ``--store`` is given;
otherwise ``sim.simulate`` runs once (the ``demo`` preset's physics on a ``--window``³ box, default 64³,
a phantom head) and its runtime is used.
Inference runs on that sample's CT window and transducer points (or the simulated window). Training
throughput: full optimisation steps (forward, loss, backward, AdamW) of deeptfus-tiny and of its unet_plain
twin at batch 2 on the same window size (a skull-fixed store: its window, e.g. 48³ for the ``subject`` preset).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch


def simulation_window(store: str | None, window: int = 64):
    """(ct_hu, points_vox, simulation runtime_s, source description, run-config stub for a Predictor)."""
    if store:
        from tfus import storage
        ds = storage.open_dataset(store)
        sid = ds.query()["sample_id"].iloc[0]
        s = ds.sample(sid)
        runtime = s.meta.get("runtime_s") or s.meta.get("summary", {}).get("runtime_s")
        if runtime is None:
            raise ValueError(f"sample {sid} of {store} has no runtime_s in its metadata")
        stub = {"sim_config": ds.attrs.get("sim_config"), "spacing_mm": ds.attrs.get("spacing_mm")}
        return s.ct_hu, s.transducer_points, float(runtime), f"store {store} sample {sid}", stub
    from tfus.sim import get_preset, make_phantom, plan_placements, simulate
    config = get_preset("demo").replace(window_shape=(window,) * 3)
    volume = make_phantom(0, spacing_mm=config.spacing_mm)
    placement = plan_placements(volume, 1, 0, config)[0]
    result = simulate(volume, placement.position_mm, placement.target_mm, config, progress=True)
    w = result.window
    stub = {"sim_config": config.to_dict(), "spacing_mm": config.spacing_mm}
    return (w.ct_hu, w.transducer_points_vox, float(result.summary["runtime_s"]),
            f"tfus.sim.simulate demo preset at {window}³", stub)


def time_inference(ct_hu, points_vox, repeats: int, stub: dict | None = None) -> list[float]:
    """Seconds per ``Predictor.predict_window``; with ``stub`` (sim_config, spacing_mm) the prior network."""
    from tfus.models.config import get_model_config
    from tfus.models.network import DeepTFUS
    from tfus.models.predict import Predictor
    cfg = get_model_config("deeptfus-tiny", **({"prior": True} if stub else {}))
    predictor = Predictor(DeepTFUS(cfg), {"window_shape": list(ct_hu.shape), **(stub or {})}, torch.device("cpu"))
    predictor.predict_window(ct_hu, points_vox)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predictor.predict_window(ct_hu, points_vox)
        times.append(time.perf_counter() - t0)
    return times


def time_training(steps: int, batch: int = 2, shape=(64, 64, 64), plain: bool = False) -> float:
    from tfus.models.config import get_model_config, plain_unet_config
    from tfus.models.losses import CompositeLoss
    from tfus.models.network import DeepTFUS
    cfg = get_model_config("deeptfus-tiny")
    cfg = plain_unet_config(cfg) if plain else cfg
    model = DeepTFUS(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = CompositeLoss()
    ct, target = torch.rand(batch, 1, *shape), torch.rand(batch, 1, *shape) * 0.69
    points = torch.rand(batch, cfg.n_points, 5) * 2 - 1  # points in [-1, 1] and their ring drive

    def step():
        loss = loss_fn(model(ct, points), target)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="dataset store (its first sample; else: simulate once)")
    parser.add_argument("--window", type=int, default=64, help="box edge of the simulation (voxels)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ct_hu, points, sim_s, source, stub = simulation_window(args.store, args.window)
    times = time_inference(np.asarray(ct_hu), np.asarray(points), args.repeats)
    prior_times = time_inference(np.asarray(ct_hu), np.asarray(points), args.repeats, stub)
    infer_s, prior_s = statistics.median(times), statistics.median(prior_times)
    result = {"window_shape": list(np.asarray(ct_hu).shape), "simulation_s": sim_s, "simulation_source": source,
              "inference_s_median": infer_s, "inference_s_all": times, "speedup": sim_s / infer_s,
              "inference_prior_s_median": prior_s, "inference_prior_s_all": prior_times,
              "speedup_prior": sim_s / prior_s,
              "train_samples_per_s": time_training(args.train_steps, shape=np.asarray(ct_hu).shape),
              "train_samples_per_s_unet_plain": time_training(args.train_steps, shape=np.asarray(ct_hu).shape,
                                                              plain=True),
              "torch_threads": args.threads}
    print(f"window {result['window_shape']}: simulation {sim_s:.1f} s ({source}); deeptfus-tiny inference "
          f"{infer_s * 1e3:.0f} ms (median of {args.repeats}) -> {result['speedup']:.0f}x faster; with the free-field "
          f"prior {prior_s * 1e3:.0f} ms -> {result['speedup_prior']:.0f}x")
    print(f"training throughput (batch 2, {result['window_shape']}): deeptfus-tiny "
          f"{result['train_samples_per_s']:.2f} samples/s, unet_plain {result['train_samples_per_s_unet_plain']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
