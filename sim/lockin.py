"""Lock-in amplitude over whole drive periods, with steady state detected rather than assumed.

Windows of ``window_steps`` (whole periods) are laid out backwards from the fixed run length ``n_steps``
(the cap), starting after the drive's ramp. After each window the lock-in amplitude |A| = |(2/N) Σ p e^{−iωt}|
is compared with the previous window's in the region where a focus can be (the box beyond the bowl's rim
plane): when ‖|A_k| − |A_{k−1}|‖ / ‖|A_k|‖ < ``tol`` the loop stops early. Without an early stop the last two
windows are exactly the fixed-length run's two windows, so ``tol = 0`` reproduces it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LockInPlan:
    """Window layout in steps: windows ``[first_start + j·window_steps, …)`` end exactly at ``n_steps``."""

    n_steps: int              # cap: today's fixed run length
    window_steps: int
    points_per_period: int
    first_start: int
    tol: float                # relative L2 change of |A| between consecutive windows; 0 = never stop early

    def __post_init__(self) -> None:
        if self.window_steps < 1 or self.n_steps < 2 * self.window_steps:
            raise ValueError(f"need two lock-in windows of {self.window_steps} steps in {self.n_steps} steps")
        if not 0 <= self.tol < 1:
            raise ValueError(f"`tol` must be in [0, 1), got {self.tol}")


def lockin_plan(n_steps: int, window_steps: int, points_per_period: int, ramp_cycles: float,
                tol: float) -> LockInPlan:
    """The earliest window starts on the first window boundary after the ramp (at least two windows)."""
    ramp_steps = int(math.ceil(ramp_cycles * points_per_period))
    n_windows = max(2, (n_steps - ramp_steps) // window_steps)
    return LockInPlan(n_steps, window_steps, points_per_period, n_steps - n_windows * window_steps, float(tol))


def focus_region(box, apex_vox, focus_vox, roc_m: float, diameter_m: float, spacing_m: float) -> np.ndarray:
    """Boolean box mask beyond the bowl's rim plane (along the bowl axis): where a focus can be."""
    apex, focus = np.asarray(apex_vox, float), np.asarray(focus_vox, float)
    axis = (focus - apex) / np.linalg.norm(focus - apex)
    depth_vox = (roc_m - math.sqrt(max(roc_m ** 2 - (diameter_m / 2) ** 2, 0.0))) / spacing_m
    proj = sum(((np.arange(n) - apex[i]) * axis[i]).reshape([-1 if j == i else 1 for j in range(3)])
               for i, n in enumerate(box))
    mask = np.broadcast_to(proj > depth_vox, tuple(box))
    return np.ascontiguousarray(mask) if mask.any() else np.ones(tuple(box), bool)


class LockIn:
    """Accumulates Σ p cos(ωt), Σ p sin(ωt) per window; ``add`` returns True once the field is steady."""

    def __init__(self, xp, box, dtype, plan: LockInPlan, region: np.ndarray | None = None,
                 fused=None) -> None:
        """``fused``: the engine's ``sim.kernels.FusedKernels`` (accumulate in one pass), or None (NumPy)."""
        self.xp, self.plan, self._fused = xp, plan, fused
        phase = 2 * np.pi * np.arange(plan.points_per_period) / plan.points_per_period
        self._cos, self._sin = np.cos(phase), np.sin(phase)
        self._pairs = [[xp.zeros(box, dtype), xp.zeros(box, dtype)] for _ in range(2)]  # [older, newer]
        # p·cos / p·sin without a box-sized temporary per step
        self._scratch = xp.empty(box, dtype) if fused is None else None
        self._region = xp.asarray(region) if region is not None else None
        self.n_windows = 0
        self.changes: list[float] = []  # region change after each window (from the second on)

    @property
    def last_change(self) -> float:
        return self.changes[-1] if self.changes else float("inf")

    def windows(self):
        """[(re, im) of the previous window, (re, im) of the last complete window]."""
        return self._pairs

    def add(self, n: int, p) -> bool:
        """Take ``p`` = the field after step ``n`` (time n·dt); True when a window just ended steady."""
        plan, xp = self.plan, self.xp
        if n < plan.first_start:
            return False
        re, im = self._pairs[1]
        k = n % plan.points_per_period
        if self._fused is not None:
            self._fused.lockin(p, re, im, float(self._cos[k]), float(self._sin[k]))
        else:
            xp.multiply(p, float(self._cos[k]), out=self._scratch)
            re += self._scratch
            xp.multiply(p, float(self._sin[k]), out=self._scratch)
            im += self._scratch
        if (n + 1 - plan.first_start) % plan.window_steps:
            return False
        return self._window_done(n)

    def _window_done(self, n: int) -> bool:
        self.n_windows += 1
        if self.n_windows >= 2:
            self.changes.append(self._change())
        steady = (self.n_windows >= 2 and plan_allows_stop(self.plan, self.last_change))
        if not steady and n + 1 < self.plan.n_steps:  # the older pair becomes the next window
            self._pairs.reverse()
            for a in self._pairs[1]:
                a.fill(0)
        return steady

    def _change(self) -> float:
        xp = self.xp
        (re0, im0), (re1, im1) = self._pairs
        a0, a1 = xp.hypot(re0, im0), xp.hypot(re1, im1)
        if self._region is not None:
            a0, a1 = a0[self._region], a1[self._region]
        norm = float(xp.linalg.norm(a1.astype(np.float64)))
        return float(xp.linalg.norm((a1 - a0).astype(np.float64))) / norm if norm > 0 else float("inf")


def plan_allows_stop(plan: LockInPlan, change: float) -> bool:
    return plan.tol > 0 and change < plan.tol
