"""galaxy_vae.quality: what the home and model pages compute, on real sample galaxies.

Models here are freshly initialised (fixed seed): these tests check the bookkeeping (splits,
counts, rows, shapes), not how good a trained model is; the model page's AppTest does that.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from galaxy_vae.checkpoints import Checkpoint
from galaxy_vae.data import model_view, stratified_split
from galaxy_vae.evaluate import evaluate_checkpoint
from galaxy_vae.models import build_model
from galaxy_vae.quality import (
    METRICS,
    PIXEL_ROW,
    head_confusion,
    loss_history,
    quality_table,
    sample_rows,
    training_summary,
    validation_examples,
    validation_split,
)


def checkpoint(name: str, data, **meta) -> Checkpoint:
    torch.manual_seed(0)
    config = {} if name == "dense_ae" else {"n_classes": len(data.class_names)}
    meta = {"model": name, "class_names": list(data.class_names), "split_seed": 0, "val_fraction": 0.2, **meta}
    return Checkpoint(model=build_model(name, config).eval(), meta=meta, path=Path(f"{name}.safetensors"))


@pytest.fixture(scope="module")
def small(sample):
    """600 real galaxies, every class present (a quick stand-in for the whole sample)."""
    rows = np.sort(np.concatenate(sample_rows(sample.labels, len(sample.class_names), 100, seed=1)))
    return sample.take(rows)


def test_quality_sample_rows_are_fixed_real_members_of_each_class(sample):
    first = sample_rows(sample.labels, len(sample.class_names), 5)
    assert [len(r) for r in first] == [5] * len(sample.class_names)
    for c, rows in enumerate(first):
        assert (sample.labels[rows] == c).all() and (np.diff(rows) > 0).all()
    again = sample_rows(sample.labels, len(sample.class_names), 5)
    assert all((a == b).all() for a, b in zip(first, again))
    other = sample_rows(sample.labels, len(sample.class_names), 5, seed=7)
    assert any((a != b).any() for a, b in zip(first, other))
    assert sample_rows(np.array([0, 0, 2]), 3, 5)[1].size == 0  # an empty class gives no rows


def test_quality_validation_split_is_the_checkpoints_own(small):
    ckpt = checkpoint("galaxy_vae", small, split_seed=3, val_fraction=0.25)
    train, val = validation_split(ckpt, small)
    train_idx, val_idx = stratified_split(small.labels, 0.25, 3)
    assert list(val.ids) == list(small.ids[val_idx]) and list(train.ids) == list(small.ids[train_idx])
    assert not set(train.ids) & set(val.ids)


def test_quality_validation_examples_pair_each_original_with_its_reconstruction(small):
    ckpt = checkpoint("conv_vae", small)  # a 32x32 model: reconstructions come back at 64x64
    examples = validation_examples(ckpt, small, per_class=2)
    _, val = validation_split(ckpt, small)
    assert [e.class_name for e in examples] == list(small.class_names)
    for c, e in enumerate(examples):
        assert e.originals.shape == e.reconstructions.shape == (2, 64, 64, 3)
        assert e.reconstructions.dtype == np.uint8
        rows = [list(val.ids).index(gid) for gid in e.ids]
        assert (val.labels[rows] == c).all()
        assert (e.originals == model_view(val.images[rows])).all()
        images, captions = e.interleaved()
        assert (images[0::2] == e.originals).all() and (images[1::2] == e.reconstructions).all()
        assert captions == [e.ids[0], "reconstruction", e.ids[1], "reconstruction"]


def test_quality_head_confusion_counts_every_validation_galaxy(small):
    ckpt = checkpoint("galaxy_vae", small)
    cm = head_confusion(ckpt, small)
    _, val = validation_split(ckpt, small)
    assert cm.shape == (6, 6) and cm.sum() == len(val)
    assert (cm.sum(axis=1) == np.bincount(val.labels, minlength=6)).all()
    assert head_confusion(checkpoint("dense_ae", small), small) is None  # no class head


def test_quality_table_rows_equal_evaluate_and_share_one_pixel_row(small):
    ckpts = [checkpoint("galaxy_vae", small), checkpoint("dense_ae", small)]
    rows, problems = quality_table(ckpts, small)
    assert problems == []
    assert [r["checkpoint"] for r in rows] == ["galaxy_vae.safetensors", "dense_ae.safetensors", PIXEL_ROW]
    for row, ckpt in zip(rows, ckpts):
        expected = evaluate_checkpoint(ckpt, small)
        assert {m: row[m] for m in METRICS} == {m: expected[m] for m in METRICS}
        assert row["model"] == expected["model"] and row["n_val"] == expected["n_val"]
    pixel = rows[-1]
    assert pixel["recon_mse"] is None
    assert {m: pixel[m] for m in METRICS[:-1]} == {m: expected[f"pixel_{m}"] for m in METRICS[:-1]}


def test_quality_table_reports_a_checkpoint_for_other_classes(small):
    foreign = checkpoint("galaxy_vae", small, class_names=[f"class {i}" for i in range(6)])
    rows, problems = quality_table([foreign, checkpoint("galaxy_vae", small)], small)
    assert [r["checkpoint"] for r in rows] == ["galaxy_vae.safetensors", PIXEL_ROW]
    assert len(problems) == 1 and "classes" in problems[0]


def test_quality_loss_history_splits_train_and_validation_terms():
    history = [{"epoch": 1, "seconds": 2.0, "lr": 1e-3, "train_loss": 9.0, "train_recon": 8.0, "train_kl": 0.5,
                "train_cls": 0.5, "train_mse": 0.01, "val_loss": 7.0, "val_recon": 6.0, "val_kl": 0.4,
                "val_cls": 0.6, "val_precision_at_10": 0.5},
               {"epoch": 2, "train_loss": 5.0, "train_recon": 5.0, "val_loss": 4.0, "val_recon": 4.0}]
    out = loss_history(history)
    assert out["train"] == [{"epoch": 1, "loss": 9.0, "recon": 8.0, "kl": 0.5, "class": 0.5},
                            {"epoch": 2, "loss": 5.0, "recon": 5.0}]
    assert out["val"][0] == {"epoch": 1, "loss": 7.0, "recon": 6.0, "kl": 0.4, "class": 0.6}
    assert loss_history(None) == {"train": [], "val": []}


def test_quality_training_summary_keeps_how_it_was_trained():
    meta = {"model": "galaxy_vae", "config": {"latent_dim": 2}, "train_config": {"epochs": 3}, "history": [1, 2],
            "dataset": "gz1_sample.h5", "split_seed": 0, "command": "python -m galaxy_vae train ..."}
    out = training_summary(meta)
    assert out == {"model": "galaxy_vae", "model config": {"latent_dim": 2}, "training config": {"epochs": 3},
                   "dataset": "gz1_sample.h5", "split_seed": 0}
    assert training_summary({"model": "dense_ae"}) == {"model": "dense_ae"}
