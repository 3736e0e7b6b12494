"""The latent diffusion model: the autoencoder's shapes and scale, its reconstruction falling under a bound after a
short training, the shipped autoencoder's reconstruction bound, and a smoke run of both objectives that loads as a
latent model, refusing an autoencoder it was not trained with."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from diffbook.nets.autoencoder import VAE_TINY, decode, encode, make_autoencoder

torch.set_num_threads(1)


def test_autoencoder_maps_32x32_images_to_4x8x8_latents_and_back():
    vae = make_autoencoder(**VAE_TINY).eval()
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        z = encode(vae, x, scale=2.0)
        assert z.shape == (3, 4, 8, 8)
        assert torch.allclose(z, 2.0 * encode(vae, x))
        assert decode(vae, z, scale=2.0).shape == (3, 1, 32, 32)
        assert torch.allclose(decode(vae, z, scale=2.0), decode(vae, z / 2.0))


def test_short_training_brings_reconstruction_under_a_bound():
    """60 Adam steps on 64 Fashion-MNIST images: the reconstruction error falls below half the error of predicting
    the mean image (the best a constant output can do)."""
    from diffbook.data.fashion import load_fashion_mnist

    torch.manual_seed(0)
    x, _ = load_fashion_mnist("train")
    x = x[:64]
    vae = make_autoencoder(**dict(VAE_TINY, block_out_channels=(8, 16, 16)))
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    for _ in range(60):
        rec = vae.decode(vae.encode(x).latent_dist.mean).sample
        loss = F.mse_loss(rec, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        mse = F.mse_loss(decode(vae, encode(vae, x)), x).item()
    baseline = F.mse_loss(x.mean(0, keepdim=True).expand_as(x), x).item()
    assert mse < 0.5 * baseline, (mse, baseline)


def test_shipped_autoencoder_reconstructs_within_its_bound():
    from diffbook.data.fashion import load_fashion_mnist
    from diffbook.zoo.latent import load_autoencoder
    from diffbook.zoo.registry import read_registry

    if "fmnist-vae" not in read_registry():
        pytest.skip("fmnist-vae is not in the shipped zoo yet (python -m diffbook train fmnist-vae)")
    vae, card = load_autoencoder()
    x, _ = load_fashion_mnist("test")
    with torch.no_grad():
        rec = decode(vae, encode(vae, x[:500], card["scale"]), card["scale"]).clamp(-1, 1)
    mse = F.mse_loss(rec, x[:500]).item()
    assert mse <= 1.2 * card["evaluation"]["test_mse_first_1000"] + 1e-3 and mse < 0.05, mse


def test_smoke_runs_give_a_latent_model(tmp_path, monkeypatch):
    from diffbook.train import recipes
    from diffbook.train.latent import LATENT_CONFIGS, LATENT_OBJECTIVES
    from diffbook.train.loop import train
    from diffbook.zoo.latent import load_latent_model
    from diffbook.zoo.registry import ZooError, save_model

    for name in LATENT_CONFIGS:
        monkeypatch.setitem(recipes.CONFIGS, name, LATENT_CONFIGS[name])
        monkeypatch.setitem(recipes.OBJECTIVES, name, LATENT_OBJECTIVES[name])
    vae_card = train("fmnist-vae", "smoke", tmp_path, steps=2)
    assert vae_card["latent_shape"] == [4, 8, 8] and vae_card["scale"] > 0
    card = train("fmnist-ldm", "smoke", tmp_path, steps=2, overrides={"vae_root": str(tmp_path)})
    assert card["latent"]["autoencoder_sha256"] and card["config"]["in_channels"] == 4
    model = load_latent_model(root=tmp_path)
    images, z = model.sample(4, guidance=1.0, steps=2, return_latents=True)
    assert images.shape == (4, 1, 32, 32) and z.shape == (4, 4, 8, 8) and images.abs().max() <= 1
    vae = make_autoencoder(**VAE_TINY)
    save_model("fmnist-vae", vae.state_dict(), dict(vae_card), root=tmp_path)  # another autoencoder
    with pytest.raises(ZooError, match="trained with the autoencoder"):
        load_latent_model(root=tmp_path)
