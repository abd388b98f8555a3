import math

import numpy as np
import pytest

from tfus.models.metrics import aggregate, dice_6db, focal_error_mm, max_pressure_error, rel_l2, sample_metrics


def _field(shape, peak, value=np.log(2)):
    f = np.zeros(shape)
    f[peak] = value
    return f


def test_rel_l2_known():
    t = np.ones((4, 4, 4))
    assert rel_l2(t, t) == 0
    assert math.isclose(rel_l2(1.5 * t, t), 0.5)
    assert math.isclose(rel_l2(np.zeros_like(t), t), 1.0)


def test_focal_error_mm_known():
    a, b = _field((10, 10, 10), (1, 2, 3)), _field((10, 10, 10), (4, 6, 3))
    assert math.isclose(focal_error_mm(a, b, 0.5), 2.5)      # 3-4-5 triangle × 0.5 mm
    assert math.isclose(focal_error_mm(a, b, (1.0, 2.0, 1.0)), math.hypot(3, 8))
    assert focal_error_mm(a, a, 0.5) == 0


def test_max_pressure_error_known():
    t = _field((4, 4, 4), (1, 1, 1), 2.0)
    assert math.isclose(max_pressure_error(_field((4, 4, 4), (0, 0, 0), 1.5), t), 0.25)


def test_dice_6db_known():
    # linear amplitudes exp(P)-1: target mask = 2 voxels, prediction mask = 1 of them + 1 other
    lin_t = np.zeros((6, 6, 6)); lin_t[1, 1, 1] = 1.0; lin_t[1, 1, 2] = 0.6; lin_t[3, 3, 3] = 0.4
    lin_p = np.zeros((6, 6, 6)); lin_p[1, 1, 1] = 1.0; lin_p[4, 4, 4] = 0.5
    t, p = np.log1p(lin_t), np.log1p(lin_p)
    assert math.isclose(dice_6db(p, t), 2 * 1 / (2 + 2))
    assert dice_6db(t, t) == 1.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="shape"):
        rel_l2(np.zeros((2, 2, 2)), np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match="finite"):
        rel_l2(np.full((2, 2, 2), np.nan), np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="all zero"):
        rel_l2(np.ones((2, 2, 2)), np.zeros((2, 2, 2)))


def test_aggregate():
    t = _field((5, 5, 5), (2, 2, 2))
    rows = [sample_metrics(t, t, 1.0), sample_metrics(_field((5, 5, 5), (2, 2, 4)), t, 1.0),
            sample_metrics(_field((5, 5, 5), (2, 2, 3)), t, 1.0)]
    agg = aggregate(rows, ["a", "b", "c"])
    assert agg["n"] == 3 and agg["sample_ids"] == ["a", "b", "c"]
    assert agg["focal_error_mm"]["values"] == [0.0, 2.0, 1.0]
    assert math.isclose(agg["focal_error_mm"]["mean"], 1.0)
    assert math.isclose(agg["focal_error_mm"]["median"], 1.0)
    assert math.isclose(agg["focal_error_mm"]["std"], np.std([0, 2, 1]))
    with pytest.raises(ValueError):
        aggregate([])
