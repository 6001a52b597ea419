"""Random views of galaxies for the similarity encoder: how an upload may differ from the catalogue.

Geometry (rendered from the raw frame by :class:`galaxy_vae.frames.Renderer`): field of view
0.5-2x the catalogue's, log-uniform (zooming out needs the frame: a 69 px cut cannot show more sky),
any rotation, a mirror, a shift. Photometry, on the (B, 3, 64, 64) view in [0, 1], in the order a
telescope and an image viewer apply it:

    PSF blur -> gamma (stretch) -> gain x per-channel tint -> sky offset -> noise -> clip -> 8 bits

The ranges are :class:`galaxy_vae.configs.AugmentConfig`; every draw comes from one seeded
``torch.Generator``, so a run is reproducible.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from galaxy_vae.configs import AugmentConfig
from galaxy_vae.frames import Renderer, identity_views


def sample_params(n: int, cfg: AugmentConfig, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """n independent draws of every augmentation, each a (n,) or (n, k) float tensor."""
    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen)

    def symmetric(a: float, *shape: int) -> torch.Tensor:
        return (2 * uniform(*shape) - 1) * a

    lo, hi = math.log(cfg.fov_min), math.log(cfg.fov_max)
    return {
        "fov": torch.exp(lo + (hi - lo) * uniform(n)),
        "angle": uniform(n) * 2 * math.pi if cfg.rotate else torch.zeros(n),
        "flip": (uniform(n) < cfg.flip).float(),
        "shift": symmetric(cfg.shift, n, 2),
        "blur": uniform(n) * cfg.blur * (uniform(n) < 0.5).float(),
        "gamma": torch.exp(symmetric(cfg.gamma, n)),
        "gain": torch.exp(symmetric(cfg.gain, n)),
        "tint": torch.exp(symmetric(cfg.tint, n, 3)),
        "sky": cfg.sky_min + (cfg.sky_max - cfg.sky_min) * uniform(n),
        "noise": uniform(n) * cfg.noise,
        "poisson": uniform(n) * cfg.poisson,
    }


def blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with a sigma (px) per image, 0 = none: (B, 3, H, W) -> same."""
    if float(sigma.max()) <= 0:
        return x
    b, c, h, w = x.shape
    r = max(1, math.ceil(3 * float(sigma.max())))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t[None] / sigma.clamp_min(1e-3)[:, None]) ** 2)  # (B, 2r+1)
    k[sigma <= 0] = (t == 0).float()
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*3, 2r+1): one kernel per channel
    y = F.pad(x.reshape(1, b * c, h, w), (r, r, r, r), mode="replicate")
    y = F.conv2d(y, k[:, None, None, :], groups=b * c)  # along x
    y = F.conv2d(y, k[:, None, :, None], groups=b * c)  # along y
    return y.reshape(b, c, h, w)


def photometric(x: torch.Tensor, p: dict[str, torch.Tensor], gen: torch.Generator) -> torch.Tensor:
    """Blur, stretch, tint, sky and noise on (B, 3, H, W) in [0, 1]; rounded to 8 bits as a JPEG is."""
    x = blur(x, p["blur"]).clamp_min(0).pow(p["gamma"][:, None, None, None])
    x = x * (p["gain"][:, None] * p["tint"])[:, :, None, None] + p["sky"][:, None, None, None]
    var = p["noise"][:, None, None, None] ** 2 + p["poisson"][:, None, None, None] * x.clamp_min(0)
    if float(var.max()) > 0:
        x = x + var.sqrt() * torch.randn(x.shape, generator=gen)
    return torch.round(x.clamp(0, 1) * 255) / 255


def views(renderer: Renderer, rows: np.ndarray, cfg: AugmentConfig, gen: torch.Generator
          ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Random views of the frames ``rows``: ((B, 3, 64, 64) float in [0, 1], the parameters drawn)."""
    p = sample_params(len(rows), cfg, gen)
    return photometric(renderer(rows, p), p, gen), p


def catalogue_views(renderer: Renderer, rows: np.ndarray) -> torch.Tensor:
    """The catalogue's own 64 px views of ``rows``, rendered from their frames (B, 3, 64, 64)."""
    return torch.round(renderer(rows, identity_views(len(rows))).clamp(0, 1) * 255) / 255
