"""What several architectures share: the VAE contract (a posterior, sampling, a class head), conv
output sizes, and BatchNorm folded into the convolutions for fast inference."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def deconv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size - 1) * stride - 2 * padding + kernel


def upsampling_decoder(channels) -> nn.Sequential:
    """The VAEs' decoder after its dense layers: one stride-2 4x4 transposed conv per step, each
    doubling the side, (B, channels[0], s, s) -> (B, 3, 2**len(channels) s, ...) in [0, 1]."""
    layers = []
    for c_in, c in zip(channels, channels[1:]):  # (B, c_in, s, s) -> (B, c, 2s, 2s)
        layers += [nn.ConvTranspose2d(c_in, c, 4, 2, 1, bias=False), nn.BatchNorm2d(c), nn.SiLU()]
    layers += [nn.ConvTranspose2d(channels[-1], 3, 4, 2, 1), nn.Sigmoid()]
    return nn.Sequential(*layers)


def class_head(latent_dim: int, hidden: int, n_classes: int) -> nn.Module:
    """Class logits from the map latent: an MLP with ``hidden`` units, or linear when 0."""
    if hidden:
        return nn.Sequential(nn.Linear(latent_dim, hidden), nn.SiLU(), nn.Linear(hidden, n_classes))
    return nn.Linear(latent_dim, n_classes)


class VAEMixin:
    """What every VAE adds to the shared contract: a distribution, sampling and a class head."""

    is_variational = True

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """z = mu + sigma * eps; ``generator`` makes the draw reproducible. Shapes (B, d)."""
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` new images decoded from the prior N(0, I): (n, 3, S, S) in [0, 1]."""
        device = next(self.parameters()).device
        z = torch.randn((n, self.latent_dim), generator=generator, device=device)
        return self.decode(z)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_dist(x)[0]

    def classify(self, z: torch.Tensor) -> torch.Tensor:
        """(B, d) -> (B, n_classes) class logits read from the latent alone."""
        return self.classifier(z)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        mu, logvar = self.encode_dist(x)
        # Training decodes a sample; evaluation decodes the mean, so eval outputs are deterministic.
        z = self.reparameterize(mu, logvar, generator) if self.training else mu
        return {"recon": self.decode(z), "mu": mu, "logvar": logvar, "z": z, "logits": self.classify(z)}


class FoldedStacks:
    """Mixin: ``self._stack(name)`` serves ``getattr(self, name)`` (an nn.Sequential of convs and
    BatchNorms), or in eval mode without gradients the same stack with each BatchNorm folded into
    the conv before it: the same outputs to float rounding, ~40 % faster batched encoding on CPU.
    The folded copy is rebuilt whenever a weight changes. Needs ``self._folded = {}``."""

    def _stack(self, name: str) -> nn.Sequential:
        stack = getattr(self, name)
        if self.training or stack.training or torch.is_grad_enabled():
            return stack
        tensors = list(stack.state_dict().values())
        if any(t.is_inference() for t in tensors):  # made under inference_mode: no version to key on
            return stack
        version = tuple((t.data_ptr(), t._version) for t in tensors)
        cached = self._folded.get(name)
        if cached is None or cached[0] != version:
            # channels-last weights: oneDNN's fast layout for CPU convolutions (~2x for the encoder)
            cached = self._folded[name] = (version, fold_batchnorm(stack).to(memory_format=torch.channels_last))
        return cached[1]


def fold_batchnorm(stack: nn.Sequential) -> nn.Sequential:
    """A copy of ``stack`` in which every (transposed) conv followed by a BatchNorm is one conv
    with the BatchNorm's running statistics folded into its weights and bias (eval mode only)."""
    layers, out = list(stack), []
    for layer in layers:
        if isinstance(layer, nn.BatchNorm2d) and out and isinstance(out[-1], (nn.Conv2d, nn.ConvTranspose2d)):
            conv = out.pop()
            out.append(fuse_conv_bn_eval(conv, layer, transpose=isinstance(conv, nn.ConvTranspose2d)))
        else:
            out.append(copy.deepcopy(layer))  # shares nothing with the trained stack
    return nn.Sequential(*out).eval()
