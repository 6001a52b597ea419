"""A perceptual loss for the generator: the distance between two images as the galaxy encoder's
early layers see them (its feature maps at 32, 16 and 8 px), so that a reconstruction is judged by
the structure a galaxy's similarity rests on -- edges, knots, arms -- not by pixel error alone.

    x, x_hat (B, 3, 64, 64) in [0, 1] --Gaussian blur (sigma BLUR px)--> --frozen encoder.features-->
        f_l(x), f_l(x_hat)  (B, C_l, S_l, S_l) for l in taps
    perceptual = sum_l mean_(C,S,S) (f_l(x_hat) - f_l(x))^2 / mean_(C,S,S) f_l(x)^2 , averaged over B
                 * (3 * 64 * 64)

Each layer's difference is taken relative to its own energy, so no layer dominates by scale, and
scaled to the image's pixel count: the term is in the units of the summed squared error ``recon``
(:func:`galaxy_vae.train.compute_losses`), which ``perceptual_weight`` then weighs. The encoder's
sky step is skipped (both images are the model's own view); its weights never train.

The blur first. Real cutouts carry sky noise at the pixel scale, which a decoder cannot
reproduce; unblurred, the term rewards any fixed pixel-scale texture that excites the encoder's
first layer as noise does, and the decoder paints a 2 px checkerboard (measured: its amplitude
rose 2.6x at weight 0.05 and 4.6x at 0.2, checkpoints/README.md). Blurring both images by about a
pixel leaves the scales that hold arms, knots and companions (>= 3 px) and removes that incentive.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

TAPS = (1, 2, 3)  # stages of the encoder whose output is compared (64 px input: 32, 16, 8 px)
BLUR = 1.0  # Gaussian sigma in px applied to both images first (module docstring); 0: none


class PerceptualLoss(nn.Module):
    """``loss(x_hat, x)`` -> (B,) per-image perceptual distances in recon units (module docstring)."""

    def __init__(self, encoder: nn.Module, taps: tuple[int, ...] = TAPS, blur: float = BLUR):
        super().__init__()
        if not 0 <= blur < 8:
            raise ValueError(f"blur must be a sigma in px in [0, 8), got {blur}")
        self.blur = float(blur)
        radius = max(1, round(3 * blur))
        g = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / max(blur, 1e-6)) ** 2)
        self.register_buffer("kernel", (g / g.sum()).view(1, 1, 1, -1).repeat(3, 1, 1, 1), persistent=False)
        stages, current = [], []
        for layer in encoder.features:  # conv, BN, ReLU triples; a stride-2 conv starts a stage
            if isinstance(layer, nn.Conv2d) and layer.stride == (2, 2) and current:
                stages.append(nn.Sequential(*current))
                current = []
            current.append(layer)
        stages.append(nn.Sequential(*current))
        if not taps or max(taps) > len(stages):
            raise ValueError(f"taps must name stages 1..{len(stages)} of the encoder, got {taps}")
        self.stages = nn.ModuleList(stages[:max(taps)]).eval()
        self.taps = tuple(taps)
        for p in self.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True):  # the encoder stays in inference mode (its BatchNorm statistics)
        return super().train(False)

    def smooth(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) blurred by ``blur`` px (separable, reflected edges); unchanged at 0."""
        if self.blur <= 0:
            return x
        r = self.kernel.shape[-1] // 2
        x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), self.kernel, groups=3)
        return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), self.kernel.transpose(-1, -2), groups=3)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, h = [], self.smooth(x)
        for i, stage in enumerate(self.stages, 1):
            h = stage(h)
            if i in self.taps:
                out.append(h)
        return out

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.features(x)
        total = x.new_zeros(len(x))
        for f_hat, f in zip(self.features(x_hat), target):
            energy = f.pow(2).flatten(1).mean(1).clamp_min(1e-8)
            total = total + (f_hat - f).pow(2).flatten(1).mean(1) / energy
        return total * x[0].numel()


def checkerboard(x: torch.Tensor) -> torch.Tensor:
    """The 2 px checkerboard component of images (B, C, S, S) -> (B, C, S/2, S/2): each 2x2 block's
    (a - b - c + d) / 4, the pattern a stride-2 transposed convolution paints when pushed to be
    sharp. Real cutouts have it only as sky noise; ``checkerboard_weight`` in training penalises its
    energy in reconstructions (the term ``checkerboard``: summed squares, averaged over the batch)."""
    s = x.shape[-1] - x.shape[-1] % 2
    x = x[..., :s, :s]
    return (x[..., ::2, ::2] - x[..., 1::2, ::2] - x[..., ::2, 1::2] + x[..., 1::2, 1::2]) / 4


def perceptual_loss(checkpoint: str | Path, blur: float = BLUR) -> PerceptualLoss:
    """The perceptual loss over the galaxy encoder in ``checkpoint`` (a similarity checkpoint)."""
    from galaxy_vae.checkpoints import load_checkpoint
    from galaxy_vae.errors import CheckpointError

    ckpt = load_checkpoint(checkpoint)
    if not hasattr(ckpt.model, "features"):
        raise CheckpointError("Cannot use this checkpoint for the perceptual loss",
                              expected="the galaxy encoder (a similarity checkpoint)",
                              found=f"{Path(checkpoint).name}, a {type(ckpt.model).__name__}",
                              fix="Pass --perceptual-encoder checkpoints/similarity.safetensors.")
    return PerceptualLoss(ckpt.model, blur=blur)
