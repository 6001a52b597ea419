"""Running a model over uint8 galaxy cutouts in batches: latents, posteriors, decoded images,
reconstructions and their errors. Every function here is one pass of :func:`_batched`.

Images stay uint8 (N, 69, 69, 3) until a batch reaches the model: :func:`to_input` takes the
model's view (:func:`galaxy_vae.data.model_view`: the central 64x64, block-averaged to 32x32 for
the seed ConvVAE) and converts only that batch to float. Models run in eval mode under
``torch.inference_mode``.

Reconstruction error is defined here once (:func:`recon_errors`): per image, the mean squared
error at 64x64 between the crop and the float reconstruction, pixel values in [0, 1]; 32x32
models are upsampled bilinearly first (:func:`upsample`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from galaxy_vae.data import CROP, model_view

# Images per model call. Small batches stay in the CPU's caches: the improved VAE encodes the
# sample ~1.7x faster in batches of 256 than of 1,024 (2 cores).
BATCH = 256


def to_tensor(images: np.ndarray, size: int = CROP) -> torch.Tensor:
    """uint8 (N, H, W, 3) (or one (H, W, 3)) -> float (N, 3, size, size) in [0, 1]: the central
    64x64, averaged to ``size``. Channels-last in memory (a permuted view of NHWC), which CPU
    convolutions read fast; values are identical either way."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    view = np.ascontiguousarray(model_view(images, CROP, size))  # (N, size, size, 3) uint8
    return torch.from_numpy(view).permute(0, 3, 1, 2).float().div_(255.0)


def to_input(images: np.ndarray, model: nn.Module) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, S, S) in [0, 1] at ``model.input_size``."""
    return to_tensor(images, model.input_size)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (N, 3, S, S) in [0, 1] -> uint8 (N, S, S, 3), rounded."""
    return (x.clamp(0, 1) * 255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def upsample(x: torch.Tensor, size: int = CROP) -> torch.Tensor:
    """(N, 3, s, s) -> (N, 3, size, size) bilinearly (identity when s == size): how the seed
    ConvVAE's 32x32 output is compared at 64x64 (smoother than repeating pixels, so it never
    flatters the 64x64 models)."""
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0, 1)


def at_crop(images: np.ndarray) -> np.ndarray:
    """Decoded uint8 images (N, s, s, 3) at the 64x64 every comparison uses: the seed ConvVAE's
    32x32 upsampled as :func:`upsample` does; others unchanged."""
    images = np.asarray(images)
    if images.shape[1] == CROP:
        return images
    return to_uint8(upsample(torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255)))


def _batched(model: nn.Module, inputs: np.ndarray, step: Callable[[np.ndarray], tuple], out_shapes: tuple,
             out_dtypes: tuple, batch_size: int = BATCH, progress: bool = False, desc: str = "") -> tuple:
    """The one loop: ``step(inputs[s])`` -> arrays per batch s, written into preallocated
    outputs of ``(len(inputs),) + shape``, with the model in eval mode under inference_mode."""
    model.eval()
    outs = tuple(np.empty((len(inputs),) + shape, dtype=dtype) for shape, dtype in zip(out_shapes, out_dtypes))
    starts = range(0, len(inputs), batch_size)
    with torch.inference_mode():
        for start in tqdm(starts, desc=desc, unit="batch", disable=not progress, leave=False):
            s = slice(start, min(start + batch_size, len(inputs)))
            for out, value in zip(outs, step(inputs[s])):
                out[s] = value
    return outs


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def encode_images(model: nn.Module, images: np.ndarray, batch_size: int = BATCH,
                  progress: bool = False) -> np.ndarray:
    """Latent means of uint8 images (N, H, W, 3): float32 (N, d)."""
    dev = _device(model)
    step = lambda x: (model.encode(to_input(x, model).to(dev)).float().cpu().numpy(),)
    return _batched(model, images, step, ((model.latent_dim,),), (np.float32,), batch_size, progress, "encoding")[0]


def _posteriors(model: nn.Module, images: np.ndarray, encode: Callable, dims: tuple[int, ...],
                batch_size: int) -> tuple[np.ndarray, ...]:
    """The one posterior loop: ``encode(x)`` -> tensors of widths ``dims`` per batch, as float32
    (N, dim) arrays."""
    dev = _device(model)
    step = lambda x: tuple(t.float().cpu().numpy() for t in encode(to_input(x, model).to(dev)))
    return _batched(model, images, step, tuple((d,) for d in dims), (np.float32,) * len(dims), batch_size)


def encode_dist_images(model: nn.Module, images: np.ndarray, batch_size: int = BATCH) -> tuple[np.ndarray, np.ndarray]:
    """(mu, logvar) of a VAE's posterior for uint8 images: two float32 (N, d) arrays."""
    if not model.is_variational:
        raise TypeError(f"{type(model).__name__} is not variational: it has no posterior")
    return _posteriors(model, images, model.encode_dist, (model.latent_dim,) * 2, batch_size)


def has_detail(model: nn.Module | None) -> bool:
    """Whether ``model`` has a detail code beside its map latent (:class:`galaxy_vae.models.DetailVAE`)."""
    return bool(getattr(model, "has_detail", False))


def encode_detail_dist_images(model: nn.Module, images: np.ndarray,
                              batch_size: int = BATCH) -> tuple[np.ndarray, np.ndarray]:
    """(mu, logvar) of the detail posterior for uint8 images: two float32 (N, D) arrays."""
    if not has_detail(model):
        raise TypeError(f"{type(model).__name__} has no detail code")
    return _posteriors(model, images, model.encode_detail_dist, (model.detail_dim,) * 2, batch_size)


def encode_both_dist_images(model: nn.Module, images: np.ndarray,
                            batch_size: int = BATCH) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mu, logvar) of the map posterior and of the detail posterior from one pass of a detail
    model's trunk: four float32 arrays, (N, d), (N, d), (N, D), (N, D)."""
    if not has_detail(model):
        raise TypeError(f"{type(model).__name__} has no detail code")
    d, dd = model.latent_dim, model.detail_dim
    return _posteriors(model, images, model.encode_both, (d, d, dd, dd), batch_size)


def encode_detail_images(model: nn.Module, images: np.ndarray, batch_size: int = BATCH) -> np.ndarray:
    """Detail posterior means of uint8 images (N, H, W, 3): float32 (N, D)."""
    return encode_detail_dist_images(model, images, batch_size)[0]


def _decode(model: nn.Module, z: torch.Tensor, details: torch.Tensor | None) -> torch.Tensor:
    """Map latents (B, d) with details (B, D), or alone (typical details): (B, 3, S, S) float."""
    return model.decode(z) if details is None else model.decode_full(z, details)


def decode_latents(model: nn.Module, z: np.ndarray, batch_size: int = BATCH,
                   details: np.ndarray | None = None) -> np.ndarray:
    """Images decoded from latents (N, d), with ``details`` (N, D) for a model with a detail code
    (None: each point's typical details): uint8 (N, S, S, 3) at the model's own size."""
    z = np.atleast_2d(np.asarray(z, dtype=np.float32))
    dev, s = _device(model), model.input_size
    if details is None:
        step = lambda zb: (to_uint8(model.decode(torch.from_numpy(zb).to(dev))),)
        return _batched(model, z, step, ((s, s, 3),), (np.uint8,), batch_size)[0]
    both = np.concatenate([z, np.atleast_2d(np.asarray(details, dtype=np.float32))], axis=1)
    d = z.shape[1]
    step = lambda b: (to_uint8(model.decode_full(torch.from_numpy(b[:, :d]).to(dev),
                                                 torch.from_numpy(b[:, d:]).to(dev))),)
    return _batched(model, both, step, ((s, s, 3),), (np.uint8,), batch_size)[0]


def _decode_and_compare(model: nn.Module, z: torch.Tensor, x: np.ndarray,
                        details: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode latents z (B, d) (with their details (B, D), if any) and compare with the cutouts x
    (B, H, W, 3) they came from: (uint8 reconstructions (B, 64, 64, 3), per-image squared error
    (B,)). The one definition."""
    recon = upsample(_decode(model, z, details)).cpu()  # (B, 3, 64, 64) float in [0, 1]
    err = ((recon - to_tensor(x, CROP)) ** 2).flatten(1).mean(1)
    return to_uint8(recon), err.numpy()


def _reconstruct_step(model: nn.Module, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    inputs = to_input(x, model).to(_device(model))
    if has_detail(model):  # a reconstruction decodes both codes: the map point and its own details
        mu, _, mu_d, _ = model.encode_both(inputs)
        return _decode_and_compare(model, mu, x, mu_d)
    return _decode_and_compare(model, model.encode(inputs), x)


def reconstruct_from(model: nn.Module, z: np.ndarray, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`reconstruct` for cutouts whose latent means ``z`` (N, d) are already known (no second
    encoding of the map; a detail code is encoded here): (uint8 (N, 64, 64, 3), errors (N,))."""
    z = torch.from_numpy(np.atleast_2d(np.asarray(z, dtype=np.float32)))
    images = np.asarray(images)
    model.eval()
    with torch.inference_mode():
        details = model.encode_detail(to_input(images, model).to(_device(model))) if has_detail(model) else None
        return _decode_and_compare(model, z.to(_device(model)), images, details)


def reconstruct(model: nn.Module, images: np.ndarray, batch_size: int = BATCH) -> tuple[np.ndarray, np.ndarray]:
    """Reconstructions (decode of the latent mean) of uint8 images at 64x64 and their errors:
    (uint8 (N, 64, 64, 3), float32 (N,) as :func:`recon_errors`)."""
    return _batched(model, images, lambda x: _reconstruct_step(model, x), ((CROP, CROP, 3), ()),
                    (np.uint8, np.float32), batch_size)


def recon_errors(model: nn.Module, images: np.ndarray, batch_size: int = BATCH) -> np.ndarray:
    """Per-image reconstruction error (N,): mean squared error at 64x64, values in [0, 1], of the
    float reconstruction (not the rounded uint8 picture)."""
    return reconstruct(model, images, batch_size)[1]
