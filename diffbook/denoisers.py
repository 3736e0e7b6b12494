"""One interface for every model: ``denoiser(x, sigma, **cond) -> x0_hat``.

Notation (code name -> book symbol): ``x`` = x = x_0 + sigma n (VE coordinates, Eq. (ve-coordinates)),
``sigma`` = sigma (one per sample, shape [B]), ``x0_hat`` = D(x; sigma), the model's estimate of E[x_0 | x].
The score is (D - x) / sigma^2 (Tweedie, Eq. (tweedie)) and the probability-flow ODE derivative is
(x - D) / sigma (Eq. (pf-ode-sigma)); both are defined once here.

Adapters turn networks trained with other parameterisations into this interface, as in Karras et al. 2022
(EDM, Table 1): eps-prediction DDPMs, score networks (NCSN) and diffusers' ``UNet2DModel``.
"""

from __future__ import annotations

import math

import torch

from .checks import check_batch_sigma, check_finite, check_network_input, check_positive, check_tensor, per_sample
from .schedules import sigma_to_t, t_to_sigma


def score_from_denoiser(x: torch.Tensor, sigma: torch.Tensor, x0_hat: torch.Tensor) -> torch.Tensor:
    """Return the score grad log p_sigma(x) = (x0_hat - x) / sigma^2. Implements Eq. (tweedie)."""
    return (x0_hat - x) / per_sample(sigma, x) ** 2


def ode_derivative(x: torch.Tensor, sigma: torch.Tensor, x0_hat: torch.Tensor) -> torch.Tensor:
    """Return dx/dsigma = (x - x0_hat) / sigma of the probability-flow ODE. Implements Eq. (pf-ode-sigma)."""
    return (x - x0_hat) / per_sample(sigma, x)


def _unwrap(out):
    """diffusers models return an output object with ``.sample``; plain modules return the tensor."""
    return out.sample if hasattr(out, "sample") else out


def _vp_net_output(net, table: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor, cond: dict):
    """A discrete-time VP network's output at the VP input x_t = c_in x and the fractional timestep t whose sigma_t
    equals sigma (Eq. (vp-to-ve)), with c_in = 1/sqrt(1 + sigma^2) = sqrt(alpha_bar_t); returns (output, c_in)."""
    check_network_input(net, x, cond)
    c_in = per_sample((1 + sigma**2).rsqrt(), x)
    t = sigma_to_t(sigma.detach().double().cpu(), table).to(device=x.device, dtype=torch.float32)
    return _unwrap(net(x * c_in, t, **cond)).to(x.dtype), c_in


def from_eps_model(net, alpha_bar: torch.Tensor):
    """Wrap a discrete DDPM noise-prediction network ``net(x_t, t, **cond) -> eps_hat`` as a denoiser.

    Implements Eq. (eps-to-denoiser): x_t = sqrt(alpha_bar) x (VP input), t = the fractional timestep whose sigma_t
    equals sigma, and x0_hat = x - sigma * eps_hat. ``alpha_bar`` is the model's training table (length T).
    """
    t_to_sigma(0, alpha_bar)  # checks the table: 1-D, entries strictly between 0 and 1
    table = alpha_bar.detach().double().cpu()

    def denoiser(x, sigma, **cond):
        sigma = check_batch_sigma(x, sigma)
        eps_hat, _ = _vp_net_output(net, table, x, sigma, cond)
        return x - per_sample(sigma, x) * eps_hat

    denoiser.net, denoiser.alpha_bar = net, table
    return denoiser


def from_v_model(net, alpha_bar: torch.Tensor):
    """Wrap a discrete-time v-prediction network ``net(x_t, t, **cond) -> v_hat`` as a denoiser, Eq. (v-denoiser).

    With c_in = 1/sqrt(1 + sigma^2) (= alpha of the VP process, Eq. (vp-to-ve)) and t the fractional timestep whose
    sigma_t equals sigma: x_t = c_in x and x0_hat = c_in^2 x - sigma c_in v_hat, which is x_0 = alpha x_t - sigma_VP v
    with v = alpha eps - sigma_VP x_0 (Salimans & Ho 2022, Sec. 4) in VE coordinates; the v-prediction variant of
    Eq. (eps-to-denoiser). Input and time conventions are those of :func:`from_eps_model`, so a network copied
    from an eps-prediction DDPM can be wrapped as is (progressive distillation does, :mod:`diffbook.distill`).
    """
    t_to_sigma(0, alpha_bar)  # checks the table: 1-D, entries strictly between 0 and 1
    table = alpha_bar.detach().double().cpu()

    def denoiser(x, sigma, **cond):
        sigma = check_batch_sigma(x, sigma)
        v_hat, c_in = _vp_net_output(net, table, x, sigma, cond)
        return c_in**2 * x - per_sample(sigma, x) * c_in * v_hat

    denoiser.net, denoiser.alpha_bar = net, table
    return denoiser


def from_score_model(net):
    """Wrap a noise-conditional score network ``net(x, sigma, **cond) -> s(x, sigma)`` as a denoiser.

    Implements Eq. (tweedie) solved for x0_hat: D = x + sigma^2 s(x, sigma); Song & Ermon 2019.
    """

    def denoiser(x, sigma, **cond):
        sigma = check_batch_sigma(x, sigma)
        check_network_input(getattr(net, "unet", net), x, cond)
        return x + per_sample(sigma, x) ** 2 * _unwrap(net(x, sigma, **cond)).to(x.dtype)

    denoiser.net = net
    return denoiser


def from_diffusers_unet(unet, scheduler):
    """Wrap a diffusers ``UNet2DModel`` trained with ``scheduler``'s config (epsilon, v_prediction or sample).

    Implements Eq. (eps-to-denoiser) and its v- and x0-prediction variants: with c_in = sqrt(alpha_bar) =
    1/sqrt(1+sigma^2), eps: D = x - sigma eps_hat; v: D = c_in^2 x - sigma c_in v_hat; sample: D = x0_hat.
    Class labels go in as ``class_labels=...``.
    """
    alpha_bar = torch.as_tensor(scheduler.alphas_cumprod).double().cpu()
    kind = scheduler.config.prediction_type
    if kind not in ("epsilon", "v_prediction", "sample"):
        raise ValueError(f"unsupported prediction_type {kind!r}; expected 'epsilon', 'v_prediction' or 'sample'.")

    def denoiser(x, sigma, **cond):
        sigma = check_batch_sigma(x, sigma)
        check_network_input(unet, x, cond)
        c_in = per_sample((1 + sigma**2).rsqrt(), x)
        s = per_sample(sigma, x)
        t = sigma_to_t(sigma.detach().double().cpu(), alpha_bar).to(device=x.device, dtype=torch.float32)
        out = _unwrap(unet(x * c_in, t, **cond)).to(x.dtype)
        if kind == "epsilon":
            return x - s * out
        if kind == "v_prediction":
            return c_in**2 * x - s * c_in * out
        return out

    denoiser.net, denoiser.alpha_bar = unet, alpha_bar
    return denoiser


def gaussian_denoiser(s: float):
    """The exact denoiser of data N(0, s^2 I): D*(x, sigma) = s^2 / (s^2 + sigma^2) x. Eq. (gaussian-denoiser)."""
    s2 = check_positive("s", s) ** 2

    def denoiser(x, sigma, **cond):
        sigma = check_batch_sigma(x, sigma)
        return s2 / (s2 + per_sample(sigma, x) ** 2) * x

    return denoiser


def _gmm_args(means, stds, weights, like: torch.Tensor):
    if like.dim() != 2:
        raise ValueError(f"x must hold 2-D data points of shape [B, d], got {tuple(like.shape)}.")
    means = torch.as_tensor(means, dtype=like.dtype, device=like.device)
    if means.dim() != 2 or means.shape[1] != like.shape[1]:
        raise ValueError(f"means must have shape [K, d] with d = {like.shape[1]} (the data's dimension), "
                         f"got {tuple(means.shape)}.")
    check_finite("means", means)
    K = means.shape[0]
    stds = torch.as_tensor(stds, dtype=like.dtype, device=like.device)
    if stds.dim() > 1 or stds.numel() not in (1, K):
        raise ValueError(f"stds must be one number or K = {K} numbers, got shape {tuple(stds.shape)}.")
    stds = check_finite("stds", stds.reshape(-1).expand(K))
    if weights is None:
        weights = torch.full((K,), 1.0 / K, dtype=like.dtype, device=like.device)
    weights = torch.as_tensor(weights, dtype=like.dtype, device=like.device)
    if weights.shape != (K,) or (weights < 0).any() or not math.isclose(weights.sum().item(), 1.0, rel_tol=1e-5):
        raise ValueError("weights must be K non-negative numbers that sum to 1.")
    if (stds <= 0).any():
        raise ValueError("stds must be > 0.")
    return means, stds, weights


def _gmm_responsibilities(x, sigma, means, stds, weights):
    """log w_k + log N(x; m_k, (s_k^2 + sigma^2) I) for each component: shape [B, K]."""
    d = x.shape[1]
    var = stds[None, :] ** 2 + sigma[:, None] ** 2  # [B, K]
    sq = torch.cdist(x, means) ** 2  # [B, K]
    return weights.log()[None, :] - 0.5 * sq / var - 0.5 * d * torch.log(2 * math.pi * var), var


def gmm_log_prob(x: torch.Tensor, means, stds, weights=None, sigma=0.0) -> torch.Tensor:
    """Log density of an isotropic Gaussian mixture convolved with N(0, sigma^2 I), at points x [B, d]."""
    check_tensor("x", x, min_dim=2)
    means, stds, weights = _gmm_args(means, stds, weights, x)
    sigma = check_batch_sigma(x, sigma)
    logits, _ = _gmm_responsibilities(x, sigma, means, stds, weights)
    return torch.logsumexp(logits, dim=1)


def gmm_denoiser(means, stds, weights=None):
    """The exact denoiser E[x_0 | x] of an isotropic Gaussian mixture sum_k w_k N(m_k, s_k^2 I), data of shape [B, d].

    Implements Eq. (gmm-denoiser): D = sum_k r_k(x) (m_k + s_k^2/(s_k^2 + sigma^2) (x - m_k)), r_k the posterior
    responsibility of component k under the noised mixture.
    """

    def denoiser(x, sigma, **cond):
        check_tensor("x", x, min_dim=2)
        m, s, w = _gmm_args(means, stds, weights, x)
        sig = check_batch_sigma(x, sigma)
        logits, var = _gmm_responsibilities(x, sig, m, s, w)
        r = torch.softmax(logits, dim=1)  # [B, K]
        shrink = (s[None, :] ** 2 / var)  # [B, K]
        comp = m[None] + shrink[..., None] * (x[:, None, :] - m[None])  # [B, K, d]
        return (r[..., None] * comp).sum(1)

    return denoiser


def clip_denoiser(denoiser, lo: float = -1.0, hi: float = 1.0):
    """The denoiser with its estimate clamped to the data range: D_clip(x; sigma) = clamp(D(x; sigma), lo, hi).

    Every clean image lies in [lo, hi] (pixels in [-1, 1]), so E[x_0 | x] does too and clamping can only move a
    wrong estimate towards the truth. It matters for eps-prediction models at large sigma, where
    x0_hat = x - sigma eps_hat (Eq. (eps-to-denoiser)) multiplies any error in eps_hat by sigma; diffusers' DDPM
    and DDIM schedulers do the same with ``clip_sample=True``. Wraps any denoiser; keeps its attributes
    (``net``, ``alpha_bar``).
    """
    if not callable(denoiser):
        raise TypeError(f"denoiser must be callable as denoiser(x, sigma, **cond), got {type(denoiser).__name__}.")
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"clip range must be finite with lo < hi, got lo={lo!r}, hi={hi!r}; the default is "
                         "the pixel range (-1, 1).")

    def clipped(x, sigma, **cond):
        return denoiser(x, sigma, **cond).clamp(lo, hi)

    clipped.__dict__.update(getattr(denoiser, "__dict__", {}))
    clipped.clip_range = (lo, hi)
    return clipped


def vp_score(denoiser, sde):
    """The continuous-time VP score s(x_t, t) = grad log p_t(x_t) of a denoiser, for a VP (or sub-VP) SDE.

    Implements Eq. (sde-to-sigma): x_t = m(t) x_0 + s(t) z is x_t / m(t) = x_0 + sigma(t) z with sigma = s/m, so
    grad_{x_t} log p_t(x_t) = score_VE(x_t / m, sigma) / m. With ``VPSDE(0.1, 20)``, whose discretisation is DDPM's
    linear schedule (:meth:`diffbook.sde.VPSDE.discrete_betas`), this turns the discrete fmnist-ddpm into the
    continuous VP-SDE model of Song et al. 2021: the book's ``fmnist-vp-sde``.
    """

    def score(x_t, t, **cond):
        t = torch.as_tensor(t, dtype=torch.float64, device=x_t.device)
        if t.dim() == 0:
            t = t.expand(x_t.shape[0])
        m, s = sde.marginal(t)
        m, sigma = m.to(x_t.dtype), (s / m).to(x_t.dtype)
        x = x_t / per_sample(m, x_t)
        return score_from_denoiser(x, sigma, denoiser(x, sigma, **cond)) / per_sample(m, x_t)

    return score
