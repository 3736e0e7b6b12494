"""The latent diffusion model: the autoencoder's shapes and scale, its reconstruction falling under a bound after a
short training, the shipped autoencoder's reconstruction bound, a smoke run of both objectives that loads as a
latent model (refusing an autoencoder it was not trained with), the shipped latent model drawing the requested
classes, and the shipped study (``diffbook/zoo/results/latent.json``) agreeing with a live re-sample and with the
guidance sweep, which measured fmnist-ddpm with the same protocol."""

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


def test_load_gives_the_latent_model_objects():
    import diffbook
    from diffbook.zoo.latent import AutoencoderModel, LatentDiffusionModel

    vae, ldm = diffbook.load("fmnist-vae"), diffbook.load("fmnist-ldm")
    assert isinstance(vae, AutoencoderModel) and isinstance(ldm, LatentDiffusionModel)
    assert ldm.latent_shape == (4, 8, 8) and ldm.scale == vae.scale
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    assert torch.equal(vae.encode(x), ldm.encode(x))
    with pytest.raises(ValueError, match="unknown sampler"):
        ldm.sample(2, sampler="nope")


def test_shipped_latent_model_draws_the_requested_classes():
    """50 guided samples (w = 2, DPM-Solver++(2M), 10 steps): the shipped classifier recognises the requested class
    in most of them (chance: 10%), and the same seed gives the same images."""
    import diffbook
    from diffbook.nets.classifier import predict

    ldm, clf = diffbook.load("fmnist-ldm"), diffbook.load("fmnist-clf").net
    images = ldm.sample(50, guidance=2.0, steps=10, seed=3)
    assert images.shape == (50, 1, 32, 32) and images.abs().max() <= 1
    acc = (predict(clf, images) == torch.arange(50) % 10).double().mean().item()
    assert acc >= 0.5, acc
    again = ldm.sample(5, guidance=2.0, steps=10, noise=torch.randn(
        50, 4, 8, 8, generator=torch.Generator().manual_seed(3))[:5])
    assert torch.allclose(images[:5], again, atol=1e-4)  # same noise, same images (up to batching round-off)


def test_latent_study_reproduces_live_and_agrees_with_the_guidance_sweep():
    import diffbook
    from diffbook.zoo import results

    study, sweep = results.load("latent"), results.load("guidance-sweep")
    s = study["settings"]
    row = next(r for r in study["rows"] if r["model"] == "fmnist-ldm" and r["seed"] == 0)
    noise = torch.randn(s["n"], 4, 8, 8, generator=torch.Generator().manual_seed(1000))[:10]
    images = diffbook.load("fmnist-ldm").sample(noise=noise, labels=torch.arange(10), guidance=s["w"],
                                                steps=s["spec"]["steps"])
    assert abs(images.mean().item() - row["head_mean"]) < 1e-3
    # fmnist-ddpm was measured with the guidance sweep's protocol (same n, noise, labels, spec, real images)
    assert s["spec"] == sweep["settings"]["spec"] and s["n"] == sweep["settings"]["n"]
    for r in (r for r in study["rows"] if r["model"] == "fmnist-ddpm"):
        twin = next(t for t in sweep["rows"] if t["w"] == s["w"] and t["seed"] == r["seed"] and not t["interval"])
        assert abs(r["fd"] - twin["fd"]) < 0.02 * twin["fd"] and r["floor"] == twin["floor"], (r, twin)
    # the autoencoder's floor row uses the same real images and floor as the models of its seed
    for seed in s["seeds"]:
        floors = {r["floor"] for r in study["rows"] if r["seed"] == seed}
        assert len(floors) == 1


def test_train_images_per_second_and_clear_errors(tmp_path):
    from diffbook.eval.latent_study import main, train_images_per_second
    from diffbook.nets.unet import make_unet

    net = make_unet(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
                    down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                    norm_num_groups=4, num_class_embeds=11)
    before = [p.clone() for p in net.parameters()]
    rate = train_images_per_second(net, lambda b: torch.randn(b, 4, 8, 8), batch=4, repeats=2)
    assert 0 < rate < float("inf")
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))  # it trained
    with pytest.raises(SystemExit, match="multiple of 10"):
        main(["--n", "135"])
    with pytest.raises(SystemExit, match="train the twin first"):
        main(["--twin", str(tmp_path / "none")])
