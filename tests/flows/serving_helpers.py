"""A tiny trained DeepTFUS run for serving tests and the serving benchmark.

The store is real (written through `storage`), its windows are real `sim.make_window` grids of small
phantoms (so the served prediction path can rebuild them from a CT and a placement), and the fields are
Gaussian foci at the bowl's geometric focus: cheap stand-ins for k-Wave fields that still give the network
something to learn. The model is trained for real (`models.train.train`), 1 epoch by default.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PHANTOM = {"spacing_mm": 1.5, "scale": 0.5}     # a 75 × 90 × 80 mm head in 20 mm of water
SPLITS = ("train", "val", "train")              # split of subject s: SPLITS[s % 3]


def sim_config(window: int = 32):
    """The `test` preset (200 kHz bowl, roc 30 mm) on a ``window``³ grid at 1.5 mm."""
    from tfus.sim.config import get_preset

    return get_preset("test").replace(window_shape=(window, window, window), n_transducer_points=128)


def placement(seed: int, k: int) -> tuple[tuple, tuple]:
    """Apex 5 mm outside the left scalp (x ≈ −43 mm), aimed near the head centre; varies with k."""
    rng = np.random.default_rng(1000 * seed + k)
    position = (-43.0, float(rng.uniform(-4, 4)), float(rng.uniform(-4, 4)))
    target = (0.0, float(rng.uniform(-6, 6)), float(rng.uniform(-6, 6)))
    return position, target


def gaussian_focus(window, sigma_vox: float = 2.0) -> np.ndarray:
    focus = window.world_to_voxel(window.bowl.focus_mm[None])[0]
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in window.shape], indexing="ij"), -1)
    return (2e5 * np.exp(-((grid - focus) ** 2).sum(-1) / (2 * sigma_vox**2)) + 1e3).astype(np.float32)


def write_ct(path: Path, seed: int = 0) -> Path:
    """A phantom CT as NIfTI (what a user would send)."""
    from tfus.sim.phantom import write_phantom

    return write_phantom(seed, path, **PHANTOM)


def make_store(path: Path, window: int = 32, n_subjects: int = 3, per_subject: int = 2) -> str:
    """A complete store of ``n_subjects × per_subject`` samples on real windows of phantoms."""
    from tfus import storage
    from tfus.sim.phantom import make_phantom
    from tfus.sim.window import make_window

    config = sim_config(window)
    url = str(path)
    spec = storage.DatasetSpec(config.window_shape, config.spacing_mm, config.n_transducer_points)
    ds = storage.create_dataset(url, spec, {"sim_config": config.to_dict()})
    records, arrays = [], {}
    for s in range(n_subjects):
        volume = make_phantom(s, **PHANTOM)
        for k in range(per_subject):
            key = f"subj{s:02d}-p{k}"
            position, target = placement(s, k)
            w = make_window(volume, position, target, config)
            pressure = gaussian_focus(w)
            focus = [float(v) for v in w.bowl.focus_mm]
            records.append(storage.SampleRecord(key=key, sample_id=key, subject_id=f"subj{s:02d}",
                                                split=SPLITS[s % 3], position_mm=position, target_mm=target,
                                                frequency_hz=config.transducer.frequency_hz,
                                                config_json="{}"))
            arrays[key] = dict(ct_hu=w.ct_hu, pressure_pa=pressure, affine=w.affine,
                               transducer_points=w.transducer_points_vox,
                               meta={"focal_point_mm": focus, "peak_pressure_pa": float(pressure.max()),
                                     "runtime_s": 0.0, "summary": {"synthetic": True}})
    ds.reserve(records)
    for key, a in arrays.items():
        storage.write_sample(url, key, **a)
    ds.commit()
    return url


def train_tiny(store_url: str, run_dir: Path, epochs: int = 1, config: str = "small") -> Path:
    """Train a tiny model on ``store_url`` into ``run_dir``; ``config``: "small" (fast) or "deeptfus-tiny"."""
    from tfus.models.config import ModelConfig, TrainConfig, get_model_config
    from tfus.models.train import train

    if config == "small":
        model_config = ModelConfig(name="serve-test", base_width=4, depth=2, attention_levels=(2,), embed_dim=16,
                                   n_fourier=3, n_points=32, n_tokens=2, heads=2, norm_groups=2)
    else:
        model_config = get_model_config(config)
    train(store_url, model_config, run_dir, TrainConfig(epochs=epochs, batch_size=2, device="cpu"),
          progress=False)
    return Path(run_dir)


def plan_run(run_dir: Path, window: int = 32) -> Path:
    """A skull-fixed run for placement-planning tests: a small DeepTFUS and a pressure head, seeded random
    weights (the planner's plumbing, not the network's accuracy, is under test; models tests train them)."""
    import json

    import torch

    from tfus.models import checkpoint
    from tfus.models.config import ModelConfig
    from tfus.models.network import DeepTFUS
    from tfus.models.peak import PeakConfig, PeakNet, save

    torch.manual_seed(0)
    config = sim_config(window).replace(grid="subject")
    model_config = ModelConfig(name="plan-test", base_width=4, depth=2, attention_levels=(2,), embed_dim=16,
                               n_fourier=3, n_points=32, n_tokens=2, heads=2, norm_groups=2)
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    net = DeepTFUS(model_config)
    with torch.no_grad():  # fields above zero, as a trained network's log(1 + p/max p) is
        net.head.bias.fill_(0.4)
    checkpoint.save_weights(net, run / "best.safetensors")
    (run / "config.json").write_text(json.dumps({
        "model": model_config.to_dict(), "sim_config": config.to_dict(), "window_shape": list(config.window_shape),
        "model_id": "plan-test", "config_hash": "0" * 64}))
    save(run, PeakNet(PeakConfig(width=4, levels=2, hidden=8)),
         {"p_ref_pa": 2.0e5, "train_mean_transmission": {"max": 1.5, "focus": 0.6}}, [])
    return run


def plan_target(ct: Path, window: int = 32) -> tuple:
    """A brain target on ``ct`` that the test bowl reaches inside the subject window."""
    from tfus.sim.ingest import load_volume
    from tfus.sim.placement import plan_placements

    return plan_placements(load_volume(ct), 1, 0, sim_config(window).replace(grid="subject"))[0].target_mm
