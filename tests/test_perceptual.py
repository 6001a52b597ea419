"""The perceptual term: zero for an image against itself, larger the further apart in the
encoder's eyes, gradients to the reconstruction only; fine-tuning with it from a checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from galaxy_vae import cli
from galaxy_vae.checkpoints import load_checkpoint, save_checkpoint
from galaxy_vae.data import model_view
from galaxy_vae.errors import GalaxyVAEError
from galaxy_vae.models import build_model
from galaxy_vae.perceptual import PerceptualLoss, perceptual_loss

SMALL_ENCODER = {"widths": [8, 8, 8, 8], "latent_dim": 8}
SMALL_DETAIL = {"channels": [8, 8, 8, 8], "dec_channels": [16, 8, 8, 8], "hidden": 32, "detail_dim": 8,
                "prior_hidden": 16}


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory):
    torch.manual_seed(0)
    enc = build_model("similarity", SMALL_ENCODER).eval()
    return save_checkpoint(tmp_path_factory.mktemp("enc") / "similarity.safetensors", enc, {})


def _galaxies(sample, n: int = 8) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(model_view(sample.images[:n]))).permute(0, 3, 1, 2).float() / 255


def test_perceptual_is_zero_for_the_image_itself_and_grows_with_blur(encoder_file, sample):
    loss = perceptual_loss(encoder_file)
    x = _galaxies(sample)
    assert torch.allclose(loss(x, x), torch.zeros(len(x)), atol=1e-4)
    blurred = torch.nn.functional.avg_pool2d(x, 3, 1, 1)
    flat = torch.nn.functional.avg_pool2d(x, 9, 1, 4)
    d_blur, d_flat = loss(blurred, x), loss(flat, x)
    assert torch.all(d_blur > 0) and torch.all(d_flat > d_blur)
    assert len(loss.features(x)) == 3 and [f.shape[-1] for f in loss.features(x)] == [32, 16, 8]


def test_perceptual_gradients_reach_the_reconstruction_not_the_encoder(encoder_file, sample):
    loss = perceptual_loss(encoder_file)
    before = {k: v.clone() for k, v in loss.state_dict().items()}
    x = _galaxies(sample)
    x_hat = torch.nn.functional.avg_pool2d(x, 3, 1, 1).requires_grad_(True)
    loss.train()  # stays in inference mode: BatchNorm statistics never move
    assert not loss.training and not any(p.requires_grad for p in loss.parameters())
    loss(x_hat, x).mean().backward()
    assert x_hat.grad is not None and x_hat.grad.abs().sum() > 0
    assert all(torch.equal(before[k], v) for k, v in loss.state_dict().items())
    with pytest.raises(ValueError, match="taps"):
        PerceptualLoss(load_checkpoint(encoder_file).model, taps=(5,))


def test_perceptual_refuses_a_checkpoint_that_is_not_the_encoder(tmp_path):
    vae = save_checkpoint(tmp_path / "vae.safetensors", build_model("detail_vae", SMALL_DETAIL), {})
    with pytest.raises(GalaxyVAEError, match="galaxy encoder"):
        perceptual_loss(vae)


def test_fine_tuning_with_the_perceptual_term_from_a_checkpoint(small_sample_path, encoder_file, tmp_path, capsys):
    """train --init starts from a checkpoint's weights (the first epoch's loss is the checkpoint's,
    not a fresh model's); --perceptual-weight adds the term, logged per epoch; a checkpoint of
    another architecture is refused with what to do."""
    import json

    base = tmp_path / "base.safetensors"
    common = ["train", "--model", "detail_vae", "--data", str(small_sample_path), "--batch-size", "64",
              "--model-config", json.dumps(SMALL_DETAIL), "--quiet"]
    assert cli.main(common + ["--epochs", "2", "--out", str(base)]) == 0
    tuned = tmp_path / "tuned.safetensors"
    assert cli.main(common + ["--epochs", "1", "--lr", "1e-4", "--init", str(base), "--perceptual-weight", "0.01",
                              "--perceptual-encoder", str(encoder_file), "--out", str(tuned)]) == 0
    meta = load_checkpoint(tuned).meta
    first = meta["history"][0]
    assert first["train_perceptual"] > 0 and "val_perceptual" in first
    assert "--init" in meta["command"] and meta["train_config"]["perceptual_weight"] == 0.01
    fresh = load_checkpoint(base).meta["history"][0]
    assert first["train_mse"] < fresh["train_mse"]  # it began where base ended, not from scratch
    other = json.dumps({**SMALL_DETAIL, "detail_dim": 4})
    capsys.readouterr()
    code = cli.main(common[:-3] + ["--model-config", other, "--quiet", "--epochs", "1", "--init", str(base),
                                   "--out", str(tmp_path / "x.safetensors")])
    err = capsys.readouterr().err
    assert code != 0 and "Cannot start from this checkpoint" in err and "--init" in err
    assert not (tmp_path / "x.safetensors").exists()


def test_perceptual_blur_takes_away_the_reward_for_a_pixel_checkerboard(encoder_file, sample):
    """A 2 px checkerboard added to a galaxy is what an unblurred term lets the decoder paint: the
    blurred term hardly sees it, while it still sees a galaxy blurred by 3 px."""
    from galaxy_vae.perceptual import BLUR

    assert BLUR == 1.0
    x = _galaxies(sample, 4) * 0.8 + 0.1  # off the [0, 1] edges: the board is not clipped
    board = torch.full_like(x, -0.03)  # zero mean: a texture, not a brighter sky
    board[..., ::2, ::2] = board[..., 1::2, 1::2] = 0.03
    sharp, soft = perceptual_loss(encoder_file, blur=0.0), perceptual_loss(encoder_file)
    seen_sharp, seen_soft = sharp(x + board, x).mean(), soft(x + board, x).mean()
    assert seen_soft < 0.02 * seen_sharp, (seen_soft, seen_sharp)
    assert soft(torch.nn.functional.avg_pool2d(x, 7, 1, 3), x).mean() > 10 * seen_soft
    with pytest.raises(ValueError, match="blur"):
        perceptual_loss(encoder_file, blur=-1.0)


def test_checkerboard_term_is_the_2px_pattern_energy_of_the_reconstruction(sample):
    from galaxy_vae.configs import default_config
    from galaxy_vae.perceptual import checkerboard
    from galaxy_vae.train import compute_losses

    board = torch.zeros(1, 3, 4, 4)
    board[..., ::2, ::2] = board[..., 1::2, 1::2] = 1.0
    assert torch.allclose(checkerboard(board), torch.full((1, 3, 2, 2), 0.5))
    assert torch.equal(checkerboard(torch.ones(2, 3, 6, 6)), torch.zeros(2, 3, 3, 3))
    torch.manual_seed(0)
    model = build_model("detail_vae", SMALL_DETAIL).eval()
    x = _galaxies(sample, 4)
    y = torch.from_numpy(sample.labels[:4])
    out = model(x)
    plain = compute_losses(model, out, x, y, default_config("detail_vae"))
    cfg = default_config("detail_vae", checkerboard_weight=100.0)
    terms = compute_losses(model, out, x, y, cfg)
    energy = checkerboard(out["recon"]).pow(2).flatten(1).sum(1).mean()
    assert "checkerboard" not in plain and torch.allclose(terms["checkerboard"], energy)
    assert torch.allclose(terms["loss"], plain["loss"] + 100.0 * energy)
