"""models.stats: the subject bootstrap and the paired comparison on constructed values."""

import numpy as np
import pytest

from tfus.models.stats import bootstrap_ci, paired_comparison, subject_means


def test_bootstrap_counts_subjects_not_samples():
    """Ten placements of one subject are one unit: a subject-level spread gives a wide interval even with many
    samples, and identical subjects give a zero-width one."""
    subjects = [f"s{i // 10}" for i in range(40)]
    values = np.repeat([0.0, 1.0, 0.0, 1.0], 10) + np.tile(np.linspace(-0.01, 0.01, 10), 4)
    low, high = bootstrap_ci(values, subjects)
    assert low < 0.25 and high > 0.75  # 4 subjects, 2 at 0 and 2 at 1: the mean could be anywhere between
    naive = 1.96 * values.std() / np.sqrt(len(values))  # what treating samples as independent would claim
    assert high - low > 2.5 * (2 * naive)
    assert bootstrap_ci(np.ones(6), ["a", "a", "b", "b", "c", "c"]) == (1.0, 1.0)
    assert bootstrap_ci([3.0, 5.0], ["a", "a"]) == (4.0, 4.0)  # one subject: no interval to draw
    assert np.allclose(subject_means([1, 3, 10], ["a", "a", "b"]), [2, 10])
    with pytest.raises(ValueError, match="subject ids"):
        bootstrap_ci([1.0, 2.0], ["a"])


def test_paired_comparison_direction_and_tests():
    rng = np.random.default_rng(0)
    subjects = [f"s{i // 4}" for i in range(48)]
    b = {"rel_l2": rng.uniform(0.3, 0.5, 48), "dice_6db": rng.uniform(0.3, 0.6, 48)}
    a = {"rel_l2": b["rel_l2"] - 0.05, "dice_6db": b["dice_6db"] + 0.1}  # a better everywhere
    out = paired_comparison(a, b, subjects, ["rel_l2", "dice_6db"])
    assert out["rel_l2"]["a_better_fraction"] == 1.0 and out["rel_l2"]["mean_difference"] == pytest.approx(-0.05)
    assert out["dice_6db"]["a_better_fraction"] == 1.0 and out["dice_6db"]["better"] == "higher"
    assert out["rel_l2"]["wilcoxon_p_samples"] < 1e-6 and out["rel_l2"]["wilcoxon_p_subjects"] < 0.001
    assert out["rel_l2"]["n_subjects"] == 12 and out["rel_l2"]["ci95"][1] < 0
    same = paired_comparison(b, b, subjects, ["rel_l2"])["rel_l2"]
    assert same["wilcoxon_p_samples"] is None and same["a_better_fraction"] == same["b_better_fraction"] == 0.0
