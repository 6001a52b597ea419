"""The detail VAE: its contract (the map latent as every page knows it, plus the detail code and its
learned prior), its loss, seeded details, lookalikes in both codes, evaluate --realism's JSON, and
what the shipped generator does with real galaxies (orientation kept, edge-ons elongated).

Contract tests use seeded, untrained models; the behaviour that depends on what galaxies look like
uses the shipped checkpoint on the real sample (skipped when it is absent).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from galaxy_vae import cli, generate, realism_model
from galaxy_vae import lookalikes as mw
from galaxy_vae.catalogue import Catalogue, ModelSpace
from galaxy_vae.checkpoints import load_checkpoint, save_checkpoint
from galaxy_vae.configs import default_config
from galaxy_vae.embed import reconstruct, to_input
from galaxy_vae.models import build_model
from galaxy_vae.paths import checkpoint_dir
from galaxy_vae.quality import validation_split
from galaxy_vae.train import class_weights_for, compute_losses, gaussian_kl

SHIPPED = checkpoint_dir() / "detail_vae.safetensors"
needs_shipped = pytest.mark.skipif(not SHIPPED.is_file(), reason=f"{SHIPPED} not trained yet")
SMALL = {"channels": [8, 8, 8, 8], "dec_channels": [16, 8, 8, 8], "hidden": 32, "detail_dim": 8, "prior_hidden": 16}


def _rows(sample, n: int) -> np.ndarray:
    return np.sort(np.concatenate([np.flatnonzero(sample.labels == c)[:n] for c in range(len(sample.class_names))]))


def test_detail_model_keeps_the_map_contract_and_adds_the_detail_code(sample):
    torch.manual_seed(0)
    model = build_model("detail_vae").eval()
    assert model.latent_dim == 2 and model.detail_dim == 24 and model.n_classes == 6
    x = to_input(sample.images[:5], model)
    out = model(x)
    assert out["mu"].shape == (5, 2) and out["detail_mu"].shape == out["prior_mu"].shape == (5, 24)
    assert torch.equal(model.encode(x), out["mu"]) and torch.equal(model.encode_detail(x), out["detail_mu"])
    # decode(z) is decode_full with the prior's mean: what map-only callers (grid, map background) get
    z = torch.randn(4, 2)
    assert torch.allclose(model.decode(z), model.decode_full(z, model.prior_detail(z, temperature=0.0)))
    # eval forward reconstructs from both posterior means
    assert torch.allclose(out["recon"], model.decode_full(out["mu"], out["detail_mu"]))


def test_detail_prior_draws_are_seeded_and_follow_the_map_point():
    torch.manual_seed(0)
    model = build_model("detail_vae", SMALL).eval()
    z = torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    with torch.no_grad():
        a, b, c = model.prior_detail(z, seed=3), model.prior_detail(z, seed=3), model.prior_detail(z, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    mu, logvar = model.prior_detail_dist(z)
    assert not torch.allclose(mu[0], mu[1])  # the prior is conditional on the map point
    assert torch.isfinite(logvar).all()


def test_detail_loss_has_the_detail_kl_against_the_prior(sample):
    torch.manual_seed(0)
    model = build_model("detail_vae", SMALL).train()
    rows = _rows(sample, 4)
    x, y = to_input(sample.images[rows], model), torch.from_numpy(sample.labels[rows])
    cfg = default_config("detail_vae", detail_beta=0.5)
    terms = compute_losses(model, model(x), x, y, cfg, class_weights_for(sample.labels, 6, cfg.class_balance))
    assert terms["kl"] >= 0 and terms["kl_detail"] >= 0
    expected = terms["recon"] + cfg.beta * terms["kl"] + 0.5 * terms["kl_detail"] + cfg.class_weight * terms["cls"]
    assert torch.allclose(terms["loss"], expected)
    mu, logvar = torch.randn(3, 5), torch.randn(3, 5)
    assert float(gaussian_kl(mu, logvar, mu, logvar)) == pytest.approx(0.0, abs=1e-6)
    # against N(0, I) it is the usual closed form
    closed = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(1).mean()
    assert torch.allclose(gaussian_kl(mu, logvar, torch.zeros(3, 5), torch.zeros(3, 5)), closed)


def test_detail_checkpoint_round_trip_and_catalogue(tmp_path, sample):
    torch.manual_seed(1)
    model = build_model("detail_vae", SMALL).eval()
    path = save_checkpoint(tmp_path / "d.safetensors", model, {"class_names": list(sample.class_names)})
    ckpt = load_checkpoint(path)
    part = sample.take(_rows(sample, 10))
    cat = Catalogue(part, ModelSpace(ckpt))
    assert cat.has_detail and cat.vectors.shape == (len(part), 2) and cat.details.shape == (len(part), 8)
    # reconstructions decode both codes; a path from a galaxy to another starts at its own codes
    recon = reconstruct(ckpt.model, part.images[:3])[0]
    path_ = generate.path_between(cat, 0, 1, [0.0, 0.5, 1.0])
    assert path_.details.shape == (3, 8)
    np.testing.assert_array_equal(path_.decode(cat)[0], recon[0])


def test_detail_point_details_modes(tmp_path, sample):
    torch.manual_seed(2)
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "d.safetensors", build_model("detail_vae", SMALL), {}))
    cat = Catalogue(sample.take(_rows(sample, 5)), ModelSpace(ckpt))
    here, there = (0.1, 0.2), (0.5, -0.3)
    new = generate.point_details(cat, here, "new details", 7)
    np.testing.assert_array_equal(new, generate.point_details(cat, here, "new details", 7))
    assert not np.array_equal(new, generate.point_details(cat, here, "new details", 8))
    assert not np.array_equal(new, generate.point_details(cat, there, "new details", 7))  # the new point's prior
    kept = generate.point_details(cat, there, "keep details", 7, anchor=here)
    np.testing.assert_array_equal(kept, new)  # the details chosen at the anchor, carried along
    typical = generate.point_details(cat, here, "typical details", 7)
    with torch.no_grad():
        mean = ckpt.model.prior_detail_dist(torch.tensor([here], dtype=torch.float32))[0].numpy()
    np.testing.assert_allclose(typical, mean)
    with pytest.raises(ValueError, match="detail mode"):
        generate.point_details(cat, here, "other", 0)


def test_detail_lookalikes_vary_both_codes_and_repeat_with_the_seed(tmp_path, sample, milky_way_path):
    from galaxy_vae.cutouts import prepare_upload

    torch.manual_seed(3)
    model = build_model("detail_vae", SMALL)
    meta = {"class_names": list(sample.class_names)}
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "d.safetensors", model, meta))
    cat = Catalogue(sample.take(_rows(sample, 10)), ModelSpace(ckpt))
    query = prepare_upload(milky_way_path).stored
    a, b = mw.sample_lookalikes(cat, query, 6, 2.0, seed=4), mw.sample_lookalikes(cat, query, 6, 2.0, seed=4)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.details, b.details)
    assert a.details.shape == (6, 8) and len(np.unique(a.details[:, 0])) == 6
    e = (a.details - a.detail_posterior.mu) / a.detail_spread
    assert np.all(np.linalg.norm(e, axis=1) <= mw.equal_mass_radius(2.0, 8) + 1e-4)
    # the spread: the query's posterior widened by the prior's sigma at each sampled map point
    with torch.inference_mode():
        prior_sigma = torch.exp(0.5 * model.prior_detail_dist(torch.from_numpy(a.latents))[1]).numpy()
    np.testing.assert_allclose(a.detail_spread ** 2, a.detail_posterior.sigma ** 2 + prior_sigma ** 2, rtol=1e-5)
    narrow = mw.sample_lookalikes(cat, query, 6, 2.0, seed=4, variety=0.0)
    np.testing.assert_allclose(narrow.detail_spread, np.broadcast_to(narrow.detail_posterior.sigma, (6, 8)))
    np.testing.assert_array_equal(narrow.latents, a.latents)  # variety moves the details only
    with pytest.raises(ValueError, match="variety"):
        mw.sample_lookalikes(cat, query, 2, 2.0, seed=4, variety=-1.0)
    assert mw.equal_mass_radius(2.0, 2) == pytest.approx(2.0)
    zero = mw.sample_lookalikes(cat, query, 3, 0.0, seed=4)
    np.testing.assert_allclose(zero.details, np.repeat(zero.detail_posterior.mu[None], 3, 0), atol=1e-6)


def test_detail_train_cli_then_evaluate_realism_json(small_sample_path, tmp_path, capsys):
    out = tmp_path / "d.safetensors"
    code = cli.main(["train", "--model", "detail_vae", "--data", str(small_sample_path), "--epochs", "1",
                     "--batch-size", "32", "--model-config", json.dumps(SMALL), "--out", str(out), "--quiet"])
    assert code == 0 and out.is_file()
    capsys.readouterr()
    code = cli.main(["evaluate", "--checkpoint", str(out), "--data", str(small_sample_path), "--no-pixel",
                     "--realism", "--realism-n", "12", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    r = result["realism"]
    for key in ("samples", "reconstructions", "real_vs_real"):
        assert set(r[key]) == {"gini", "m20", "concentration", "asymmetry", "smoothness"}
    assert r["n"] == 12 and r["n_measured"]["samples"] == r["n_measured"]["reconstructions"]
    assert set(r["flags"]) == {"real", "reconstructions", "samples"}
    assert r["flags"]["samples"]["total"] == r["n_measured"]["samples"]
    assert "detail" in r["sampler"] and "kl_detail" in json.dumps(load_checkpoint(out).meta["history"])
    assert cli.main(["evaluate", "--checkpoint", str(out), "--data", str(small_sample_path), "--no-pixel",
                     "--realism", "--realism-n", "2"]) == 2


# --- the shipped generator on real galaxies ------------------------------------------------------

@needs_shipped
def test_detail_shipped_lookalikes_vary_like_real_neighbours(sample):
    """Lookalikes of real galaxies are about as unlike each other as the galaxies' 16 nearest real
    neighbours (measured against the encoder's neighbours: median ratio 0.98 over 30 queries), where
    details from the query's posterior alone (variety 0) gave near-copies (ratio 0.14)."""
    from galaxy_vae.catalogue import Catalogue, ModelSpace
    from galaxy_vae.data import CROP, model_view

    cat = Catalogue(sample, ModelSpace(load_checkpoint(SHIPPED)))
    rows = np.random.default_rng(1).choice(len(sample.images), 8, replace=False)
    ratios, gains = [], []
    for r in rows:
        real = model_view(sample.images[cat.query_rows([r], 17).indices[0, 1:]], CROP)  # its 16 nearest
        varied = mw.diversity(mw.sample_lookalikes(cat, sample.images[r], 16, 2.0, 0).images)
        ratios.append(varied / mw.diversity(real))
        gains.append(varied / mw.diversity(mw.sample_lookalikes(cat, sample.images[r], 16, 2.0, 0, variety=0.0).images))
    assert np.median(ratios) >= 0.5 and np.median(gains) >= 3, (ratios, gains)


def test_diversity_is_zero_for_copies_and_the_mean_pairwise_rms():
    img = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    assert mw.diversity(np.repeat(img[:1], 5, 0)) == pytest.approx(0.0, abs=1e-6)
    assert mw.diversity(img[:1]) == 0.0
    x = img.astype(np.float64) / 255
    pairs = [np.sqrt(((x[i] - x[j]) ** 2).mean()) for i in range(4) for j in range(i + 1, 4)]
    assert mw.diversity(img) == pytest.approx(np.mean(pairs), rel=1e-5)


@needs_shipped
def test_detail_shipped_reconstructions_keep_orientation(sample):
    """Validation spirals and edge-ons that are clearly elongated (axis ratio < 0.6) come back
    with their principal axis within 20 degrees, for at least 80 % of them."""
    ckpt = load_checkpoint(SHIPPED)
    _, val = validation_split(ckpt, sample)
    names = list(val.class_names)
    disks = [names.index(n) for n in ("Spiral CW", "Spiral ACW", "Edge-on")]
    rows = np.flatnonzero(np.isin(val.labels, disks))[:300]
    real = val.images[rows][:, 2:66, 2:66]
    angle, ratio = realism_model.principal_axes(real)
    elongated = np.flatnonzero(ratio < 0.6)
    assert len(elongated) >= 40, len(elongated)
    rec_angle, _ = realism_model.principal_axes(reconstruct(ckpt.model, val.images[rows[elongated]])[0])
    kept = realism_model.angle_difference(angle[elongated], rec_angle) <= np.radians(20)
    assert kept.mean() >= 0.8, f"{kept.mean():.2f} of {len(elongated)} elongated disks keep their axis"


@needs_shipped
def test_detail_shipped_samples_at_edge_on_points_are_flatter_than_at_ellipticals(sample):
    """Samples at the map points of real edge-ons (details from the prior) come out flatter than samples
    at ellipticals' points. (Not yet as flat as real edge-ons: median b/a ~0.58 against ~0.42 here,
    statmorph 0.50 against 0.43 -- the issue's target of 0.05 is missed; see checkpoints/README.md.)"""
    ckpt = load_checkpoint(SHIPPED)
    _, val = validation_split(ckpt, sample)
    names = list(val.class_names)
    medians = {}
    for name in ("Edge-on", "Elliptical"):
        rows = np.flatnonzero(val.labels == names.index(name))[:80]
        _, ratio = realism_model.principal_axes(realism_model.samples_at(ckpt.model, val.images[rows], seed=0))
        medians[name] = float(np.nanmedian(ratio))
    assert medians["Edge-on"] < medians["Elliptical"] - 0.1, medians
