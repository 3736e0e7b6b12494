"""diffbook: the package behind the diffbook textbook on diffusion models.

Every model is used through one interface, ``denoiser(x, sigma, **cond) -> x0_hat`` with
``x = x0 + sigma * noise`` (see :mod:`diffbook.denoisers`); samplers are plain functions of a denoiser
(:mod:`diffbook.samplers`).
"""

__version__ = "0.1.0"
