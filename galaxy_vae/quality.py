"""What the home and model pages show about data and checkpoints, computed without streamlit.

- :func:`quality_table`: one row of held-out figures per checkpoint (``evaluate.evaluate_checkpoint``,
  the same call as ``python -m galaxy_vae evaluate``), plus the pixel-space baseline.
- :func:`robustness_table`: the same per checkpoint for framing variants re-cut from raw frames
  (``evaluate --robustness``).
- :func:`validation_split` / :func:`validation_examples`: the checkpoint's own held-out galaxies,
  a few per class, with their reconstructions at 64x64.
- :func:`head_confusion`: the class head's confusion matrix on that split (None without a head).
- :func:`loss_history`: the stored per-epoch history in the shape ``figures.loss_curves`` draws.
- :func:`sample_rows`: a fixed handful of galaxies per class (the home page's grid).

Nothing here trains: every figure comes from a checkpoint's weights and metadata.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from galaxy_vae.checkpoints import Checkpoint, dataset_for
from galaxy_vae.data import CROP, GalaxyData, model_view, stratified_split
from galaxy_vae.embed import encode_images, reconstruct
from galaxy_vae.errors import GalaxyVAEError
from galaxy_vae.evaluate import evaluate_checkpoint

log = logging.getLogger(__name__)

# The figures of the quality table, in column order (keys of evaluate's JSON).
METRICS = ("precision_at_10", "macro_precision_at_10", "precision_at_10_morph",
           "macro_precision_at_10_morph", "recon_mse")
PIXEL_ROW = "pixel baseline"
# Loss terms in a checkpoint's history ("train_cls", "val_kl", ...) -> names figures.loss_curves knows.
LOSS_TERMS = {"loss": "loss", "recon": "recon", "kl": "kl", "kl_detail": "kl detail", "cls": "class"}


# --- the quality table --------------------------------------------------------------------------

def quality_table(checkpoints: Sequence[Checkpoint], data: GalaxyData) -> tuple[list[dict], list[str]]:
    """(rows, problems): one row per checkpoint, then one pixel-baseline row per distinct split.

    A row holds ``checkpoint`` (file name, or :data:`PIXEL_ROW`), ``model`` (class name),
    ``latent_dim``, ``n_val`` and every key of :data:`METRICS` (the pixel row's ``recon_mse`` is
    None: pixels reconstruct themselves). A checkpoint that does not fit ``data`` (other classes)
    is left out and described in ``problems`` instead of failing the whole table.
    """
    rows, problems, pixel_rows = [], [], {}
    for ckpt in checkpoints:
        try:
            result = evaluate_checkpoint(ckpt, data)
        except GalaxyVAEError as exc:
            problems.append(f"{ckpt.path.name}: {exc}")
            continue
        rows.append({"checkpoint": ckpt.path.name, "model": result["model"], "latent_dim": result["latent_dim"],
                     "n_val": result["n_val"], **{m: result.get(m) for m in METRICS}})
        # Checkpoints trained on one split share one baseline; another split gets its own row.
        split = (result["split_seed"], result["val_fraction"], result["n_val"])
        pixel_rows.setdefault(split, {"checkpoint": PIXEL_ROW, "model": "pixels", "latent_dim": CROP * CROP * 3,
                                      "n_val": result["n_val"],
                                      **{m: result.get(f"pixel_{m}") for m in METRICS}})
    if len(pixel_rows) > 1:
        for (seed, fraction, _), row in pixel_rows.items():
            row["checkpoint"] = f"{PIXEL_ROW} (split seed {seed}, {fraction:.0%} held out)"
    return rows + list(pixel_rows.values()), problems


def robustness_table(checkpoints: Sequence[Checkpoint], data: GalaxyData, frames: Path | None,
                     progress: Callable[[str], None] | None = None) -> tuple[list[dict], list[str]]:
    """(rows, problems): :mod:`galaxy_vae.robustness` figures (macro precision@10 per framing
    variant) of every checkpoint, then the pixel baseline, with uploads prepared as the app prepares
    them. Queries are re-cut once per split. Without raw frames: no rows, and why in ``problems``."""
    from galaxy_vae.robustness import model_embedding, pixel_embedding, query_set

    rows, problems, sets = [], [], {}
    for ckpt in checkpoints:
        try:
            seen = dataset_for(ckpt.meta, data)
        except GalaxyVAEError as exc:
            problems.append(f"{ckpt.path.name}: {exc}")
            continue
        split = (int(ckpt.meta.get("split_seed", 0)), float(ckpt.meta.get("val_fraction", 0.2)), len(seen))
        if split not in sets:
            if progress:
                progress(f"Re-cutting the validation galaxies of {data.name} from their raw frames…")
            sets[split] = query_set(seen, frames, split[0], split[1])
        qs = sets[split]
        if isinstance(qs, str):
            problems.append(f"Framing robustness needs the raw frames: {qs}.")
            return [], problems
        if progress:
            progress(f"Scoring {ckpt.path.name}…")
        rows.append({"checkpoint": ckpt.path.name, "n_val": len(qs.query_y), **qs.score(model_embedding(ckpt.model))})
    for (seed, fraction, _), qs in sets.items():
        name = PIXEL_ROW if len(sets) == 1 else f"{PIXEL_ROW} (split seed {seed}, {fraction:.0%} held out)"
        rows.append({"checkpoint": name, "n_val": len(qs.query_y), **qs.score(pixel_embedding)})
    return rows, problems


# --- the selected checkpoint --------------------------------------------------------------------

def validation_split(ckpt: Checkpoint, data: GalaxyData) -> tuple[GalaxyData, GalaxyData]:
    """(train, validation) of ``data`` exactly as the checkpoint was trained and evaluated on them."""
    data = dataset_for(ckpt.meta, data)
    train_idx, val_idx = stratified_split(data.labels, float(ckpt.meta.get("val_fraction", 0.2)),
                                          int(ckpt.meta.get("split_seed", 0)))
    return data.take(train_idx), data.take(val_idx)


def sample_rows(labels: np.ndarray, n_classes: int, per_class: int, seed: int = 0) -> list[np.ndarray]:
    """Per class, up to ``per_class`` rows of that class drawn at random with ``seed`` (the same on
    every run and machine: numpy's PCG64 stream), in row order. Empty classes give empty arrays."""
    labels = np.asarray(labels)
    out = []
    for c in range(n_classes):
        rows = np.flatnonzero(labels == c)
        rng = np.random.Generator(np.random.PCG64(seed + c))
        out.append(np.sort(rng.permutation(rows)[:per_class]))
    return out


@dataclass(frozen=True)
class ClassExamples:
    """A few validation galaxies of one class: their 64x64 crops beside their reconstructions."""

    class_name: str
    ids: list[str]
    originals: np.ndarray  # (n, 64, 64, 3) uint8, what the 64x64 models see
    reconstructions: np.ndarray  # (n, 64, 64, 3) uint8 (32x32 models upsampled, as evaluation does)

    def interleaved(self) -> tuple[np.ndarray, list[str]]:
        """(2n, 64, 64, 3) original, reconstruction, original, ... with captions: id, "reconstruction", ..."""
        images = np.stack([self.originals, self.reconstructions], axis=1).reshape((-1,) + self.originals.shape[1:])
        captions = [c for gid in self.ids for c in (gid, "reconstruction")]
        return images, captions


def validation_examples(ckpt: Checkpoint, data: GalaxyData, per_class: int = 3, seed: int = 0) -> list[ClassExamples]:
    """``per_class`` held-out galaxies of every class with the checkpoint's reconstructions."""
    _, val = validation_split(ckpt, data)
    out = []
    for name, rows in zip(val.class_names, sample_rows(val.labels, len(val.class_names), per_class, seed)):
        images = val.images[rows]
        recon = reconstruct(ckpt.model, images)[0] if len(rows) else np.empty((0, CROP, CROP, 3), np.uint8)
        out.append(ClassExamples(name, [str(i) for i in val.ids[rows]], np.ascontiguousarray(model_view(images, CROP)),
                                 recon))
    return out


def has_class_head(ckpt: Checkpoint) -> bool:
    """True when the model reads classes from its latent (the VAEs); the dense AE has no head."""
    return int(getattr(ckpt.model, "n_classes", 0) or 0) > 0 and hasattr(ckpt.model, "classify")


def head_confusion(ckpt: Checkpoint, data: GalaxyData) -> np.ndarray | None:
    """Counts (C, C) of the class head on the validation split, rows = true class, columns = predicted;
    None when the model has no class head."""
    if not has_class_head(ckpt):
        return None
    _, val = validation_split(ckpt, data)
    model, n = ckpt.model, len(val.class_names)
    assert model.n_classes == n, (model.n_classes, val.class_names)  # dataset_for checked the names
    z = encode_images(model, val.images)  # (N, d) latent means, as the app uses them
    with torch.inference_mode():
        pred = model.classify(torch.from_numpy(z)).argmax(dim=1).numpy()  # (N,)
    return np.bincount(val.labels * n + pred, minlength=n * n).reshape(n, n)


def loss_history(history: Sequence[dict] | None) -> dict[str, list[dict]]:
    """A checkpoint's history (one record per epoch, keys ``train_loss``, ``val_kl``, ...) ->
    {"train": [{"epoch", "loss", "recon", "kl", "class"}, ...], "val": [...]} for
    ``figures.loss_curves``. Terms a model lacks (the dense AE has no KL) are simply absent."""
    out: dict[str, list[dict]] = {"train": [], "val": []}
    for i, record in enumerate(history or []):
        for split in out:
            row = {"epoch": record.get("epoch", i + 1)}
            row.update({name: record[f"{split}_{term}"] for term, name in LOSS_TERMS.items()
                        if isinstance(record.get(f"{split}_{term}"), (int, float))})
            if len(row) > 1:
                out[split].append(row)
    return out


def training_summary(meta: dict) -> dict:
    """The parts of a checkpoint's metadata that say how it was trained (missing ones omitted)."""
    keys = ("dataset", "dataset_sha256", "class_names", "split_seed", "val_fraction", "n_train", "n_val",
            "epochs_done", "train_seconds", "interrupted", "device", "threads", "created", "versions")
    out = {"model": meta.get("model"), "model config": meta.get("config"),
           "training config": meta.get("train_config")}
    out.update({k: meta[k] for k in keys if k in meta})
    return {k: v for k, v in out.items() if v is not None}


# --- realism (galaxy_vae.realism_model) ---------------------------------------------------------

REALISM_ROWS = {"real_vs_real": "real vs real (baseline)", "reconstructions": "reconstructions",
                "samples": "samples (details from the prior)"}


def realism_rows(report: dict) -> tuple[list[dict], list[dict]]:
    """(W1 rows, ratio rows) of a realism report for a table: one row per set, one column per
    statistic; ratios are W1 / the real-vs-real W1 (the target: at most 3x)."""
    from galaxy_vae.realism import STATS

    w1 = [{"set": label, **{s: report[key][s] for s in STATS}} for key, label in REALISM_ROWS.items()]
    ratios = [{"set": REALISM_ROWS[key], **{s: report["ratios"][key][s] for s in STATS}}
              for key in ("reconstructions", "samples")]
    return w1, ratios


def realism_notes(report: dict) -> list[str]:
    """The report's other figures as sentences: flags, edge-on flatness, asymmetry range, band power."""
    num = lambda v, f=".3f": "—" if v is None else format(v, f)
    flags = "; ".join(f"{k}: {v['used']} of {v['total']} used ({v['suspect']} suspect, {v['bad']} bad, "
                      f"{v['failed']} failed)" for k, v in report["flags"].items() if v)
    notes = [f"statmorph flags — {flags}."]
    e = report.get("edge_on_axis_ratio")
    if e:
        notes.append(f"Edge-on axis ratio b/a (median, {e['n']} real edge-ons): real {num(e['real_median'])}, "
                     f"reconstructions {num(e['reconstructions_median'])}, samples {num(e['samples_median'])}.")
    in_range = num(report["asymmetry_in_real_range"], ".0%")
    notes.append(f"Samples whose asymmetry lies in the real 16–84 % range: {in_range} (a perfect sampler: about 68 %).")
    bp = report["band_power"]
    notes.append("Share of image power at 4–8 px wavelengths (decoder texture shows here, median): "
                 + ", ".join(f"{k} {num(v, '.4f')}" for k, v in bp.items()) + ".")
    return notes
