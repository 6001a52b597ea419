"""How good a model is: held-out retrieval precision and reconstruction error.

Everything is measured on the validation split the checkpoint was trained without
(``data.stratified_split`` with its split seed and fraction); neighbours are training galaxies.

- ``precision_at_10``: for each validation galaxy, the fraction of its 10 nearest training
  galaxies (Euclidean, in the model's latent space) that share its class, averaged over galaxies.
- ``macro_precision_at_10``: the same averaged per class first, then over classes; the figure
  that tells models apart when 70 % of the sample is "Elliptical".
- ``pixel_*``: the same in raw 64x64 pixel space, the baseline a model has to beat.
- ``*_morph``: the same with chirality pairs ("Spiral CW"/"Spiral ACW") counted as one class,
  since they are one morphology seen in a mirror.
- ``recon_mse``: mean squared error of the reconstruction at 64x64, pixel values in [0, 1];
  32x32 models are upsampled first (``embed.recon_errors`` defines it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pooch
from torch import nn

from galaxy_vae.checkpoints import Checkpoint, dataset_for
from galaxy_vae.data import CROP, GalaxyData, stratified_split
from galaxy_vae.embed import encode_images, recon_errors
from galaxy_vae.search import knn, pixel_features
from galaxy_vae.symmetry import chirality_pairs, morphology_labels

log = logging.getLogger(__name__)

K = 10


def precision_at_k(query_z: np.ndarray, query_y: np.ndarray, base_z: np.ndarray, base_y: np.ndarray,
                   k: int = K) -> tuple[float, float, dict[int, float]]:
    """(precision, macro precision, per-class precision) of the k nearest ``base`` rows.

    query_z (Q, d), base_z (N, d); a query's precision is the fraction of its k neighbours with
    its label. Macro averages the per-class means over the classes present among the queries.
    """
    _, idx = knn(query_z, base_z, k)  # (Q, k) rows of base
    return precision_of(idx, np.asarray(query_y), np.asarray(base_y))


def precision_of(idx: np.ndarray, query_y: np.ndarray, base_y: np.ndarray) -> tuple[float, float, dict[int, float]]:
    """precision_at_k's figures from the neighbours' rows ``idx`` (Q, k)."""
    hits = (base_y[idx] == query_y[:, None]).mean(axis=1)  # (Q,)
    per_class = {int(c): float(hits[query_y == c].mean()) for c in np.unique(query_y)}
    return float(hits.mean()), float(np.mean(list(per_class.values()))), per_class


def retrieval_metrics(query_z: np.ndarray, query_y: np.ndarray, base_z: np.ndarray, base_y: np.ndarray,
                      pairs: Sequence[Sequence[int]], prefix: str = "", k: int = K,
                      class_names: Sequence[str] | None = None) -> dict:
    """Strict and morphology-level precision@k as a flat dict of ``{prefix}precision_at_{k}`` etc.
    One neighbour search serves both: only the labels compared differ."""
    query_y, base_y = np.asarray(query_y), np.asarray(base_y)
    _, idx = knn(query_z, base_z, k)  # (Q, k) rows of base
    p, macro, per_class = precision_of(idx, query_y, base_y)
    out = {f"{prefix}precision_at_{k}": p, f"{prefix}macro_precision_at_{k}": macro}
    if pairs:
        p_m, macro_m, _ = precision_of(idx, morphology_labels(query_y, pairs), morphology_labels(base_y, pairs))
    else:
        p_m, macro_m = p, macro
    out[f"{prefix}precision_at_{k}_morph"] = p_m
    out[f"{prefix}macro_precision_at_{k}_morph"] = macro_m
    if class_names is not None:
        out[f"{prefix}per_class_precision_at_{k}"] = {class_names[c]: v for c, v in per_class.items()}
    return out


def reconstruction_mse(model: nn.Module, images: np.ndarray) -> float:
    """Mean squared error at 64x64 between the central crops and their reconstructions (NaN for none)."""
    return float(np.mean(recon_errors(model, images), dtype=np.float64)) if len(images) else float("nan")


def pixel_baseline(data: GalaxyData, train_idx: np.ndarray, val_idx: np.ndarray,
                   pairs: Sequence[Sequence[int]], k: int = K) -> dict:
    """Retrieval figures in raw 64x64 pixel space (keys ``pixel_*``), remembered per file and split.

    The pixel baseline ignores the model, and its 12,288-D search is the slowest part of an
    evaluation, so evaluating several checkpoints on one file computes it once.
    """
    key = None
    if data.path is not None and Path(data.path).is_file():
        st = Path(data.path).stat()
        key = (str(Path(data.path).resolve()), st.st_mtime_ns, st.st_size, tuple(data.class_names),
               len(data), train_idx.tobytes(), val_idx.tobytes(), tuple(map(tuple, pairs)), k)
    if key is not None and key in _PIXEL_CACHE:
        return dict(_PIXEL_CACHE[key])
    out = retrieval_metrics(pixel_features(data.images[val_idx], CROP), data.labels[val_idx],
                            pixel_features(data.images[train_idx], CROP), data.labels[train_idx],
                            pairs, "pixel_", k, data.class_names)
    if key is not None:
        _PIXEL_CACHE.clear()  # one file's worth is enough; keeps memory bounded
        _PIXEL_CACHE[key] = dict(out)
    return out


_PIXEL_CACHE: dict[tuple, dict] = {}


def evaluate_model(model: nn.Module, data: GalaxyData, *, split_seed: int = 0, val_fraction: float = 0.2,
                   pairs: Sequence[Sequence[int]] | None = None, k: int = K, pixel: bool = True) -> dict:
    """Every figure for ``model`` on the validation split of ``data`` (see the module docstring)."""
    pairs = chirality_pairs(data.class_names) if pairs is None else [tuple(p) for p in pairs]
    train_idx, val_idx = stratified_split(data.labels, val_fraction, split_seed)
    train, val = data.take(train_idx), data.take(val_idx)
    z_train, z_val = encode_images(model, train.images), encode_images(model, val.images)
    out = {"model": type(model).__name__, "n_train": len(train), "n_val": len(val), "k": k,
           "latent_dim": int(model.latent_dim), "class_names": list(data.class_names),
           "chirality_pairs": [[data.class_names[a], data.class_names[b]] for a, b in pairs]}
    out.update(retrieval_metrics(z_val, val.labels, z_train, train.labels, pairs, "", k, data.class_names))
    if pixel:
        out.update(pixel_baseline(data, train_idx, val_idx, pairs, k))
    if hasattr(model, "decode"):  # the similarity encoder only compares galaxies
        out["recon_mse"] = reconstruction_mse(model, val.images)
    return out


def evaluate_checkpoint(ckpt: Checkpoint, data: GalaxyData, *, k: int = K, pixel: bool = True) -> dict:
    """:func:`evaluate_model` with the checkpoint's own split, classes and chirality pairs."""
    meta = ckpt.meta
    data = dataset_for(meta, data)
    out = evaluate_model(ckpt.model, data, split_seed=int(meta.get("split_seed", 0)),
                         val_fraction=float(meta.get("val_fraction", 0.2)),
                         pairs=meta.get("chirality_pairs"), k=k, pixel=pixel)
    same = None
    if data.path is not None and meta.get("dataset_sha256"):
        same = pooch.file_hash(str(data.path)) == meta["dataset_sha256"]
        if not same:
            log.warning("%s is not the file %s was trained on: the validation split may overlap "
                        "its training galaxies", data.path, ckpt.path)
    out.update({"model_name": ckpt.name, "checkpoint": str(ckpt.path), "dataset": data.name,
                "same_dataset_as_training": same, "split_seed": int(meta.get("split_seed", 0)),
                "val_fraction": float(meta.get("val_fraction", 0.2))})
    return out
