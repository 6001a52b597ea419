"""Batched encoding, decoding and reconstruction; dihedral views; chirality pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from galaxy_vae.data import GALAXY10_SDSS_CLASSES, GZ1_SAMPLE_CLASSES, model_view
from galaxy_vae.embed import (
    decode_latents,
    encode_dist_images,
    encode_images,
    recon_errors,
    reconstruct,
    to_input,
    upsample,
)
from galaxy_vae.models import build_model
from galaxy_vae.symmetry import chirality_pairs, dihedral_views, mirror_label_map, morphology_labels


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {name: build_model(name).eval() for name in ("dense_ae", "conv_vae", "galaxy_vae")}


def test_embed_to_input_is_the_model_view_as_float(sample, models):
    images = sample.images[:4]
    x64 = to_input(images, models["galaxy_vae"])
    assert x64.shape == (4, 3, 64, 64) and x64.dtype == torch.float32
    assert np.array_equal((x64.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8), model_view(images, 64))
    x32 = to_input(images, models["conv_vae"])  # the seed ConvVAE: 64x64 crop averaged 2x2
    assert x32.shape == (4, 3, 32, 32)
    assert np.array_equal((x32.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8), model_view(images, 64, 32))
    assert to_input(images[0], models["galaxy_vae"]).shape == (1, 3, 64, 64)  # one (69, 69, 3) image
    assert images.dtype == np.uint8  # the caller's array is untouched


@pytest.mark.parametrize("name", ["dense_ae", "conv_vae", "galaxy_vae"])
def test_embed_encode_images_matches_the_model_whatever_the_batch(name, sample, models):
    model, images = models[name], sample.images[:50]
    z = encode_images(model, images, batch_size=16)
    assert z.shape == (50, model.latent_dim) and z.dtype == np.float32
    with torch.no_grad():
        direct = model.encode(to_input(images, model)).numpy()
    np.testing.assert_allclose(z, direct, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(encode_images(model, images, batch_size=1024), z, rtol=1e-4, atol=1e-5)


def test_embed_encode_dist_images_gives_the_posterior_of_vaes_only(sample, models):
    mu, logvar = encode_dist_images(models["galaxy_vae"], sample.images[:8])
    assert mu.shape == logvar.shape == (8, 2)
    np.testing.assert_allclose(mu, encode_images(models["galaxy_vae"], sample.images[:8]), rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError):
        encode_dist_images(models["dense_ae"], sample.images[:8])


@pytest.mark.parametrize("name", ["dense_ae", "conv_vae", "galaxy_vae"])
def test_embed_decode_and_reconstruct_give_uint8_images(name, sample, models):
    model = models[name]
    decoded = decode_latents(model, np.zeros((3, model.latent_dim)))
    assert decoded.shape == (3, model.input_size, model.input_size, 3) and decoded.dtype == np.uint8
    recon, errors = reconstruct(model, sample.images[:5])
    assert recon.shape == (5, 64, 64, 3) and recon.dtype == np.uint8  # 32-px models upsampled
    assert errors.shape == (5,) and np.all(errors >= 0)
    np.testing.assert_allclose(errors, recon_errors(model, sample.images[:5]))


def test_embed_upsample_keeps_64_and_stays_in_range():
    x = torch.rand(2, 3, 32, 32)
    up = upsample(x)
    assert up.shape == (2, 3, 64, 64) and up.min() >= 0 and up.max() <= 1
    assert torch.allclose(up.mean(), x.mean(), atol=1e-2)
    same = torch.rand(1, 3, 64, 64)
    assert upsample(same) is same


def test_embed_dihedral_views_are_the_8_rotations_and_mirrors(sample):
    image = model_view(sample.images[0], 64)  # a real galaxy: no two views coincide
    views = dihedral_views(image)
    assert views.shape == (8, 64, 64, 3)
    assert np.array_equal(views[0], image)
    assert np.array_equal(views[1], np.rot90(image, 1, axes=(0, 1)))
    assert np.array_equal(views[4], image[:, ::-1])
    flat = {v.tobytes() for v in views}
    assert len(flat) == 8
    for v in views:  # the set is closed under rotation and mirroring
        assert np.rot90(v, 1, axes=(0, 1)).tobytes() in flat and v[:, ::-1].tobytes() in flat
    batch = dihedral_views(sample.images[:3])
    assert batch.shape == (8, 3, 69, 69, 3) and np.array_equal(batch[5, 2], dihedral_views(sample.images[2])[5])


def test_embed_chirality_pairs_found_from_class_names():
    assert chirality_pairs(GZ1_SAMPLE_CLASSES) == [(1, 2)]
    assert chirality_pairs(GALAXY10_SDSS_CLASSES) == []
    assert chirality_pairs(["Spiral anticlockwise", "Elliptical", "Spiral clockwise"]) == [(2, 0)]
    assert chirality_pairs(["Z-wise", "S-wise"]) == [(1, 0)]
    assert chirality_pairs(["Spiral CW", "Bar CW"]) == []  # same sense, different morphology


def test_embed_mirror_and_morphology_labels_swap_and_merge_the_pair():
    labels = np.array([0, 1, 2, 3, 2])
    assert mirror_label_map(4, [(1, 2)]).tolist() == [0, 2, 1, 3]
    assert morphology_labels(labels, [(1, 2)]).tolist() == [0, 1, 1, 3, 1]
    assert labels.tolist() == [0, 1, 2, 3, 2]
