"""Training: loss terms, augmentation with chirality, learning, reproducibility, Ctrl-C, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from galaxy_vae import cli
from galaxy_vae.checkpoints import load_checkpoint
from galaxy_vae.data import model_view
from galaxy_vae.embed import to_input
from galaxy_vae.models import build_model
from galaxy_vae.symmetry import chirality_pairs, dihedral_views, mirror_label_map
from galaxy_vae.train import augment, class_weights_for, compute_losses, default_config, fit, train_model


def _per_class(sample, n: int) -> np.ndarray:
    """The first ``n`` galaxies of every class (fewer for rare classes), in file order."""
    return np.sort(np.concatenate([np.flatnonzero(sample.labels == c)[:n] for c in range(len(sample.class_names))]))




@pytest.mark.parametrize("name", ["dense_ae", "conv_vae", "galaxy_vae"])
def test_train_loss_terms_are_finite_with_nonnegative_kl(name, sample):
    model = build_model(name).train()
    rows = _per_class(sample, 6)
    x, y = to_input(sample.images[rows], model), torch.from_numpy(sample.labels[rows])
    cfg = default_config(name)
    weights = class_weights_for(sample.labels, 6, cfg.class_balance)
    terms = compute_losses(model, model(x), x, y, cfg, weights if model.is_variational else None)
    assert all(torch.isfinite(v) for v in terms.values())
    assert terms["recon"] > 0
    if model.is_variational:
        assert terms["kl"] >= 0 and terms["cls"] > 0
        expected = terms["recon"] + cfg.beta * terms["kl"] + cfg.class_weight * terms["cls"]
        assert torch.allclose(terms["loss"], expected)
    else:
        assert set(terms) == {"loss", "recon", "mse"}


def test_train_class_weights_balance_the_classes(sample):
    w = class_weights_for(sample.labels, 6, 1.0).numpy()
    counts = np.bincount(sample.labels)
    np.testing.assert_allclose(w * counts, (w * counts)[0], rtol=1e-5)  # each class weighs the same in total
    np.testing.assert_allclose((w * counts).sum(), len(sample.labels), rtol=1e-5)
    assert np.allclose(class_weights_for(sample.labels, 6, 0.0).numpy(), 1.0)


def test_train_augment_shows_dihedral_views_and_mirrors_chirality(sample):
    cw, acw = (sample.class_names.index(n) for n in ("Spiral CW", "Spiral ACW"))
    galaxy = model_view(sample.images[np.flatnonzero(sample.labels == cw)[0]], 64)
    views = dihedral_views(galaxy)  # (8, 64, 64, 3): a real spiral, all views distinct
    x = torch.from_numpy(np.repeat(galaxy[None], 64, axis=0).copy()).permute(0, 3, 1, 2).float()
    y = torch.full((64,), cw)
    mirror = torch.from_numpy(mirror_label_map(6, chirality_pairs(sample.class_names)))
    x_aug, y_aug = augment(x, y, mirror, torch.Generator().manual_seed(0))
    assert torch.equal(x[0], x[63]) and (y == cw).all()  # inputs untouched
    seen = set()
    for image, label in zip(x_aug.permute(0, 2, 3, 1).numpy().astype(np.uint8), y_aug.tolist()):
        v = next(i for i in range(8) if np.array_equal(image, views[i]))
        seen.add(v)
        assert label == (acw if v >= 4 else cw)  # a mirrored clockwise spiral winds anticlockwise
    assert len(seen) == 8


def test_train_a_few_steps_on_real_galaxies_lower_the_loss(sample):
    torch.manual_seed(0)
    model = build_model("galaxy_vae")
    train, val = sample.take(_per_class(sample, 50)), sample.take(_per_class(sample, 3))
    cfg = default_config("galaxy_vae", epochs=4, batch_size=64, eval_every=100)
    x, y = to_input(train.images, model), torch.from_numpy(train.labels)
    weights = class_weights_for(train.labels, 6, cfg.class_balance)

    def loss() -> float:
        with torch.no_grad():
            out = model.train()(x, generator=torch.Generator().manual_seed(1))
            return float(compute_losses(model, out, x, y, cfg, weights)["loss"])

    before = loss()
    result = fit(model, train, val, cfg, progress=False)
    assert not model.training  # handed back in eval mode
    after = loss()
    assert after < 0.8 * before, (before, after)
    assert len(result.history) == 4 and not result.interrupted
    last = result.history[-1]
    assert 0 <= last["val_macro_precision_at_10"] <= 1 and last["val_kl"] >= 0


def test_train_is_reproducible_with_a_seed(sample):
    train, val = sample.take(_per_class(sample, 15)), sample.take(_per_class(sample, 2))
    states = []
    for _ in range(2):
        torch.manual_seed(7)
        model = build_model("galaxy_vae")
        fit(model, train, val, default_config("galaxy_vae", epochs=2, batch_size=32, seed=7), progress=False)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_train_cli_writes_a_checkpoint_with_its_command(tiny_h5, tmp_path, capsys):
    out = tmp_path / "conv.safetensors"
    code = cli.main(["train", "--model", "conv_vae", "--data", str(tiny_h5), "--epochs", "2",
                     "--batch-size", "32", "--seed", "3", "--out", str(out), "--quiet"])
    assert code == 0
    assert "saved" in capsys.readouterr().out
    ckpt = load_checkpoint(out)
    meta = ckpt.meta
    assert ckpt.name == "conv_vae" and meta["epochs_done"] == 2 and len(meta["history"]) == 2
    assert meta["command"] == (f"python -m galaxy_vae train --model conv_vae --data {tiny_h5} --epochs 2 "
                               f"--batch-size 32 --seed 3 --out {out}")
    assert meta["train_config"]["augment"] is False  # the seed recipe
    assert meta["chirality_pairs"] == [] and meta["n_train"] + meta["n_val"] == 30
    assert 0 <= meta["metrics"]["macro_precision_at_10"] <= 1


def test_train_cli_prints_validation_metrics_every_epoch(tiny_h5, tmp_path, capsys):
    """Without --quiet, each finished epoch leaves one line with its train and validation figures."""
    out = tmp_path / "vae.safetensors"
    assert cli.main(["train", "--model", "conv_vae", "--data", str(tiny_h5), "--epochs", "2",
                     "--batch-size", "64", "--out", str(out)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    history = load_checkpoint(out).meta["history"]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"]
    for line, record in zip(lines, history):
        assert f"| val loss={record['val_loss']:.4g} " in line
        assert f"macro_precision_at_10={record['val_macro_precision_at_10']:.4g}" in line


def test_train_ctrl_c_leaves_a_usable_checkpoint(tiny_h5, tmp_path, monkeypatch, capsys):
    import galaxy_vae.train as train_module

    real_validate, calls = train_module.validate, []

    def validate_then_interrupt(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if Ctrl-C arrived during epoch 2
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(train_module, "validate", validate_then_interrupt)
    out = tmp_path / "interrupted.safetensors"
    code = cli.main(["train", "--model", "galaxy_vae", "--data", str(tiny_h5), "--epochs", "5",
                     "--batch-size", "32", "--out", str(out), "--quiet"])
    assert code == 130 and "interrupted" in capsys.readouterr().out
    ckpt = load_checkpoint(out)
    assert ckpt.meta["interrupted"] is True and ckpt.meta["epochs_done"] == 1
    z = ckpt.model.encode(to_input(_images(tiny_h5), ckpt.model))
    assert torch.isfinite(z).all()


def _images(path) -> np.ndarray:
    from galaxy_vae.hdf5 import open_dataset

    return open_dataset(path).images[:8]


def test_train_model_keeps_only_the_requested_classes(tiny_h5, tmp_path):
    path, meta = train_model("dense_ae", tiny_h5, tmp_path / "ae.safetensors",
                             default_config("dense_ae", epochs=1), classes=[0, 2], progress=False)
    assert meta["class_names"] == ["Round", "Pair"] and meta["class_subset"] == [0, 2]
    assert meta["n_train"] + meta["n_val"] == 20
