"""Training settings: dataclasses with a sentence per default, and nothing that needs torch, so
the CLI derives its ``train`` flags (and the reproduce command stored in a checkpoint) from these
fields without loading a model. Each setting is written once, here."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

# What "alike" can mean, key -> name for people (and the URL), in the order pages list them; the
# first whose files are present is every neighbour search's default (galaxy_vae.lookalikes).
SIMILARITY_NAMES = {"encoder": "galaxy encoder", "latent": "model latent", "dense_ae": "seed dense autoencoder (64-D)",
                    "invariant": "model latent, any rotation or mirror image", "pixels": "raw pixels"}


def setting(default, help: str, flag: bool = True):
    """A dataclass field with its explanation; ``flag=False`` keeps it off the command line."""
    return field(default=default, metadata={"help": help, "flag": flag})


@dataclass
class TrainConfig:
    epochs: int = setting(40, "passes over the training split")
    batch_size: int = setting(128, "images per optimiser step")
    lr: float = setting(3e-3, "peak AdamW learning rate (after warm-up, then cosine decay to 0)")
    warmup: float = setting(0.05, "fraction of the steps spent warming the learning rate up")
    weight_decay: float = setting(1e-4, "AdamW decoupled weight decay")
    beta: float = setting(1.0, "weight of the KL term (VAEs)")
    detail_beta: float = setting(1.0, "detail VAE: weight of the detail code's KL against its learned prior p(d | z)")
    class_weight: float = setting(30.0, "weight of the class head's cross-entropy: the map separates classes "
                                        "(similarity encoder: its cosine head, beside the contrastive loss)")
    class_balance: float = setting(1.0, "class weights (1/count)**B: 0 plain cross-entropy, 1 fully balanced")
    augment: bool = setting(True, "show every image in a random rotation/flip at every step")
    chirality_pairs: list | None = setting(None, "mirror-image class pairs; None: found from class names", flag=False)
    seed: int = setting(0, "seed of initial weights, batch order, augmentation and sampling noise")
    split_seed: int = setting(0, "seed of the stratified train/validation split")
    val_fraction: float = setting(0.2, "share of each class held out for validation")
    eval_every: int = setting(1, "epochs between validation retrieval metrics (the loss is every epoch)")
    device: str | None = setting(None, "cuda or cpu (default: the GPU when there is one)")
    temperature: float = setting(0.1, "similarity encoder: temperature of the supervised contrastive loss")
    instance_weight: float = setting(0.0, "similarity encoder: weight of the instance term (the other view of "
                                          "the same galaxy as the only positive)")
    perceptual_weight: float = setting(0.0, "VAEs: weight of the perceptual term, the reconstruction's distance to "
                                            "the image in the galaxy encoder's feature maps (galaxy_vae.perceptual)")
    perceptual_blur: float = setting(1.0, "Gaussian sigma (px) both images are blurred by before the perceptual term "
                                          "compares them: no reward for pixel-scale texture (0: none)")
    checkerboard_weight: float = setting(0.0, "VAEs: weight of the reconstructions' 2 px checkerboard energy "
                                              "(galaxy_vae.perceptual.checkerboard), against decoder texture")
    perceptual_encoder: str | None = setting(None, "the galaxy encoder checkpoint the perceptual term reads "
                                                   "(default: the shipped similarity.safetensors)")
    init: str | None = setting(None, "start from this checkpoint's weights (same model and config): fine-tuning")


@dataclass
class AugmentConfig:
    """How far a training view of a galaxy may differ from its catalogue cut (similarity encoder):
    the ways an upload differs from the catalogue. Every range is sampled per view."""

    fov_min: float = setting(0.25, "smallest field of view, x the catalogue's (log-uniform, cut from the raw frame)")
    fov_max: float = setting(2.4, "largest field of view, times the catalogue's")
    rotate: bool = setting(True, "free rotation by any angle")
    flip: float = setting(0.5, "probability of a mirror image")
    shift: float = setting(4.0, "largest shift of the centre, output px")
    blur: float = setting(1.2, "largest PSF blur (Gaussian sigma, output px), applied to half the views")
    gamma: float = setting(0.25, "stretch: log(gamma) uniform in [-g, g]")
    gain: float = setting(0.4, "brightness: log(gain) uniform in [-g, g]")
    tint: float = setting(0.12, "colour: per-channel log(gain) uniform in [-t, t]")
    sky_min: float = setting(-0.04, "lowest sky offset added to all channels (0-1 scale)")
    sky_max: float = setting(0.12, "highest sky offset")
    noise: float = setting(0.04, "largest Gaussian noise sigma (0-1 scale)")
    poisson: float = setting(0.02, "largest signal-dependent noise: variance += a * value")


# The seed models as they were trained: plain losses, no augmentation.
SEED_DEFAULTS = dict(epochs=30, lr=1e-3, warmup=0.0, weight_decay=0.0, class_weight=1.0,
                     class_balance=0.0, augment=False)
# The similarity encoder (the shipped one's settings, checkpoints/README.md): two augmented views of
# 256 galaxies per step, a light cosine head, the instance term as strong as the supervised one.
ENCODER_DEFAULTS = dict(epochs=100, batch_size=256, weight_decay=5e-4, class_weight=0.5, instance_weight=1.0)
# The detail VAE: see checkpoints/README.md for the calibration runs that chose these.
DETAIL_DEFAULTS = dict(epochs=60, detail_beta=0.05, eval_every=10)
MODEL_DEFAULTS: dict[str, dict] = {"dense_ae": SEED_DEFAULTS, "conv_vae": SEED_DEFAULTS,
                                   "similarity": ENCODER_DEFAULTS, "detail_vae": DETAIL_DEFAULTS}


def default_config(model: str, **overrides) -> TrainConfig:
    """The training config for registry model ``model``, with ``overrides`` (None values ignored)."""
    cfg = replace(TrainConfig(), **MODEL_DEFAULTS.get(model, {}))
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def flag_fields(cls=TrainConfig) -> list:
    """The fields of ``cls`` that are command-line flags, in declaration order."""
    return [f for f in fields(cls) if f.metadata.get("flag", True)]
