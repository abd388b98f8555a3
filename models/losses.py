"""Training loss: focus-weighted MSE plus a finite-difference gradient term (paper §5).

P is the target normalised pressure log(1 + p/max p), P̂ the prediction, both (B, 1, X, Y, Z).
- weighted MSE: mean over voxels of w·(P̂ − P)², w = exp(α(P − max P)) normalised per sample to mean 1;
- gradient loss: mean over the three axes of the L1 (default, as the reproduction implements it) or squared
  difference of forward finite differences of P̂ and P.
Total = mse_weight · L_w + grad_weight · L_grad (defaults 1 and 0.1, α = 5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def focus_weights(target: torch.Tensor, alpha: float) -> torch.Tensor:
    """w = exp(α (P − max P)) per sample, normalised to mean 1 over the voxels."""
    peak = target.flatten(1).amax(dim=1).reshape(-1, *([1] * (target.ndim - 1)))
    w = torch.exp(alpha * (target - peak))
    return w / w.flatten(1).mean(dim=1).reshape(peak.shape)


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, alpha: float = 5.0) -> torch.Tensor:
    with torch.no_grad():
        w = focus_weights(target, alpha)
    return (w * (pred - target) ** 2).mean()


def gradient_loss(pred: torch.Tensor, target: torch.Tensor, norm: str = "l1") -> torch.Tensor:
    terms = []
    for axis in range(2, pred.ndim):
        diff = torch.diff(pred, dim=axis) - torch.diff(target, dim=axis)
        terms.append(diff.abs().mean() if norm == "l1" else (diff ** 2).mean())
    return torch.stack(terms).mean()


@dataclass(frozen=True)
class CompositeLoss:
    alpha: float = 5.0
    mse_weight: float = 1.0
    grad_weight: float = 0.1
    grad_norm: str = "l1"

    def __post_init__(self) -> None:
        if self.grad_norm not in ("l1", "l2"):
            raise ValueError(f"`grad_norm` must be 'l1' or 'l2', got {self.grad_norm!r}")
        for name in ("alpha", "mse_weight", "grad_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)!r}")

    @classmethod
    def from_train_config(cls, tc) -> "CompositeLoss":
        return cls(alpha=tc.alpha, mse_weight=tc.mse_weight, grad_weight=tc.grad_weight, grad_norm=tc.grad_norm)

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred, target = pred.float(), target.float()
        loss = pred.new_zeros(())
        if self.mse_weight:
            loss = loss + self.mse_weight * weighted_mse(pred, target, self.alpha)
        if self.grad_weight:
            loss = loss + self.grad_weight * gradient_loss(pred, target, self.grad_norm)
        return loss
