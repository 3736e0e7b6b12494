"""The guidance sweep: the interval-guidance wrapper against plain CFG, the summary's means and paired spreads, the
shipped results file's provenance and consistency, and the caveat the chapter states: guided sampling with exact
denoisers does not sample the tilted distribution p(x) p(c | x)^(1 + w)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffbook.denoisers import gmm_denoiser
from diffbook.eval.guidance_sweep import INTERVAL, METRICS, WEIGHTS, interval_cfg, summarise
from diffbook.guidance import cfg
from diffbook.samplers import sample_heun
from diffbook.schedules import karras_sigmas


def _pair():
    """A conditional and an unconditional exact denoiser of a 1D two-component mixture (class 1 = the right one)."""
    uncond = gmm_denoiser(torch.tensor([[-1.0], [1.0]]), torch.tensor([0.5, 0.5]))
    cond = gmm_denoiser(torch.tensor([[1.0]]), torch.tensor([0.5]))

    def denoiser(x, sigma, c=None):
        out = uncond(x, sigma)
        return torch.where((c == 1)[:, None], cond(x, sigma), out)

    return denoiser


def test_interval_guidance_is_cfg_inside_and_conditional_outside():
    D = _pair()
    x = torch.randn(4, 1)
    c, null = torch.ones(4, dtype=torch.long), {"c": torch.zeros(4, dtype=torch.long)}
    guided, plain = interval_cfg(D, 3.0, null, 0.5, 2.0), cfg(D, 3.0, null)
    inside, outside = torch.full((4,), 1.0), torch.full((4,), 3.0)
    assert torch.allclose(guided(x, inside, c=c), plain(x, inside, c=c))
    assert torch.allclose(guided(x, outside, c=c), D(x, outside, c=c))
    mixed = torch.tensor([1.0, 3.0, 0.5, 2.0])  # 0.5 is outside (open end), 2.0 inside
    want = torch.stack([plain(x, mixed, c=c)[0], D(x, mixed, c=c)[1], D(x, mixed, c=c)[2], plain(x, mixed, c=c)[3]])
    assert torch.allclose(guided(x, mixed, c=c), want)
    with pytest.raises(ValueError, match="sigma_lo < sigma_hi"):
        interval_cfg(D, 1.0, null, 2.0, 1.0)


def test_summary_means_spreads_and_paired_differences():
    rows = []
    for seed, shift in enumerate((0.0, 0.1, -0.1)):
        for w, fd in ((0.0, 10.0), (1.0, 8.0)):
            rows.append(dict(w=w, seed=seed, interval=None, n=130, **{m: fd + shift for m in METRICS}))
    s = {r["w"]: r for r in summarise(rows)}
    assert s[1.0]["fd"] == 8.0 and s[1.0]["n_seeds"] == 3
    assert math.isclose(s[1.0]["fd_sd"], 0.1, rel_tol=1e-6)
    assert s[1.0]["fd_diff"] == -2.0 and s[1.0]["fd_diff_sd"] == 0.0  # paired: the seed shifts cancel


def test_shipped_sweep_has_provenance_and_a_consistent_summary():
    from diffbook.zoo import results

    res = results.load("guidance-sweep")   # python -m diffbook sweep guidance
    for key in ("command", "commit", "device", "date", "wall_s", "settings", "rows", "summary"):
        assert key in res, key
    assert set(res["weights"]) == set(WEIGHTS)
    assert all(set(METRICS) <= set(r) for r in res["rows"])
    assert res["summary"] == summarise(res["rows"])
    assert tuple(INTERVAL) == (0.28, 5.42)


def test_guided_sampling_is_not_the_tilted_distribution():
    """With exact denoisers, CFG's samples at w = 3 differ from p(x) p(c | x)^4 (normalised), by far more than
    the Monte-Carlo error: the tilted densities at different noise levels are not one diffusion."""
    D = _pair()
    n, w = 4000, 3.0
    guided = cfg(D, w, {"c": torch.zeros(n, dtype=torch.long)})
    x = torch.randn(n, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * math.sqrt(1 + 20.0**2)
    sigmas = karras_sigmas(0.002, 20.0, 80).double()
    samples = sample_heun(guided, x, sigmas, cond={"c": torch.ones(n, dtype=torch.long)})[:, 0].numpy()
    grid = np.linspace(-4, 5, 20001)
    gauss = lambda m: np.exp(-((grid - m) ** 2) / (2 * 0.25))  # noqa: E731
    p_x = 0.5 * gauss(-1) + 0.5 * gauss(1)
    tilted = p_x * (0.5 * gauss(1) / p_x) ** (1 + w)
    tilted /= np.trapezoid(tilted, grid)
    mean_t = np.trapezoid(grid * tilted, grid)
    sd_t = math.sqrt(np.trapezoid((grid - mean_t) ** 2 * tilted, grid))
    se = samples.std() / math.sqrt(n)
    assert abs(samples.mean() - mean_t) > 10 * se or abs(samples.std() - sd_t) > 0.05, (samples.mean(), mean_t,
                                                                                         samples.std(), sd_t)


def test_sweeps_run_in_parallel_merge_into_one_file(tmp_path):
    import json

    from diffbook.eval.guidance_sweep import merge

    def part(name, w, settings):
        rows = [dict(w=w, seed=0, interval=None, n=130, **{m: w for m in METRICS})]
        path = tmp_path / name
        path.write_text(json.dumps(dict(settings=settings, rows=rows, weights=[w], seeds=[0], command=f"run {w}",
                                        commit="abc", date="d", wall_s=10.0 * (1 + w), device="cpu")))
        return path

    a, b = part("a.json", 0.0, {"n": 130}), part("b.json", 3.0, {"n": 130})
    res = merge(tmp_path / "out.json", [a, b, a])
    assert [r["w"] for r in res["rows"]] == [0.0, 3.0] and res["weights"] == [0.0, 3.0]
    assert res["wall_s"] == 40.0 and "run 0.0 && run 3.0" in res["command"] and len(res["parts"]) == 3
    assert res["summary"] == summarise(res["rows"])
    with pytest.raises(ValueError, match="different settings"):
        merge(tmp_path / "out.json", [a, part("c.json", 5.0, {"n": 200})])
