"""Shipped models as objects: ``model = diffbook.load("fmnist-ddpm")``, then ``model.sample(16)``.

A model object holds the network (``.net``), its model card (``.card``) and what the card implies: for a diffusion
model the denoiser ``D(x, sigma, **cond) -> x0_hat`` of :mod:`diffbook.denoisers` (``.denoiser``), the noise range it was
trained on (``.sigma_min``, ``.sigma_max``), the standard deviation of its prior at sigma_max (``.prior_std``) and the
sampler its card records as its best. :meth:`DiffusionModel.sample` runs any sampler of :mod:`diffbook.samplers` on
any schedule of :mod:`diffbook.schedules` with classifier-free guidance (:func:`diffbook.guidance.cfg`) and optional
clipping, and checks every argument against the card before it starts.

A *spec* names one way to sample, as the result tables do: ``{"sampler": "dpmpp_2m", "schedule": "karras",
"steps": 20}`` plus optional ``spacing`` (for the "ddpm" schedule), ``w`` (guidance weight), ``clip`` and sampler
options (``eta``, ``snr``, ``n_corrector``, ``n_steps_each``, ``step_lr``).
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path

import torch

from ..checks import check_images, check_labels, check_nfe
from ..denoisers import clip_denoiser, from_eps_model, from_score_model, from_v_model
from ..guidance import cfg
from ..samplers import SAMPLERS, nfe
from ..schedules import (alpha_bar_to_sigma, append_zero, betas_to_alpha_bar, ddpm_sigmas, karras_sigmas,
                         linear_betas, ve_geometric_sigmas, vp_prior_std)
from .registry import ZooError, load_network, read_registry

__all__ = ["load", "load_student", "DiffusionModel", "GeneratorModel", "ClassifierModel", "denoiser_of",
           "sigmas_for", "student_sigmas", "SCHEDULES", "SAMPLER_OPTIONS"]

#: The noise-level schedules a spec can name (see :func:`sigmas_for`).
SCHEDULES = ("karras", "ddpm", "geometric", "student")
#: Extra keyword arguments a sampler accepts, by sampler name.
SAMPLER_OPTIONS = {"ddim": ("eta",), "pc": ("snr", "n_corrector"), "annealed_langevin": ("n_steps_each", "step_lr")}
_PROGRESS_MIN_WORK = 20_000  # images x network evaluations above which sample() shows a progress bar by default


# ----------------------------------------------------------------------------------------------- from a card
def denoiser_of(net: torch.nn.Module, card: dict):
    """The denoiser of a diffusion network, and the noise range it was trained on, from its model card.

    Returns ``(denoiser, sigma_min, sigma_max, prior_std)``: sample from x = prior_std * randn at sigma_max.
    An eps-prediction DDPM goes through :func:`diffbook.denoisers.from_eps_model` (its VP prior has std
    sqrt(1 + sigma_max^2) in VE coordinates, Eq. (vp-to-ve)), a distilled v-prediction student of it through
    :func:`diffbook.denoisers.from_v_model`, a score network through :func:`diffbook.denoisers.from_score_model`.
    """
    kind = card.get("parameterisation")
    if kind in ("eps", "v"):  # "v": a distilled student of the DDPM (diffbook.distill)
        alpha_bar = betas_to_alpha_bar(linear_betas(card["T"], card["beta_start"], card["beta_end"]))
        sig = alpha_bar_to_sigma(alpha_bar)
        wrap = from_eps_model if kind == "eps" else from_v_model
        return wrap(net, alpha_bar), float(sig[0]), float(sig[-1]), vp_prior_std(float(sig[-1]))
    if kind == "score":
        c = card["config"]
        return from_score_model(net), c["sigma_min"], c["sigma_max"], c["sigma_max"]
    raise ZooError(f"model {card.get('name')!r} is not a diffusion model (parameterisation {kind!r}).")


def student_sigmas(card: dict, steps: int | None = None) -> torch.Tensor:
    """The sigmas (float64, ending in 0) a distilled student's card records for ``steps`` DDIM steps.

    ``steps`` defaults to the card's ``sampling_steps`` (the count it was distilled for).
    """
    table = card.get("sampling_sigmas")
    if not isinstance(table, dict):
        raise ValueError(f"model {card.get('name')!r} is not a distilled student: its card has no sampling_sigmas; "
                         "train one with `python -m diffbook train fmnist-fast`.")
    steps = card["sampling_steps"] if steps is None else check_nfe(steps)
    if str(steps) not in table:
        raise ValueError(f"the card of {card.get('name')!r} records sigmas for {', '.join(sorted(table, key=int))} "
                         f"steps, not {steps}.")
    return torch.tensor(table[str(steps)], dtype=torch.float64)


def sigmas_for(spec: dict, card: dict, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """The decreasing noise levels (ending in 0) of a spec on a model: ``schedule`` "karras" (Karras et al. 2022,
    rho = 7, between the model's sigma_min and sigma_max), "ddpm" (a DDPM's own timesteps with diffusers' ``spacing``,
    diffusers' ``timestep_spacing``), "geometric" (NCSN's ladder, for annealed Langevin and PC) or "student" (the levels a
    distilled student's card records)."""
    sched, steps = spec.get("schedule", "karras"), spec["steps"]
    if sched == "karras":
        return karras_sigmas(sigma_min, sigma_max, steps)
    if sched == "ddpm":
        if "T" not in card:
            raise ValueError(f"schedule 'ddpm' needs a discrete-time DDPM; {card.get('name')!r} is not one: use "
                             "'karras' or 'geometric'.")
        ab = betas_to_alpha_bar(linear_betas(card["T"], card["beta_start"], card["beta_end"]))
        return ddpm_sigmas(ab, steps, spec.get("spacing", "trailing"))
    if sched == "geometric":
        return append_zero(ve_geometric_sigmas(sigma_min, sigma_max, steps))
    if sched == "student":
        return student_sigmas(card, steps)
    raise ValueError(f"unknown schedule {sched!r}; use one of {', '.join(SCHEDULES)}.")


def _image_shape(card: dict) -> tuple[int, int, int]:
    c = card.get("config", {})
    c = c.get("unet_config", c)  # an NCSN card nests the U-Net's config
    size = c.get("sample_size", 32)
    h, w = (size, size) if isinstance(size, int) else size
    return int(c.get("in_channels", 1)), int(h), int(w)


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n (the number of images) must be an integer >= 1, got {n!r}.")
    return int(n)


def _check_weight(w) -> float:
    if isinstance(w, torch.Tensor) and w.numel() == 1 and not w.is_complex():
        w = w.item()
    if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(w):
        raise ValueError(f"guidance (the classifier-free guidance weight w) must be a finite number, got {w!r}; "
                         "0 is the plain conditional model.")
    return float(w)


def _generator(generator, seed, device) -> torch.Generator:
    if generator is not None and seed is not None:
        raise ValueError("pass either generator= or seed=, not both.")
    if generator is None:
        return torch.Generator(device=device).manual_seed(0 if seed is None else int(seed))
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}.")
    if generator.device.type != torch.device(device).type:
        raise ValueError(f"generator lives on {generator.device} but the model samples on {device}; create it with "
                         f"torch.Generator(device={str(device)!r}).")
    return generator


class _Model:
    """What every shipped model has: its name, network (eval mode) and model card."""

    def __init__(self, name: str, net: torch.nn.Module, card: dict):
        self.name, self.net, self.card = name, net, card

    @property
    def device(self) -> torch.device:
        params = None if self.net is None else next(iter(self.net.parameters()), None)
        return torch.device("cpu") if params is None else params.device

    def to(self, device):
        """Move the network to ``device``; returns the model."""
        self.net.to(device)
        return self

    def __repr__(self) -> str:
        n = 0 if self.net is None else sum(p.numel() for p in self.net.parameters())
        return (f"<{type(self).__name__} {self.name!r}: {self.card.get('arch')}, {n / 1e6:.2f}M parameters, "
                f"trained on {self.card.get('device', '?')}>")


class DiffusionModel(_Model):
    """A diffusion model of the zoo: ``.denoiser``, ``.sigma_min``, ``.sigma_max``, ``.prior_std`` and ``.sample``."""

    def __init__(self, name: str, net: torch.nn.Module, card: dict):
        super().__init__(name, net, card)
        self.denoiser, self.sigma_min, self.sigma_max, self.prior_std = denoiser_of(net, card)
        self.image_shape = _image_shape(card)
        self.null_class = card.get("null_class")
        self.num_classes = None if self.null_class is None else int(self.null_class)

    @classmethod
    def from_denoiser(cls, denoiser, card: dict, *, sigma_min: float, sigma_max: float, prior_std: float,
                      image_shape=(1, 32, 32), name: str = "model") -> "DiffusionModel":
        """A model around any denoiser (e.g. an analytic one, :func:`diffbook.denoisers.gmm_denoiser`), sampled on
        the CPU; ``card`` needs what the schedules read ("T", "beta_start", "beta_end" for the "ddpm" schedule,
        "null_class" for a class-conditional denoiser)."""
        model = cls.__new__(cls)
        _Model.__init__(model, name, None, dict(card, name=card.get("name", name)))
        model.denoiser, model.sigma_min, model.sigma_max, model.prior_std = denoiser, sigma_min, sigma_max, prior_std
        model.image_shape = tuple(int(s) for s in image_shape)
        model.null_class = card.get("null_class")
        model.num_classes = None if model.null_class is None else int(model.null_class)
        return model

    # -------------------------------------------------------------------------------------------- specs
    def default_spec(self) -> dict:
        """How this model samples unless told otherwise: the best sampler at <= 50 NFE its card records, else
        DPM-Solver++(2M) with 20 Karras steps (a distilled student: DDIM on the levels it was distilled for)."""
        if self.card.get("sampling_sigmas"):
            return dict(sampler="ddim", schedule="student", steps=int(self.card["sampling_steps"]))
        best = (self.card.get("evaluation") or {}).get("best_sampler_at_most_50_nfe")
        if best:
            keys = ("sampler", "schedule", "spacing", "steps", "w", "clip", *sum(SAMPLER_OPTIONS.values(), ()))
            return {k: best[k] for k in keys if best.get(k) is not None}
        return dict(sampler="dpmpp_2m", schedule="karras", steps=20)

    def spec(self, sampler=None, steps=None, **kw) -> dict:
        """The full spec of a call. Without ``sampler``: :meth:`default_spec`, with the given entries over it; with
        ``sampler``: that sampler on its usual schedule ("geometric" for annealed Langevin, the recorded levels for a
        distilled student, "karras" otherwise), the default's number of steps, unguided and unclipped unless the
        entries say otherwise. Checked; one ValueError names the problem and the fix."""
        base = self.default_spec()
        if sampler is not None:
            schedule = ("geometric" if sampler == "annealed_langevin" else
                        "student" if base.get("schedule") == "student" else "karras")
            base = dict(sampler=sampler, schedule=schedule, steps=base["steps"])
        s = dict(base, **{k: v for k, v in kw.items() if v is not None})
        if steps is not None:
            s["steps"] = steps
        if s["sampler"] not in SAMPLERS:
            raise ValueError(f"unknown sampler {s['sampler']!r}; choose one of {', '.join(SAMPLERS)}.")
        s["steps"] = check_nfe(s["steps"])
        if s.get("schedule", "karras") not in SCHEDULES:
            raise ValueError(f"unknown schedule {s['schedule']!r}; use one of {', '.join(SCHEDULES)}.")
        allowed = {"sampler", "schedule", "spacing", "steps", "w", "clip", *SAMPLER_OPTIONS.get(s["sampler"], ())}
        extra = sorted(set(s) - allowed)
        if extra:
            raise ValueError(f"sampler {s['sampler']!r} takes no option(s) {extra}; its options are "
                             f"{list(SAMPLER_OPTIONS.get(s['sampler'], ())) or 'none'}.")
        if s.get("w") and self.num_classes is None:
            raise ValueError(f"{self.name} is not class-conditional, so it cannot be guided; drop guidance=.")
        return s

    def sigmas(self, sampler=None, steps=None, **kw) -> torch.Tensor:
        """The noise levels (float64, decreasing, ending in 0) that a spec visits on this model."""
        return sigmas_for(self.spec(sampler, steps, **kw), self.card, self.sigma_min, self.sigma_max)

    def nfe(self, sampler=None, steps=None, **kw) -> int:
        """Network evaluations per image of a spec (:func:`diffbook.samplers.nfe`)."""
        s = self.spec(sampler, steps, **kw)
        return nfe(s["sampler"], s["steps"], **{k: s[k] for k in ("n_corrector", "n_steps_each") if k in s})

    # -------------------------------------------------------------------------------------------- checks
    def check_images(self, x, name: str = "x") -> torch.Tensor:
        """Check a batch against the card's image shape [B, C, H, W] (:func:`diffbook.checks.check_images`)."""
        return check_images(name, x, self.image_shape)

    def labels_for(self, n: int, labels=None) -> torch.Tensor | None:
        """Class labels for n images: None -> 0, 1, ..., 9, 0, ... (balanced); an int -> that class for all; a
        sequence or tensor of n classes as given. The null class (10 for fmnist-ddpm) asks for an unconditional
        image. None for a model that is not class-conditional (then ``labels`` must be None)."""
        if self.num_classes is None:
            if labels is not None:
                raise ValueError(f"{self.name} is not class-conditional; drop labels=.")
            return None
        if labels is None:
            return torch.arange(n) % self.num_classes
        if isinstance(labels, numbers.Integral) and not isinstance(labels, bool):
            labels = torch.full((n,), int(labels))
        elif isinstance(labels, (list, tuple, range)):
            if not all(isinstance(c, numbers.Integral) and not isinstance(c, bool) for c in labels):
                raise TypeError(f"labels must be class indices (integers), got {list(labels)[:10]}.")
            labels = torch.tensor(list(labels), dtype=torch.long)
        return check_labels("labels", labels, n, self.num_classes + 1).cpu()

    # -------------------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, n: int | None = None, *, sampler: str | None = None, steps: int | None = None,
               schedule: str | None = None, spacing: str | None = None, labels=None, guidance: float | None = None,
               clip: bool | None = None, generator: torch.Generator | None = None, seed: int | None = None,
               noise: torch.Tensor | None = None, batch: int = 2500, progress: bool | None = None, callback=None,
               autocast: bool = False, **options) -> torch.Tensor:
        """Draw ``n`` images (default 16) [n, C, H, W] in [-1, 1] on the model's device.

        ``sampler`` (a key of :data:`diffbook.samplers.SAMPLERS`), ``steps``, ``schedule``, ``spacing``, ``clip``
        and sampler ``options`` override :meth:`default_spec`; ``labels`` (see :meth:`labels_for`) and ``guidance``
        (the weight w of Eq. (cfg); 0 is the plain conditional model) apply to class-conditional models. Noise comes
        from ``generator`` or ``seed`` (default seed 0), or is given as ``noise`` [n, C, H, W] (standard normal;
        it is scaled by the prior's std at the first level). ``progress`` shows a tqdm bar (default: on long runs);
        ``callback`` is passed to the sampler (Before each update, see :mod:`diffbook.samplers`). ``autocast``
        runs the network in bfloat16 on CUDA.
        """
        spec = self.spec(sampler, steps, schedule=schedule, spacing=spacing, w=guidance, clip=clip, **options)
        device = self.device
        if noise is not None:
            noise = self.check_images(noise, "noise")
            if n not in (None, noise.shape[0]):
                raise ValueError(f"n = {n} but noise holds {noise.shape[0]} images; drop n or make them agree.")
            n = noise.shape[0]
        n = _check_n(16 if n is None else n)
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be an integer >= 1 (images per network batch), got {batch!r}.")
        labels = self.labels_for(n, labels)
        g = _generator(generator, seed, device)
        sigmas = sigmas_for(spec, self.card, self.sigma_min, self.sigma_max)
        prior_std = self.prior_std
        if float(sigmas[0]) < self.sigma_max * (1 - 1e-6):  # a schedule that starts lower starts from its own prior
            prior_std = vp_prior_std(float(sigmas[0])) if self.card.get("parameterisation") in ("eps", "v") \
                else float(sigmas[0])
        sigmas = sigmas.to(device, torch.float32)
        run = SAMPLERS[spec["sampler"]]
        kwargs = {k: spec[k] for k in SAMPLER_OPTIONS.get(spec["sampler"], ()) if k in spec}
        w = _check_weight(spec.get("w", 0.0))
        bar = None
        if progress or (progress is None and n * self.nfe(**{k: v for k, v in spec.items()}) >= _PROGRESS_MIN_WORK):
            from tqdm.auto import tqdm

            bar = tqdm(total=math.ceil(n / batch) * (len(sigmas) - 1), desc=f"{self.name} {spec['sampler']}",
                       unit="step", leave=False)

        def step_callback(info):
            if bar is not None:
                bar.update(1)
            if callback is not None:
                callback(info)

        out = []
        for i in range(0, n, batch):
            b = min(batch, n - i)
            z = noise[i:i + b].to(device) if noise is not None else torch.randn(b, *self.image_shape, generator=g,
                                                                                 device=device)
            d, cond = self.denoiser, {}
            if labels is not None:
                cond = {"class_labels": labels[i:i + b].to(device)}
                if w:
                    d = cfg(d, w, {"class_labels": torch.full((b,), self.null_class, device=device)})
            if spec.get("clip"):
                d = clip_denoiser(d)  # after guidance: the guided estimate is the one that must stay in range
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast and device.type == "cuda"):
                out.append(run(d, z * prior_std, sigmas, generator=g, cond=cond, callback=step_callback,
                               **kwargs).clamp(-1, 1))
        if bar is not None:
            bar.close()
        return torch.cat(out)


class GeneratorModel(_Model):
    """A GAN generator of the zoo (``fmnist-gan``): one network evaluation per image."""

    @torch.no_grad()
    def sample(self, n: int = 16, *, generator: torch.Generator | None = None, seed: int | None = None,
               batch: int = 2500, labels=None, progress: bool | None = None, **unused) -> torch.Tensor:
        """Draw ``n`` images [n, 1, 32, 32] in [-1, 1] from z ~ N(0, I) (``generator`` or ``seed``, default 0);
        one network pass per batch, so there is no progress to show."""
        if labels is not None:
            raise ValueError(f"{self.name} is not class-conditional; drop labels=.")
        if unused:
            raise ValueError(f"{self.name} is a GAN generator: it takes no {sorted(unused)} (one network pass per "
                             "image, no sampler or steps).")
        n = _check_n(n)
        g = _generator(generator, seed, self.device)
        return torch.cat([self.net.sample(min(batch, n - i), generator=g) for i in range(0, n, batch)]).clamp(-1, 1)


class ClassifierModel(_Model):
    """The feature classifier ``fmnist-clf``: ``.predict(images)`` and ``.features(images)`` (its 128-d features)."""

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        from ..nets.classifier import predict

        return predict(self.net, images)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        from ..nets.classifier import extract_features

        return extract_features(self.net, images)


def load(name: str, root: str | Path | None = None, device=None):
    """Load a model of the zoo (``diffbook/zoo/weights``, or the zoo folder ``root``), SHA-256 checked.

    Returns a :class:`DiffusionModel` (fmnist-ddpm, fmnist-ncsn, fmnist-fast), a :class:`GeneratorModel`
    (fmnist-gan), a :class:`ClassifierModel` (fmnist-clf), the latent diffusion model's
    :class:`~diffbook.zoo.latent.LatentDiffusionModel` (fmnist-ldm) and :class:`~diffbook.zoo.latent.AutoencoderModel`
    (fmnist-vae), or the spelling experiment's
    :class:`~diffbook.zoo.text.TextToImageModel` (text-token, text-char) and :class:`~diffbook.zoo.text.OCRModel`
    (text-ocr), on ``device`` (default CPU), in eval mode.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a model name (a string), got {type(name).__name__}; the zoo has: "
                        f"{', '.join(read_registry(root))}.")
    net, card = load_network(name, root, device)
    if card.get("arch") in ("text-unet", "ocr"):
        from .text import OCRModel, TextToImageModel

        return (OCRModel if card["arch"] == "ocr" else TextToImageModel)(name, net, card)
    if card.get("arch") == "classifier":
        return ClassifierModel(name, net, card)
    if card.get("arch") == "autoencoder-kl" or card.get("latent"):
        from .latent import AutoencoderModel, latent_model

        return AutoencoderModel(name, net, card) if card.get("latent") is None else latent_model(name, net, card, root,
                                                                                                device)
    if card.get("parameterisation") == "generator":
        return GeneratorModel(name, net, card)
    return DiffusionModel(name, net, card)


def load_student(steps: int | None = None, name: str = "fmnist-fast", root=None, device=None) -> DiffusionModel:
    """The distilled student for ``steps`` DDIM steps (its round's weights); ``.sample()`` uses those steps.

    ``card["round_models"]`` of ``name`` maps each kept step count to its round's model (``name`` itself for the
    last round).
    """
    _, card = load_network(name, root)
    rounds = card.get("round_models") or {}
    steps = card.get("sampling_steps") if steps is None else check_nfe(steps)
    if str(steps) not in rounds:
        raise ValueError(f"{name!r} has students for {', '.join(sorted(rounds, key=int)) or 'no'} steps, not "
                         f"{steps}; add {steps} to keep_rounds in its config and retrain.")
    model = load(rounds[str(steps)], root, device)
    model.card = dict(model.card, sampling_steps=steps)
    return model
