"""Pressure in pascals: a small CNN that predicts a sample's peak pressures relative to the free field.

DeepTFUS predicts the *shape* of the field, log(1 + p/max p); the scale is what a user planning a sonication
needs (focal pressure, mechanical index). ``PeakNet`` predicts two transmission factors of a placement,

- ``T_max = max p / p_ref`` — the field's maximum anywhere (it scales the normalised field to pascals), and
- ``T_focus = p_focus / p_ref`` — the intracranial focal pressure of the simulation summary (outside bone,
  beyond the rim: ``sim.fieldstats``), the pressure a user aims,

where ``p_ref`` is the peak of the same transducer's free field in water on the same grid (one number per
simulation config: it varies by 1 % between placements, docs/RESULTS.md). The network regresses log T.

Input channels: the CT ([0, 2000] HU → [0, 1]), the rasterised transducer points, and a *ray channel*: the
density of straight rays from every transducer point to the bowl's centre of curvature (least-squares sphere
fit), continued 20 % beyond it — where the beam crosses the skull, which global pooling alone cannot find.
Flips augment training (all three channels flip together).

Files (in ``RUN/peak/``): ``config.json`` (the ``PeakConfig``, ``p_ref_pa`` and how it was obtained, the
training set's mean transmission factors — the baseline), ``best.safetensors``, ``history.csv``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tfus.models import checkpoint
from tfus.models.data import normalise_ct
from tfus.sim.beam_prior import sphere_centre

PEAK_DIR = "peak"
OUTPUTS = ("max", "focus")  # order of PeakNet's two outputs
RAY_OVERSHOOT = 1.2  # rays run to 1.2 × the point → centre distance


@dataclass(frozen=True)
class PeakConfig:
    """PeakNet architecture and training (frozen, validated)."""

    width: int = 8          # channels of the first level; doubled per level
    levels: int = 4         # stride-2 levels (48³ → 3³ for 4)
    hidden: int = 32        # MLP width after global mean + max pooling
    epochs: int = 40
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-3
    flips: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("width", "levels", "hidden", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}")
        if self.levels > 6:
            raise ValueError(f"`levels` must be <= 6, got {self.levels}")
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0 or \
                    (name == "lr" and value == 0):
                raise ValueError(f"`{name}` must be a finite number {'> 0' if name == 'lr' else '>= 0'}, "
                                 f"got {value!r}")
        if not isinstance(self.flips, bool):
            raise ValueError(f"`flips` must be a bool, got {self.flips!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"`seed` must be a non-negative integer, got {self.seed!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PeakConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown PeakConfig fields: {unknown}")
        return cls(**d)


def ray_channel(points_vox: np.ndarray, shape) -> np.ndarray:
    """Density of rays from each point towards the sphere centre (to ``RAY_OVERSHOOT`` × the distance),
    scaled to a maximum of 1 (float32, ``shape``)."""
    p = np.asarray(points_vox, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3 or len(p) < 4 or not np.isfinite(p).all():
        raise ValueError(f"transducer points must be finite with shape (P >= 4, 3), got {p.shape}")
    centre = sphere_centre(p)
    length = float(np.linalg.norm(centre - p, axis=1).max()) * RAY_OVERSHOOT
    s = np.linspace(0.0, RAY_OVERSHOOT, max(int(np.ceil(2 * length)), 2))
    pos = p[:, None, :] + s[None, :, None] * (centre - p)[:, None, :]
    idx = np.rint(pos.reshape(-1, 3)).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < np.asarray(shape)), axis=1)
    out = np.zeros(tuple(shape), np.float32)
    np.add.at(out, tuple(idx[inside].T), 1.0)
    return out / out.max() if out.max() > 0 else out


def point_mask(points_vox: np.ndarray, shape) -> np.ndarray:
    idx = np.rint(np.asarray(points_vox, dtype=np.float64)).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < np.asarray(shape)), axis=1)
    out = np.zeros(tuple(shape), np.float32)
    out[tuple(idx[inside].T)] = 1.0
    return out


def peak_inputs(ct_hu: np.ndarray, points_vox: np.ndarray) -> np.ndarray:
    """(3, X, Y, Z) float32 network input of one placement: CT, transducer mask, ray density."""
    ct_hu = np.asarray(ct_hu, dtype=np.float32)
    if ct_hu.ndim != 3 or not np.isfinite(ct_hu).all():
        raise ValueError(f"CT window must be a finite 3-D array, got shape {ct_hu.shape}")
    return np.stack([normalise_ct(ct_hu), point_mask(points_vox, ct_hu.shape), ray_channel(points_vox, ct_hu.shape)])


class PeakNet(nn.Module):
    """Strided 3-D convolutions → global mean and max pooling → MLP → (log T_max, log T_focus)."""

    def __init__(self, config: PeakConfig):
        super().__init__()
        self.config = config
        layers, c = [], 3
        for level in range(config.levels):
            w = config.width * 2 ** level
            groups = min(4, w)
            layers += [nn.Conv3d(c, w, 3, padding=1), nn.GroupNorm(groups, w), nn.SiLU(),
                       nn.Conv3d(w, w, 3, stride=2, padding=1), nn.GroupNorm(groups, w), nn.SiLU()]
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(2 * c, config.hidden), nn.SiLU(), nn.Linear(config.hidden, len(OUTPUTS)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"PeakNet input must be (B, 3, X, Y, Z), got {tuple(x.shape)}")
        h = self.features(x)
        return self.head(torch.cat([h.mean(dim=(2, 3, 4)), h.amax(dim=(2, 3, 4))], dim=1))


def mechanical_index(peak_negative_pa: float, frequency_hz: float) -> float:
    """MI = p_neg [MPa] / √f [MHz] (a steady-state amplitude is its own peak negative pressure)."""
    return float(peak_negative_pa) / 1e6 / float(np.sqrt(frequency_hz / 1e6))


class PeakModel:
    """A trained PeakNet with its reference pressure: placements → pressures in Pa."""

    def __init__(self, net: PeakNet, info: dict, device: torch.device):
        self.net, self.info, self.device = net.eval(), info, device
        self.p_ref_pa = float(info["p_ref_pa"])

    @classmethod
    def from_run(cls, run_dir, device: torch.device | str = "cpu") -> "PeakModel | None":
        """The run's pressure head (None when the run has none: ``tfus train-peak`` adds it)."""
        folder = Path(run_dir) / PEAK_DIR
        if not (folder / "config.json").is_file():
            return None
        try:
            info = json.loads((folder / "config.json").read_text())
            net = PeakNet(PeakConfig.from_dict(info["config"]))
            float(info["p_ref_pa"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{folder / 'config.json'} is not a tfus pressure-head config: {exc}") from exc
        checkpoint.load_weights(net, folder / "best.safetensors")
        device = torch.device(device)
        return cls(net.to(device), info, device)

    @torch.no_grad()
    def predict_inputs(self, inputs: np.ndarray, batch_size: int = 8) -> np.ndarray:
        """(B, 3, X, Y, Z) inputs → (B, 2) pressures in Pa (max anywhere, intracranial focus)."""
        out = []
        for i in range(0, len(inputs), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(inputs[i:i + batch_size])).to(self.device)
            out.append(self.net(x).float().cpu().numpy())
        return self.p_ref_pa * np.exp(np.concatenate(out).astype(np.float64))

    def predict(self, ct_hu: np.ndarray, points_vox: np.ndarray) -> dict:
        """``peak_pressure_pa`` (the field's maximum) and ``focal_pressure_pa`` of one placement."""
        p = self.predict_inputs(peak_inputs(ct_hu, points_vox)[None])[0]
        return {"peak_pressure_pa": float(p[0]), "focal_pressure_pa": float(p[1])}


# --- training ---------------------------------------------------------------------------------------------

def sample_targets(pressure_pa: np.ndarray, focal_pressure_pa: float, p_ref_pa: float) -> np.ndarray:
    """(log T_max, log T_focus) of one simulated sample."""
    peak = float(np.max(np.abs(pressure_pa)))
    if not (peak > 0 and focal_pressure_pa > 0 and np.isfinite(focal_pressure_pa)):
        raise ValueError("sample pressure is not positive; cannot form transmission factors")
    return np.log(np.array([peak, float(focal_pressure_pa)]) / p_ref_pa)


def load_split(reader, p_ref_pa: float, focal: dict, progress: bool = False):
    """(inputs (N, 3, X, Y, Z) float32, targets (N, 2), sample ids) of a ``storage.SampleReader``."""
    from tqdm import tqdm  # noqa: PLC0415

    xs, ys, ids = [], [], []
    for i in tqdm(range(len(reader)), desc="load", disable=not progress):
        s = reader[i]
        xs.append(peak_inputs(s["ct_hu"], s["transducer_points"]))
        ys.append(sample_targets(s["pressure_pa"], focal[s["sample_id"]], p_ref_pa))
        ids.append(s["sample_id"])
    return np.stack(xs), np.stack(ys), ids


def _flip(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    axes = [a + 2 for a in range(3) if rng.random() < 0.5]
    return torch.flip(x, axes) if axes else x


def fit(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray | None, val_y: np.ndarray | None,
        config: PeakConfig, progress: bool = True) -> tuple[PeakNet, list[dict]]:
    """Train PeakNet (MSE on log T; AdamW, cosine schedule); keeps the epoch of lowest validation loss (the last
    one without validation data). Returns the network and the per-epoch history."""
    from tqdm import tqdm  # noqa: PLC0415

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    net = PeakNet(config)
    with torch.no_grad():  # start at the training mean: the baseline the net must beat
        net.head[-1].bias.copy_(torch.from_numpy(train_y.mean(axis=0).astype(np.float32)))
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * int(np.ceil(len(train_x) / config.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps, pct_start=0.1)
    x_all, y_all = torch.from_numpy(train_x), torch.from_numpy(train_y.astype(np.float32))
    best, best_loss, history = None, np.inf, []
    for epoch in tqdm(range(1, config.epochs + 1), desc="train pressure head", disable=not progress):
        t0 = time.perf_counter()
        net.train()
        order = rng.permutation(len(train_x))
        total = 0.0
        for i in range(0, len(order), config.batch_size):
            idx = torch.from_numpy(order[i:i + config.batch_size])
            x = x_all[idx]
            if config.flips:
                x = _flip(x, rng)
            loss = nn.functional.mse_loss(net(x), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        row = {"epoch": epoch, "train_loss": total / len(order), "epoch_s": time.perf_counter() - t0}
        if val_x is not None and len(val_x):
            row["val_loss"] = float(np.mean((predict_log(net, val_x) - val_y) ** 2))
        history.append(row)
        loss_now = row.get("val_loss", -epoch)  # without validation the last epoch wins
        if loss_now < best_loss:
            best_loss, best = loss_now, {k: v.detach().clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best)
    return net.eval(), history


@torch.no_grad()
def predict_log(net: PeakNet, x: np.ndarray, batch_size: int = 16) -> np.ndarray:
    net.eval()
    out = [net(torch.from_numpy(x[i:i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(out).astype(np.float64)


def save(run_dir, net: PeakNet, info: dict, history: list[dict]) -> Path:
    """Write ``RUN/peak/`` (weights first, config last: a folder without config.json is not a head)."""
    folder = Path(run_dir) / PEAK_DIR
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint.save_weights(net, folder / "best.safetensors")
    keys = sorted({k for row in history for k in row})
    lines = [",".join(keys)] + [",".join(f"{row.get(k, '')}" for k in keys) for row in history]
    (folder / "history.csv").write_text("\n".join(lines) + "\n")
    tmp = folder / "config.json.tmp"
    tmp.write_text(json.dumps({**info, "config": net.config.to_dict()}, indent=2))
    tmp.replace(folder / "config.json")
    return folder


def pressure_errors(pred_pa: np.ndarray, true_pa: np.ndarray) -> np.ndarray:
    """|p̂ − p| / p per sample and output."""
    return np.abs(np.asarray(pred_pa) - np.asarray(true_pa)) / np.asarray(true_pa)
