"""The shipped models exported as diffusers pipelines: they load offline and sample like diffbook's samplers.

fmnist-ddpm goes through ClassConditionalDDPMPipeline (compared with diffbook's DDIM), fmnist-ncsn through
NCSNPipeline (compared with diffbook's reverse-diffusion predictor and predictor-corrector samplers).
"""

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from diffbook import zoo
from diffbook.denoisers import from_score_model
from diffbook.zoo.export import ClassConditionalDDPMPipeline, NCSNPipeline, to_diffusers
from diffbook.samplers import sample_ddim, sample_euler_maruyama, sample_pc
from diffbook.schedules import append_zero, t_to_sigma, ve_geometric_sigmas


def test_exported_pipeline_matches_diffbook_ddim(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = to_diffusers("fmnist-ddpm", tmp_path / "fmnist-ddpm")
    pipe = ClassConditionalDDPMPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing",
                                               set_alpha_to_one=True, steps_offset=0)
    labels = torch.tensor([0, 7])
    noise = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    theirs = pipe(labels, num_inference_steps=5, latents=noise, output_type="pt").images

    denoiser = zoo.load("fmnist-ddpm").denoiser
    alpha_bar = denoiser.alpha_bar
    pipe.scheduler.set_timesteps(5)
    sigmas = append_zero(t_to_sigma(pipe.scheduler.timesteps, alpha_bar)).float()
    x = noise / alpha_bar[pipe.scheduler.timesteps[0]].sqrt().float()  # x_T in VE coordinates
    with torch.no_grad():
        ours = sample_ddim(denoiser, x, sigmas, cond={"class_labels": labels})
    assert torch.allclose(theirs, (ours / 2 + 0.5).clamp(0, 1), atol=2e-4)


def _exported_ncsn(tmp_path, monkeypatch) -> NCSNPipeline:
    """Export fmnist-ncsn and load it back with the hub switched off, as a reader without a network would."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipe = NCSNPipeline.from_pretrained(to_diffusers("fmnist-ncsn", tmp_path / "fmnist-ncsn"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_exported_ncsn_restores_the_scalings_and_the_score(tmp_path, monkeypatch):
    """The reloaded pipeline keeps sigma_min, sigma_max, sigma_data and computes NCSNUNet's score from them.

    The score is checked at the ends of the training range and in between, where c_in, c_noise and the 1/sigma
    output scaling all differ, both against the network (s) and through diffbook's denoiser D = x + sigma^2 s.
    """
    pipe = _exported_ncsn(tmp_path, monkeypatch)
    net, card = zoo.load_network("fmnist-ncsn")
    cfg = card["config"]
    assert (pipe.config.sigma_min, pipe.config.sigma_max) == (cfg["sigma_min"], cfg["sigma_max"])
    assert pipe.config.sigma_data == net.sigma_data
    assert (pipe.scheduler.config.sigma_min, pipe.scheduler.config.sigma_max) == (cfg["sigma_min"], cfg["sigma_max"])
    denoiser = from_score_model(net)
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(2, 1, 32, 32, generator=g) * 2 - 1
    with torch.no_grad():
        for sigma in (cfg["sigma_min"], 0.3, 5.0, cfg["sigma_max"]):
            x = x0 + sigma * torch.randn(x0.shape, generator=g)
            theirs = pipe.score(x, sigma)
            torch.testing.assert_close(theirs, net(x, torch.full((2,), sigma)), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(x + sigma**2 * theirs, denoiser(x, torch.full((2,), sigma)),
                                       rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("correct_steps", [0, 1])
def test_exported_ncsn_samples_like_diffbook(tmp_path, monkeypatch, correct_steps):
    """Same ladder, same noise: the pipeline's trajectory is diffbook's, to float32 round-off.

    The pipeline draws its noise from ``generator`` in the order diffbook's samplers do: the prior x = sigma_max z,
    then per level the corrector's z (if any) and the predictor's z (the last predictor step, to sigma = 0, draws
    one that only its unreturned ``prev_sample`` uses). So with the ladder the scheduler steps on (geometric, N
    levels from sigma_max to sigma_min, then 0), the predictor alone (correct_steps=0) must give
    diffbook.samplers.sample_euler_maruyama (the reverse-diffusion predictor) and one corrector step with the
    same snr must give sample_pc(n_corrector=1). The comparison is on the final x, unclamped
    (output_type="latent"), to 1e-5 relative (1e-4 absolute): with only 5 levels the predictor's noise
    sqrt(sigma_i^2 - sigma_{i+1}^2) is nearly sigma_i itself, so x ends far outside [-1, 1] (|x| ~ 100), and
    clamping would hide most of it. It catches a wrong sign
    or scale of the score (measured: 14 for a 10% scale error, the control at the end), a wrong c_in or c_noise
    (4e-3 for sigma_data 0.49 instead of 0.5), returning the noisy last sample instead of its mean (4e-2), and even
    the score taken at ScoreSdeVePipeline's scheduler.sigmas[i], a factor 1 + 8e-5 off the step's level (2e-4);
    the largest difference measured here is 2e-5 (predictor alone) and 5e-5 (with the corrector).
    """
    pipe = _exported_ncsn(tmp_path, monkeypatch)
    n = 5
    theirs = pipe(batch_size=2, num_inference_steps=n, correct_steps=correct_steps,
                  generator=torch.Generator().manual_seed(0), output_type="latent").images

    ncsn = zoo.load("fmnist-ncsn")
    denoiser, sigma_min, sigma_max = ncsn.denoiser, ncsn.sigma_min, ncsn.sigma_max
    sigmas = append_zero(torch.tensor([pipe.sigma_at(t) for t in pipe.scheduler.timesteps], dtype=torch.float64))
    torch.testing.assert_close(sigmas[:-1], ve_geometric_sigmas(sigma_min, sigma_max, n), rtol=1e-6, atol=0)

    def ours(d):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2, 1, 32, 32, generator=g) * pipe.scheduler.init_noise_sigma
        if correct_steps == 0:
            return sample_euler_maruyama(d, x, sigmas, generator=g)
        return sample_pc(d, x, sigmas, n_corrector=1, snr=pipe.scheduler.config.snr, generator=g)

    torch.testing.assert_close(theirs, ours(denoiser), rtol=1e-5, atol=1e-4)
    wrong = from_score_model(lambda x, sigma: 0.9 * denoiser.net(x, sigma))  # a 10% error in the score's scale
    assert (theirs - ours(wrong)).abs().max() > 1e-2


def test_exported_ncsn_draws_images(tmp_path, monkeypatch):
    """A full predictor-corrector call returns finite images in [0, 1] of the model's shape, in each output type."""
    pipe = _exported_ncsn(tmp_path, monkeypatch)
    g = torch.Generator().manual_seed(2)
    images = pipe(batch_size=3, num_inference_steps=4, generator=g, output_type="pt").images
    assert images.shape == (3, 1, 32, 32)
    assert torch.isfinite(images).all() and images.min() >= 0 and images.max() <= 1
    arrays = pipe(batch_size=2, num_inference_steps=2, generator=g, output_type="np").images
    assert arrays.shape == (2, 32, 32, 1) and np.isfinite(arrays).all()
    pils = pipe(batch_size=1, num_inference_steps=2, generator=g).images
    assert len(pils) == 1 and pils[0].size == (32, 32)


@pytest.mark.parametrize("name", ["fmnist-gan", "fmnist-clf"])
def test_to_diffusers_refuses_models_that_are_not_diffusion_models(tmp_path, name):
    """Only diffusion models export; the error names the ones that do and how to use this one instead."""
    with pytest.raises(zoo.ZooError, match=rf"(?s)'{name}'.*fmnist-ddpm.*fmnist-ncsn.*diffbook\.load\('{name}'\)"):
        to_diffusers(name, tmp_path / name)
    assert not (tmp_path / name).exists()
