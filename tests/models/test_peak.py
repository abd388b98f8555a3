"""The pressure head (models.peak): geometry of its inputs, config validation, and that training learns a
transmission factor the training mean cannot give."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tfus.models.peak import (PeakConfig, PeakModel, PeakNet, fit, mechanical_index, peak_inputs, predict_log,
                              ray_channel, save, sphere_centre)

SHAPE = (16, 16, 16)


def _cap(centre, radius, n=200, seed=0):
    """Points on a spherical cap of ``radius`` around ``centre`` opening towards +x."""
    rng = np.random.default_rng(seed)
    theta = rng.uniform(0, 0.6, n)
    phi = rng.uniform(0, 2 * np.pi, n)
    d = np.stack([-np.cos(theta), np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi)], 1)
    return np.asarray(centre) + radius * d


def test_sphere_centre_recovers_the_bowl_centre():
    np.testing.assert_allclose(sphere_centre(_cap((8.0, 7.5, 8.5), 10.0)), (8.0, 7.5, 8.5), atol=1e-6)


def test_ray_channel_runs_from_the_bowl_through_its_centre():
    rays = ray_channel(_cap((8.0, 8.0, 8.0), 7.0), SHAPE)
    assert rays.shape == SHAPE and rays.max() == pytest.approx(1.0)
    assert rays[8, 8, 8] > 0.5          # all rays cross at the centre of curvature
    assert rays[8, 8, 1] == 0           # nothing off the cone (behind the bowl's side)
    assert rays[9, 8, 8] > 0 and rays[11, 8, 8] == 0  # 20 % overshoot past the centre, not more


def test_peak_inputs_channels_and_bad_input():
    x = peak_inputs(np.full(SHAPE, 1000.0), _cap((8.0, 8.0, 8.0), 7.0))
    assert x.shape == (3, *SHAPE) and np.allclose(x[0], 0.5) and x[1].sum() > 0
    with pytest.raises(ValueError, match="finite 3-D"):
        peak_inputs(np.full((4, 4), 0.0), _cap((8.0, 8.0, 8.0), 7.0))
    with pytest.raises(ValueError, match="transducer points"):
        ray_channel(np.zeros((2, 3)), SHAPE)


@pytest.mark.parametrize("field, value", [("width", 0), ("levels", 7), ("lr", 0.0), ("flips", 1), ("seed", -1)])
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        PeakConfig(**{field: value})


def test_mechanical_index():
    assert mechanical_index(1.0e6, 0.25e6) == pytest.approx(2.0)


def _dataset(n, seed):
    """A skull slab of random HU in front of the bowl; log T falls with the slab's HU (as through bone)."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    points = _cap((8.0, 8.0, 8.0), 7.0)
    for _ in range(n):
        hu = rng.uniform(300, 1900)
        ct = np.zeros(SHAPE, np.float32)
        ct[4:6] = hu
        xs.append(peak_inputs(ct, points))
        t = np.exp(-hu / 1000.0)
        ys.append(np.log([1.5 * t, t]))
    return np.stack(xs), np.stack(ys)


def test_fit_learns_transmission_beyond_the_training_mean(tmp_path):
    torch.manual_seed(0)
    x, y = _dataset(48, 0)
    vx, vy = _dataset(16, 1)
    net, history = fit(x, y, vx, vy, PeakConfig(width=4, levels=2, hidden=16, epochs=30, batch_size=8, lr=1e-2,
                                                flips=True), progress=False)
    mean_baseline = float(np.mean((vy - y.mean(axis=0)) ** 2))
    learned = float(np.mean((predict_log(net, vx) - vy) ** 2))
    assert learned < 0.25 * mean_baseline, (learned, mean_baseline)
    assert len(history) == 30 and all("val_loss" in h for h in history)
    # saved and reloaded: the same pressures, scaled by p_ref
    save(tmp_path, net, {"p_ref_pa": 2e5, "train_mean_transmission": {"max": 1.0, "focus": 0.6}}, history)
    head = PeakModel.from_run(tmp_path)
    np.testing.assert_allclose(head.predict_inputs(vx[:3]), 2e5 * np.exp(predict_log(net, vx[:3])), rtol=1e-5)


def test_run_without_head_has_none_and_broken_head_is_refused(tmp_path):
    assert PeakModel.from_run(tmp_path) is None
    (tmp_path / "peak").mkdir()
    (tmp_path / "peak" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="pressure-head config"):
        PeakModel.from_run(tmp_path)


def test_peaknet_checks_its_input():
    with pytest.raises(ValueError, match="B, 3"):
        PeakNet(PeakConfig(width=4, levels=2))(torch.zeros(1, 1, 8, 8, 8))
