import pytest
import torch

from tfus.models.config import get_model_config, plain_unet_config
from tfus.models.network import DeepTFUS, FourierFeatures, count_parameters, points_to_mask
from tests.models.conftest import small_config

SWITCHES = [{}, {"dynamic_conv": False}, {"dynamic_levels": (1,)}, {"cross_attention": False}, {"film": False},
            {"bidirectional": False}, {"dynamic_conv": False, "cross_attention": False, "film": False}]


def _inputs(b=2, shape=(16, 16, 16), p=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, *shape, generator=g), torch.rand(b, p, 3, generator=g) * 2 - 1


@pytest.mark.parametrize("changes", SWITCHES)
def test_shapes_with_each_switch(changes):
    model = DeepTFUS(small_config(**changes))
    ct, pts = _inputs()
    assert model(ct, pts).shape == ct.shape


def test_plain_unet_shape_and_mask_channel():
    model = DeepTFUS(plain_unet_config(small_config()))
    assert model.encoder is None
    ct, pts = _inputs()
    assert model(ct, pts).shape == ct.shape
    mask = points_to_mask(torch.tensor([[[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [3.0, 0, 0]]]), (4, 4, 4))
    assert mask.sum() == 2 and mask[0, 0, 0, 0, 0] == 1 and mask[0, 0, 3, 3, 3] == 1


@pytest.mark.parametrize("name, params", [("deeptfus", 3.4e6), ("deeptfus-tiny", 0.84e6)])
def test_presets_shapes_and_size(name, params):
    cfg = get_model_config(name)
    model = DeepTFUS(cfg)
    assert abs(count_parameters(model) - params) / params < 0.05
    ct, pts = _inputs(b=1, shape=(16, 16, 16), p=cfg.n_points)
    with torch.no_grad():
        assert model(ct, pts).shape == ct.shape
    plain = DeepTFUS(plain_unet_config(cfg))
    with torch.no_grad():
        assert plain(ct, pts).shape == ct.shape


@pytest.mark.parametrize("changes", [{}, {"cross_attention": False, "film": False},
                                     {"dynamic_conv": False, "film": False},
                                     {"dynamic_conv": False, "cross_attention": False}])
def test_conditioning_changes_output(changes):
    torch.manual_seed(0)
    model = DeepTFUS(small_config(**changes)).eval()
    ct, pts = _inputs(b=1)
    with torch.no_grad():
        a, b = model(ct, pts), model(ct, pts.flip(-1) * 0.5)
        assert torch.equal(model(ct, pts), a)
    assert (a - b).abs().max() > 1e-6


def test_plain_unet_sees_transducer_mask():
    model = DeepTFUS(plain_unet_config(small_config())).eval()
    ct, pts = _inputs(b=1)
    with torch.no_grad():
        assert (model(ct, pts) - model(ct, -pts)).abs().max() > 1e-6


def test_conditioned_network_with_the_mask_channel():
    """mask_channel: the conditioned network reads the rasterised points as a second input channel too; the
    option leaves configs without it (and their hashes) unchanged."""
    cfg = small_config(mask_channel=True)
    model = DeepTFUS(cfg).eval()
    def first_conv(net):
        return next(m for m in net.down[0].modules() if isinstance(m, torch.nn.Conv3d))

    assert model.encoder is not None and cfg.uses_mask and first_conv(model).in_channels == 2
    assert first_conv(DeepTFUS(small_config())).in_channels == 1
    ct, pts = _inputs(b=1)
    with torch.no_grad():
        assert model(ct, pts).shape == ct.shape
    assert "mask_channel" not in small_config().to_dict() and cfg.to_dict()["mask_channel"] is True


def test_bad_input_shapes():
    model = DeepTFUS(small_config())
    with pytest.raises(ValueError, match="divisible"):
        model(*_inputs(shape=(16, 16, 10)))
    with pytest.raises(ValueError, match="points"):
        model(torch.rand(2, 1, 16, 16, 16), torch.rand(2, 5, 2))


def test_the_encoding_sees_the_ring_drive():
    """Same points, different ring phases (a steered array): a different field; (B, P, 3) points are the
    in-phase drive; a model without ``drive_features`` ignores columns 3-4."""
    torch.manual_seed(0)
    model = DeepTFUS(small_config()).eval()
    ct, pts = _inputs(b=1)
    ring = torch.arange(pts.shape[1]) % 3
    phase = 0.9 * ring.float()
    steered = torch.cat([pts, torch.stack([phase.cos(), phase.sin()], -1)[None]], dim=-1)
    in_phase = torch.cat([pts, torch.stack([torch.ones_like(phase), torch.zeros_like(phase)], -1)[None]], -1)
    with torch.no_grad():
        assert torch.allclose(model(ct, pts), model(ct, in_phase))
        assert (model(ct, steered) - model(ct, in_phase)).abs().max() > 1e-6
        blind = DeepTFUS(small_config(drive_features=False)).eval()
        assert torch.equal(blind(ct, steered), blind(ct, pts))
    with pytest.raises(ValueError, match="points"):
        model(ct, steered[..., :4])


def test_fourier_features():
    ff = FourierFeatures(2)
    out = ff(torch.tensor([[0.5, 0.0, -0.5]]))
    assert out.shape == (1, 15)
    assert torch.allclose(out[0, :3], torch.tensor([0.5, 0.0, -0.5]))
    assert torch.isclose(out[0, 3], torch.sin(torch.tensor(0.5 * torch.pi)))


def test_tiny_model_overfits_one_batch():
    """A small conditioned model fits one batch (8³, 2 samples with different foci): loss drops > 10×."""
    torch.manual_seed(0)
    model = DeepTFUS(small_config())
    from tfus.models.losses import CompositeLoss
    loss_fn = CompositeLoss()
    ct, pts = _inputs(b=2, shape=(8, 8, 8))
    grid = torch.stack(torch.meshgrid(*[torch.arange(8.0)] * 3, indexing="ij"))
    centres = torch.tensor([[4.0, 2.0, 4.0], [4.0, 6.0, 4.0]])
    target = torch.stack([torch.exp(-((grid - c[:, None, None, None]) ** 2).sum(0) / 4) for c in centres])
    target = torch.log1p(target)[:, None]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = loss_fn(model(ct, pts), target)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert min(losses[-5:]) < losses[0] / 10


@pytest.mark.parametrize("shape, c_out, kernel", [((1, 16, 16, 16, 16), 16, 3),   # batch 1: PyTorch's im2col path
                                                 ((2, 1, 8, 8, 8), 8, 3), ((1, 8, 8, 8, 8), 1, 1)])
def test_onednn_conv_matches_pytorch_conv(shape, c_out, kernel):
    """tfus.models.network.Conv3d (oneDNN on CPU) computes what nn.Conv3d computes, values and gradients."""
    from torch import nn

    from tfus.models.network import Conv3d

    torch.manual_seed(0)
    ours = Conv3d(shape[1], c_out, kernel, padding=kernel // 2)
    ref = nn.Conv3d(shape[1], c_out, kernel, padding=kernel // 2)
    ref.load_state_dict(ours.state_dict())
    x1 = torch.randn(shape, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_()
    y1, y2 = ours(x1), ref(x2)
    torch.testing.assert_close(y1, y2, rtol=1e-4, atol=1e-5)
    (y1 * y1).sum().backward()
    (y2 * y2).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-3)
