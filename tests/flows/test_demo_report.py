"""The demo report's verdict on the model against the free field (from the metrics `tfus evaluate` writes)."""

from tfus.flows.demo import DemoConfig, _verdict


def _entry(rel, focal, n=4):
    return {"n": n, "rel_l2": {"mean": rel}, "focal_error_mm": {"mean": focal}}


def test_verdict_says_whether_the_model_beats_the_free_field():
    better = {"deeptfus": _entry(0.48, 3.7), "free_field": _entry(0.61, 9.1),
              "_comparison": {"deeptfus_vs_free_field": {"rel_l2": {"a_better_fraction": 1.0}}}}
    text = _verdict(better)
    assert text.startswith("**The model beats the free field** on the 4 held-out samples")
    assert "rel-L2 0.48 vs 0.61 (better, lower on 100% of the samples)" in text
    worse = {"deeptfus": _entry(0.71, 3.0), "free_field": _entry(0.61, 9.1)}
    assert _verdict(worse).startswith("**The model does not beat the free field**")
    assert _verdict({"deeptfus": _entry(0.5, 1.0)}) == ""


def test_the_demo_trains_with_the_prior_by_default():
    assert DemoConfig().prior is True
