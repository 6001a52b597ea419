"""Training the similarity encoder: galaxies of one morphology together, whatever the framing.

Each step draws B training galaxies (class-balanced: weight n_class ** -class_balance), renders two
random views of each from its raw frame (:mod:`galaxy_vae.augment`), embeds the 2B views and
minimises

    loss = supcon + class_weight * ce + instance_weight * instance

- ``supcon``: supervised contrastive loss (Khosla et al. 2020, the "L_out" form) at
  ``temperature``: every other view with the same morphology is a positive. Chirality pairs
  (Spiral CW / ACW) count as one morphology: a mirror turns one into the other, and the views are
  mirrored at random.
- ``ce``: cross-entropy of a cosine classifier on the embedding (the same morphology labels); it
  keeps classes apart where the contrastive batch holds few of a rare class.
- ``instance``: the same contrastive loss with each galaxy its own class (SimCLR's NT-Xent): the
  only positive of a view is the other view of the same galaxy. Morphology alone lets a rotated or
  zoomed galaxy land anywhere among its class; this keeps it next to its own catalogue image.

Only the training split is seen; views, batches and weights are seeded. The checkpoint is a
normal galaxy_vae checkpoint (registry name ``similarity``) whose metadata holds the settings, the
augmentations and the held-out figures of :mod:`galaxy_vae.evaluate` and :mod:`galaxy_vae.robustness`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from galaxy_vae.augment import views
from galaxy_vae.configs import AugmentConfig, TrainConfig, default_config
from galaxy_vae.data import GalaxyData
from galaxy_vae.frames import Renderer, build_pyramid, frames_present
from galaxy_vae.symmetry import chirality_pairs, morphology_labels
from galaxy_vae.train import FitResult, lr_factor

log = logging.getLogger(__name__)


def supcon(z: torch.Tensor, y: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss of unit vectors z (N, d) with labels y (N,): the mean over
    anchors of -mean log p(positive | anchor), a positive being any other row with the anchor's label."""
    n = len(z)
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(eye, -1e9)  # (N, N), self excluded
    log_p = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positive = (y[:, None] == y[None, :]) & ~eye
    return -((log_p * positive).sum(1) / positive.sum(1).clamp_min(1)).mean()


def sampling_weights(labels: np.ndarray, balance: float) -> np.ndarray:
    """(N,) probability of drawing each galaxy: proportional to (its class's count) ** -balance."""
    counts = np.bincount(labels)
    w = counts[labels].astype(np.float64) ** -balance
    return w / w.sum()


def compact_labels(labels: np.ndarray, pairs) -> tuple[np.ndarray, int]:
    """Morphology labels numbered 0..M-1 (chirality pairs merged), and M."""
    merged = morphology_labels(labels, pairs)
    kept, compact = np.unique(merged, return_inverse=True)
    return compact.astype(np.int64), len(kept)


def fit_encoder(model: nn.Module, renderer: Renderer, labels: np.ndarray, cfg: TrainConfig,
                aug: AugmentConfig, progress: bool = True) -> FitResult:
    """Train ``model`` in place on the frames of ``renderer`` (row i has label ``labels[i]``)."""
    torch.manual_seed(cfg.seed)
    gen, rng = torch.Generator().manual_seed(cfg.seed), np.random.default_rng(cfg.seed)
    p_draw = sampling_weights(labels, cfg.class_balance)
    y_all = torch.from_numpy(labels)
    instance = torch.arange(cfg.batch_size).repeat(2)  # view i and view B + i show the same galaxy
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(labels) // cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, total, cfg.warmup))
    model.train()
    result, start = FitResult(), time.perf_counter()
    try:
        for epoch in range(1, cfg.epochs + 1):
            t0, sums = time.perf_counter(), {"loss": 0.0, "supcon": 0.0, "ce": 0.0, "instance": 0.0}
            bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{cfg.epochs}", unit="step",
                       disable=not progress, leave=False, dynamic_ncols=True)
            for _ in bar:
                rows = rng.choice(len(labels), cfg.batch_size, p=p_draw)
                x = torch.cat([views(renderer, rows, aug, gen)[0], views(renderer, rows, aug, gen)[0]])
                y = y_all[rows].repeat(2)  # (2B,): both views of a galaxy share its morphology
                z = model.encode(x)  # (2B, d) unit vectors
                terms = {"supcon": supcon(z, y, cfg.temperature)}
                terms["ce"] = F.cross_entropy(model.logits(z), y) if model.n_classes else torch.zeros(())
                terms["instance"] = supcon(z, instance, cfg.temperature) if cfg.instance_weight else torch.zeros(())
                loss = terms["supcon"] + cfg.class_weight * terms["ce"] + cfg.instance_weight * terms["instance"]
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                for k, v in (("loss", loss), *terms.items()):
                    sums[k] += float(v.detach()) / steps_per_epoch
                bar.set_postfix(loss=f"{loss.item():.3f}")
            bar.close()
            record = {"epoch": epoch, "seconds": time.perf_counter() - t0, "lr": opt.param_groups[0]["lr"],
                      **{f"train_{k}": v for k, v in sums.items()}}
            result.history.append(record)
            line = (f"epoch {epoch}/{cfg.epochs} {record['seconds']:.1f}s loss={sums['loss']:.3f} "
                    f"supcon={sums['supcon']:.3f} ce={sums['ce']:.3f} instance={sums['instance']:.3f}")
            if progress:
                tqdm.write(line)
            log.info("%s", line)
    except KeyboardInterrupt:
        result.interrupted = True
        log.warning("interrupted after %d finished epoch(s)", len(result.history))
    model.eval()
    result.seconds = time.perf_counter() - start
    return result


def frames_for(train: GalaxyData, frames: Path | None) -> Path:
    """Check that every training galaxy has its raw frame in ``frames``; the folder."""
    from galaxy_vae.errors import DataError

    present = frames_present(frames, train.ids)
    if not present.all():
        missing = [str(i) for i in np.asarray(train.ids)[~present][:3]]
        raise DataError("The similarity encoder trains on raw frames, and some are missing",
                        expected=f"a {'423 px frame'} for each of the {len(train)} training galaxies in {frames}",
                        found=f"{int((~present).sum())} without one (e.g. {', '.join(missing)})",
                        fix="Pass --frames DIR (or set $GALAXY_VAE_FRAMES) to the folder of <objID>.jpeg frames.")
    return Path(frames)


def train_encoder(train: GalaxyData, frames: Path | None, cfg: TrainConfig | None = None,
                  aug: AugmentConfig | None = None, model_config: dict | None = None,
                  cache: Path | None = None, progress: bool = True) -> tuple[nn.Module, FitResult, dict]:
    """A similarity encoder trained on the frames of ``train``'s galaxies: (model, result, meta).

    The frames' pyramid is cached in ``cache`` (default: beside the dataset) for the next run."""
    from galaxy_vae.models import build_model

    cfg, aug = cfg or default_config("similarity"), aug or AugmentConfig()
    frames = frames_for(train, frames)
    pairs = chirality_pairs(train.class_names) if cfg.chirality_pairs is None else cfg.chirality_pairs
    labels, n_morph = compact_labels(train.labels, pairs)
    cache = cache or (Path(train.path).parent if train.path else Path.cwd()) / "frames-cache"
    levels = build_pyramid(frames, train.ids, cache, progress=progress)
    torch.manual_seed(cfg.seed)  # initial weights
    model = build_model("similarity", {"n_classes": n_morph, **(model_config or {})})
    log.info("training the similarity encoder on %d galaxies' frames (%d morphologies)", len(train), n_morph)
    result = fit_encoder(model, Renderer(levels), labels, cfg, aug, progress=progress)
    meta = {"augment_config": asdict(aug), "frames": str(frames), "morphology_classes": n_morph,
            "chirality_pairs": [list(p) for p in pairs]}
    return model, result, meta


def encode_speed(model: nn.Module, batch: int = 256, threads: int | None = None, repeats: int = 5) -> float:
    """Images/s the encoder embeds on this machine (best of ``repeats`` passes of 20 batches)."""
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    x = torch.rand(batch, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    best = math.inf
    with torch.inference_mode():
        for _ in range(3):
            model.encode(x)
        for _ in range(repeats):
            t = time.perf_counter()
            for _ in range(20):
                model.encode(x)
            best = min(best, time.perf_counter() - t)
    torch.set_num_threads(old)
    return batch * 20 / best
