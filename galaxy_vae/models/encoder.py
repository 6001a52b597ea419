"""The similarity encoder: (B, 3, 64, 64) float in [0, 1] -> (B, d) L2-normalised embedding.

A plain stride-2 CNN (3x3 conv + BatchNorm + ReLU per layer), global average pooling and a linear
projection, trained (:mod:`galaxy_vae.train_encoder`) so that the views of a galaxy an upload may
show -- rotated, mirrored, zoomed 0.5-2x, shifted, on another sky, stretched, blurred, noisy --
lie together, and galaxies of one morphology near each other. Global pooling makes it nearly
shift- and rotation-invariant by construction. It has no decoder: it only compares galaxies.
Before the first conv every input's border sky is moved to one level (``config.sky``), exactly
as uploads are prepared (:mod:`galaxy_vae.sky`): measured on f3 of checkpoints/README.md, doing it
for the catalogue too took a re-cut galaxy's own original into its 5 nearest from 90 % to 100 %.

Shapes with the default widths (24, 48, 96, 192) and one extra stride-1 conv from stage 2 on:
    (B, 3, 64, 64) -> (B, 24, 32, 32) -> (B, 48, 16, 16) -> (B, 96, 8, 8) -> +conv -> (B, 192, 4, 4)
    -> +conv -> mean over 4x4 -> (B, 192) -> linear -> (B, d) -> / ||.||
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from galaxy_vae.extent import BORDER
from galaxy_vae.models.base import FoldedStacks
from galaxy_vae.models.registry import register


@dataclass
class SimilarityEncoderConfig:
    input_size: int = 64  # the central 64x64 crop, as every model sees it
    widths: tuple[int, ...] = (24, 48, 96, 192)  # one stride-2 3x3 conv per stage: 64 -> 4 px
    extra: int = 1  # stride-1 3x3 convs added to each stage from ``extra_from`` on (cheap depth at 8 and 4 px)
    extra_from: int = 2
    latent_dim: int = 64  # the embedding's length
    n_classes: int = 5  # the training-only cosine classifier's classes (Spiral CW and ACW as one); 0: none
    # Every input's border sky moved to this level (R, G, B on 0-255) before embedding, as uploads are
    # (galaxy_vae.sky): catalogue galaxies and uploads then meet on one sky. None: inputs as they come.
    sky: tuple[float, float, float] | None = (5.0, 5.0, 3.0)


@register("similarity", SimilarityEncoderConfig)
class SimilarityEncoder(FoldedStacks, nn.Module):
    """Galaxy images -> unit vectors whose Euclidean distance is the app's similarity."""

    is_variational = False

    def __init__(self, config: SimilarityEncoderConfig | None = None):
        super().__init__()
        self._folded: dict[str, tuple] = {}
        self.config = cfg = config or SimilarityEncoderConfig()
        self.input_size, self.latent_dim, self.n_classes = cfg.input_size, cfg.latent_dim, cfg.n_classes
        if cfg.input_size % 2 ** len(cfg.widths) or min(cfg.widths) < 1 or cfg.latent_dim < 1:
            raise ValueError(f"input_size {cfg.input_size} must be divisible by 2**{len(cfg.widths)}, widths "
                             f"{cfg.widths} and latent_dim {cfg.latent_dim} positive")
        if cfg.sky is not None:
            sky = tuple(float(v) for v in cfg.sky)  # from JSON: a list
            if len(sky) != 3 or not all(0 <= v <= 255 for v in sky):
                raise ValueError(f"sky must be None or three levels in 0-255 (R, G, B), got {cfg.sky!r}")
            cfg.sky = sky
        layers, c_in = [], 3
        for stage, width in enumerate(cfg.widths):
            for stride in (2,) + (1,) * (cfg.extra if stage >= cfg.extra_from else 0):
                layers += [nn.Conv2d(c_in, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
                c_in = width
        self.features = nn.Sequential(*layers)
        self.project = nn.Linear(c_in, cfg.latent_dim)
        if cfg.n_classes:  # only the training loss reads it; search never does
            # in place: the same values as "* 0.1", but an out-of-place op on torch's meta device (where
            # load_checkpoint first builds the model) imports torch._dynamo, 0.9 s of every cold start
            self.classifier = nn.Parameter(torch.randn(cfg.n_classes, cfg.latent_dim).mul_(0.1))

    def match_sky(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [0, 1] with each image's per-channel border sky (the median of a ring of
        ``sky.BORDER`` of the side, as :func:`galaxy_vae.sky.border_sky`) moved to ``config.sky``."""
        b = max(1, round(BORDER * x.shape[-1]))
        ring = torch.cat([x[..., :b, :].flatten(2), x[..., -b:, :].flatten(2),
                          x[..., b:-b, :b].flatten(2), x[..., b:-b, -b:].flatten(2)], dim=2)  # (B, 3, ring)
        level = torch.tensor(self.config.sky, dtype=x.dtype, device=x.device) / 255
        return (x + level[:, None, None] - ring.median(dim=2).values[..., None, None]).clamp(0, 1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, d) before normalisation."""
        if self.config.sky is not None:
            x = self.match_sky(x)
        h = self._stack("features")(x.contiguous(memory_format=torch.channels_last))  # (B, C, 4, 4)
        return self.project(h.mean((2, 3)))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, d) unit vectors: the galaxy's place in the similarity space."""
        return F.normalize(self.embed(x), dim=1)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        return {"mu": self.encode(x)}

    def logits(self, z: torch.Tensor, scale: float = 16.0) -> torch.Tensor:
        """Cosine-classifier logits (B, n_classes) of unit embeddings z (B, d); training only."""
        return scale * z @ F.normalize(self.classifier, dim=1).T
