"""diffbook.explore: sampling a class-conditional model with a named sampler, steps and guidance weight."""

import math

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from diffbook import explore, samplers
from diffbook.evaluate import SAMPLERS
from diffbook.guidance import cfg
from diffbook.schedules import alpha_bar_to_sigma, betas_to_alpha_bar, ddpm_sigmas, karras_sigmas, linear_betas

S = 0.15                     # std of every class's data (the clamp to [-1, 1] is > 4 S away)
MEANS = [-0.3, 0.1, 0.3]     # class c: every pixel ~ N(MEANS[c], S^2); null class 3: N(0, S^2)
NULL = 3


def gaussian_class_denoiser(calls=None):
    """Exact D(x; sigma, c) for data N(m_c, S^2 I): m_c + S^2 / (S^2 + sigma^2) (x - m_c)."""
    means = torch.tensor(MEANS + [0.0])

    def denoiser(x, sigma, class_labels):
        if calls is not None:
            calls.append(class_labels.clone())
        m = means[class_labels].reshape(-1, *[1] * (x.dim() - 1)).to(x)
        shrink = (S**2 / (S**2 + sigma**2)).reshape(-1, *[1] * (x.dim() - 1))
        return m + shrink * (x - m)

    return denoiser


def fake_model(calls=None, null_class=NULL):
    card = {"name": "fake", "T": 1000, "beta_start": 1e-4, "beta_end": 0.02, "parameterisation": "eps",
            "null_class": null_class}
    sigma = alpha_bar_to_sigma(betas_to_alpha_bar(linear_betas(1000)))
    return explore.Model(gaussian_class_denoiser(calls), card, float(sigma[0]), float(sigma[-1]),
                         math.sqrt(1 + float(sigma[-1]) ** 2))


def test_each_sampler_runs_with_the_release_noise_levels_and_guidance():
    model = fake_model()
    labels = torch.tensor([0, 1, 2, 0])
    noise = torch.randn(4, 1, 3, 3, generator=torch.Generator().manual_seed(0))
    ab = betas_to_alpha_bar(linear_betas(1000))
    for name, spec in explore.SAMPLER_SPECS.items():
        levels = (ddpm_sigmas(ab, 6, "trailing") if name == "DDIM"
                  else karras_sigmas(model.sigma_min, model.sigma_max, 6))
        assert torch.allclose(explore.sigmas(model, name, 6), levels)
        guided = cfg(model.denoiser, 1.5, {"class_labels": torch.full((4,), NULL)})
        direct = SAMPLERS[spec["sampler"]](guided, noise * model.prior_std, levels.float(),
                                           cond={"class_labels": labels}).clamp(-1, 1)
        ours = explore.sample(model, labels, noise, w=1.5, sampler=name, steps=6)
        assert torch.allclose(ours, direct, atol=1e-6), name


def test_splitting_into_batches_changes_nothing_but_the_network_batch():
    calls = []
    model = fake_model(calls)
    labels = torch.tensor([0, 1, 2, 0, 1])
    noise = torch.randn(5, 1, 2, 2, generator=torch.Generator().manual_seed(2))
    whole = explore.sample(model, labels, noise, w=1.0, sampler="Heun", steps=3)
    calls.clear()
    split = explore.sample(model, labels, noise, w=1.0, sampler="Heun", steps=3, batch=2)
    assert torch.allclose(whole, split, atol=1e-6)
    assert [len(c) for c in calls] == [4] * 5 + [4] * 5 + [2] * 5   # 2, 2, 1 images, conditional + null
    with pytest.raises(ValueError, match="batch must be"):
        explore.sample(model, labels, noise, batch=0)


def test_unguided_sampling_calls_the_network_once_per_evaluation_and_never_with_the_null_class():
    calls = []
    model = fake_model(calls)
    labels = torch.tensor([2, 1])
    explore.sample(model, labels, torch.randn(2, 1, 2, 2), sampler="Heun", steps=5)
    assert len(calls) == explore.nfe("Heun", 5) == 9
    assert all(torch.equal(c, labels) for c in calls)
    calls.clear()
    explore.sample(model, labels, torch.randn(2, 1, 2, 2), w=2.0, sampler="DDIM", steps=4)
    assert len(calls) == 4 and all(c.tolist() == [2, 1, NULL, NULL] for c in calls)  # one batch of 2B


def test_guided_samples_of_gaussian_classes_have_the_closed_form_mean():
    """For class data N(m_c, S^2) and null data N(0, S^2), Eq. (cfg) gives exactly the denoiser of
    N((1 + w) m_c, S^2): D_w = D_null + (1 + w)(D_c - D_null) = m' + S^2/(S^2 + sigma^2)(x - m') with
    m' = (1 + w) m_c. The deterministic sampler maps the noise affinely, so each class comes out as
    (1 + w) m_c + S n (to discretisation error), n its noise."""
    model = fake_model()
    n = 4000
    labels = torch.tensor([0, 2]).repeat_interleave(n // 2)
    noise = torch.randn(n, 1, 1, 1, generator=torch.Generator().manual_seed(1))
    for w in (0.0, 1.0):
        x0 = explore.sample(model, labels, noise, w=w, sampler="DPM++(2M)", steps=60)[:, 0, 0, 0]
        for c in (0, 2):
            xs, ns = x0[labels == c], noise[labels == c, 0, 0, 0]
            assert abs(xs.mean().item() - (1 + w) * MEANS[c]) < 4 * S / math.sqrt(n / 2)
            assert abs(xs.std().item() / (S * ns.std().item()) - 1) < 0.02


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(sampler="DPM++"), ValueError, "DPM++(2M)"),
    (dict(steps=0), ValueError, "steps"),
    (dict(w=float("nan")), ValueError, "finite"),
    (dict(w="strong"), TypeError, "real number"),
    (dict(labels=torch.tensor([0, 1, 2])), ValueError, "shape [2]"),
    (dict(labels=torch.tensor([0.0, 1.0])), ValueError, "integer"),
    (dict(labels=torch.tensor([0, NULL])), ValueError, "null class"),
    (dict(noise=[[0.0]]), TypeError, "torch.Tensor"),
])
def test_bad_input_gets_one_clear_error(kwargs, error, words):
    args = dict(labels=torch.tensor([0, 1]), noise=torch.randn(2, 1, 2, 2))
    args.update(kwargs)
    labels, noise = args.pop("labels"), args.pop("noise")
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")
                       .replace("[", r"\[").replace("]", r"\]")):
        explore.sample(fake_model(), labels, noise, **args)


def test_a_model_without_null_class_is_refused():
    model = fake_model(null_class=None)
    with pytest.raises(ValueError, match="not class-conditional"):
        explore.sample(model, torch.tensor([0]), torch.randn(1, 1, 2, 2))
    with pytest.raises(ValueError, match="not class-conditional"):
        explore.Explorer(model)


def test_explorer_caches_settings_and_its_widget_resamples_when_a_control_moves():
    ipywidgets = pytest.importorskip("ipywidgets")
    calls = []
    ex = explore.Explorer(fake_model(calls), n=3, class_names=["a", "b", "c"], shape=(1, 2, 2))
    first = ex.images(1, 0.0, "Euler", 3)
    assert first.shape == (3, 1, 2, 2) and len(calls) == 3
    assert torch.equal(ex.images(1, 0.0, "Euler", 3), first) and len(calls) == 3   # cached
    assert not torch.equal(ex.images(2, 0.0, "Euler", 3), first)                   # another class
    with pytest.raises(ValueError, match="class names"):
        explore.Explorer(fake_model(), class_names=["a"])
    with pytest.raises(ValueError, match="images per setting"):
        explore.Explorer(fake_model(), n=0)

    widget = ex.widget(label=0, w=0.0, sampler="DDIM", steps=2, max_steps=5)
    assert isinstance(widget, ipywidgets.interactive)
    controls = {c.description: c for c in widget.kwargs_widgets}
    assert set(controls) == {"class", "guidance w", "sampler", "steps"}
    assert list(controls["sampler"].options) == list(explore.SAMPLER_SPECS)
    assert [label for label, _ in controls["class"].options] == ["a", "b", "c"]
    assert (0, 0.0, "DDIM", 2) in ex.cache                  # drawn once when built
    controls["guidance w"].value = 1.5
    assert (0, 1.5, "DDIM", 2) in ex.cache                  # and again for the new weight


def test_the_shipped_model_loads_as_a_named_tuple_and_samples_deterministically():
    model = explore.load("fmnist-ddpm")
    assert model.card["name"] == "fmnist-ddpm" and model.card["null_class"] == 10
    assert model.prior_std == pytest.approx(math.sqrt(1 + model.sigma_max**2))
    noise = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    a = explore.sample(model, torch.tensor([7]), noise, sampler="DDIM", steps=2)
    b = samplers.sample_ddim(model.denoiser, noise * model.prior_std, explore.sigmas(model, "DDIM", 2).float(),
                             cond={"class_labels": torch.tensor([7])}).clamp(-1, 1)
    assert a.shape == (1, 1, 32, 32) and torch.equal(a, b)
