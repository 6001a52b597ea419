"""From uint8 galaxy cutouts to latents and back, in batches, plus the symmetries of a galaxy image.

Images stay uint8 (N, 69, 69, 3) until a batch reaches the model: :func:`to_input` takes the
model's view (central 64x64, block-averaged to 32x32 for the seed ConvVAE) and converts only that
batch to float. Every function here runs the model in eval mode under ``torch.inference_mode``.

A galaxy has no "up": its 8 dihedral views (4 rotations, each possibly mirrored) show the same
galaxy. A mirror does change one thing, the sense in which spiral arms wind, so mirrored views
swap chirality classes such as "Spiral CW" and "Spiral ACW" (:func:`chirality_pairs`).
"""

from __future__ import annotations

import re
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from galaxy_vae.data import model_view

CROP = 64  # every model sees the central 64x64 of the stored cutout
# Images per model call. Small batches stay in the CPU's caches: the improved VAE encodes the
# sample at 16,400 images/s in batches of 256 against 9,400 in batches of 1,024 (2 cores, measured).
BATCH = 256


def to_input(images: np.ndarray, model: nn.Module) -> torch.Tensor:
    """uint8 (N, H, W, 3) (or one (H, W, 3) image) -> float (N, 3, S, S) in [0, 1] for ``model``."""
    return to_tensor(images, model.input_size)


def to_tensor(images: np.ndarray, size: int = CROP) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, size, size) in [0, 1]: central 64x64, averaged to ``size``.

    The tensor is channels-last in memory (a permuted view of NHWC), which convolutions on CPU
    read fast; values are identical either way.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    view = np.ascontiguousarray(model_view(images, CROP, size))  # (N, size, size, 3) uint8
    return torch.from_numpy(view).permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (N, 3, S, S) in [0, 1] -> uint8 (N, S, S, 3), rounded."""
    return (x.clamp(0, 1) * 255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def upsample(x: torch.Tensor, size: int = CROP) -> torch.Tensor:
    """(N, 3, s, s) -> (N, 3, size, size) by bilinear interpolation (identity when s == size).

    How 32x32 reconstructions of the seed ConvVAE are compared at 64x64: bilinear is smoother than
    repeating pixels, so it never flatters the 64x64 models by comparison.
    """
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0, 1)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _batches(n: int, batch_size: int, progress: bool, desc: str) -> Iterator[slice]:
    starts = range(0, n, batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", disable=not progress, leave=False):
        yield slice(start, min(start + batch_size, n))


def encode_images(model: nn.Module, images: np.ndarray, batch_size: int = BATCH,
                  progress: bool = False) -> np.ndarray:
    """Latent means of uint8 images (N, H, W, 3): float32 (N, d)."""
    model.eval()
    device, out = _device(model), np.empty((len(images), model.latent_dim), dtype=np.float32)
    with torch.inference_mode():
        for s in _batches(len(images), batch_size, progress, "encoding"):
            out[s] = model.encode(to_input(images[s], model).to(device)).float().cpu().numpy()
    return out


def encode_dist_images(model: nn.Module, images: np.ndarray, batch_size: int = BATCH) -> tuple[np.ndarray, np.ndarray]:
    """(mu, logvar) of a VAE's posterior for uint8 images: two float32 (N, d) arrays."""
    if not model.is_variational:
        raise TypeError(f"{type(model).__name__} is not variational: it has no posterior")
    model.eval()
    device = _device(model)
    mu = np.empty((len(images), model.latent_dim), dtype=np.float32)
    logvar = np.empty_like(mu)
    with torch.inference_mode():
        for s in _batches(len(images), batch_size, False, "encoding"):
            m, lv = model.encode_dist(to_input(images[s], model).to(device))
            mu[s], logvar[s] = m.float().cpu().numpy(), lv.float().cpu().numpy()
    return mu, logvar


def decode_latents(model: nn.Module, z: np.ndarray, batch_size: int = BATCH) -> np.ndarray:
    """Images decoded from latents (N, d): uint8 (N, S, S, 3) at the model's own size."""
    model.eval()
    z = np.atleast_2d(np.asarray(z, dtype=np.float32))
    device = _device(model)
    out = np.empty((len(z), model.input_size, model.input_size, 3), dtype=np.uint8)
    with torch.inference_mode():
        for s in _batches(len(z), batch_size, False, "decoding"):
            out[s] = to_uint8(model.decode(torch.from_numpy(z[s]).to(device)))
    return out


def reconstruct_tensor(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Reconstructions of the model input ``x`` at 64x64: (N, 3, 64, 64) float in [0, 1]."""
    return upsample(model.decode(model.encode(x)))


def reconstruct(model: nn.Module, images: np.ndarray, batch_size: int = BATCH) -> np.ndarray:
    """Reconstructions (decode of the latent mean) of uint8 images, uint8 (N, 64, 64, 3).

    32-pixel models are upsampled with :func:`upsample`, exactly as evaluation compares them.
    """
    model.eval()
    device = _device(model)
    out = np.empty((len(images), CROP, CROP, 3), dtype=np.uint8)
    with torch.inference_mode():
        for s in _batches(len(images), batch_size, False, "reconstructing"):
            out[s] = to_uint8(reconstruct_tensor(model, to_input(images[s], model).to(device)))
    return out


# --- symmetries ---------------------------------------------------------------------------------

def dihedral_views(images: np.ndarray) -> np.ndarray:
    """The 8 views of (..., H, W, C) images: (8, ..., H, W, C).

    View v mirrors left-right when v >= 4, then rotates by (v % 4) quarter turns; view 0 is the
    identity, views 4-7 are mirror images.
    """
    images = np.asarray(images)
    mirrored = np.flip(images, axis=-2)
    return np.stack([np.rot90(im, v % 4, axes=(-3, -2)) for v, im in
                     ((v, images if v < 4 else mirrored) for v in range(8))])


_CHIRAL = re.compile(r"\b(?:anti[- ]?clockwise|counter[- ]?clockwise|clockwise|acw|ccw|cw|[sz][- ]?wise)\b")
_ANTI = re.compile(r"\b(?:anti[- ]?clockwise|counter[- ]?clockwise|acw|ccw|z[- ]?wise)\b")


def chirality_pairs(class_names: Sequence[str]) -> list[tuple[int, int]]:
    """Pairs of classes that are mirror images of each other, found from their names.

    Two names form a pair when they are the same apart from the winding sense ("Spiral CW" /
    "Spiral ACW", "clockwise" / "anticlockwise", "S-wise" / "Z-wise"). Galaxy10 has none.
    """
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(class_names):
        low = name.lower()
        if _CHIRAL.search(low):
            groups.setdefault(_CHIRAL.sub("<winding>", low), []).append(i)
    pairs = []
    for members in groups.values():
        if len(members) == 2:
            a, b = members
            # (plain sense, opposite sense) so pairs read the same whatever the class order
            pairs.append((b, a) if _ANTI.search(class_names[a].lower()) else (a, b))
    return sorted(pairs)


def mirror_label_map(n_classes: int, pairs: Sequence[Sequence[int]]) -> np.ndarray:
    """(n_classes,) int64: the label a galaxy of each class has in a mirror image."""
    out = np.arange(n_classes, dtype=np.int64)
    for a, b in pairs:
        out[a], out[b] = b, a
    return out


def morphology_labels(labels: np.ndarray, pairs: Sequence[Sequence[int]]) -> np.ndarray:
    """Labels with each chirality pair merged into one class (the pair's first member)."""
    out = np.asarray(labels, dtype=np.int64).copy()
    for a, b in pairs:
        out[out == b] = a
    return out
