"""Every architecture galaxy_vae trains, and the registry that rebuilds one from a checkpoint.

All models share one contract, so embedding, search and the app never ask which one they hold:

    encode(x)  (B, 3, S, S) float in [0, 1] -> (B, d) latent mean
    decode(z)  (B, d) -> (B, 3, S, S) images in [0, 1]
    forward(x) -> dict of named outputs: recon, mu (+ logvar, z, logits for the VAEs)

``S`` is the model's ``input_size`` (64, or 32 for the seed ConvVAE) and ``d`` its ``latent_dim``.
Each model keeps its dataclass ``config``; ``build_model(name, asdict(config))`` rebuilds it. A
model joins the registry (what checkpoints rebuild from) by one decorator, ``@register(name, Config)``.

- :class:`DenseAutoencoder` — the seed's Keras autoencoder: Flatten -> Dense(64) -> Dense(12288).
- :class:`ConvVAE` — the seed's convolutional VAE, same module names and shapes, on 32x32 inputs.
- :class:`GalaxyVAE` — the improved VAE and the app's default: a 2-D latent (the map is the
  latent), 64x64 reconstructions and a class head that shapes the map by morphology.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

MODELS: dict[str, type] = {}  # registry name -> model class (each with its config class as .Config)


def register(name: str, config: type) -> Callable[[type], type]:
    """Class decorator: add a model to the registry under ``name``, built from dataclass ``config``."""
    def add(cls: type) -> type:
        cls.registry_name, cls.Config = name, config
        MODELS[name] = cls
        return cls
    return add


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _deconv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size - 1) * stride - 2 * padding + kernel


class _VAEMixin:
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
class ConvVAE(_VAEMixin, nn.Module):
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
            size = _conv_out(size, conv.kernel_size[0], conv.stride[0], conv.padding[0])
        out = 1
        for deconv in (self.dec1, self.dec2, self.dec3, self.dec4):
            out = _deconv_out(out, deconv.kernel_size[0], deconv.stride[0], deconv.padding[0])
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


# --- the improved VAE ---------------------------------------------------------------------------

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
class GalaxyVAE(_VAEMixin, nn.Module):
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
        layers = []
        for c_in, c in zip(cfg.dec_channels, cfg.dec_channels[1:]):  # (B, c_in, s, s) -> (B, c, 2s, 2s)
            layers += [nn.ConvTranspose2d(c_in, c, 4, 2, 1, bias=False), nn.BatchNorm2d(c), nn.SiLU()]
        layers += [nn.ConvTranspose2d(cfg.dec_channels[-1], 3, 4, 2, 1), nn.Sigmoid()]
        self.decoder = nn.Sequential(*layers)
        if cfg.head_hidden:
            self.classifier = nn.Sequential(nn.Linear(cfg.latent_dim, cfg.head_hidden), nn.SiLU(),
                                            nn.Linear(cfg.head_hidden, cfg.n_classes))
        else:
            self.classifier = nn.Linear(cfg.latent_dim, cfg.n_classes)

    def encode_dist(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.enc_fc(self._stack("encoder")(x))  # (B, 3, 64, 64) -> (B, C * 4 * 4) -> (B, hidden)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        c0 = self.config.dec_channels[0]
        h = self.dec_fc(z).view(-1, c0, self.bottom, self.bottom)  # (B, d) -> (B, C, 4, 4)
        return self._stack("decoder")(h)  # -> (B, 3, 64, 64)

    def _stack(self, name: str) -> nn.Sequential:
        """``self.encoder`` / ``self.decoder``, or in eval mode without gradients the same stack with
        each BatchNorm folded into the conv before it (same outputs to float rounding, ~40 % faster
        batched encoding on CPU). The folded copy is rebuilt whenever a weight changes."""
        stack = getattr(self, name)
        if self.training or stack.training or torch.is_grad_enabled():
            return stack
        tensors = list(stack.state_dict().values())
        if any(t.is_inference() for t in tensors):  # made under inference_mode: no version to key on
            return stack
        version = tuple((t.data_ptr(), t._version) for t in tensors)
        cached = self._folded.get(name)
        if cached is None or cached[0] != version:
            cached = self._folded[name] = (version, _fold_batchnorm(stack))
        return cached[1]


def _fold_batchnorm(stack: nn.Sequential) -> nn.Sequential:
    """A copy of ``stack`` in which every (transposed) conv followed by a BatchNorm is one conv
    with the BatchNorm's running statistics folded into its weights and bias (eval mode only)."""
    layers, out = list(stack), []
    for layer in layers:
        if isinstance(layer, nn.BatchNorm2d) and out and isinstance(out[-1], (nn.Conv2d, nn.ConvTranspose2d)):
            conv = out.pop()
            out.append(fuse_conv_bn_eval(conv, layer, transpose=isinstance(conv, nn.ConvTranspose2d)))
        else:
            out.append(layer)
    return nn.Sequential(*out).eval()


# --- registry -----------------------------------------------------------------------------------

def model_name(model: nn.Module) -> str:
    """The registry name of ``model`` (the key a checkpoint stores)."""
    name = getattr(type(model), "registry_name", None)
    if MODELS.get(name) is not type(model):
        raise KeyError(f"{type(model).__name__} is not in the model registry")
    return name


def make_config(name: str, config: dict | None = None):
    """The dataclass config of model ``name`` from a plain dict (e.g. JSON); unknown keys refused."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    cls = MODELS[name].Config
    config = dict(config or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise KeyError(f"{name} config has no field(s) {unknown}; known: {sorted(known)}")
    # JSON turns tuples into lists; the dataclasses declare tuples.
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})


def build_model(name: str, config: dict | None = None) -> nn.Module:
    """A freshly initialised model ``name`` ("dense_ae", "conv_vae", "galaxy_vae") from a config dict."""
    config = make_config(name, config)  # checks the name and fields first
    return MODELS[name](config)


def config_dict(model: nn.Module) -> dict:
    """The model's config as a JSON-ready dict (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(model.config).items()}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
