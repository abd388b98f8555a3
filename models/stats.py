"""Statistics a user can trust for per-sample metrics: subjects, not samples, are the independent units.

Samples of one subject share its skull, so a mean over samples has a confidence interval set by how many
subjects there are, not by how many placements each has. Hence:

* ``bootstrap_ci``: 95 % percentile interval of the mean by resampling *subjects* with replacement (all of
  a drawn subject's samples come along), 2000 draws, seeded — the cluster bootstrap;
* ``paired_comparison``: two models on the same samples — the mean per-sample difference with its
  subject-bootstrap interval, the Wilcoxon signed-rank test over samples and over subject means (the second
  is the honest one when placements of a subject are correlated), and how often each model is better.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

N_BOOT = 2000
LEVEL = 0.95
HIGHER_IS_BETTER = ("dice_6db",)


def _groups(subject_ids: Sequence[str], n: int) -> list[np.ndarray]:
    if len(subject_ids) != n:
        raise ValueError(f"{len(subject_ids)} subject ids for {n} values")
    labels = np.asarray([str(s) for s in subject_ids])
    return [np.flatnonzero(labels == s) for s in dict.fromkeys(labels)]


def bootstrap_ci(values, subject_ids: Sequence[str], n_boot: int = N_BOOT, seed: int = 0,
                 level: float = LEVEL) -> tuple[float, float]:
    """(low, high) of the mean of ``values`` by the subject (cluster) bootstrap; one subject: (mean, mean)."""
    v = np.asarray(values, dtype=np.float64)
    groups = _groups(subject_ids, len(v))
    if len(groups) < 2:
        return float(v.mean()), float(v.mean())
    rng = np.random.default_rng(seed)
    sums = np.array([v[g].sum() for g in groups])
    counts = np.array([len(g) for g in groups], dtype=np.float64)
    draws = rng.integers(0, len(groups), size=(n_boot, len(groups)))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def subject_means(values, subject_ids: Sequence[str]) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    return np.array([v[g].mean() for g in _groups(subject_ids, len(v))])


def _wilcoxon_p(diff: np.ndarray) -> float | None:
    from scipy.stats import wilcoxon  # noqa: PLC0415

    if len(diff) < 2 or not np.any(diff != 0):
        return None
    return float(wilcoxon(diff, zero_method="wilcox").pvalue)


def paired_comparison(a: dict, b: dict, subject_ids: Sequence[str], metrics: Sequence[str],
                      seed: int = 0) -> dict:
    """Model ``a`` against ``b`` per metric (module docstring); ``a``/``b``: {metric: per-sample values}."""
    out = {}
    for name in metrics:
        va, vb = np.asarray(a[name], np.float64), np.asarray(b[name], np.float64)
        if va.shape != vb.shape:
            raise ValueError(f"{name}: {va.shape} vs {vb.shape} values; the models must see the same samples")
        diff = va - vb
        sign = 1.0 if name in HIGHER_IS_BETTER else -1.0
        out[name] = {
            "mean_difference": float(diff.mean()), "ci95": list(bootstrap_ci(diff, subject_ids, seed=seed)),
            "median_difference": float(np.median(diff)),
            "a_better_fraction": float(np.mean(sign * diff > 0)), "b_better_fraction": float(np.mean(sign * diff < 0)),
            "wilcoxon_p_samples": _wilcoxon_p(diff),
            "wilcoxon_p_subjects": _wilcoxon_p(subject_means(diff, subject_ids)),
            "n_samples": int(len(diff)), "n_subjects": int(len(_groups(subject_ids, len(diff)))),
            "better": "higher" if name in HIGHER_IS_BETTER else "lower",
        }
    return out
