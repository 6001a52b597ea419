"""The improved VAE, the app's map and generator: a 2-D latent (the map is the latent), 64x64
reconstructions and a class head that shapes the map by morphology."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from galaxy_vae.models.base import FoldedStacks, VAEMixin, class_head, upsampling_decoder
from galaxy_vae.models.registry import register


@dataclass
class GalaxyVAEConfig:
    input_size: int = 64  # the central 64x64 crop, full resolution
    latent_dim: int = 2  # 2-D, so the app's map is the latent itself
    n_classes: int = 6  # class-head outputs, one per class of the training set
    channels: tuple[int, ...] = (8, 16, 32, 64)  # one stride-2 4x4 conv per stage: 64 -> 4 px
    dec_channels: tuple[int, ...] = (128, 64, 32, 16)  # decoder stages, 4 -> 64 px (wider: sharper images)
    hidden: int = 128  # width of the fully connected layer on each side of the latent
    head_hidden: int = 32  # class head: latent -> hidden -> classes (0 = a linear head)


@register("galaxy_vae", GalaxyVAEConfig)
class GalaxyVAE(FoldedStacks, VAEMixin, nn.Module):
    """Conv VAE at 64x64 with BatchNorm, SiLU and a class head on the 2-D latent.

    Encoder: one 4x4 stride-2 conv + BN + SiLU per stage (narrow, so batched encoding stays fast
    on two CPU cores), then a fully connected layer to (mu, logvar). Decoder: the mirror image
    with transposed convs, sigmoid output. The head classifies the latent, so training can pull
    the classes apart on the map that the app draws.
    """

    def __init__(self, config: GalaxyVAEConfig | None = None):
        super().__init__()
        self._folded: dict[str, tuple] = {}  # inference copies of the conv stacks (see _stack)
        self.config = config or GalaxyVAEConfig()
        cfg = self.config
        self.input_size, self.latent_dim, self.n_classes = cfg.input_size, cfg.latent_dim, cfg.n_classes
        n_stages = len(cfg.channels)
        self.bottom = cfg.input_size // 2 ** n_stages  # spatial size after the encoder
        if self.bottom < 1 or self.bottom * 2 ** n_stages != cfg.input_size or len(cfg.dec_channels) != n_stages:
            raise ValueError(f"input_size {cfg.input_size} must be divisible by 2**{n_stages} and "
                             f"dec_channels must have {n_stages} stages, got {cfg.dec_channels}")
        layers, c_in = [], 3
        for c in cfg.channels:  # each stage halves the size: (B, c_in, s, s) -> (B, c, s/2, s/2)
            layers += [nn.Conv2d(c_in, c, 4, 2, 1, bias=False), nn.BatchNorm2d(c), nn.SiLU()]
            c_in = c
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        flat = c_in * self.bottom ** 2
        self.enc_fc = nn.Sequential(nn.Linear(flat, cfg.hidden), nn.SiLU())
        self.fc_mu = nn.Linear(cfg.hidden, cfg.latent_dim)
        self.fc_logvar = nn.Linear(cfg.hidden, cfg.latent_dim)
        c0 = cfg.dec_channels[0]
        self.dec_fc = nn.Sequential(nn.Linear(cfg.latent_dim, cfg.hidden), nn.SiLU(),
                                    nn.Linear(cfg.hidden, c0 * self.bottom ** 2), nn.SiLU())
        self.decoder = upsampling_decoder(cfg.dec_channels)
        self.classifier = class_head(cfg.latent_dim, cfg.head_hidden, cfg.n_classes)

    def encode_dist(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.enc_fc(self._stack("encoder")(x))  # (B, 3, 64, 64) -> (B, C * 4 * 4) -> (B, hidden)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        c0 = self.config.dec_channels[0]
        h = self.dec_fc(z).view(-1, c0, self.bottom, self.bottom)  # (B, d) -> (B, C, 4, 4)
        return self._stack("decoder")(h)  # -> (B, 3, 64, 64)
