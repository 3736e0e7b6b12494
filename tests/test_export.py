"""The shipped fmnist-ddpm exported as a diffusers pipeline: loads offline and samples like diffbook's DDIM."""

import torch
from diffusers import DDIMScheduler

from diffbook import zoo
from diffbook.export import ClassConditionalDDPMPipeline, to_diffusers
from diffbook.samplers import sample_ddim
from diffbook.schedules import append_zero, t_to_sigma


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

    denoiser, card, _, _, _ = zoo.load_denoiser("fmnist-ddpm")
    alpha_bar = denoiser.alpha_bar
    pipe.scheduler.set_timesteps(5)
    sigmas = append_zero(t_to_sigma(pipe.scheduler.timesteps, alpha_bar)).float()
    x = noise / alpha_bar[pipe.scheduler.timesteps[0]].sqrt().float()  # x_T in VE coordinates
    with torch.no_grad():
        ours = sample_ddim(denoiser, x, sigmas, cond={"class_labels": labels})
    assert torch.allclose(theirs, (ours / 2 + 0.5).clamp(0, 1), atol=2e-4)
