"""Synthetic one-dimensional signals ("tones"), the book's example of a diffusion model on data that are not images.

A tone is L = 64 samples of a decaying sinusoid with a random frequency, phase and amplitude, plus a weaker second
harmonic: x(t) = a e^{-t / tau} (sin(2 pi f t / L + phi) + h sin(4 pi f t / L + 2 phi)), t = 0, ..., L - 1, with f
uniform in [2, 6] cycles per window, phi uniform, a uniform in [0.5, 0.9], tau uniform in [32, 128] samples and h
uniform in [0, 0.4]. :func:`dominant_frequency` reads f back from a signal (the peak of its zero-padded spectrum),
so samples of a model can be checked against the data.
"""

from __future__ import annotations

import math

import torch

__all__ = ["LENGTH", "F_RANGE", "tones", "dominant_frequency"]

LENGTH = 64
F_RANGE = (2.0, 6.0)


def tones(n: int, generator: torch.Generator | None = None, length: int = LENGTH) -> torch.Tensor:
    """``n`` random tones [n, length] (see the module docstring), from ``generator``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}.")
    u = torch.rand(n, 5, generator=generator, dtype=torch.float64)
    f = F_RANGE[0] + (F_RANGE[1] - F_RANGE[0]) * u[:, :1]
    phi, a = 2 * math.pi * u[:, 1:2], 0.5 + 0.4 * u[:, 2:3]
    tau, h = 32 + 96 * u[:, 3:4], 0.4 * u[:, 4:5]
    t = torch.arange(length, dtype=torch.float64)[None]
    wave = torch.sin(2 * math.pi * f * t / length + phi) + h * torch.sin(4 * math.pi * f * t / length + 2 * phi)
    return (a * torch.exp(-t / tau) * wave).float()


def dominant_frequency(x: torch.Tensor, pad: int = 16) -> torch.Tensor:
    """The frequency (cycles per window) of the largest peak of each signal's spectrum [n], zero-padded ``pad``
    times for resolution; the mean is removed first."""
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError(f"x must be signals [n, length], got {getattr(x, 'shape', type(x))}.")
    length = x.shape[1]
    spec = torch.fft.rfft(x.double() - x.double().mean(1, keepdim=True), n=pad * length).abs()
    return spec.argmax(1).double() / pad
