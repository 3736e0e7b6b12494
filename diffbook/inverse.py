"""Inverse problems with a diffusion model as the prior: measurement operators and training-free posterior sampling.

A measurement is y = A x_0 + noise_std * e (e standard normal) with a known linear operator A: a mask (inpainting),
block averaging (super-resolution), a blur (deblurring) or the identity (denoising). Every method here uses the
one denoiser interface ``D(x, sigma, **cond) -> x0_hat`` of :mod:`diffbook.denoisers`; no network is retrained.

Notation (code name -> book symbol):

=================  =================================================================================
``op``             the operator A (``op(x)`` = A x, ``op.adjoint(y)`` = A^T y, ``op.pinv(y)`` = A^+ y)
``y``              the measurement y = A x_0 + noise_std e
``noise_std``      sigma_y, the standard deviation of the measurement noise
``x0_hat``         D(x; sigma), the unconditional denoiser's estimate
``r2``             r^2 = s^2 sigma^2 / (s^2 + sigma^2), the variance of x_0 given x for data of variance s^2
``resample``       RePaint's number of passes per step (1 = plain replacement)
=================  =================================================================================

Three mechanisms, each one function, each for every operator:

- :func:`projection_denoiser` replaces the measured part of x0_hat by the measurement (Eq. (inv-projection); the
  DDNM of Wang, Yu and Zhang 2023): free, exact consistency for noiseless measurements;
- :func:`pigdm_denoiser` adds sigma^2 times the gradient of a Gaussian log-likelihood of y, back-propagated
  through the denoiser (Eq. (inv-pigdm); the PiGDM of Song, Vahdat, Mardani and Kautz 2023; DPS of Chung et al.
  2023 takes the same vector-Jacobian product with another step size); exact for Gaussian data;
- :func:`sample_replacement` replaces the measured part of the noisy sample x by a noised measurement after each
  ancestral step, optionally going back up and repeating (Eqs. (inv-replacement), (inv-resample): ILVR of Choi et
  al. 2021 for block averaging, RePaint of Lugmayr et al. 2022 for masks).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from .checks import check_batch_sigma, check_nfe, check_tensor, per_sample
from .editing import check_levels
from .samplers import sample_ddpm_ancestral

__all__ = ["Operator", "Inpaint", "Downsample", "Blur", "Identity", "box_mask", "half_mask", "random_mask",
           "measure", "tikhonov", "projection_denoiser", "pigdm_denoiser", "sample_replacement"]


def _check_images(name: str, x) -> torch.Tensor:
    check_tensor(name, x)
    if x.dim() != 4:
        raise ValueError(f"{name} must be a batch of images [B, C, H, W], got shape {tuple(x.shape)}.")
    return x


class Operator:
    """A linear measurement operator A on images [B, C, H, W]; subclasses define ``__call__``, ``adjoint``,
    ``pinv`` and ``gram_solve`` (the solve (a A A^T + b I)^{-1} v in measurement space)."""

    name = "operator"

    def check(self, x: torch.Tensor) -> torch.Tensor:
        """Check that ``x`` is a batch of images this operator can act on (one clear ValueError if not)."""
        return _check_images("x", x)

    def check_measurement(self, y, x: torch.Tensor) -> torch.Tensor:
        """Check that ``y`` has the shape of A x for images like ``x``."""
        self.check(x)
        check_tensor("y", y)
        want = tuple(self(x[:1]).shape[1:])
        if y.dim() != 4 or tuple(y.shape[1:]) != want or y.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"the measurement y has shape {tuple(y.shape)}, but {self.name} maps images of shape "
                             f"{tuple(x.shape)} to [{x.shape[0]}, {', '.join(map(str, want))}]; measure y with "
                             "the same operator (inverse.measure(op, x0)).")
        return y

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class Inpaint(Operator):
    """Keep the observed pixels: A x = m * x with a boolean mask m (True = observed), shape [H, W], [C, H, W] or
    [B, C, H, W]. Measurements keep the image's shape (zeros where nothing was observed); A A^T = I there."""

    def __init__(self, mask):
        if not isinstance(mask, torch.Tensor):
            raise TypeError(f"mask must be a torch.Tensor of dtype bool (True = observed pixel), got "
                            f"{type(mask).__name__}.")
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must have dtype torch.bool (True = observed pixel), got {mask.dtype}; "
                            "use mask > 0.5.")
        if mask.dim() not in (2, 3, 4):
            raise ValueError(f"mask must have shape [H, W], [C, H, W] or [B, C, H, W], got {tuple(mask.shape)}.")
        self.mask = mask.reshape(*([1] * (4 - mask.dim())), *mask.shape)
        self.name = f"inpainting ({self.mask.float().mean():.0%} of pixels observed)"

    def check(self, x):
        _check_images("x", x)
        m = self.mask
        if m.shape[-2:] != x.shape[-2:] or m.shape[1] not in (1, x.shape[1]) or m.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"the mask of shape {tuple(m.shape)} does not fit images of shape {tuple(x.shape)}; "
                             "it needs the images' height and width (and channel and batch sizes, or 1).")
        return x

    def _m(self, x):
        return self.mask.to(device=x.device, dtype=x.dtype)

    def __call__(self, x):
        return self._m(self.check(x)) * x

    def adjoint(self, y):
        return self._m(y) * y

    pinv = adjoint

    def gram_solve(self, v, a, b):
        return self._m(v) * v / (a + b)


class Downsample(Operator):
    """Average blocks of ``factor`` x ``factor`` pixels (super-resolution's measurement). A^+ is nearest-neighbour
    upsampling, A^T is that divided by factor^2, and A A^T = I / factor^2."""

    def __init__(self, factor: int):
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise ValueError(f"factor must be an integer >= 1, got {factor!r}.")
        self.factor = factor
        self.name = f"{factor}x{factor} block averaging"

    def check(self, x):
        _check_images("x", x)
        f = self.factor
        if x.shape[-1] % f or x.shape[-2] % f:
            raise ValueError(f"{self.name} needs image sides divisible by {f}, got {tuple(x.shape)}.")
        return x

    def __call__(self, x):
        return F.avg_pool2d(self.check(x), self.factor)

    def pinv(self, y):
        return F.interpolate(y, scale_factor=self.factor, mode="nearest")

    def adjoint(self, y):
        return self.pinv(y) / self.factor**2

    def gram_solve(self, v, a, b):
        return v / (a / self.factor**2 + b)


class Blur(Operator):
    """Circular convolution with a Gaussian kernel of standard deviation ``std`` pixels, diagonal in the Fourier
    basis with real gains k (A = F^-1 diag(k) F). Gains below ``eps`` count as unmeasured in ``pinv``."""

    def __init__(self, std: float, eps: float = 1e-2):
        if not (isinstance(std, (int, float)) and math.isfinite(std) and std > 0):
            raise ValueError(f"std (the blur's width in pixels) must be a number > 0, got {std!r}.")
        if not (isinstance(eps, (int, float)) and 0 < eps < 1):
            raise ValueError(f"eps must lie in (0, 1), got {eps!r}.")
        self.std, self.eps = float(std), float(eps)
        self.name = f"Gaussian blur (std {std:g} px)"

    def gains(self, x: torch.Tensor) -> torch.Tensor:
        """The real Fourier gains k [H, W] of the kernel for images of x's size (x's dtype and device)."""
        H, W = x.shape[-2:]
        dy = torch.arange(H, dtype=torch.float64)
        dx = torch.arange(W, dtype=torch.float64)
        dy, dx = torch.minimum(dy, H - dy), torch.minimum(dx, W - dx)  # circular distance to pixel (0, 0)
        kernel = torch.exp(-(dy[:, None] ** 2 + dx[None, :] ** 2) / (2 * self.std**2))
        return torch.fft.fft2(kernel / kernel.sum()).real.to(device=x.device, dtype=x.dtype)

    def _apply(self, v, gain):
        return torch.fft.ifft2(torch.fft.fft2(v) * gain).real

    def __call__(self, x):
        return self._apply(self.check(x), self.gains(x))

    adjoint = __call__  # the kernel is symmetric

    def pinv(self, y):
        k = self.gains(y)
        inv = torch.where(k.abs() >= self.eps, 1 / k.where(k.abs() >= self.eps, torch.ones_like(k)), 0)
        return self._apply(y, inv)

    def gram_solve(self, v, a, b):
        k2 = self.gains(v).pow(2).clamp_min(self.eps**2)
        return self._apply(v, 1 / (a * k2 + b))


class Identity(Operator):
    """A x = x: the measurement is the image itself (denoising when noise_std > 0)."""

    name = "identity"

    def __call__(self, x):
        return self.check(x)

    def adjoint(self, y):
        return y

    pinv = adjoint

    def gram_solve(self, v, a, b):
        return v / (a + b)


# ----------------------------------------------------------------------------------------------- masks
def box_mask(size: int = 32, box: int = 14) -> torch.Tensor:
    """A [size, size] boolean mask, True (observed) except a centred ``box`` x ``box`` square."""
    if not 0 < box < size:
        raise ValueError(f"box must lie between 1 and size - 1 = {size - 1}, got {box}.")
    m = torch.ones(size, size, dtype=torch.bool)
    lo = (size - box) // 2
    m[lo:lo + box, lo:lo + box] = False
    return m


def half_mask(size: int = 32, keep: str = "left") -> torch.Tensor:
    """A [size, size] boolean mask that observes one half of the image (``keep`` = "left" or "top")."""
    m = torch.zeros(size, size, dtype=torch.bool)
    if keep == "left":
        m[:, : size // 2] = True
    elif keep == "top":
        m[: size // 2] = True
    else:
        raise ValueError(f"keep must be 'left' or 'top', got {keep!r}.")
    return m


def random_mask(size: int = 32, missing: float = 0.8, generator: torch.Generator | None = None) -> torch.Tensor:
    """A [size, size] boolean mask with a random fraction ``missing`` of its pixels unobserved (False)."""
    if not 0 < missing < 1:
        raise ValueError(f"missing must be a fraction in (0, 1), got {missing!r}.")
    return torch.rand(size, size, generator=generator) >= missing


# ----------------------------------------------------------------------------------------------- measuring
def measure(op: Operator, x0: torch.Tensor, noise_std: float = 0.0, generator=None) -> torch.Tensor:
    """The measurement y = A x0 + noise_std e of images x0 (e standard normal from ``generator``).

    Implements Eq. (inv-measurement).
    """
    y = op(op.check(x0))
    if noise_std < 0 or not math.isfinite(noise_std):
        raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std!r}.")
    if noise_std > 0:
        y = y + noise_std * torch.randn(y.shape, generator=generator, dtype=y.dtype).to(y.device)
    return y


def tikhonov(op: Operator, y: torch.Tensor, lam: float) -> torch.Tensor:
    """The linear baseline x = A^T (A A^T + lam I)^{-1} y, the minimiser of ||A x - y||^2 + lam ||x||^2.

    Implements Eq. (inv-tikhonov); with block averaging it is a scaled nearest-neighbour upsampling, with a blur
    a Wiener filter, with the identity a shrinkage of y.
    """
    if not (isinstance(lam, (int, float)) and lam > 0):
        raise ValueError(f"lam must be a number > 0, got {lam!r}.")
    check_tensor("y", y)
    return op.adjoint(op.gram_solve(y, 1.0, float(lam)))


# ----------------------------------------------------------------------------------------------- as denoisers
def _check_denoiser(denoiser):
    if not callable(denoiser):
        raise TypeError(f"denoiser must be callable as denoiser(x, sigma, **cond), got {type(denoiser).__name__}.")


def _check_op(op):
    if not isinstance(op, Operator):
        raise TypeError(f"op must be a diffbook.inverse.Operator (Inpaint, Downsample, Blur, Identity), got "
                        f"{type(op).__name__}.")


def projection_denoiser(denoiser: Callable, op: Operator, y: torch.Tensor) -> Callable:
    """Wrap a denoiser so that its estimate agrees with a noiseless measurement: D + A^+ (y - A D).

    Implements Eq. (inv-projection): the measured part of x0_hat (its component in the row space of A) is replaced
    by A^+ y, the rest is the model's (the range-null-space decomposition of DDNM, Wang, Yu and Zhang 2023). For a
    mask: the observed pixels of x0_hat become y. A sampler whose last step returns x0_hat (every sampler of
    :mod:`diffbook.samplers` does, with sigmas ending in 0) then returns an x with A x = y up to round-off.
    """
    _check_denoiser(denoiser)
    _check_op(op)
    check_tensor("y", y)

    def projected(x, sigma, **cond):
        op.check_measurement(y, x)
        x0_hat = denoiser(x, sigma, **cond)
        return x0_hat - op.pinv(op(x0_hat)) + op.pinv(y.to(x0_hat))  # this order keeps observed pixels exact

    projected.denoiser, projected.op, projected.y = denoiser, op, y
    return projected


def pigdm_denoiser(denoiser: Callable, op: Operator, y: torch.Tensor, *, noise_std: float = 0.0,
                   data_std: float = 1.0, scale: float = 1.0) -> Callable:
    """Wrap a denoiser into one of the posterior p(x_0 | y): D + scale sigma^2 grad_x log p(y | x).

    Implements Eq. (inv-pigdm) (PiGDM, Song, Vahdat, Mardani and Kautz 2023): p(y | x) is approximated by
    N(y; A D(x; sigma), r^2 A A^T + noise_std^2 I) with r^2 = data_std^2 sigma^2 / (data_std^2 + sigma^2), and
    its gradient (taken through D, r held fixed) is the vector-Jacobian product (dD/dx)^T A^T v with
    v = (r^2 A A^T + noise_std^2 I)^{-1} (y - A D). For Gaussian data N(0, data_std^2 I) this is exactly
    E[x_0 | x, y]; DPS (Chung et al. 2023) takes the same product with v = zeta (y - A D) / ||y - A D||.
    Costs one backward pass through the network per call.
    """
    _check_denoiser(denoiser)
    _check_op(op)
    check_tensor("y", y)
    for name, v in (("noise_std", noise_std), ("data_std", data_std), ("scale", scale)):
        if not (isinstance(v, (int, float)) and math.isfinite(v)):
            raise ValueError(f"{name} must be a finite number, got {v!r}.")
    if noise_std < 0 or data_std <= 0 or scale < 0:
        raise ValueError("need noise_std >= 0, data_std > 0 and scale >= 0.")

    def guided(x, sigma, **cond):
        op.check_measurement(y, x)
        sigma = check_batch_sigma(x, sigma)
        s2 = per_sample(sigma, x) ** 2
        r2 = data_std**2 * s2 / (data_std**2 + s2)
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            x0_hat = denoiser(x_in, sigma, **cond)
            residual = y.to(x0_hat) - op(x0_hat)
            v = op.gram_solve(residual.detach(), r2, noise_std**2)
            (grad,) = torch.autograd.grad((op(x0_hat) * v).sum(), x_in)
        return x0_hat.detach() + scale * s2 * grad

    guided.denoiser, guided.op, guided.y = denoiser, op, y
    return guided


# ----------------------------------------------------------------------------------------------- replacement
@torch.no_grad()
def sample_replacement(denoiser: Callable, x: torch.Tensor, sigmas: torch.Tensor, op: Operator, y: torch.Tensor, *,
                       resample: int = 1, callback=None, generator: torch.Generator | None = None,
                       cond: dict | None = None) -> torch.Tensor:
    """Sample with ancestral steps, replacing the measured part of x by a noised measurement after each step.

    Implements Eq. (inv-replacement): after the ancestral step to sigma_next, x <- x + A^+ (y + sigma_next A z - A x),
    so A x is distributed like A (x_0 + sigma_next n) (ILVR, Choi et al. 2021, for block averaging; the
    replacement of known pixels for a mask). With ``resample`` = U > 1 each step is repeated U times, going back
    up between repeats with Eq. (inv-resample), x <- x + sqrt(sigma^2 - sigma_next^2) z (RePaint, Lugmayr et al.
    2022, Alg. 1). The last step lands on sigma = 0, where the replacement leaves A x = y exactly (for a mask: the
    observed pixels are y). ``y`` must be noiseless. Network calls: U per step (the last step once).
    """
    _check_op(op)
    resample = check_nfe(resample)
    op.check_measurement(y, x)
    check_levels(sigmas, denoiser)
    cond = {} if cond is None else cond
    sig = [float(s) for s in sigmas.detach().cpu().double()]
    calls = [0]

    def one_step(x, i):
        sub = torch.tensor([sig[i], sig[i + 1]], dtype=torch.float64)
        seen = lambda info: callback(dict(info, i=i)) if callback is not None else None  # noqa: E731
        x = sample_ddpm_ancestral(denoiser, x, sub, generator=generator, cond=cond, callback=seen)
        calls[0] += 1
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return x - op.pinv(op(x)) + op.pinv(y.to(x) + sig[i + 1] * op(z))  # observed pixels exact at sigma = 0

    for i in range(len(sig) - 1):
        passes = resample if sig[i + 1] > 0 else 1
        for u in range(passes):
            x = one_step(x, i)
            if u < passes - 1:  # back up to sigma_i (RePaint's resampling)
                z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
                x = x + math.sqrt(sig[i] ** 2 - sig[i + 1] ** 2) * z
    return x
