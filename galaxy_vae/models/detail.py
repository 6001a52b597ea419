"""The map-and-detail VAE, the app's generator: a 2-D map latent (the map the app draws and the
sliders move over) plus a detail code for what two numbers cannot hold (orientation, elongation,
colour, companions), with a learned conditional prior p(detail | map point).

    x (B, 3, 64, 64) --trunk--> h (B, hidden) --> q(z | x)  = N(mu_z, diag var_z)   z (B, 2): the map
                                              \\-> q(d | x)  = N(mu_d, diag var_d)   d (B, D): details
    z --prior MLP--> p(d | z) = N(mu_p(z), diag var_p(z))
    (z, d) --decoder--> images (B, 3, 64, 64);   z --class head--> logits (B, n_classes)

Training minimises recon + beta * KL(q(z|x) || N(0, I)) + detail_beta * KL(q(d|x) || p(d|z)) + class
terms (:func:`galaxy_vae.train.compute_losses`), so the prior learns which details galaxies at each
map point have, and ``prior_detail`` draws plausible ones for any point of the map.

The shared contract holds with the map latent: ``encode`` / ``encode_dist`` give the 2-D map
posterior, ``latent_dim == 2``, and ``decode(z)`` decodes a map point with its *typical* details
(the prior's mean), so every page that only knows map points keeps working. The detail code adds
``encode_detail`` / ``encode_detail_dist``, ``prior_detail_dist``, ``prior_detail(z, seed)`` and
``decode_full(z, d)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from galaxy_vae.models.base import FoldedStacks, VAEMixin, class_head, upsampling_decoder
from galaxy_vae.models.registry import register


@dataclass
class DetailVAEConfig:
    input_size: int = 64  # the central 64x64 crop, full resolution
    latent_dim: int = 2  # the map: 2-D, so the app's map is the latent itself
    detail_dim: int = 24  # the detail code's length
    n_classes: int = 6  # class-head outputs (on the map latent), one per class of the training set
    channels: tuple[int, ...] = (16, 32, 64, 128)  # encoder: one stride-2 4x4 conv per stage, 64 -> 4 px
    dec_channels: tuple[int, ...] = (256, 128, 64, 32)  # decoder stages, 4 -> 64 px
    hidden: int = 256  # the fully connected layer on each side of the codes
    prior_hidden: int = 128  # the prior MLP: map point -> hidden -> hidden -> (mu, logvar) of the details
    head_hidden: int = 32  # class head: map latent -> hidden -> classes (0 = a linear head)


@register("detail_vae", DetailVAEConfig)
class DetailVAE(FoldedStacks, VAEMixin, nn.Module):
    """Conv VAE at 64x64 with a 2-D map latent, a detail code and a learned prior p(detail | map)."""

    has_detail = True

    def __init__(self, config: DetailVAEConfig | None = None):
        super().__init__()
        self._folded: dict[str, tuple] = {}  # inference copies of the conv stacks (see FoldedStacks)
        self.config = cfg = config or DetailVAEConfig()
        self.input_size, self.latent_dim, self.n_classes = cfg.input_size, cfg.latent_dim, cfg.n_classes
        self.detail_dim = cfg.detail_dim
        n_stages = len(cfg.channels)
        self.bottom = cfg.input_size // 2 ** n_stages  # spatial size after the encoder
        if (self.bottom < 1 or self.bottom * 2 ** n_stages != cfg.input_size or len(cfg.dec_channels) != n_stages
                or cfg.detail_dim < 1 or cfg.latent_dim < 1):
            raise ValueError(f"input_size {cfg.input_size} must be divisible by 2**{n_stages}, dec_channels must "
                             f"have {n_stages} stages (got {cfg.dec_channels}) and latent_dim, detail_dim be >= 1")
        layers, c_in = [], 3
        for c in cfg.channels:  # (B, c_in, s, s) -> (B, c, s/2, s/2)
            layers += [nn.Conv2d(c_in, c, 4, 2, 1, bias=False), nn.BatchNorm2d(c), nn.SiLU()]
            c_in = c
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        self.enc_fc = nn.Sequential(nn.Linear(c_in * self.bottom ** 2, cfg.hidden), nn.SiLU())
        self.fc_mu = nn.Linear(cfg.hidden, cfg.latent_dim)
        self.fc_logvar = nn.Linear(cfg.hidden, cfg.latent_dim)
        self.fc_detail_mu = nn.Linear(cfg.hidden, cfg.detail_dim)
        self.fc_detail_logvar = nn.Linear(cfg.hidden, cfg.detail_dim)
        self.prior = nn.Sequential(nn.Linear(cfg.latent_dim, cfg.prior_hidden), nn.SiLU(),
                                   nn.Linear(cfg.prior_hidden, cfg.prior_hidden), nn.SiLU(),
                                   nn.Linear(cfg.prior_hidden, 2 * cfg.detail_dim))
        c0 = cfg.dec_channels[0]
        self.dec_fc = nn.Sequential(nn.Linear(cfg.latent_dim + cfg.detail_dim, cfg.hidden), nn.SiLU(),
                                    nn.Linear(cfg.hidden, c0 * self.bottom ** 2), nn.SiLU())
        self.decoder = upsampling_decoder(cfg.dec_channels)
        self.classifier = class_head(cfg.latent_dim, cfg.head_hidden, cfg.n_classes)

    # --- encoding: both posteriors from one trunk ---------------------------------------------

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        return self.enc_fc(self._stack("encoder")(x))  # (B, 3, 64, 64) -> (B, C * 4 * 4) -> (B, hidden)

    def encode_dist(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The map posterior: (mu, logvar), each (B, 2)."""
        h = self._trunk(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def encode_detail_dist(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The detail posterior: (mu, logvar), each (B, D)."""
        h = self._trunk(x)
        return self.fc_detail_mu(h), self.fc_detail_logvar(h)

    def encode_detail(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, D) detail posterior means."""
        return self.encode_detail_dist(x)[0]

    def encode_both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mu_z, logvar_z, mu_d, logvar_d) from one pass of the trunk."""
        h = self._trunk(x)
        return self.fc_mu(h), self.fc_logvar(h), self.fc_detail_mu(h), self.fc_detail_logvar(h)

    # --- the prior over details ---------------------------------------------------------------

    def prior_detail_dist(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p(d | z): (mu, logvar), each (B, D), for map points z (B, 2)."""
        mu, logvar = self.prior(z).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 6.0)  # keeps exp() finite for any map point

    def prior_detail(self, z: torch.Tensor, seed: int | None = None, temperature: float = 1.0,
                     noise: torch.Tensor | None = None) -> torch.Tensor:
        """Details drawn from p(d | z) for map points z (B, 2): mu + temperature * sigma * e, with
        e ~ N(0, I) from ``seed`` (the same seed and points give the same details), or ``noise``
        (B, D) given. temperature 0 gives the prior mean (the typical details)."""
        mu, logvar = self.prior_detail_dist(z)
        if noise is None:
            gen = torch.Generator(device=z.device).manual_seed(int(seed or 0))
            noise = torch.randn(mu.shape, generator=gen, device=z.device, dtype=mu.dtype)
        return mu + float(temperature) * torch.exp(0.5 * logvar) * noise

    # --- decoding -----------------------------------------------------------------------------

    def decode_full(self, z: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """(B, 2) map points and (B, D) details -> (B, 3, 64, 64) images in [0, 1]."""
        c0 = self.config.dec_channels[0]
        h = self.dec_fc(torch.cat([z, d], dim=1)).view(-1, c0, self.bottom, self.bottom)  # (B, C, 4, 4)
        return self._stack("decoder")(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Map points (B, 2) decoded with their typical details (the prior's mean)."""
        return self.decode_full(z, self.prior_detail_dist(z)[0])

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` new images: z ~ N(0, I), d ~ p(d | z)."""
        device = next(self.parameters()).device
        z = torch.randn((n, self.latent_dim), generator=generator, device=device)
        e = torch.randn((n, self.detail_dim), generator=generator, device=device)
        return self.decode_full(z, self.prior_detail(z, noise=e))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        mu, logvar, mu_d, logvar_d = self.encode_both(x)
        if self.training:  # a sample of both posteriors; evaluation decodes the means
            z, d = self.reparameterize(mu, logvar, generator), self.reparameterize(mu_d, logvar_d, generator)
        else:
            z, d = mu, mu_d
        prior_mu, prior_logvar = self.prior_detail_dist(z)
        return {"recon": self.decode_full(z, d), "mu": mu, "logvar": logvar, "z": z, "logits": self.classify(z),
                "detail_mu": mu_d, "detail_logvar": logvar_d, "detail": d,
                "prior_mu": prior_mu, "prior_logvar": prior_logvar}
