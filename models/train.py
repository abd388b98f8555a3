"""Training: subject-disjoint splits from the store, AdamW + cosine schedule, resumable checkpoints.

A run directory holds
- ``last.safetensors``: model + optimizer + scheduler + epoch + history (resumption point, every epoch);
- ``best.safetensors`` + ``config.json``: the best weights on validation loss and everything needed to
  rebuild the model and the simulation window (model/train config, the dataset's ``sim_config``, url,
  ``config_hash``, ``model_id``);
- ``history.csv`` / ``history.json`` / ``curves.png``: per-epoch metrics.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from tfus.models import checkpoint
from tfus.models.config import ModelConfig, TrainConfig
from tfus.models.data import StoreDataset
from tfus.models.losses import CompositeLoss
from tfus.models.metrics import METRICS, sample_metrics
from tfus.models.network import DeepTFUS

log = logging.getLogger(__name__)


def split_ids(dataset, url: str, minimum: dict, no_val: bool = False) -> dict[str, list]:
    """Sample ids per split; checks the splits are subject-disjoint and large enough (``no_val``: the
    validation split is not needed, and not used)."""
    ids, subjects = {}, {}
    for split in ("train", "val"):
        rows = dataset.query(split=split)
        ids[split] = list(rows["sample_id"])
        subjects[split] = set(rows["subject_id"])
        need = 0 if (no_val and split == "val") else int(minimum.get(split, 1))
        if len(ids[split]) < need:
            hint = ("; train with --no-val to keep the last epoch without validation, or generate more "
                    "subjects (every split gets one from 3 subjects on)") if split == "val" else ""
            raise ValueError(f"store {url} has {len(ids[split])} complete samples in split {split!r}; "
                             f"training needs at least {need}{hint}")
    shared = subjects["train"] & subjects["val"]
    if shared:
        raise ValueError(f"store {url}: subjects {sorted(shared)[:5]} appear in both train and val splits")
    return ids


def run_config(url: str, model_config: ModelConfig, train_config: TrainConfig, attrs: dict) -> dict:
    sim_config = attrs.get("sim_config")
    if isinstance(sim_config, str):
        sim_config = json.loads(sim_config)
    identity = {"model": model_config.to_dict(), "train": train_config.resume_key(), "sim_config": sim_config}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()
    return {"model": model_config.to_dict(), "train": train_config.to_dict(), "sim_config": sim_config,
            "dataset_url": str(url), "window_shape": list(attrs.get("window_shape") or []),
            "spacing_mm": attrs.get("spacing_mm"), "config_hash": digest,
            "model_id": f"{model_config.name}-{digest[:12]}"}


def write_json(path: Path, data) -> None:
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float))
    os.replace(tmp, path)


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("`device` is 'cuda' but no CUDA device is available")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def cosine_schedule(optimizer, epochs: int):
    """Closed-form cosine decay per epoch, lr_e = lr · ½(1 + cos(π e / epochs)), e = 0..epochs−1.

    Closed form (not the recursive CosineAnnealingLR) so that a resumed run with more ``epochs`` continues
    on the longer schedule instead of from a decayed-to-zero learning rate.
    """
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 0.5 * (1 + math.cos(math.pi * e / epochs)))


def _autocast(device: torch.device, tc: TrainConfig):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda" and tc.amp)


def _loader(ds: StoreDataset, tc: TrainConfig, shuffle: bool, epoch: int, device) -> DataLoader:
    gen = torch.Generator().manual_seed(tc.seed * 100003 + epoch)  # same order when an epoch is rerun
    return DataLoader(ds, batch_size=tc.batch_size, shuffle=shuffle, num_workers=tc.num_workers,
                      generator=gen, pin_memory=device.type == "cuda", drop_last=False)


def train_epoch(model, loader, optimizer, loss_fn, tc: TrainConfig, device, bar) -> float:
    model.train()
    total, count = 0.0, 0
    for batch in loader:
        ct, points, target = (batch[k].to(device, non_blocking=True) for k in ("ct", "points", "target"))
        prior = batch["prior"].to(device, non_blocking=True) if "prior" in batch else None
        with _autocast(device, tc):
            pred = model(ct, points, prior)
        loss = loss_fn(pred, target)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became non-finite ({loss.item()}); lower `lr`")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        optimizer.step()
        total += loss.item() * len(ct)
        count += len(ct)
        bar.update(len(ct))
        bar.set_postfix(loss=f"{loss.item():.4g}")
    return total / max(count, 1)


@torch.no_grad()
def validate(model, loader, loss_fn, tc: TrainConfig, device, spacing_mm) -> dict:
    model.eval()
    losses, rows = [], []
    for batch in loader:
        ct, points, target = (batch[k].to(device) for k in ("ct", "points", "target"))
        prior = batch["prior"].to(device) if "prior" in batch else None
        with _autocast(device, tc):
            pred = model(ct, points, prior)
        pred = pred.float()
        losses.append(loss_fn(pred, target).item() * len(ct))
        for p, t in zip(pred.cpu().numpy(), target.cpu().numpy()):
            rows.append(sample_metrics(p[0], t[0], spacing_mm))
    out = {"val_loss": float(np.sum(losses) / max(len(rows), 1))}
    out.update({f"val_{m}": float(np.mean([r[m] for r in rows])) for m in METRICS})
    return out


def write_history(out: Path, history: list[dict]) -> None:
    write_json(out / "history.json", history)
    keys = list(history[0])
    lines = [",".join(keys)] + [",".join(f"{row[k]:.6g}" if isinstance(row[k], float) else str(row[k])
                                         for k in keys) for row in history]
    (out / "history.csv").write_text("\n".join(lines) + "\n")
    plot_history(out / "curves.png", history)


def plot_history(path: Path, history: list[dict]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].semilogy(epochs, [r["train_loss"] for r in history], "o-", label="train")
    validated = "val_loss" in history[-1]
    if validated:
        axes[0].semilogy(epochs, [r["val_loss"] for r in history], "o-", label="val")
        axes[1].plot(epochs, [r["val_rel_l2"] for r in history], "o-", label="rel L2")
        axes[1].plot(epochs, [r["val_dice_6db"] for r in history], "o-", label="Dice −6 dB")
        axes[1].legend()
        axes[2].plot(epochs, [r["val_focal_error_mm"] for r in history], "o-")
    axes[0].set_title("loss")
    axes[0].legend()
    axes[1].set_title("validation" if validated else "no validation split (--no-val)")
    axes[2].set_title("validation focal error (mm)")
    for ax in axes:
        ax.set_xlabel("epoch")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _prepare_run(out: Path, config: dict) -> None:
    """Refuse to resume a run directory that holds a different configuration."""
    marker = out / "run.json"
    if marker.exists():
        previous = json.loads(marker.read_text())
        if previous.get("config_hash") != config["config_hash"]:
            raise ValueError(f"run directory {out} holds a run with a different model/train/dataset config "
                             f"({previous.get('model_id')}); choose another --out")
    else:
        write_json(marker, config)


def _restore(out: Path, model_config: ModelConfig, tc: TrainConfig, device):
    """Model, optimizer, scheduler and run state – fresh, or from ``out/last.safetensors``."""
    torch.manual_seed(tc.seed)
    model = DeepTFUS(model_config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    scheduler = cosine_schedule(optimizer, tc.epochs)
    state = {"epoch": 0, "history": [], "best_val": math.inf, "best_epoch": None}
    if (out / "last.safetensors").exists():
        state = checkpoint.load_training_state(out / "last.safetensors", model, optimizer, scheduler)
        for group, base in zip(optimizer.param_groups, scheduler.base_lrs):  # the lr on the (new) schedule
            group["lr"] = base * scheduler.lr_lambdas[0](scheduler.last_epoch)
        log.info("resuming %s at epoch %d", out, state["epoch"])
    return model, optimizer, scheduler, state


def _epoch(epoch, model, optimizer, datasets, loss_fn, tc, device, spacing, progress) -> dict:
    """Train one epoch, validate, and return the history row."""
    train_ds, val_ds = datasets
    t0 = time.perf_counter()
    with tqdm(total=len(train_ds), desc=f"epoch {epoch + 1}/{tc.epochs}", unit="sample",
              disable=not progress, leave=False) as bar:
        train_loss = train_epoch(model, _loader(train_ds, tc, True, epoch, device), optimizer, loss_fn,
                                 tc, device, bar)
    train_s = time.perf_counter() - t0
    checked = {} if val_ds is None else \
        validate(model, _loader(val_ds, tc, False, epoch, device), loss_fn, tc, device, spacing)
    return {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": train_loss, **checked,
            "train_samples_per_s": len(train_ds) / train_s, "epoch_s": time.perf_counter() - t0}


def train(store_url: str, model_config: ModelConfig, out_dir, train_config: TrainConfig | None = None,
          progress: bool = True) -> dict:
    """Train (or resume training) into ``out_dir``; returns a summary dict (best epoch, losses, history)."""
    from tfus import storage
    tc = train_config or TrainConfig()
    dataset = storage.open_dataset(store_url)
    attrs = dict(dataset.attrs)
    split_ids(dataset, store_url, tc.min_samples, tc.no_val)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = run_config(store_url, model_config, tc, attrs)
    _prepare_run(out, config)
    device = pick_device(tc.device)
    model, optimizer, scheduler, state = _restore(out, model_config, tc, device)
    datasets = (StoreDataset(store_url, "train", model_config.n_points, augment=tc.flips, seed=tc.seed,
                             prior=model_config.prior),
                None if tc.no_val else StoreDataset(store_url, "val", model_config.n_points, prior=model_config.prior))
    loss_fn = CompositeLoss.from_train_config(tc)
    for epoch in range(state["epoch"], tc.epochs):
        row = _epoch(epoch, model, optimizer, datasets, loss_fn, tc, device, attrs.get("spacing_mm", 1.0),
                     progress)
        scheduler.step()
        state["history"].append(row)
        if tc.no_val or row["val_loss"] < state["best_val"]:  # without validation: the last epoch is kept
            if not tc.no_val:
                state["best_val"] = row["val_loss"]
            state["best_epoch"] = epoch + 1
            checkpoint.save_weights(model, out / "best.safetensors")
            write_json(out / "config.json", {**config, "best_epoch": epoch + 1, "validated": not tc.no_val,
                                             "best_val_loss": None if tc.no_val else row["val_loss"]})
        state["epoch"] = epoch + 1
        checkpoint.save_training_state(out / "last.safetensors", model, optimizer, scheduler, state)
        write_history(out, state["history"])
        log.info("epoch %d: train %.4g val %.4g", epoch + 1, row["train_loss"], row.get("val_loss", math.nan))
    return {"run_dir": str(out), "epochs": state["epoch"], "best_epoch": state["best_epoch"],
            "best_val_loss": None if tc.no_val else state["best_val"], "model_id": config["model_id"],
            "config_hash": config["config_hash"], "history": state["history"]}


def train_named(store_url: str, model_name: str, out_dir, baseline: bool = False, progress: bool = True,
                mask_channel: bool = False, prior: bool = False, **train_overrides) -> dict:
    """``train`` with a model preset by name (``baseline``: its unet_plain twin; ``mask_channel``: the
    conditioned network with the transducer-mask channel too; ``prior``: correcting the free-field beam) and
    TrainConfig overrides (None values keep the defaults)."""
    from tfus.models.config import get_model_config, plain_unet_config  # noqa: PLC0415

    if baseline and mask_channel:
        raise ValueError("--mask-channel adds the mask to the conditioned network; the baseline has it already")
    model_config = get_model_config(model_name, **({"mask_channel": True} if mask_channel else {}))
    if baseline:
        model_config = plain_unet_config(model_config)
    if prior:
        model_config = model_config.replace(prior=True)
    changes = {k: v for k, v in train_overrides.items() if v is not None}
    return train(store_url, model_config, out_dir, TrainConfig(**changes), progress=progress)
