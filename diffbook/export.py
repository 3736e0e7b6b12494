"""Export zoo models as diffusers pipelines, so they load with ``from_pretrained`` and take any diffusers scheduler.

``fmnist-ddpm`` is class-conditional (10 classes plus the null class 10 used by classifier-free guidance), which
diffusers' own ``DDPMPipeline`` cannot drive, so it exports as :class:`ClassConditionalDDPMPipeline`: the same loop
as ``DDPMPipeline`` plus ``class_labels`` and an optional ``guidance_scale``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import DDPMScheduler, DiffusionPipeline, ImagePipelineOutput

from . import zoo


class ClassConditionalDDPMPipeline(DiffusionPipeline):
    """A diffusers pipeline for a class-conditional eps-prediction ``UNet2DModel`` with a null class.

    ``guidance_scale`` s follows diffusers' convention: eps = eps_null + s (eps_cond - eps_null), so s = 1 is the
    plain conditional model and s = 1 + w is diffbook's :func:`diffbook.guidance.cfg` with weight w.
    """

    model_cpu_offload_seq = "unet"

    def __init__(self, unet, scheduler):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)

    @torch.no_grad()
    def __call__(self, class_labels, num_inference_steps: int = 50, guidance_scale: float = 1.0,
                 generator: torch.Generator | None = None, latents: torch.Tensor | None = None,
                 null_class: int | None = None, output_type: str = "pil", return_dict: bool = True):
        labels = torch.as_tensor(class_labels, device=self.device).reshape(-1)
        shape = (labels.shape[0], self.unet.config.in_channels, self.unet.config.sample_size,
                 self.unet.config.sample_size)
        x = latents.to(self.device) if latents is not None else torch.randn(shape, generator=generator).to(self.device)
        x = x * self.scheduler.init_noise_sigma
        null = self.unet.config.num_class_embeds - 1 if null_class is None else null_class
        self.scheduler.set_timesteps(num_inference_steps)
        for t in self.progress_bar(self.scheduler.timesteps):
            xin = self.scheduler.scale_model_input(x, t)
            if guidance_scale == 1.0:
                eps = self.unet(xin, t, class_labels=labels).sample
            else:
                both = self.unet(torch.cat([xin, xin]), t,
                                 class_labels=torch.cat([labels, torch.full_like(labels, null)])).sample
                eps_c, eps_u = both.chunk(2)
                eps = eps_u + guidance_scale * (eps_c - eps_u)
            x = self.scheduler.step(eps, t, x, generator=generator).prev_sample
        image = (x / 2 + 0.5).clamp(0, 1)
        if output_type == "pt":
            out = image
        else:
            out = image.cpu().permute(0, 2, 3, 1).numpy()
            if output_type == "pil":
                out = self.numpy_to_pil(out)
        return ImagePipelineOutput(images=out) if return_dict else (out,)


def ddpm_scheduler_for(card: dict) -> DDPMScheduler:
    """The diffusers scheduler with the model's training noise schedule (linear betas, T steps, eps prediction)."""
    return DDPMScheduler(num_train_timesteps=card["T"], beta_start=card["beta_start"], beta_end=card["beta_end"],
                         beta_schedule="linear", clip_sample=False, prediction_type="epsilon")


def to_diffusers(name: str, folder: str | Path, root: Path | None = None) -> Path:
    """Write zoo model ``name`` as a diffusers pipeline folder (safetensors, no pickle); returns the folder.

    Load it back, offline, with ``ClassConditionalDDPMPipeline.from_pretrained(folder)``.
    """
    net, card = zoo.load(name, root)
    if card.get("arch") != "unet2d" or card.get("parameterisation") != "eps":
        raise zoo.ZooError(f"{name!r} is not an eps-prediction UNet; only DDPM-style models export to diffusers.")
    pipe = ClassConditionalDDPMPipeline(unet=net, scheduler=ddpm_scheduler_for(card))
    folder = Path(folder)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder
