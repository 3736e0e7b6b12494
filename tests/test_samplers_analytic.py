"""Every sampler, fed an exact (analytic) denoiser, must return samples from the data distribution.

Data N(0, s^2 I) has the exact denoiser D*(x, sigma) = s^2/(s^2+sigma^2) x; an isotropic Gaussian mixture has a
closed-form posterior mean too (diffbook.denoisers.gmm_denoiser). Starting from the exact x_T ~ p_{sigma_max}, a
correct sampler's output has the data's moments up to

* Monte-Carlo error: the standard error (SE) of a variance estimate from n samples pooled over 2 coordinates is
  s^2 / sqrt(n) (0.71 % for n = 20000); we allow 4 SE;
* discretisation error, which we keep small by the step counts below and bound by an allowance ``disc``. The
  values were measured on the Gaussian (the deterministic samplers are linear maps there, so their bias is exact):
  on the geometric ladder sigma = 40 ... 0.005 (+ 0) the relative variance bias is about 5 / n_steps for the
  first-order samplers (-0.9 % for Euler/DDIM at 500 steps, -1.8 % for DDPM, +1.8 % for Euler-Maruyama) and
  0.1-0.2 % for Heun / DPM-Solver++(2M) at 100 steps. Annealed Langevin's bias is a property of the algorithm
  (finite step size and few steps per level); for Gaussian data it has a closed form (the variance recursion
  v <- (1 - alpha / (2 V))^2 v + alpha), which we compare against.
"""

from __future__ import annotations

import math

import pytest
import torch

from diffbook import samplers as S
from diffbook.denoisers import gaussian_denoiser, gmm_denoiser
from diffbook.guidance import cfg, classifier_guidance
from diffbook.schedules import append_zero, ve_geometric_sigmas

SIGMA_MIN, SIGMA_MAX = 0.005, 40.0



def ladder(n_steps: int) -> torch.Tensor:
    """Geometric sigmas from SIGMA_MAX to SIGMA_MIN, then 0: n_steps steps."""
    return append_zero(ve_geometric_sigmas(SIGMA_MIN, SIGMA_MAX, n_steps))


# name -> (sampler, extra kwargs, steps for the Gaussian test, steps for the mixture test, allowance `disc`)
SAMPLERS = {
    "ddpm_ancestral": (S.sample_ddpm_ancestral, {}, 500, 250, 0.025),
    "ddim_eta0": (S.sample_ddim, {}, 500, 250, 0.012),
    "ddim_eta0.5": (S.sample_ddim, {"eta": 0.5}, 500, 250, 0.015),
    "euler": (S.sample_euler, {}, 500, 250, 0.012),
    "heun": (S.sample_heun, {}, 100, 50, 0.003),
    "dpmpp_2m": (S.sample_dpmpp_2m, {}, 100, 50, 0.002),
    "euler_maruyama": (S.sample_euler_maruyama, {}, 500, 250, 0.025),
    # snr = 0.05: the Langevin corrector's own stationary bias is about snr^2 = 0.25 % (0.16 would give 2.6 %).
    "pc": (S.sample_pc, {"snr": 0.05}, 250, 150, 0.02),
}
STOCHASTIC = {"ddpm_ancestral", "ddim_eta0.5", "euler_maruyama", "pc", "annealed_langevin"}

# Annealed Langevin: 25 levels from 40 to 0.02, 40 steps each, step_lr = sigma_L^2 (alpha_L = sigma_L^2).
ALD_SIGMAS = append_zero(ve_geometric_sigmas(0.02, SIGMA_MAX, 25))  # the trailing 0 must be ignored
ALD_KW = {"n_steps_each": 40, "step_lr": 0.02**2}


def ald_expected_variance(s: float, sigmas: torch.Tensor, n_steps_each: int, step_lr: float, v0: float,
                          final_denoise: bool = True) -> float:
    """Closed-form variance after annealed Langevin on N(0, s^2): iterate v <- (1 - a/(2V))^2 v + a."""
    levels = [float(x) for x in sigmas if x > 0]
    v = v0
    for sig in levels:
        a, V = step_lr * sig**2 / levels[-1] ** 2, s**2 + sig**2
        for _ in range(n_steps_each):
            v = (1 - a / (2 * V)) ** 2 * v + a
    if final_denoise:
        v *= (s**2 / (s**2 + levels[-1] ** 2)) ** 2
    return v


# --------------------------------------------------------------------------------------- Gaussian data N(0, s^2 I)
@pytest.mark.parametrize("s", [0.5, 2.0])
@pytest.mark.parametrize("name", list(SAMPLERS))
def test_gaussian_variance(name, s):
    fn, kw, n_steps, _, disc = SAMPLERS[name]
    n, sigmas = 20000, ladder(n_steps)
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(n, 2, generator=g) * math.sqrt(s**2 + SIGMA_MAX**2)
    out = fn(gaussian_denoiser(s), x, sigmas, generator=g, **kw)
    assert out.shape == x.shape and out.dtype == x.dtype
    rel = out.var(0).mean().item() / s**2 - 1
    assert abs(rel) < 4 / math.sqrt(n) + disc, f"{name}: variance off by {rel:+.4f} (relative)"
    assert out.mean(0).abs().max().item() < 5 * s / math.sqrt(n)
    corr = torch.corrcoef(out.T)[0, 1].item()  # the two coordinates stay independent
    assert abs(corr) < 4 / math.sqrt(n)


@pytest.mark.parametrize("s", [0.5, 2.0])
def test_gaussian_variance_annealed_langevin(s):
    n = 20000
    g = torch.Generator().manual_seed(99)
    v0 = s**2 + SIGMA_MAX**2
    x = torch.randn(n, 2, generator=g) * math.sqrt(v0)
    # without the final denoising step the samples keep the noise sigma_L: variance about s^2 + sigma_L^2
    raw = S.sample_annealed_langevin(gaussian_denoiser(s), x, ALD_SIGMAS, generator=g, final_denoise=False, **ALD_KW)
    expected_raw = ald_expected_variance(s, ALD_SIGMAS, v0=v0, final_denoise=False, **ALD_KW)
    assert abs(raw.var(0).mean().item() / expected_raw - 1) < 4 / math.sqrt(n)
    # the final denoising step is D(x; sigma_L) (checked exactly in test_annealed_langevin_final_denoise)
    out = gaussian_denoiser(s)(raw, float(ALD_SIGMAS[-2]))
    expected = ald_expected_variance(s, ALD_SIGMAS, v0=v0, **ALD_KW)
    assert abs(expected / s**2 - 1) < 0.03  # the algorithm's own bias with these settings (about 2 %)
    rel = out.var(0).mean().item() / expected - 1
    assert abs(rel) < 4 / math.sqrt(n), f"annealed Langevin variance off the closed form by {rel:+.4f}"


def test_annealed_langevin_final_denoise():
    D = gmm_denoiser(MEANS, STD, WEIGHTS)
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(0)) * SIGMA_MAX
    kw = {"n_steps_each": 3, "step_lr": 1e-4}
    raw = S.sample_annealed_langevin(D, x, ALD_SIGMAS, generator=torch.Generator().manual_seed(1),
                                     final_denoise=False, **kw)
    out = S.sample_annealed_langevin(D, x, ALD_SIGMAS, generator=torch.Generator().manual_seed(1), **kw)
    assert torch.equal(out, D(raw, float(ALD_SIGMAS[-2])))
    # a ladder without the trailing 0 is the same ladder
    again = S.sample_annealed_langevin(D, x, ALD_SIGMAS[:-1], generator=torch.Generator().manual_seed(1), **kw)
    assert torch.equal(out, again)


def test_pc_corrector_stationary_variance():
    """The Langevin corrector alone, at one level sigma on Gaussian data (p_sigma = N(0, V I), V = s^2 + sigma^2).

    With step e = 2 (snr E||z|| / E||score||)^2 (batch means) and score = -x / V, one step is
    x <- (1 - e/V) x + sqrt(2 e) z; in 2D (any d) E||z|| / E||score|| = V / sqrt(Var x), and the fixed point of the
    variance is Var x = V (1 + snr^2): the corrector's known over-dispersion. sigmas = [sigma, 0]: after the
    corrector the predictor returns x0_hat = s^2 / V x.
    """
    s, sigma, snr, n = 1.0, 1.0, 0.3, 20000
    V = s**2 + sigma**2
    g = torch.Generator().manual_seed(5)
    x = torch.randn(n, 2, generator=g) * math.sqrt(V)
    out = S.sample_pc(gaussian_denoiser(s), x, torch.tensor([sigma, 0.0]), snr=snr, n_corrector=60, generator=g)
    expected = (s**2 / V) ** 2 * V * (1 + snr**2)
    rel = out.var(0).mean().item() / expected - 1
    assert abs(rel) < 4 / math.sqrt(n), f"corrector variance off the closed form by {rel:+.4f}"


def test_deterministic_samplers_are_linear_and_accurate_on_gaussian():
    """For Gaussian data a deterministic sampler is x -> c x; its exact bias c^2 V0 / s^2 - 1 bounds `disc`."""
    s = 0.5
    v0 = s**2 + SIGMA_MAX**2
    for name in ("ddim_eta0", "euler", "heun", "dpmpp_2m"):
        fn, kw, n_steps, _, disc = SAMPLERS[name]
        x = torch.tensor([[1.0, -3.0]], dtype=torch.float64)
        out = fn(gaussian_denoiser(s), x, ladder(n_steps), **kw)
        c = out[0, 0].item()
        assert out[0, 1].item() == pytest.approx(-3 * c, rel=1e-12)
        assert abs(c * c * v0 / s**2 - 1) < disc
    # second order really is second order: halving the step divides the error by about 4
    errs = []
    for n_steps in (50, 100):
        c = S.sample_heun(gaussian_denoiser(s), torch.ones(1, 1, dtype=torch.float64), ladder(n_steps)).item()
        errs.append(abs(c * c * v0 / s**2 - 1))
    assert 3.0 < errs[0] / errs[1] < 5.0


# --------------------------------------------------------------------------------------- Gaussian mixture in 2D
MEANS = torch.tensor([[-2.0, -1.0], [2.0, -1.0], [0.0, 1.0]])
STD = 0.4
WEIGHTS = torch.tensor([0.25, 0.25, 0.5])  # unequal weights: a sampler that ignores them puts 1/3 in each mode


def mixture_moments():
    mu = (WEIGHTS[:, None] * MEANS).sum(0)
    second = (WEIGHTS[:, None, None] * MEANS[:, :, None] * MEANS[:, None, :]).sum(0)
    return mu, second - mu[:, None] * mu[None] + STD**2 * torch.eye(2)


def check_mixture_samples(out: torch.Tensor, disc: float, label: str):
    n = out.shape[0]
    mu, cov = mixture_moments()
    k = torch.cdist(out, MEANS).argmin(1)
    frac = torch.bincount(k, minlength=3).double() / n
    se = (WEIGHTS * (1 - WEIGHTS) / n).sqrt()
    assert ((frac - WEIGHTS).abs() < 4 * se + 0.005).all(), f"{label}: mode weights {frac.tolist()}"
    for j in range(3):  # each mode has the component's mean and spread
        pts = out[k == j]
        assert (pts.mean(0) - MEANS[j]).abs().max() < 4 * STD / math.sqrt(len(pts)) + 0.02, label
        rel = pts.var(0).mean().item() / STD**2 - 1
        assert abs(rel) < 4 / math.sqrt(len(pts)) + 2 * disc + 0.01, f"{label}: mode {j} variance off by {rel:+.3f}"
    assert ((out.mean(0) - mu).abs() < 4 * (cov.diagonal() / n).sqrt() + 0.01).all(), label
    assert torch.allclose(torch.cov(out.T), cov, atol=0.06 + disc * cov.abs().max().item()), label


@pytest.mark.parametrize("name", list(SAMPLERS) + ["annealed_langevin"])
def test_gaussian_mixture(name):
    n = 4000
    D = gmm_denoiser(MEANS, STD, WEIGHTS)
    if name == "annealed_langevin":
        fn, kw, sigmas, disc = S.sample_annealed_langevin, ALD_KW, ALD_SIGMAS, 0.03
    else:
        fn, kw, _, n_steps, disc = SAMPLERS[name]
        sigmas = ladder(n_steps)
        disc = 2 * disc  # half the steps of the Gaussian test
    _, cov = mixture_moments()
    g = torch.Generator().manual_seed(7)
    x = torch.randn(n, 2, generator=g) * math.sqrt(float(sigmas[0]) ** 2 + cov.trace().item() / 2)
    out = fn(D, x, sigmas, generator=g, **kw)
    check_mixture_samples(out, disc, name)


# --------------------------------------------------------------------------------------- exact identities
def test_ddim_eta0_is_euler_and_eta1_is_ddpm():
    D = gmm_denoiser(MEANS, STD, WEIGHTS)
    sigmas = ladder(30)
    x = torch.randn(256, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * SIGMA_MAX
    assert torch.allclose(S.sample_ddim(D, x, sigmas), S.sample_euler(D, x, sigmas), rtol=0, atol=1e-10)
    a = S.sample_ddim(D, x, sigmas, eta=1.0, generator=torch.Generator().manual_seed(5))
    b = S.sample_ddpm_ancestral(D, x, sigmas, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(a, b, rtol=0, atol=1e-10)


def test_ancestral_step_is_the_posterior():
    """One DDPM step from sigma=t to s: x0_hat + (s^2/t^2)(x - x0_hat) + (s/t) sqrt(t^2 - s^2) z, z from the generator."""
    t, s = 1.7, 0.6
    x0 = torch.tensor([[0.3, -1.2], [2.0, 0.5]], dtype=torch.float64)
    x = torch.tensor([[1.0, 0.0], [-1.0, 3.0]], dtype=torch.float64)
    oracle = lambda x_, sigma, **c: x0  # noqa: E731  (a denoiser that knows x0)
    out = S.sample_ddpm_ancestral(oracle, x, torch.tensor([t, s], dtype=torch.float64),
                                  generator=torch.Generator().manual_seed(3))
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    expected = x0 + (s**2 / t**2) * (x - x0) + s / t * math.sqrt(t**2 - s**2) * z
    assert torch.allclose(out, expected, rtol=0, atol=1e-12)
    # and the final step to sigma = 0 returns x0_hat for the samplers that end with a denoising step
    for fn in (S.sample_ddpm_ancestral, S.sample_ddim, S.sample_euler_maruyama, S.sample_dpmpp_2m,
               S.sample_euler, S.sample_heun, S.sample_pc):
        assert torch.allclose(fn(oracle, x, torch.tensor([t, 0.0], dtype=torch.float64)), x0, atol=1e-12)


def test_euler_maruyama_step():
    t, s = 2.0, 1.5
    x = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    D = gaussian_denoiser(1.0)
    out = S.sample_euler_maruyama(D, x, torch.tensor([t, s], dtype=torch.float64),
                                  generator=torch.Generator().manual_seed(11))
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    score = (D(x, t) - x) / t**2
    assert torch.allclose(out, x + (t**2 - s**2) * score + math.sqrt(t**2 - s**2) * z, atol=1e-12)


def test_dpmpp_2m_second_step_formula():
    """Step 2 uses D = (1 + 1/(2r)) x0_hat - 1/(2r) x0_hat_prev with r = h_prev / h, h = log(sigma/sigma_next)."""
    sig = [4.0, 2.0, 0.5, 0.0]
    D = gaussian_denoiser(0.8)
    x = torch.tensor([[1.5, -0.5]], dtype=torch.float64) * 4
    xs = []
    S.sample_dpmpp_2m(D, x, torch.tensor(sig, dtype=torch.float64), callback=lambda a: xs.append(a))
    x1, d0, d1 = xs[1]["x"], xs[0]["denoised"], xs[1]["denoised"]
    assert torch.allclose(xs[1]["x"], (sig[1] / sig[0]) * x + (1 - sig[1] / sig[0]) * d0, atol=1e-12)
    r = math.log(sig[0] / sig[1]) / math.log(sig[1] / sig[2])
    x2 = (sig[2] / sig[1]) * x1 + (1 - sig[2] / sig[1]) * ((1 + 1 / (2 * r)) * d1 - d0 / (2 * r))
    assert torch.allclose(xs[2]["x"], x2, atol=1e-12)


# --------------------------------------------------------------------------------------- determinism and callbacks
ALL = {name: (v[0], v[1]) for name, v in SAMPLERS.items()}
ALL["ddim_eta1"] = (S.sample_ddim, {"eta": 1.0})
ALL["annealed_langevin"] = (S.sample_annealed_langevin, {"n_steps_each": 3})


@pytest.mark.parametrize("name", list(ALL))
def test_seeded_determinism(name):
    fn, kw = ALL[name]
    D = gmm_denoiser(MEANS, STD, WEIGHTS)
    sigmas = ladder(12)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0)) * SIGMA_MAX

    def run(seed):
        return fn(D, x.clone(), sigmas, generator=torch.Generator().manual_seed(seed), **kw)

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a, b)
    if name in STOCHASTIC or name == "ddim_eta1":
        assert not torch.allclose(a, c)
    else:
        assert torch.equal(a, c)  # deterministic samplers ignore the generator
    # generator=None draws from the global RNG: reproducible under torch.manual_seed
    torch.manual_seed(42)
    d = fn(D, x.clone(), sigmas, **kw)
    torch.manual_seed(42)
    assert torch.equal(d, fn(D, x.clone(), sigmas, **kw))


@pytest.mark.parametrize("name", list(ALL))
def test_callback(name):
    fn, kw = ALL[name]
    D = gmm_denoiser(MEANS, STD, WEIGHTS)
    sigmas = ladder(7)
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0)) * SIGMA_MAX
    calls = []
    fn(D, x, sigmas, callback=calls.append, generator=torch.Generator().manual_seed(0), **kw)
    if name == "annealed_langevin":
        per_level = kw["n_steps_each"]
        assert len(calls) == (len(sigmas) - 1) * per_level  # trailing 0 ignored
        expected_sigmas = [float(s) for s in sigmas[:-1] for _ in range(per_level)]
    else:
        assert len(calls) == len(sigmas) - 1
        expected_sigmas = [float(s) for s in sigmas[:-1]]
    if name != "pc":  # the predictor-corrector reports x after its corrector step
        assert torch.equal(calls[0]["x"], x)
    for i, c in enumerate(calls):
        assert set(c) == {"i", "x", "sigma", "denoised"}
        assert c["i"] == i
        assert c["sigma"] == pytest.approx(expected_sigmas[i], rel=1e-12)
        assert c["x"].shape == x.shape
        assert torch.allclose(c["denoised"], D(c["x"], c["sigma"]))


def test_samplers_keep_dtype_and_cond():
    """float64 in, float64 out; `cond` reaches the denoiser as keyword arguments."""
    seen = []

    def D(x, sigma, *, label):
        seen.append(label)
        return gaussian_denoiser(1.0)(x, sigma)

    x = torch.randn(8, 3, 2, dtype=torch.float64)
    for fn, kw in ALL.values():
        out = fn(D, x * SIGMA_MAX, ladder(4), cond={"label": "a"}, **kw)
        assert out.dtype == torch.float64 and out.shape == x.shape
    assert set(seen) == {"a"}


# --------------------------------------------------------------------------------------- guidance
def conditional_gmm():
    """A class-conditional exact denoiser: class k in 0..2 is mixture component k, class 3 (null) the mixture."""
    full = gmm_denoiser(MEANS, STD, WEIGHTS)
    comps = [gmm_denoiser(MEANS[k:k + 1], STD, torch.ones(1)) for k in range(3)]
    calls = []

    def D(x, sigma, class_labels):
        calls.append(x.shape[0])
        class_labels = torch.as_tensor(class_labels).expand(x.shape[0])
        outs = torch.stack([c(x, sigma) for c in comps] + [full(x, sigma)])  # [4, B, 2]
        return outs[class_labels, torch.arange(x.shape[0])]

    return D, comps, full, calls


def test_cfg_weights_and_batching():
    D, comps, full, calls = conditional_gmm()
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    sigma = torch.full((32,), 0.7, dtype=torch.float64)
    y = torch.randint(0, 3, (32,), generator=torch.Generator().manual_seed(1))
    cond_out = D(x, sigma, class_labels=y)
    null_out = full(x, sigma)
    calls.clear()
    assert torch.allclose(cfg(D, 0.0, {"class_labels": 3})(x, sigma, class_labels=y), cond_out, atol=1e-12)
    assert calls == [64]  # one batched call on 2B samples
    assert torch.allclose(cfg(D, -1.0, {"class_labels": 3})(x, sigma, class_labels=y), null_out, atol=1e-12)
    w = 2.5
    guided = cfg(D, w, {"class_labels": torch.tensor(3)})(x, sigma, class_labels=y)
    assert torch.allclose(guided, null_out + (1 + w) * (cond_out - null_out), atol=1e-12)

    # a conditioning value that cannot be batched (a string) falls back to two calls, same result
    def D2(x, sigma, class_labels, mode):
        assert mode == "exact"
        return D(x, sigma, class_labels=class_labels)

    calls.clear()
    two = cfg(D2, w, {"class_labels": 3})(x, sigma, class_labels=y, mode="exact")
    assert torch.allclose(two, guided, atol=1e-12)
    calls.clear()
    cfg(D2, w, {"class_labels": 3, "mode": "exact"})(x, sigma, class_labels=y, mode="exact")
    assert calls == [64]  # identical non-tensor options are shared by both halves


def test_cfg_samples_sharpen_towards_the_class():
    """With w > 0 the guided sampler still lands in the requested mode, and tighter than the class itself."""
    D, *_ = conditional_gmm()
    n = 2000
    y = torch.full((n,), 2)
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(3)) * SIGMA_MAX
    plain = S.sample_heun(cfg(D, 0.0, {"class_labels": 3}), x, ladder(40), cond={"class_labels": y})
    strong = S.sample_heun(cfg(D, 3.0, {"class_labels": 3}), x, ladder(40), cond={"class_labels": y})
    assert (plain.mean(0) - MEANS[2]).abs().max() < 0.05
    assert abs(plain.var(0).mean().item() / STD**2 - 1) < 0.1
    assert (torch.cdist(strong, MEANS).argmin(1) == 2).float().mean() > 0.99
    assert strong.var(0).mean() < 0.9 * plain.var(0).mean()


def test_classifier_guidance_with_exact_classifier_is_the_conditional_denoiser():
    """Bayes: D + sigma^2 grad log p(y | x; sigma) = D(. | y) for the exact noisy classifier of the mixture."""
    _, comps, full, _ = conditional_gmm()
    means, w = MEANS.double(), WEIGHTS.double()

    def log_p_y(y):
        def fn(x, sigma):
            var = STD**2 + sigma[:, None] ** 2
            logits = w.log()[None] - 0.5 * ((x[:, None] - means[None]) ** 2).sum(-1) / var  # equal variances: d-terms cancel
            return torch.log_softmax(logits, dim=1)[:, y]
        return fn

    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    for sigma in (0.1, 1.0, 5.0):
        for y in range(3):
            guided = classifier_guidance(full, log_p_y(y), scale=1.0)(x, sigma)
            assert torch.allclose(guided, comps[y](x, sigma), atol=1e-9)
    assert torch.allclose(classifier_guidance(full, log_p_y(0), scale=0.0)(x, 1.0), full(x, 1.0))
    # inside a sampler (which runs under no_grad) the wrapper still gets its gradient: samples land in mode 2
    x_T = torch.randn(500, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * SIGMA_MAX
    out = S.sample_heun(classifier_guidance(full, log_p_y(2)), x_T, ladder(30).double())
    assert (torch.cdist(out, means).argmin(1) == 2).all()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "2", None, True])
def test_guidance_rejects_bad_weights(bad):
    D, *_ = conditional_gmm()
    with pytest.raises((TypeError, ValueError)):
        cfg(D, bad, {"class_labels": 3})
    with pytest.raises((TypeError, ValueError)):
        classifier_guidance(D, lambda x, s: x.sum(1), scale=bad)
    with pytest.raises(TypeError):
        cfg(D, 1.0, [3])
    with pytest.raises(TypeError):
        cfg("not a denoiser", 1.0, {})
