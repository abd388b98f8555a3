"""DeepTFUS: a 3D U-Net conditioned on the transducer through FiLM, dynamic convolutions and cross-attention.

Input: ``ct`` (B, 1, X, Y, Z) normalised CT in [0, 1] and ``points`` (B, P, 3) transducer surface points
scaled to [−1, 1] per axis (see :func:`models.data.scale_points`). Output: (B, 1, X, Y, Z) normalised pressure
``log(1 + p / max p)``.

Input-size limits: X, Y and Z must each be divisible by ``2**config.depth`` (the encoder halves them
``depth`` times with AvgPool3d(2)); batch and point count are free. Memory grows with X·Y·Z; cross-attention
is linear in the voxel count because z_T gives only ``n_tokens`` keys.

With ``config.conditioning=False`` the network is the plain U-Net baseline: no transducer encoder, and the
points are rasterised into a binary mask that enters as a second input channel. ``config.mask_channel`` gives
the conditioned network that channel too (conditioning on top of the mask).

With ``config.prior`` a third input ``prior`` (B, 1, X, Y, Z) — the transducer's free-field beam in the same
normalised form (``models.data.prior_channel``) — enters as a channel, and the output is that prior plus the
network's correction; the last layer starts at zero, so an untrained network returns the free field.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tfus.models.config import ModelConfig


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` that runs every float32 CPU convolution through oneDNN.

    PyTorch picks oneDNN or its im2col ``slow_conv3d`` with a heuristic tuned for 2D: a batch-1 input with
    N·C·D·H ≤ 20480 goes to the slow path whatever W is, which for this network's 32³ and 16³ levels is
    4–15× slower (measured: [1, 16, 32³] ⊛ [16, 16, 3³] 59 ms vs 4 ms on 2 cores). Same maths, same
    parameters and state-dict keys; oneDNN's op has its own backward, so training takes the same path.
    """

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if (x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32 and x.layout == torch.strided
                and self.padding_mode == "zeros" and not isinstance(self.padding, str)
                and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
            return torch.ops.aten.mkldnn_convolution(x.contiguous(), weight.contiguous(), bias, self.padding,
                                                     self.stride, self.dilation, self.groups)
        return super()._conv_forward(x, weight, bias)


class FourierFeatures(nn.Module):
    """x (…, 3) → (…, 3 + 6·n): the coordinates with sin/cos at octaves 2^k·π."""

    def __init__(self, n_octaves: int):
        super().__init__()
        self.register_buffer("freqs", (2.0 ** torch.arange(n_octaves)) * math.pi, persistent=False)
        self.out_dim = 3 + 6 * n_octaves

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.freqs.numel() == 0:
            return x
        angles = (x[..., None] * self.freqs).flatten(-2)
        return torch.cat([x, torch.sin(angles), torch.cos(angles)], dim=-1)


class TransducerEncoder(nn.Module):
    """Point cloud (B, P, 3) in [−1, 1] → global embedding z_T (B, E) by attention pooling. With
    ``drive_features`` each point's ring drive (a·cos φ, a·sin φ; columns 3-4 of (B, P, 5), or in phase
    (1, 0) when only coordinates are given) joins its Fourier features, so the embedding sees steering."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.fourier = FourierFeatures(config.n_fourier)
        self.drive = config.drive_features
        layers, dim = [], self.fourier.out_dim + (2 if self.drive else 0)
        for _ in range(config.point_mlp_layers):
            layers += [nn.Linear(dim, config.embed_dim), nn.LayerNorm(config.embed_dim), nn.ReLU()]
            dim = config.embed_dim
        self.mlp = nn.Sequential(*layers)
        self.score = nn.Linear(config.embed_dim, 1, bias=False)  # α_i = softmax_i(w·z_i)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        feats = self.fourier(points[..., :3])
        if self.drive:
            drive = points[..., 3:5] if points.shape[-1] == 5 else torch.stack(
                [torch.ones_like(points[..., 0]), torch.zeros_like(points[..., 0])], dim=-1)
            feats = torch.cat([feats, drive], dim=-1)
        z = self.mlp(feats)
        alpha = torch.softmax(self.score(z).squeeze(-1), dim=1)
        return torch.einsum("bp,bpe->be", alpha, z)


class DynamicDepthwiseConv3d(nn.Module):
    """Depthwise conv whose per-sample kernels come from z_T; starts as identity (plus a small perturbation)."""

    def __init__(self, channels: int, embed_dim: int, kernel: int):
        super().__init__()
        self.channels, self.kernel = channels, kernel
        self.head = nn.Linear(embed_dim, channels * kernel ** 3)
        nn.init.normal_(self.head.weight, std=1e-3)
        identity = torch.zeros(channels, kernel, kernel, kernel)
        identity[:, kernel // 2, kernel // 2, kernel // 2] = 1.0
        with torch.no_grad():
            self.head.bias.copy_(identity.flatten())

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        b, c, k = h.shape[0], self.channels, self.kernel
        weight = self.head(z).reshape(b * c, 1, k, k, k).to(h.dtype)
        # The batch folded into the groups: one grouped conv for all samples (on CPU a per-sample loop had a
        # 5x slower backward at 32³, measured).
        out = F.conv3d(h.reshape(1, b * c, *h.shape[2:]), weight, padding=k // 2, groups=b * c)
        return out.reshape(h.shape)


class CrossAttention(nn.Module):
    """Encoder features ↔ transducer tokens, fused by concatenation (residual).

    z_T is projected into ``n_tokens`` tokens. Bidirectional: the tokens first attend to the features (so
    they see the anatomy), then every voxel attends to the updated tokens.
    """

    def __init__(self, channels: int, config: ModelConfig):
        super().__init__()
        self.heads, self.n_tokens, self.bidirectional = config.heads, config.n_tokens, config.bidirectional
        self.tokens = nn.Linear(config.embed_dim, config.n_tokens * channels)
        self.norm_h = nn.GroupNorm(1, channels)
        self.norm_t = nn.LayerNorm(channels)
        if self.bidirectional:
            self.t_q, self.h_kv = nn.Linear(channels, channels), nn.Linear(channels, 2 * channels)
        self.h_q, self.t_kv = nn.Linear(channels, channels), nn.Linear(channels, 2 * channels)
        self.fuse = Conv3d(2 * channels, channels, 1)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, C) → (B, heads, N, C/heads)
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def _attend(self, q, k, v) -> torch.Tensor:
        out = F.scaled_dot_product_attention(self._split(q), self._split(k), self._split(v))
        return out.transpose(1, 2).flatten(-2)

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        b, c = h.shape[:2]
        feats = self.norm_h(h).flatten(2).transpose(1, 2)             # (B, N, C)
        tokens = self.tokens(z).reshape(b, self.n_tokens, c).to(feats.dtype)
        if self.bidirectional:
            k, v = self.h_kv(feats).chunk(2, dim=-1)
            tokens = tokens + self._attend(self.t_q(self.norm_t(tokens)), k, v)
        k, v = self.t_kv(self.norm_t(tokens)).chunk(2, dim=-1)
        attended = self._attend(self.h_q(feats), k, v).transpose(1, 2).reshape(h.shape)
        return h + self.fuse(torch.cat([h, attended], dim=1))


class FiLM(nn.Module):
    """h ← γ(z_T)·h + β(z_T), initialised near γ = 1, β = 0."""

    def __init__(self, channels: int, embed_dim: int):
        super().__init__()
        self.head = nn.Linear(embed_dim, 2 * channels)
        nn.init.normal_(self.head.weight, std=1e-3)
        nn.init.zeros_(self.head.bias)

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.head(z).to(h.dtype).chunk(2, dim=-1)
        shape = (*gamma.shape, 1, 1, 1)
        return (1 + gamma.reshape(shape)) * h + beta.reshape(shape)


def _conv_block(c_in: int, c_out: int, groups: int) -> nn.Sequential:
    return nn.Sequential(Conv3d(c_in, c_out, 3, padding=1), nn.GroupNorm(min(groups, c_out), c_out),
                         nn.GELU())


class EncoderStage(nn.Module):
    """2 × (Conv3d → GroupNorm → GELU [→ dynamic depthwise conv]) [→ cross-attention]."""

    def __init__(self, c_in: int, c_out: int, config: ModelConfig, attention: bool, dynamic: bool):
        super().__init__()
        self.convs = nn.ModuleList([_conv_block(c_in, c_out, config.norm_groups),
                                    _conv_block(c_out, c_out, config.norm_groups)])
        self.dyn = nn.ModuleList([DynamicDepthwiseConv3d(c_out, config.embed_dim, config.dyn_kernel)
                                  for _ in range(2)]) if dynamic else None
        self.attn = CrossAttention(c_out, config) if attention else None

    def forward(self, h: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if self.dyn is not None:
                h = self.dyn[i](h, z)
        if self.attn is not None:
            h = self.attn(h, z)
        return h


class DecoderStage(nn.Module):
    """Trilinear ×2 upsample → concat skip → 2 × conv block [→ FiLM]."""

    def __init__(self, c_below: int, c_skip: int, config: ModelConfig):
        super().__init__()
        self.convs = nn.Sequential(_conv_block(c_below + c_skip, c_skip, config.norm_groups),
                                   _conv_block(c_skip, c_skip, config.norm_groups))
        self.film = FiLM(c_skip, config.embed_dim) if config.film else None

    def forward(self, h: torch.Tensor, skip: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        h = F.interpolate(h, size=skip.shape[2:], mode="trilinear", align_corners=False)
        h = self.convs(torch.cat([h, skip], dim=1))
        return self.film(h, z) if self.film is not None else h


def points_to_mask(points: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Rasterise points in [−1, 1] (B, P, 3) onto a (B, 1, *shape) binary mask (points outside are dropped)."""
    size = torch.tensor(shape, device=points.device, dtype=points.dtype)
    idx = torch.round((points + 1) / 2 * (size - 1)).long()
    inside = ((idx >= 0) & (idx < size.long())).all(-1)
    mask = torch.zeros(points.shape[0], *shape, device=points.device, dtype=points.dtype)
    b = torch.arange(points.shape[0], device=points.device)[:, None].expand_as(inside)
    mask[b[inside], idx[..., 0][inside], idx[..., 1][inside], idx[..., 2][inside]] = 1.0
    return mask[:, None]


class DeepTFUS(nn.Module):
    """The conditioned U-Net (see the module docstring for shapes and input-size limits)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = TransducerEncoder(config) if config.conditioning else None
        self.down = self._build_encoder()
        self.up = self._build_decoder()
        self.head = Conv3d(config.width(0), 1, 1)
        if config.prior:  # start as the free field: the correction is learnt from zero
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def _build_encoder(self) -> nn.ModuleList:
        cfg = self.config
        c_in = cfg.in_channels
        stages = []
        for level in range(cfg.depth + 1):  # the last one is the bottleneck
            attention = cfg.cross_attention and level in cfg.attention_levels
            stages.append(EncoderStage(c_in, cfg.width(level), cfg, attention, cfg.has_dynamic(level)))
            c_in = cfg.width(level)
        return nn.ModuleList(stages)

    def _build_decoder(self) -> nn.ModuleList:
        cfg = self.config
        return nn.ModuleList([DecoderStage(cfg.width(level + 1), cfg.width(level), cfg)
                              for level in reversed(range(cfg.depth))])

    def check_input(self, ct: torch.Tensor, points: torch.Tensor, prior: torch.Tensor | None = None) -> None:
        if ct.ndim != 5 or ct.shape[1] != 1:
            raise ValueError(f"ct must have shape (B, 1, X, Y, Z), got {tuple(ct.shape)}")
        if any(n % self.config.divisor for n in ct.shape[2:]):
            raise ValueError(f"CT window spatial shape {tuple(ct.shape[2:])} must be divisible by "
                             f"2**depth = {self.config.divisor}")
        if points.ndim != 3 or points.shape[-1] not in (3, 5) or points.shape[0] != ct.shape[0] or points.shape[1] < 1:
            raise ValueError(f"points must have shape (B, P, 3) or (B, P, 5) (with the drive) with B = "
                             f"{ct.shape[0]}, got {tuple(points.shape)}")
        if self.config.prior and (prior is None or tuple(prior.shape) != tuple(ct.shape)):
            got = None if prior is None else tuple(prior.shape)
            raise ValueError(f"this model corrects the free-field prior: `prior` must have the CT's shape "
                             f"{tuple(ct.shape)}, got {got}")

    def forward(self, ct: torch.Tensor, points: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        self.check_input(ct, points, prior)
        z = self.encoder(points.float()) if self.encoder is not None else None
        channels = [ct]
        if self.config.uses_mask:
            channels.append(points_to_mask(points[..., :3], tuple(ct.shape[2:])).to(ct.dtype))
        if self.config.prior:
            channels.append(prior.to(ct.dtype))
        h = torch.cat(channels, dim=1) if len(channels) > 1 else ct
        skips = []
        for level, stage in enumerate(self.down):
            h = stage(h, z)
            if level < self.config.depth:
                skips.append(h)
                h = F.avg_pool3d(h, 2)
        for stage, skip in zip(self.up, reversed(skips)):
            h = stage(h, skip, z)
        out = self.head(h)
        return out + prior.to(out.dtype) if self.config.prior else out


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
