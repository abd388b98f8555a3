"""Model and training configuration: frozen dataclasses validated on construction.

`ModelConfig` describes the DeepTFUS network (and, with ``conditioning=False``, the plain U-Net baseline that
only sees a transducer-mask input channel). `TrainConfig` describes one training run. Both hash to a stable
key (sha256 of sorted JSON), the convention shared by every package.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field


def _key(d: dict) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def _positive_int(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """DeepTFUS architecture.

    Widths are ``base_width * 2**level`` for levels ``0..depth`` (level ``depth`` is the bottleneck), so the
    input's spatial dims must be divisible by ``2**depth``. ``attention_levels`` lists the levels (bottleneck
    included) that get cross-attention with the transducer embedding.
    """

    name: str = "deeptfus"
    base_width: int = 16
    depth: int = 3
    attention_levels: tuple[int, ...] = (1, 2, 3)
    dynamic_levels: tuple[int, ...] | None = None  # encoder levels with dynamic convs; None: all
    embed_dim: int = 128
    n_fourier: int = 8            # octaves 2^k·π, k = 0..n_fourier-1
    point_mlp_layers: int = 2
    n_points: int = 512           # transducer points fed to the encoder (subsampled)
    n_tokens: int = 4             # z_T is projected into this many key/value tokens for cross-attention
    heads: int = 4
    dyn_kernel: int = 3
    norm_groups: int = 8
    dynamic_conv: bool = True
    cross_attention: bool = True
    bidirectional: bool = True
    film: bool = True
    conditioning: bool = True
    drive_features: bool = True   # each point also carries its ring's drive (a·cos φ, a·sin φ): steering
    mask_channel: bool = False    # the rasterised transducer points as a second input channel besides the
                                  # conditioning (the plain U-Net always has it)
    prior: bool = False           # the transducer's free-field beam (sim.beam_prior) as an input channel, and
                                  # the output a correction to it: untrained, the network is the free field

    def __post_init__(self) -> None:
        for name in ("attention_levels", "dynamic_levels"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"`name` must be a non-empty string, got {self.name!r}")
        for name in ("base_width", "depth", "embed_dim", "point_mlp_layers", "n_points", "n_tokens",
                     "heads", "dyn_kernel", "norm_groups"):
            _positive_int(name, getattr(self, name))
        _positive_int("n_fourier", self.n_fourier, minimum=0)
        for name in ("dynamic_conv", "cross_attention", "bidirectional", "film", "conditioning", "drive_features",
                     "mask_channel", "prior"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"`{name}` must be a bool, got {getattr(self, name)!r}")
        if self.depth > 6:
            raise ValueError(f"`depth` must be <= 6, got {self.depth}")
        if self.dyn_kernel % 2 == 0:
            raise ValueError(f"`dyn_kernel` must be odd, got {self.dyn_kernel}")
        if self.base_width % self.norm_groups:
            raise ValueError(f"`base_width` ({self.base_width}) must be divisible by `norm_groups` "
                             f"({self.norm_groups})")
        self._check_attention()
        if not self.conditioning and (self.dynamic_conv or self.cross_attention or self.film):
            raise ValueError("`conditioning` is False (plain U-Net) but `dynamic_conv`, `cross_attention` or "
                             "`film` is True; switch them off too (see plain_unet_config)")

    def _check_attention(self) -> None:
        for level in self.attention_levels:
            if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= self.depth:
                raise ValueError(f"`attention_levels` entries must be integers in [0, depth={self.depth}], "
                                 f"got {self.attention_levels}")
            if self.width(level) % self.heads:
                raise ValueError(f"`heads` ({self.heads}) must divide the width {self.width(level)} of "
                                 f"attention level {level}")
        if len(set(self.attention_levels)) != len(self.attention_levels):
            raise ValueError(f"`attention_levels` has duplicates: {self.attention_levels}")
        levels = self.dynamic_levels if self.dynamic_levels is not None else ()
        if not isinstance(levels, tuple) or any(isinstance(v, bool) or not isinstance(v, int)
                                                or not 0 <= v <= self.depth for v in levels):
            raise ValueError(f"`dynamic_levels` must be None or integers in [0, depth={self.depth}], "
                             f"got {self.dynamic_levels}")

    def has_dynamic(self, level: int) -> bool:
        return self.dynamic_conv and (self.dynamic_levels is None or level in self.dynamic_levels)

    def width(self, level: int) -> int:
        return self.base_width * 2 ** level

    @property
    def uses_mask(self) -> bool:
        """Whether the transducer mask enters as an input channel."""
        return self.mask_channel or not self.conditioning

    @property
    def in_channels(self) -> int:
        """CT, [transducer mask], [free-field prior]."""
        return 1 + int(self.uses_mask) + int(self.prior)

    @property
    def divisor(self) -> int:
        """Spatial input dims must be multiples of this."""
        return 2 ** self.depth

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["attention_levels"] = list(self.attention_levels)
        d["dynamic_levels"] = None if self.dynamic_levels is None else list(self.dynamic_levels)
        for name in ("mask_channel", "prior"):
            if not d[name]:
                d.pop(name)  # configs (and run hashes) from before the option stay as they were
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {sorted(unknown)}")
        # a config saved before the drive encoding existed describes a model without it
        return cls(**{"drive_features": False, **d})

    def key(self) -> str:
        return _key(self.to_dict())

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


_PRESETS = {
    # Paper-scale: widths 16/32/64/128, ~3.4 M parameters, for a GPU at 256³.
    "deeptfus": ModelConfig(),
    # CPU-scale: widths 8/16/32/64, trains at 64³ on two cores. No dynamic convs at full resolution: on a
    # CPU the depthwise-conv backward at 64³ costs more than the rest of the step (docs/PERFORMANCE.md).
    "deeptfus-tiny": ModelConfig(name="deeptfus-tiny", base_width=8, depth=3, attention_levels=(2, 3),
                                 dynamic_levels=(1, 2, 3),
                                 embed_dim=64, n_fourier=6, n_points=256, heads=4, norm_groups=4),
}


def plain_unet_config(config: ModelConfig) -> ModelConfig:
    """The `unet_plain` baseline: the same backbone, no transducer encoder, a transducer-mask input channel."""
    return config.replace(name=f"{config.name}-plain", dynamic_conv=False, cross_attention=False,
                          film=False, conditioning=False, attention_levels=())


def get_model_config(name: str, **overrides) -> ModelConfig:
    """A preset (``deeptfus`` or ``deeptfus-tiny``), optionally with fields replaced."""
    if name not in _PRESETS:
        raise ValueError(f"unknown model config {name!r}; choose one of {sorted(_PRESETS)}")
    return _PRESETS[name].replace(**overrides) if overrides else _PRESETS[name]


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``epochs`` may grow between resumptions; everything else must stay the same."""

    epochs: int = 50
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    alpha: float = 5.0            # weighted-MSE focus sharpness
    mse_weight: float = 1.0
    grad_weight: float = 0.1
    grad_norm: str = "l1"         # finite-difference gradient loss: "l1" or "l2"
    flips: bool = True            # random axis flips (field, CT and points flipped together)
    num_workers: int = 0
    seed: int = 0
    device: str = "auto"          # "auto" | "cpu" | "cuda"
    amp: bool = True              # bf16 autocast on CUDA only
    min_samples: dict = field(default_factory=lambda: {"train": 1, "val": 1})
    no_val: bool = False          # train without a validation split; the last epoch is the kept model

    def __post_init__(self) -> None:
        if not isinstance(self.no_val, bool):
            raise ValueError(f"`no_val` must be true or false, got {self.no_val!r}")
        for name in ("epochs", "batch_size"):
            _positive_int(name, getattr(self, name))
        for name in ("num_workers", "seed"):
            _positive_int(name, getattr(self, name), minimum=0)
        for name in ("lr", "grad_clip"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"`{name}` must be > 0, got {getattr(self, name)!r}")
        for name in ("weight_decay", "alpha", "mse_weight", "grad_weight"):
            if not float(getattr(self, name)) >= 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)!r}")
        if self.mse_weight == 0 and self.grad_weight == 0:
            raise ValueError("`mse_weight` and `grad_weight` are both 0: nothing to train on")
        if self.grad_norm not in ("l1", "l2"):
            raise ValueError(f"`grad_norm` must be 'l1' or 'l2', got {self.grad_norm!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"`device` must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if not isinstance(self.min_samples, dict) or set(self.min_samples) - {"train", "val"}:
            raise ValueError(f"`min_samples` must be a dict with keys train/val, got {self.min_samples!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}")
        return cls(**d)

    def resume_key(self) -> str:
        """Hash of everything that must not change when a run resumes (all but `epochs` and loader workers)."""
        d = self.to_dict()
        for name in ("epochs", "num_workers", "device"):
            d.pop(name)
        if not d["no_val"]:
            d.pop("no_val")  # runs from before the option keep their key
        return _key(d)

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)
