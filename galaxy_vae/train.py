"""Training: losses as named terms, the epoch loop, and ``train_model`` which writes a checkpoint.

    loss = recon + beta * kl + class_weight * cls        (VAEs; the dense AE has recon only)
         + detail_beta * kl_detail                        (the detail VAE)
         + perceptual_weight * perceptual                 (when set: galaxy_vae.perceptual)
         + checkerboard_weight * checkerboard             (when set: the decoder's 2 px texture)

- ``recon``: squared error summed over the pixels of an image, averaged over the batch.
- ``kl``: KL(q(z|x) || N(0, I)) summed over latent dimensions, averaged over the batch (>= 0).
- ``kl_detail``: KL(q(d|x) || p(d|z)) of the detail code against its learned prior, summed over
  the detail dimensions, averaged over the batch.
- ``cls``: cross-entropy of the class head on z, each class weighted by (1 / its count) **
  ``class_balance``, so rare classes (mergers, spirals) are not drowned by ellipticals.

Galaxies have no "up": with ``augment`` every image is shown in one of its 8 dihedral views,
drawn afresh each step. A mirrored view of a clockwise spiral is an anticlockwise one, so
mirrored views swap the labels of chirality pairs (``symmetry.chirality_pairs``); rotations keep them.

Runs are seeded: the same config on the same CPU reproduces the same weights. Ctrl-C ends the
loop after the current step; the caller still gets a usable model, marked ``interrupted``.
"""

from __future__ import annotations

import logging
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pooch
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

import galaxy_vae
from galaxy_vae.checkpoints import save_checkpoint
from galaxy_vae.configs import TrainConfig, default_config
from galaxy_vae.data import CROP, GalaxyData, model_view, select_classes, stratified_split
from galaxy_vae.embed import BATCH
from galaxy_vae.evaluate import evaluate_model, retrieval_metrics
from galaxy_vae.hdf5 import open_dataset, open_for_search
from galaxy_vae.models import build_model
from galaxy_vae.symmetry import chirality_pairs, mirror_label_map

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)  # one dict per finished epoch
    interrupted: bool = False  # Ctrl-C ended training early
    seconds: float = 0.0  # wall time of the loop


# --- losses and augmentation --------------------------------------------------------------------

def compute_losses(model: nn.Module, out: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                   cfg: TrainConfig, class_weights: torch.Tensor | None = None,
                   perceptual: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Named loss terms for a batch; ``loss`` is the one to minimise. x (B, 3, S, S), y (B,).
    ``perceptual`` (a :class:`galaxy_vae.perceptual.PerceptualLoss`) adds its term when
    ``cfg.perceptual_weight`` > 0."""
    recon_out = out.get("recon_raw", out["recon"])  # the dense AE is trained on its unclipped output
    recon = ((recon_out - x) ** 2).flatten(1).sum(1).mean()
    terms = {"recon": recon, "mse": recon.detach() / x[0].numel()}
    if not model.is_variational:
        terms["loss"] = recon
        return terms
    mu, logvar = out["mu"], out["logvar"]
    kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(1).mean()
    cls = F.cross_entropy(out["logits"], y, weight=class_weights)
    loss = recon + cfg.beta * kl + cfg.class_weight * cls
    if "prior_mu" in out:  # the detail code: its posterior against the learned prior p(d | z)
        kl_detail = gaussian_kl(out["detail_mu"], out["detail_logvar"], out["prior_mu"], out["prior_logvar"])
        terms["kl_detail"] = kl_detail
        loss = loss + cfg.detail_beta * kl_detail
    if perceptual is not None and cfg.perceptual_weight > 0:
        terms["perceptual"] = perceptual(out["recon"], x).mean()
        loss = loss + cfg.perceptual_weight * terms["perceptual"]
    if cfg.checkerboard_weight > 0:
        from galaxy_vae.perceptual import checkerboard

        terms["checkerboard"] = checkerboard(out["recon"]).pow(2).flatten(1).sum(1).mean()
        loss = loss + cfg.checkerboard_weight * terms["checkerboard"]
    terms.update(kl=kl, cls=cls, loss=loss)
    return terms


def gaussian_kl(mu_q: torch.Tensor, logvar_q: torch.Tensor, mu_p: torch.Tensor, logvar_p: torch.Tensor) -> torch.Tensor:
    """KL(N(mu_q, var_q) || N(mu_p, var_p)) of diagonal Gaussians (B, D), summed over D, averaged over B."""
    kl = 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).pow(2)) / logvar_p.exp() - 1.0)
    return kl.sum(1).mean()


def augment(x: torch.Tensor, y: torch.Tensor, mirror: torch.Tensor,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image in a random one of its 8 dihedral views; mirrored ones get mirrored labels.

    x (B, 3, S, S), y (B,) -> new tensors (the inputs are not modified). View v as in
    ``symmetry.dihedral_views``: mirror left-right when v >= 4, then rotate v % 4 quarter turns.
    """
    views = torch.randint(0, 8, (len(x),), generator=generator)
    x_out, y_out = x.clone(), y.clone()
    for v in range(1, 8):
        rows = (views == v).nonzero(as_tuple=True)[0]
        if len(rows) == 0:
            continue
        part = x[rows].flip(-1) if v >= 4 else x[rows]
        x_out[rows] = torch.rot90(part, v % 4, dims=(-2, -1))
        if v >= 4:
            y_out[rows] = mirror[y[rows]]
    return x_out, y_out


def class_weights_for(labels: np.ndarray, n_classes: int, balance: float) -> torch.Tensor:
    """Cross-entropy weights (1/count)**balance, scaled so a training image weighs 1 on average."""
    counts = np.maximum(np.bincount(labels, minlength=n_classes), 1).astype(np.float64)
    w = counts ** -balance
    w *= len(labels) / float((w * counts).sum())
    return torch.tensor(w, dtype=torch.float32)


def lr_factor(step: int, total: int, warmup: float) -> float:
    """Linear warmup over ``warmup * total`` steps, then cosine decay to 0."""
    n_warm = int(warmup * total)
    if step < n_warm:
        return (step + 1) / n_warm
    return 0.5 * (1 + math.cos(math.pi * (step - n_warm) / max(1, total - n_warm)))


# --- the loop -----------------------------------------------------------------------------------

def _as_uint8_tensor(images: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (N, 69, 69, 3) -> uint8 (N, 3, S, S) model view, kept whole; floats come per batch."""
    return torch.from_numpy(np.ascontiguousarray(model_view(images, CROP, size))).permute(0, 3, 1, 2)


@torch.no_grad()
@torch.inference_mode()
def validate(model: nn.Module, x_val: torch.Tensor, y_val: torch.Tensor, x_train: torch.Tensor,
             y_train: torch.Tensor, cfg: TrainConfig, class_weights, pairs, retrieval: bool,
             device: torch.device, batch_size: int = BATCH, perceptual: nn.Module | None = None) -> dict[str, float]:
    """Validation loss terms (deterministic: decoded from mu) and, if asked, precision@10."""
    model.eval()
    sums: dict[str, float] = {}
    z_val = []
    for s in range(0, len(x_val), batch_size):
        x = x_val[s:s + batch_size].to(device).float().div_(255.0)
        out = model(x)
        for k, v in compute_losses(model, out, x, y_val[s:s + batch_size].to(device), cfg, class_weights,
                                   perceptual).items():
            sums[k] = sums.get(k, 0.0) + float(v) * len(x)
        z_val.append(out["mu"].cpu())
    metrics = {f"val_{k}": v / len(x_val) for k, v in sums.items()}
    if retrieval:
        z_train = torch.cat([model.encode(x_train[s:s + batch_size].to(device).float().div_(255.0)).cpu()
                             for s in range(0, len(x_train), batch_size)])
        r = retrieval_metrics(torch.cat(z_val).numpy(), y_val.numpy(), z_train.numpy(), y_train.numpy(), pairs)
        metrics.update({f"val_{k}": v for k, v in r.items()})
    model.train()
    return metrics


def fit(model: nn.Module, train: GalaxyData, val: GalaxyData, cfg: TrainConfig,
        progress: bool = True) -> FitResult:
    """Train ``model`` in place on ``train``, validating on ``val`` every epoch."""
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device).train()
    gen = torch.Generator().manual_seed(cfg.seed)  # batch order and augmentation
    noise = torch.Generator(device=device).manual_seed(cfg.seed + 1)  # reparameterisation noise
    x_train, x_val = _as_uint8_tensor(train.images, model.input_size), _as_uint8_tensor(val.images, model.input_size)
    y_train, y_val = torch.from_numpy(train.labels), torch.from_numpy(val.labels)
    n_classes = getattr(model, "n_classes", 0) or len(train.class_names)
    pairs = chirality_pairs(train.class_names) if cfg.chirality_pairs is None else cfg.chirality_pairs
    mirror = torch.from_numpy(mirror_label_map(n_classes, pairs))
    weights = class_weights_for(train.labels, n_classes, cfg.class_balance).to(device) if model.is_variational else None
    perceptual = _perceptual(cfg, model, device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(x_train) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: lr_factor(step, cfg.epochs * steps_per_epoch, cfg.warmup))
    result, start = FitResult(), time.perf_counter()
    try:
        for epoch in range(1, cfg.epochs + 1):
            t0, sums, seen = time.perf_counter(), {}, 0
            order = torch.randperm(len(x_train), generator=gen)
            bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{cfg.epochs}", unit="step",
                       disable=not progress, leave=False, dynamic_ncols=True)
            for i in bar:
                rows = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
                x, y = x_train[rows], y_train[rows]
                if cfg.augment:  # on the uint8 batch: a pixel permutation, a quarter of the bytes of float
                    x, y = augment(x, y, mirror, gen)
                x, y = x.to(device).float().div_(255.0), y.to(device)
                terms = compute_losses(model, model(x, generator=noise), x, y, cfg, weights, perceptual)
                opt.zero_grad(set_to_none=True)
                terms["loss"].backward()
                opt.step()
                sched.step()
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach()) * len(x)
                seen += len(x)
                bar.set_postfix(loss=f"{sums['loss'] / seen:.2f}")
            bar.close()
            record = {"epoch": epoch, "seconds": time.perf_counter() - t0, "lr": opt.param_groups[0]["lr"]}
            record.update({f"train_{k}": v / seen for k, v in sums.items()})
            retrieval = epoch % cfg.eval_every == 0 or epoch == cfg.epochs
            record.update(validate(model, x_val, y_val, x_train, y_train, cfg, weights, pairs, retrieval, device,
                                   perceptual=perceptual))
            result.history.append(record)
            summary = _epoch_summary(record, cfg.epochs)
            if progress:
                tqdm.write(summary)  # one line per epoch above the bar: the validation metrics
            log.info("%s", summary)
    except KeyboardInterrupt:
        result.interrupted = True
        log.warning("interrupted after %d finished epoch(s)", len(result.history))
    model.eval().cpu()
    result.seconds = time.perf_counter() - start
    return result


def _perceptual(cfg: TrainConfig, model: nn.Module, device: torch.device) -> nn.Module | None:
    """The perceptual term's loss module when ``cfg.perceptual_weight`` > 0 (VAEs only), else None."""
    if cfg.perceptual_weight <= 0:
        return None
    from galaxy_vae.errors import GalaxyVAEError
    from galaxy_vae.paths import encoder_checkpoint
    from galaxy_vae.perceptual import perceptual_loss

    if not model.is_variational or model.input_size != CROP:
        raise GalaxyVAEError("Cannot add the perceptual term", expected=f"a VAE that reads {CROP} px images",
                             found=f"{type(model).__name__} at {model.input_size} px",
                             fix="Leave --perceptual-weight at 0 for this model.")
    path = cfg.perceptual_encoder or encoder_checkpoint()
    if path is None:
        raise GalaxyVAEError("Cannot add the perceptual term", expected="the galaxy encoder's checkpoint",
                             found="no similarity.safetensors in the checkpoints folder",
                             fix="Pass --perceptual-encoder FILE or train it: train --model similarity.")
    return perceptual_loss(path, cfg.perceptual_blur).to(device)


# shown per epoch when present
SUMMARY_KEYS = ("loss", "mse", "kl", "kl_detail", "cls", "perceptual", "checkerboard", "macro_precision_at_10")


def _epoch_summary(record: dict, epochs: int) -> str:
    """'epoch 3/40 6.1s train loss=.. | val loss=.. mse=.. macro_precision_at_10=..'."""
    def part(prefix: str) -> str:
        return " ".join(f"{k}={record[prefix + k]:.4g}" for k in SUMMARY_KEYS if prefix + k in record)

    return f"epoch {record['epoch']}/{epochs} {record['seconds']:.1f}s train {part('train_')} | val {part('val_')}"


# --- from a dataset file to a checkpoint --------------------------------------------------------

def _start_from(net: nn.Module, model: str, model_config: dict, path: str | Path) -> None:
    """Load ``path``'s weights into ``net`` (fine-tuning): refuses another model or architecture."""
    from galaxy_vae.checkpoints import load_checkpoint
    from galaxy_vae.errors import CheckpointError

    ckpt = load_checkpoint(path)
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    if ckpt.meta.get("model") != model or shapes != {k: tuple(v.shape) for k, v in ckpt.model.state_dict().items()}:
        raise CheckpointError("Cannot start from this checkpoint", expected=f"a {model} checkpoint with the same "
                              f"architecture ({model_config or 'defaults'})",
                              found=f"{Path(path).name}: {ckpt.meta.get('model')} {ckpt.meta.get('config')}",
                              fix="Pass --init a checkpoint of the model you train, or leave --init out.")
    net.load_state_dict(ckpt.model.state_dict())

def versions() -> dict[str, str]:
    import safetensors

    return {"galaxy_vae": galaxy_vae.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "safetensors": safetensors.__version__, "python": platform.python_version()}


def train_model(model: str, data_path: str | Path, out: str | Path, cfg: TrainConfig | None = None,
                model_config: dict | None = None, classes: list[int] | None = None, challenge: bool = True,
                progress: bool = True, command: str | None = None, frames: Path | None = None,
                augment_config=None) -> tuple[Path, dict]:
    """Train registry model ``model`` on the training split of ``data_path`` and save it to ``out``.

    ``classes`` keeps only those class numbers; otherwise Galaxy10 SDSS is reduced to the
    challenge's six face-on classes unless ``challenge`` is False (as the app and search see it).
    The similarity encoder trains on the raw frames in ``frames`` (:mod:`galaxy_vae.train_encoder`),
    with ``augment_config``; its figures add the framing robustness of :mod:`galaxy_vae.robustness`.
    Returns the checkpoint path and its metadata; ``meta["interrupted"]`` is True after Ctrl-C.
    """
    cfg = cfg or default_config(model)
    data = select_classes(open_dataset(data_path), classes) if classes is not None else \
        open_for_search(data_path, challenge=challenge)
    subset = None
    if data.original_class_names is not None:  # the class numbers kept, as numbered in the file
        subset = [data.original_class_names.index(name) for name in data.class_names]
    train_idx, val_idx = stratified_split(data.labels, cfg.val_fraction, cfg.split_seed)
    train, val = data.take(train_idx), data.take(val_idx)
    pairs = chirality_pairs(data.class_names) if cfg.chirality_pairs is None else cfg.chirality_pairs
    cfg = replace(cfg, chirality_pairs=[list(p) for p in pairs])
    log.info("training %s on %d galaxies (%d held out) of %s", model, len(train), len(val), data.name)
    extra: dict = {}
    if model == "similarity":
        from galaxy_vae.train_encoder import train_encoder

        net, result, extra = train_encoder(train, frames, cfg, augment_config, model_config, progress=progress)
    else:
        model_config = dict(model_config or {})
        if model != "dense_ae":
            model_config.setdefault("n_classes", len(data.class_names))
        torch.manual_seed(cfg.seed)  # initial weights
        net = build_model(model, model_config)
        if cfg.init:
            _start_from(net, model, model_config, cfg.init)
        result = fit(net, train, val, cfg, progress=progress)
    if result.interrupted or not result.history:
        metrics = {k[4:]: v for k, v in (result.history[-1] if result.history else {}).items()
                   if k.startswith("val_")}
    else:
        metrics = evaluate_model(net, data, split_seed=cfg.split_seed, val_fraction=cfg.val_fraction, pairs=pairs)
        if model == "similarity":
            from galaxy_vae.robustness import robustness_report

            metrics.update(robustness_report(net, data, frames, cfg.split_seed, cfg.val_fraction, progress=progress))
    meta = {**extra,
        "dataset": Path(data_path).name, "dataset_sha256": pooch.file_hash(str(data_path)),
        "class_names": list(data.class_names), "class_subset": subset,
        "split_seed": cfg.split_seed, "val_fraction": cfg.val_fraction, "chirality_pairs": cfg.chirality_pairs,
        "n_train": len(train), "n_val": len(val), "train_config": asdict(cfg), "metrics": metrics,
        "history": result.history, "interrupted": result.interrupted, "epochs_done": len(result.history),
        "train_seconds": round(result.seconds, 1), "versions": versions(),
        "device": cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"),
        "threads": torch.get_num_threads(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command or " ".join(sys.argv),
    }
    return save_checkpoint(out, net, meta), meta
