"""Export zoo models as diffusers pipelines, so they load with ``from_pretrained`` and run in diffusers.

``fmnist-ddpm`` is class-conditional (10 classes plus the null class 10 used by classifier-free guidance), which
diffusers' own ``DDPMPipeline`` cannot drive, so it exports as :class:`ClassConditionalDDPMPipeline`: the same loop
as ``DDPMPipeline`` plus ``class_labels`` and an optional ``guidance_scale``.

``fmnist-ncsn`` is a score network s(x, sigma) = -F(c_in x, c_noise(sigma)) / sigma around a ``UNet2DModel`` F
(:class:`diffbook.nets.ncsn.NCSNUNet`). Diffusers' ``ScoreSdeVePipeline`` treats ``unet(x, sigma).sample`` as the
score itself, which these scalings do not match, so it exports as :class:`NCSNPipeline`: F, a
``ScoreSdeVeScheduler``, and the constants sigma_min, sigma_max, sigma_data of the scalings in the pipeline's
config, which ``from_pretrained`` restores.

:func:`to_diffusers` is the one entry point; it picks the pipeline from the model card.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from diffusers import DDPMScheduler, DiffusionPipeline, ImagePipelineOutput, ScoreSdeVeScheduler
from diffusers.utils.torch_utils import randn_tensor

from .registry import ZooError, load_network


def _to_output(x: torch.Tensor, pipe: DiffusionPipeline, output_type: str, return_dict: bool):
    """Map x in [-1, 1] to images in [0, 1]: a tensor ("pt"), an array [B, H, W, C] ("np") or PIL images ("pil").

    ``output_type="latent"`` returns x itself, unclamped, in the data's [-1, 1] coordinates.
    """
    if output_type == "latent":
        return ImagePipelineOutput(images=x) if return_dict else (x,)
    image = (x / 2 + 0.5).clamp(0, 1)
    if output_type == "pt":
        out = image
    else:
        out = image.cpu().permute(0, 2, 3, 1).float().numpy()
        if output_type == "pil":
            out = pipe.numpy_to_pil(out)
    return ImagePipelineOutput(images=out) if return_dict else (out,)


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
        return _to_output(x, self, output_type, return_dict)


class NCSNPipeline(DiffusionPipeline):
    """A diffusers pipeline for diffbook's NCSN score network: predictor-corrector sampling of the VE SDE.

    The modules are ``unet``, the ``UNet2DModel`` F, and ``scheduler``, a ``ScoreSdeVeScheduler``. The score is
    :class:`diffbook.nets.ncsn.NCSNUNet`'s formula

        s(x, sigma) = -F(c_in x, c_noise(sigma)) / sigma,
        c_in = 1 / sqrt(sigma_data^2 + sigma^2),
        c_noise = 1000 (log sigma - log sigma_min) / (log sigma_max - log sigma_min),

    with the constants sigma_min, sigma_max, sigma_data of training, kept in the pipeline's config (so
    ``save_pretrained`` writes them to ``model_index.json`` and ``from_pretrained`` passes them back). They belong
    to the network, not to the sampler: the scheduler's own sigma_min and sigma_max set the ladder to sample on
    and may be changed (``ScoreSdeVeScheduler.from_config(pipe.scheduler.config, sigma_max=...)``) without
    changing the score.

    ``__call__`` is the loop of diffusers' ``ScoreSdeVePipeline`` (Song et al. 2021, Alg. 2): at each timestep,
    ``correct_steps`` Langevin corrector steps (``scheduler.step_correct``, step size from ``scheduler.config.snr``)
    then one reverse-diffusion predictor step (``scheduler.step_pred``); the result is the last predictor step's
    mean, which from sigma_min to 0 is Tweedie's x + sigma_min^2 s (Eq. (tweedie)). One difference: the score is
    evaluated at the level sigma_i that ``step_pred`` steps from (:meth:`sigma_at`), where ``ScoreSdeVePipeline``
    uses ``scheduler.sigmas[i]``, which lies up to a factor (sigma_max/sigma_min)^sampling_eps away. So the
    predictor alone (``correct_steps=0``) is :func:`diffbook.samplers.sample_pc` with ``n_corrector=0`` on the
    ladder sigma_max = sigma_0 > ... > sigma_{N-1} = sigma_min > 0, and draws its noise in the same order.
    """

    model_cpu_offload_seq = "unet"

    def __init__(self, unet, scheduler, sigma_min: float | None = None, sigma_max: float | None = None,
                 sigma_data: float | None = None):
        super().__init__()
        if sigma_min is None or sigma_max is None or sigma_data is None:
            raise ValueError("NCSNPipeline needs the score network's sigma_min, sigma_max and sigma_data (the "
                             "constants of c_in and c_noise); export with diffbook.zoo.export.to_diffusers.")
        if not 0 < sigma_min < sigma_max or sigma_data <= 0:
            raise ValueError(f"need 0 < sigma_min < sigma_max and sigma_data > 0, got sigma_min={sigma_min}, "
                             f"sigma_max={sigma_max}, sigma_data={sigma_data}.")
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(sigma_min=float(sigma_min), sigma_max=float(sigma_max), sigma_data=float(sigma_data))

    def c_noise(self, sigma: torch.Tensor) -> torch.Tensor:
        """log sigma mapped linearly from [log sigma_min, log sigma_max] to [0, 1000]: F's timestep input."""
        lo, hi = math.log(self.config.sigma_min), math.log(self.config.sigma_max)
        return 1000 * (sigma.float().log() - lo) / (hi - lo)

    def score(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """s(x, sigma) = -F(c_in x, c_noise(sigma)) / sigma, the network's estimate of grad log p_sigma(x).

        ``sigma`` is a number or a tensor [B]; the formula and its order of operations are those of
        :meth:`diffbook.nets.ncsn.NCSNUNet.forward`.
        """
        sigma = torch.as_tensor(sigma, device=x.device, dtype=x.dtype)
        if sigma.dim() == 0:
            sigma = sigma.expand(x.shape[0])
        s = sigma.reshape(-1, *([1] * (x.dim() - 1)))
        c_in = (self.config.sigma_data**2 + s**2).rsqrt()
        return -self.unet(x * c_in, self.c_noise(sigma)).sample / s

    def sigma_at(self, t: torch.Tensor) -> float:
        """sigma_i, the noise level that ``scheduler.step_pred`` steps down from at timestep t.

        ``step_pred`` reads it from the scheduler's ``discrete_sigmas`` (the geometric ladder from sigma_min up to
        sigma_max, N levels) at index floor(t (N - 1)); this repeats that computation, so the score and the step
        always use the same level.
        """
        i = (t * (len(self.scheduler.timesteps) - 1)).long()
        return float(self.scheduler.discrete_sigmas[i])

    @torch.no_grad()
    def __call__(self, batch_size: int = 1, num_inference_steps: int = 100, correct_steps: int | None = None,
                 generator: torch.Generator | None = None, latents: torch.Tensor | None = None,
                 output_type: str = "pil", return_dict: bool = True):
        """Draw ``batch_size`` images with ``num_inference_steps`` predictor steps (N >= 2 noise levels).

        ``correct_steps`` defaults to ``scheduler.config.correct_steps``; 0 gives the predictor alone (the
        reverse-diffusion / Euler-Maruyama sampler). ``latents`` is standard normal noise [B, C, H, W]; it is
        scaled by ``scheduler.init_noise_sigma`` (= sigma_max), the prior of the VE SDE. Images come back in [0, 1]
        (``output_type`` "pil", "np" or "pt"), or as the final x in [-1, 1] coordinates, unclamped ("latent").
        """
        if num_inference_steps < 2:
            raise ValueError(f"num_inference_steps must be at least 2 (sigma_max and sigma_min), got "
                             f"{num_inference_steps}.")
        n_correct = self.scheduler.config.correct_steps if correct_steps is None else correct_steps
        cfg = self.unet.config
        shape = (batch_size, cfg.in_channels, cfg.sample_size, cfg.sample_size)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=self.device, dtype=self.unet.dtype)
        x = latents.to(device=self.device, dtype=self.unet.dtype) * self.scheduler.init_noise_sigma
        self.scheduler.set_timesteps(num_inference_steps)
        self.scheduler.set_sigmas(num_inference_steps)
        x_mean = x
        for t in self.progress_bar(self.scheduler.timesteps):
            sigma = self.sigma_at(t)
            for _ in range(n_correct):  # Langevin corrector at sigma_i, Eq. (langevin-corrector)
                x = self.scheduler.step_correct(self.score(x, sigma), x, generator=generator).prev_sample
            # reverse-diffusion predictor sigma_i -> sigma_{i+1}, Eq. (reverse-sde-step)
            out = self.scheduler.step_pred(self.score(x, sigma), t, x, generator=generator)
            x, x_mean = out.prev_sample, out.prev_sample_mean
        return _to_output(x_mean, self, output_type, return_dict)


def ddpm_scheduler_for(card: dict) -> DDPMScheduler:
    """The diffusers scheduler with the model's training noise schedule (linear betas, T steps, eps prediction)."""
    return DDPMScheduler(num_train_timesteps=card["T"], beta_start=card["beta_start"], beta_end=card["beta_end"],
                         beta_schedule="linear", clip_sample=False, prediction_type="epsilon")


def ncsn_scheduler_for(card: dict) -> ScoreSdeVeScheduler:
    """A ``ScoreSdeVeScheduler`` on the model's training range [sigma_min, sigma_max] with its number of levels.

    One corrector step with snr = 0.16, the defaults of :func:`diffbook.samplers.sample_pc` (Song et al. 2021's
    setting for VE models); change them with ``ScoreSdeVeScheduler.from_config(config, snr=..., correct_steps=...)``.
    """
    cfg = card["config"]
    return ScoreSdeVeScheduler(num_train_timesteps=card.get("n_sigmas", 1000), snr=0.16,
                               sigma_min=cfg["sigma_min"], sigma_max=cfg["sigma_max"], correct_steps=1)


def to_diffusers(name: str, folder: str | Path, root: Path | None = None) -> Path:
    """Write zoo model ``name`` as a diffusers pipeline folder (safetensors, no pickle); returns the folder.

    The model card picks the pipeline: an eps-prediction UNet (``fmnist-ddpm``) becomes a
    :class:`ClassConditionalDDPMPipeline`, an NCSN score network (``fmnist-ncsn``) an :class:`NCSNPipeline`.
    Load it back, offline, with ``ClassConditionalDDPMPipeline.from_pretrained(folder)`` or
    ``NCSNPipeline.from_pretrained(folder)``. Any other model (the GAN, the classifier) raises :class:`diffbook.zoo.ZooError`.
    """
    net, card = load_network(name, root)
    arch, kind = card.get("arch"), card.get("parameterisation")
    if arch == "unet2d" and kind == "eps":
        pipe = ClassConditionalDDPMPipeline(unet=net, scheduler=ddpm_scheduler_for(card))
    elif arch == "ncsn-unet" and kind == "score":
        pipe = NCSNPipeline(unet=net.unet, scheduler=ncsn_scheduler_for(card), sigma_min=net.sigma_min,
                            sigma_max=net.sigma_max, sigma_data=net.sigma_data)
    else:
        raise ZooError(
            f"{name!r} (arch {arch!r}, parameterisation {kind!r}) has no diffusers pipeline to export to: only "
            "eps-prediction UNets (fmnist-ddpm) and NCSN score networks (fmnist-ncsn) export. Use it through diffbook "
            f"instead: diffbook.load({name!r}).")
    folder = Path(folder)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder
