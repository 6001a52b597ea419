"""The seed's two models, exactly as the course defined them: the dense autoencoder and the ConvVAE."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from galaxy_vae.models.base import VAEMixin, conv_out, deconv_out
from galaxy_vae.models.registry import register

# --- the seed dense autoencoder -----------------------------------------------------------------

@dataclass
class DenseAutoencoderConfig:
    img_shape: tuple[int, int, int] = (64, 64, 3)  # the seed's 64x64 RGB crops (H, W, C)
    code_size: int = 64  # the seed's code length


@register("dense_ae", DenseAutoencoderConfig)
class DenseAutoencoder(nn.Module):
    """The seed's Keras autoencoder: Flatten -> Linear(12288, 64); Linear(64, 12288) -> reshape.

    Both layers are linear, as in the seed (it is PCA-like); :meth:`decode` clips to [0, 1] so it
    honours the shared contract. 1,585,216 parameters with the defaults.
    """

    is_variational = False
    n_classes = 0

    def __init__(self, config: DenseAutoencoderConfig | None = None):
        super().__init__()
        self.config = config or DenseAutoencoderConfig()
        h, w, c = self.config.img_shape
        assert h == w, "images are square"
        self.input_size, self.latent_dim = h, self.config.code_size
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(h * w * c, self.config.code_size))
        self.decoder = nn.Linear(self.config.code_size, h * w * c)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        # Keras flattens channels-last images; keep that order so weights mean what the seed's did.
        return self.encoder(x.permute(0, 2, 3, 1))  # (B, 3, S, S) -> (B, S, S, 3) -> (B, d)

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Unclipped linear output, (B, d) -> (B, 3, S, S); the loss reads this one."""
        h, w, c = self.config.img_shape
        return self.decoder(z).view(-1, h, w, c).permute(0, 3, 1, 2)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode_raw(z).clamp(0.0, 1.0)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        mu = self.encode(x)
        raw = self.decode_raw(mu)
        return {"recon": raw.clamp(0.0, 1.0), "recon_raw": raw, "mu": mu}


# --- the seed convolutional VAE -----------------------------------------------------------------

@dataclass
class ConvVAEConfig:
    input_size: int = 32  # the seed's graph reads 32x32: the 64x64 crop block-averaged 2x2
    latent_dim: int = 2  # the seed's 2-D latent
    n_classes: int = 6  # classifier outputs, one per class of the training set


@register("conv_vae", ConvVAEConfig)
class ConvVAE(VAEMixin, nn.Module):
    """The seed's ConvVAE: module names, shapes and 159,937 parameters exactly as it printed.

    Reading of the seed: ``enc4`` (4x4, stride 2, no padding) leaves 1x1x64 for ``fc1`` only when
    the input is 32x32, and ``dec1..dec4`` grow a 1x1 seed to 32x32. So it is fed the central
    64x64 crop block-averaged 2x2 to 32x32 (``data.model_view(images, 64, 32)``), and its 32x32
    reconstructions are compared with other models' after bilinear upsampling to 64x64
    (``galaxy_vae.embed.upsample``). ReLU between layers, sigmoid output.
    """

    def __init__(self, config: ConvVAEConfig | None = None):
        super().__init__()
        self.config = config or ConvVAEConfig()
        self.input_size, self.latent_dim = self.config.input_size, self.config.latent_dim
        self.n_classes = self.config.n_classes
        self.enc1 = nn.Conv2d(3, 8, 4, 2, 1)
        self.enc2 = nn.Conv2d(8, 16, 4, 2, 1)
        self.enc3 = nn.Conv2d(16, 32, 4, 2, 1)
        self.enc4 = nn.Conv2d(32, 64, 4, 2, 0)
        self.fc1 = nn.Linear(64, 128)
        self.fc_mu = nn.Linear(128, self.latent_dim)
        self.fc_log_var = nn.Linear(128, self.latent_dim)
        self.fc2 = nn.Linear(self.latent_dim, 64)
        self.dec1 = nn.ConvTranspose2d(64, 64, 4, 1, 0)
        self.dec2 = nn.ConvTranspose2d(64, 32, 4, 2, 1)
        self.dec3 = nn.ConvTranspose2d(32, 16, 4, 2, 1)
        self.dec4 = nn.ConvTranspose2d(16, 3, 4, 2, 1)
        self.classifier = nn.Linear(self.latent_dim, self.n_classes)
        size = self.input_size
        for conv in (self.enc1, self.enc2, self.enc3, self.enc4):
            size = conv_out(size, conv.kernel_size[0], conv.stride[0], conv.padding[0])
        out = 1
        for deconv in (self.dec1, self.dec2, self.dec3, self.dec4):
            out = deconv_out(out, deconv.kernel_size[0], deconv.stride[0], deconv.padding[0])
        if size != 1 or out != self.input_size:
            raise ValueError(f"ConvVAE reads {out}x{out} images (enc4 must leave 1x1); "
                             f"input_size={self.input_size} leaves {size}x{size}")

    def encode_dist(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.enc1(x))  # (B, 3, 32, 32) -> (B, 8, 16, 16)
        h = F.relu(self.enc2(h))  # -> (B, 16, 8, 8)
        h = F.relu(self.enc3(h))  # -> (B, 32, 4, 4)
        h = F.relu(self.enc4(h)).flatten(1)  # -> (B, 64, 1, 1) -> (B, 64)
        h = self.fc1(h)  # (B, 128)
        return self.fc_mu(h), self.fc_log_var(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc2(z).view(-1, 64, 1, 1)  # (B, d) -> (B, 64, 1, 1)
        h = F.relu(self.dec1(h))  # -> (B, 64, 4, 4)
        h = F.relu(self.dec2(h))  # -> (B, 32, 8, 8)
        h = F.relu(self.dec3(h))  # -> (B, 16, 16, 16)
        return torch.sigmoid(self.dec4(h))  # -> (B, 3, 32, 32)
