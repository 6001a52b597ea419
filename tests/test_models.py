"""Architectures: the seed models exactly, every model honours the shared contract."""

from __future__ import annotations

import pytest
import torch

from galaxy_vae.embed import to_input
from galaxy_vae.models import (
    MODELS,
    ConvVAE,
    DenseAutoencoder,
    GalaxyVAE,
    build_model,
    config_dict,
    count_parameters,
    model_name,
)


def test_models_dense_autoencoder_has_the_seed_parameter_count():
    model = DenseAutoencoder()
    assert count_parameters(model) == 1_585_216
    assert (model.input_size, model.latent_dim, model.n_classes, model.is_variational) == (64, 64, 0, False)


def test_models_conv_vae_has_the_seed_layers_and_parameter_count():
    model = ConvVAE()
    assert count_parameters(model) == 159_937
    expected = {
        "enc1": ("Conv2d", 3, 8, 4, 2, 1), "enc2": ("Conv2d", 8, 16, 4, 2, 1),
        "enc3": ("Conv2d", 16, 32, 4, 2, 1), "enc4": ("Conv2d", 32, 64, 4, 2, 0),
        "dec1": ("ConvTranspose2d", 64, 64, 4, 1, 0), "dec2": ("ConvTranspose2d", 64, 32, 4, 2, 1),
        "dec3": ("ConvTranspose2d", 32, 16, 4, 2, 1), "dec4": ("ConvTranspose2d", 16, 3, 4, 2, 1),
    }
    for name, (kind, c_in, c_out, k, s, p) in expected.items():
        layer = getattr(model, name)
        assert type(layer).__name__ == kind, name
        assert (layer.in_channels, layer.out_channels) == (c_in, c_out), name
        assert (layer.kernel_size, layer.stride, layer.padding) == ((k, k), (s, s), (p, p)), name
    linear = {"fc1": (64, 128), "fc_mu": (128, 2), "fc_log_var": (128, 2), "fc2": (2, 64), "classifier": (2, 6)}
    for name, (n_in, n_out) in linear.items():
        layer = getattr(model, name)
        assert (layer.in_features, layer.out_features) == (n_in, n_out), name
    assert [n for n, _ in model.named_children()] == [*["enc1", "enc2", "enc3", "enc4", "fc1", "fc_mu",
                                                        "fc_log_var", "fc2", "dec1", "dec2", "dec3", "dec4",
                                                        "classifier"]]
    assert model.input_size == 32 and model.latent_dim == 2


def test_models_conv_vae_refuses_an_input_size_its_graph_cannot_take():
    with pytest.raises(ValueError, match="32x32"):
        build_model("conv_vae", {"input_size": 64})


GENERATIVE = [name for name, cls in MODELS.items() if hasattr(cls, "decode")]


@pytest.mark.parametrize("name", GENERATIVE)
def test_models_outputs_have_the_contract_shapes(name, sample):
    model = build_model(name).eval()
    x = to_input(sample.images[:5], model)  # real galaxies at the model's input size
    s, d = model.input_size, model.latent_dim
    assert x.shape == (5, 3, s, s)
    out = model(x)
    assert out["recon"].shape == (5, 3, s, s) and out["mu"].shape == (5, d)
    assert model.encode(x).shape == (5, d)
    decoded = model.decode(torch.randn(7, d))
    assert decoded.shape == (7, 3, s, s)
    assert decoded.min() >= 0 and decoded.max() <= 1
    if model.is_variational:
        assert out["logvar"].shape == out["z"].shape == (5, d)
        assert out["logits"].shape == (5, model.n_classes)
        mu, logvar = model.encode_dist(x)
        assert torch.equal(mu, model.encode(x)) and logvar.shape == (5, d)
        assert model.classify(mu).shape == (5, model.n_classes)
        images = model.sample(3, generator=torch.Generator().manual_seed(0))
        assert images.shape == (3, 3, s, s) and images.min() >= 0 and images.max() <= 1


def test_models_similarity_encoder_gives_unit_vectors_and_no_decoder(sample):
    model = build_model("similarity").eval()
    x = to_input(sample.images[:5], model)
    z = model.encode(x)
    assert z.shape == (5, 64) and torch.allclose(z.norm(dim=1), torch.ones(5), atol=1e-5)
    assert not hasattr(model, "decode") and not model.is_variational
    assert model.logits(z).shape == (5, 5)
    with torch.no_grad():  # inference folds BatchNorm into the convs: the same embedding
        folded = model.encode(x)
    model.train()
    model.features.eval()
    with torch.enable_grad():
        plain = model.encode(x)
    assert torch.allclose(folded, plain, atol=1e-5)


def test_models_galaxy_vae_is_the_2d_64px_model_with_a_class_head():
    model = GalaxyVAE()
    assert (model.input_size, model.latent_dim, model.n_classes, model.is_variational) == (64, 2, 6, True)


def test_models_shapes_follow_the_config():
    model = build_model("galaxy_vae", {"latent_dim": 3, "n_classes": 4, "channels": [8, 16, 32],
                                       "dec_channels": [32, 16, 8], "input_size": 32})
    out = model(torch.rand(2, 3, 32, 32))
    assert out["recon"].shape == (2, 3, 32, 32) and out["mu"].shape == (2, 3) and out["logits"].shape == (2, 4)
    dense = build_model("dense_ae", {"img_shape": [32, 32, 3], "code_size": 8})
    assert count_parameters(dense) == 32 * 32 * 3 * 8 + 8 + 8 * 32 * 32 * 3 + 32 * 32 * 3


@pytest.mark.parametrize("name", list(MODELS))
def test_models_forward_leaves_its_input_unchanged(name):
    model = build_model(name).train()
    x = torch.rand(4, 3, model.input_size, model.input_size)
    before = x.clone()
    model(x)
    assert torch.equal(x, before)


def test_models_sampling_noise_is_reproducible_with_a_generator():
    model = build_model("galaxy_vae").train()
    x = torch.rand(3, 3, 64, 64)
    a = model(x, generator=torch.Generator().manual_seed(5))["z"]
    b = model(x, generator=torch.Generator().manual_seed(5))["z"]
    c = model(x, generator=torch.Generator().manual_seed(6))["z"]
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("name", list(MODELS))
def test_models_registry_rebuilds_a_model_from_its_config(name):
    model = build_model(name)
    assert model_name(model) == name
    again = build_model(name, config_dict(model))
    assert again.config == model.config


def test_models_registry_refuses_unknown_names_and_fields():
    with pytest.raises(KeyError, match="unknown model"):
        build_model("resnet")
    with pytest.raises(KeyError, match="no field"):
        build_model("galaxy_vae", {"width": 3})


def test_models_galaxy_vae_inference_folds_batchnorm_and_follows_weight_changes(sample):
    """Under inference mode the conv stacks run with BatchNorm folded in: the same latents and
    images as the plain stacks (to float rounding), and new weights are never served stale."""
    torch.manual_seed(0)
    model = GalaxyVAE()
    x = to_input(sample.images[:64], model)
    model.train()(x)  # one training pass, so the running statistics are not the identity
    model.eval()

    mu, img = model.encode(x).detach(), model.decode(torch.zeros(4, 2)).detach()  # with gradients: plain
    assert not model._folded
    with torch.inference_mode():
        mu_f, img_f = model.encode(x), model.decode(torch.zeros(4, 2))
    assert set(model._folded) == {"encoder", "decoder"}
    torch.testing.assert_close(mu_f, mu, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(img_f, img, atol=1e-5, rtol=1e-4)
    other = GalaxyVAE()
    model.load_state_dict(other.state_dict())  # new weights copied in place
    other.eval()
    with torch.inference_mode():
        torch.testing.assert_close(model.encode(x), other.encode(x))
        torch.testing.assert_close(model.decode(torch.zeros(4, 2)), other.decode(torch.zeros(4, 2)))
    # a training step (new weights and running statistics), then inference again: never stale
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    model(x)["recon"].square().mean().backward()
    opt.step()
    model.eval()
    plain = model.encode(x).detach()
    with torch.inference_mode():
        torch.testing.assert_close(model.encode(x), plain, atol=1e-5, rtol=1e-4)
    # one stack switched back to training mode alone uses its batch statistics, unfolded
    model.encoder.train()
    with torch.inference_mode():
        torch.testing.assert_close(model.encode(x), model.enc_fc(model.encoder(x)) @ model.fc_mu.weight.T
                                   + model.fc_mu.bias)


def test_models_galaxy_vae_built_under_inference_mode_still_encodes(sample):
    """Weights created inside inference_mode carry no version counter: the plain stacks serve."""
    with torch.inference_mode():
        model = GalaxyVAE().eval()
        x = to_input(sample.images[:8], model)
        assert model.encode(x).shape == (8, 2) and model.decode(torch.zeros(3, 2)).shape == (3, 3, 64, 64)
