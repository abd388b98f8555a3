import math

import pytest
import torch

from tfus.models.losses import CompositeLoss, focus_weights, gradient_loss, weighted_mse


def test_focus_weights_mean_one_and_peak_heaviest():
    target = torch.rand(2, 1, 6, 6, 6)
    w = focus_weights(target, alpha=5.0)
    assert torch.allclose(w.flatten(1).mean(1), torch.ones(2))
    flat_t, flat_w = target[0].flatten(), w[0].flatten()
    assert flat_w.argmax() == flat_t.argmax()
    # ratio between two voxels is exp(α ΔP)
    i, j = 0, 1
    assert math.isclose((flat_w[i] / flat_w[j]).item(), math.exp(5 * (flat_t[i] - flat_t[j]).item()), rel_tol=1e-4)


def test_weighted_mse_alpha_zero_is_plain_mse():
    a, b = torch.rand(2, 1, 4, 4, 4), torch.rand(2, 1, 4, 4, 4)
    assert torch.isclose(weighted_mse(a, b, alpha=0.0), ((a - b) ** 2).mean())


def test_gradient_loss_known_values():
    x = torch.arange(4.0).reshape(1, 1, 4, 1, 1).expand(1, 1, 4, 2, 2).contiguous()
    zero = torch.zeros_like(x)
    # d/dx = 1 everywhere along x (3 diffs), zero along y, z → mean over axes = 1/3
    assert torch.isclose(gradient_loss(x, zero, "l1"), torch.tensor(1 / 3))
    assert torch.isclose(gradient_loss(2 * x, zero, "l2"), torch.tensor(4 / 3))
    assert gradient_loss(x + 5, x, "l1") == 0  # a constant offset has no gradient error


def test_composite_weights_and_validation():
    a, b = torch.rand(1, 1, 4, 4, 4), torch.rand(1, 1, 4, 4, 4)
    full = CompositeLoss()(a, b)
    expected = weighted_mse(a, b, 5.0) + 0.1 * gradient_loss(a, b, "l1")
    assert torch.isclose(full, expected)
    assert torch.isclose(CompositeLoss(grad_weight=0)(a, b), weighted_mse(a, b, 5.0))
    assert CompositeLoss()(b, b) == 0
    with pytest.raises(ValueError, match="grad_norm"):
        CompositeLoss(grad_norm="huber")
