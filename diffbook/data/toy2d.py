"""Two-dimensional toy data sets: a ring of 8 Gaussians, a 5x5 grid of Gaussians, two moons, a swiss roll.

The two mixtures follow the mode-collapse protocol of the GAN literature (Metz et al. 2017, "Unrolled GANs";
Srivastava et al. 2017, "VEEGAN"; Lin et al. 2018, "PacGAN"), so that `diffbook.eval.metrics.mode_stats` can count
modes and high-quality samples exactly as those papers do:

==========  ===============================================  ======  =====================================
data        modes (centres)                                  std     scale (per-coordinate std of the data)
==========  ===============================================  ======  =====================================
ring8       8, (2 cos(2 pi i / 8), 2 sin(2 pi i / 8))        0.02    sqrt(r^2/2 + std^2) = 1.414
grid25      25, {-4, -2, 0, 2, 4}^2                          0.05    sqrt(8 + std^2) = 2.829
moons       --                                               --      x in [-1, 2], y in [-0.5, 1] + noise
swiss_roll  --                                               --      x in [-9.5, 12.6], y in [-11, 14.2] + noise
==========  ===============================================  ======  =====================================

The ring uses the radius 2 and std 0.02 of Metz et al. and VEEGAN; PacGAN's code draws the same ring at half
the scale (radius 1, std 0.01: ``ring8_mixture(radius=1.0, std=0.01)``), and the same grid (std 0.05).

Scale: the data are kept on their natural scale, not standardised. A diffusion model's noise levels are
relative to this scale (sigma_max should be well above the data's spread, e.g. >= 10 for the grid); divide
by the "scale" column above if a unit-variance version is wanted.

All samplers take an optional ``torch.Generator`` (CPU) for reproducibility and return float32 tensors [n, 2]
on the CPU; move them with ``.to(device)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..checks import check_positive, check_tensor

__all__ = ["Mixture2D", "ring8_mixture", "grid25_mixture", "ring8", "grid25", "moons", "swiss_roll"]


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n (the number of samples) must be an integer >= 1, got {n!r}.")
    return n


def _check_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}; "
            "make one with torch.Generator().manual_seed(0)."
        )
    if generator is not None and generator.device.type != "cpu":
        raise ValueError("generator must be a CPU torch.Generator (the toy data are drawn on the CPU); use torch.Generator().")


@dataclass(frozen=True, eq=False)
class Mixture2D:
    """An equally weighted mixture of isotropic Gaussians N(centre_k, std^2 I).

    ``centres`` is a float tensor [K, 2]; ``std`` the common standard deviation. ``weights`` (uniform) and
    ``stds`` ([K]) give the form `diffbook.denoisers.gmm_denoiser` takes.
    """

    centres: torch.Tensor
    std: float

    def __post_init__(self):
        check_tensor("centres", self.centres, min_dim=2)
        if self.centres.dim() != 2 or self.centres.shape[0] < 1:
            raise ValueError(f"centres must have shape [K, d] with K >= 1, got {tuple(self.centres.shape)}.")
        check_positive("std", self.std)

    @property
    def n_modes(self) -> int:
        return self.centres.shape[0]

    @property
    def weights(self) -> torch.Tensor:
        """Mixture weights [K] (all 1/K)."""
        return torch.full((self.n_modes,), 1.0 / self.n_modes, dtype=self.centres.dtype)

    @property
    def stds(self) -> torch.Tensor:
        """Per-component standard deviations [K] (all equal to ``std``)."""
        return torch.full((self.n_modes,), float(self.std), dtype=self.centres.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None, return_labels: bool = False):
        """Draw n samples [n, d]; with ``return_labels`` also the index [n] of the mode each came from."""
        _check_n(n)
        _check_generator(generator)
        labels = torch.randint(self.n_modes, (n,), generator=generator)
        noise = torch.randn(n, self.centres.shape[1], generator=generator, dtype=self.centres.dtype)
        x = self.centres[labels] + float(self.std) * noise
        return (x, labels) if return_labels else x

    def data_std(self) -> torch.Tensor:
        """Per-coordinate standard deviation of the mixture: sqrt(Var of the centres + std^2) [d]."""
        centres = self.centres.double()
        var = centres.var(dim=0, unbiased=False) + float(self.std) ** 2
        return var.sqrt().to(self.centres.dtype)


def ring8_mixture(radius: float = 2.0, std: float = 0.02) -> Mixture2D:
    """The ring of 8 Gaussians: centres (r cos(2 pi i/8), r sin(2 pi i/8)), i = 0..7 (Metz et al. 2017)."""
    radius = check_positive("radius", radius)
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    centres = torch.stack([radius * angles.cos(), radius * angles.sin()], dim=1).float()
    return Mixture2D(centres, check_positive("std", std))


def grid25_mixture(spacing: float = 2.0, std: float = 0.05) -> Mixture2D:
    """The 5x5 grid of Gaussians: centres {-2s, -s, 0, s, 2s}^2 with s = 2 by default (PacGAN, VEEGAN)."""
    spacing = check_positive("spacing", spacing)
    ticks = torch.arange(-2, 3, dtype=torch.float32) * spacing
    gx, gy = torch.meshgrid(ticks, ticks, indexing="ij")
    centres = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    return Mixture2D(centres, check_positive("std", std))


def ring8(n: int, generator: torch.Generator | None = None, radius: float = 2.0, std: float = 0.02) -> torch.Tensor:
    """Sample n points [n, 2] from the ring of 8 Gaussians (radius 2, std 0.02)."""
    return ring8_mixture(radius, std).sample(n, generator)


def grid25(n: int, generator: torch.Generator | None = None, spacing: float = 2.0, std: float = 0.05) -> torch.Tensor:
    """Sample n points [n, 2] from the 5x5 grid of Gaussians at {-4, -2, 0, 2, 4}^2 (std 0.05)."""
    return grid25_mixture(spacing, std).sample(n, generator)


def moons(n: int, generator: torch.Generator | None = None, noise: float = 0.05) -> torch.Tensor:
    """Sample n points [n, 2] from two interleaved half circles of radius 1 plus Gaussian noise (std ``noise``).

    Upper moon: (cos t, sin t); lower moon: (1 - cos t, 0.5 - sin t), t ~ U[0, pi], each moon chosen with
    probability 1/2 (the shape of scikit-learn's make_moons, drawn at random instead of on a grid).
    """
    _check_n(n)
    _check_generator(generator)
    if not (isinstance(noise, (int, float)) and math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}.")
    t = torch.rand(n, generator=generator) * math.pi
    lower = torch.rand(n, generator=generator) < 0.5
    x = torch.where(lower, 1.0 - t.cos(), t.cos())
    y = torch.where(lower, 0.5 - t.sin(), t.sin())
    return torch.stack([x, y], dim=1) + noise * torch.randn(n, 2, generator=generator)


def swiss_roll(n: int, generator: torch.Generator | None = None, noise: float = 0.25) -> torch.Tensor:
    """Sample n points [n, 2] from the 2D swiss roll (t cos t, t sin t), t ~ U[1.5 pi, 4.5 pi], plus noise.

    The spiral of scikit-learn's make_swiss_roll seen from above; ``noise`` is the std of the added Gaussian
    noise, in the same units (the spiral's arms are about 2 pi = 6.3 apart).
    """
    _check_n(n)
    _check_generator(generator)
    if not (isinstance(noise, (int, float)) and math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}.")
    t = 1.5 * math.pi * (1.0 + 2.0 * torch.rand(n, generator=generator))
    x = torch.stack([t * t.cos(), t * t.sin()], dim=1)
    return x + noise * torch.randn(n, 2, generator=generator)
