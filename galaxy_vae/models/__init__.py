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
- :class:`GalaxyVAE` — the improved VAE (the app's default before the detail code): a 2-D latent (the map is the
  latent), 64x64 reconstructions and a class head that shapes the map by morphology.
- :class:`DetailVAE` — the generator and the app's default: the same 2-D map latent plus a detail
  code with a learned prior p(detail | map point), so any map point decodes to a plausible galaxy.
- :class:`SimilarityEncoder` — no decoder: an L2-normalised embedding trained to ignore how an
  upload differs from the catalogue, behind every neighbour search.

One module per family (``seed``, ``vae``, ``detail``, ``encoder``); ``registry`` holds the name -> class map.
"""

from galaxy_vae.models.detail import DetailVAE, DetailVAEConfig
from galaxy_vae.models.encoder import SimilarityEncoder, SimilarityEncoderConfig
from galaxy_vae.models.registry import (
           MODELS,
           build_model,
           config_dict,
           count_parameters,
           make_config,
           model_name,
           register,
)
from galaxy_vae.models.seed import ConvVAE, ConvVAEConfig, DenseAutoencoder, DenseAutoencoderConfig
from galaxy_vae.models.vae import GalaxyVAE, GalaxyVAEConfig

__all__ = ["MODELS", "ConvVAE", "ConvVAEConfig", "DenseAutoencoder", "DenseAutoencoderConfig", "DetailVAE",
           "DetailVAEConfig", "GalaxyVAE",
           "GalaxyVAEConfig", "SimilarityEncoder", "SimilarityEncoderConfig", "build_model", "config_dict",
           "count_parameters", "make_config", "model_name", "register"]
