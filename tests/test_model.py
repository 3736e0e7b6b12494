"""diffbook.load and DiffusionModel.sample: a named sampler, steps, labels and guidance weight, checked against the
samplers called by hand, closed forms of guided Gaussian classes, and the shipped model; the explorer on top."""

import math

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

import diffbook
from diffbook import samplers
from diffbook.guidance import cfg
from diffbook.samplers import SAMPLERS
from diffbook.schedules import alpha_bar_to_sigma, betas_to_alpha_bar, ddpm_sigmas, karras_sigmas, linear_betas
from diffbook.show import explore
from diffbook.zoo import DiffusionModel, GeneratorModel

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


def fake_model(calls=None, null_class=NULL, shape=(1, 2, 2)):
    card = {"name": "fake", "T": 1000, "beta_start": 1e-4, "beta_end": 0.02, "parameterisation": "eps",
            "null_class": null_class}
    sigma = alpha_bar_to_sigma(betas_to_alpha_bar(linear_betas(1000)))
    return DiffusionModel.from_denoiser(gaussian_class_denoiser(calls), card, sigma_min=float(sigma[0]),
                                        sigma_max=float(sigma[-1]), prior_std=math.sqrt(1 + float(sigma[-1]) ** 2),
                                        image_shape=shape)


def test_each_sampler_runs_with_the_release_noise_levels_and_guidance():
    model = fake_model(shape=(1, 3, 3))
    labels = torch.tensor([0, 1, 2, 0])
    noise = torch.randn(4, 1, 3, 3, generator=torch.Generator().manual_seed(0))
    ab = betas_to_alpha_bar(linear_betas(1000))
    for name, spec in explore.SAMPLER_SPECS.items():
        levels = (ddpm_sigmas(ab, 6, "trailing") if name == "DDIM"
                  else karras_sigmas(model.sigma_min, model.sigma_max, 6))
        assert torch.allclose(model.sigmas(**explore.spec(name, 6)), levels)
        guided = cfg(model.denoiser, 1.5, {"class_labels": torch.full((4,), NULL)})
        direct = SAMPLERS[spec["sampler"]](guided, noise * model.prior_std, levels.float(),
                                           cond={"class_labels": labels}).clamp(-1, 1)
        ours = model.sample(noise=noise, labels=labels, guidance=1.5, **explore.spec(name, 6))
        assert torch.allclose(ours, direct, atol=1e-6), name


def test_splitting_into_batches_changes_nothing_but_the_network_batch():
    calls = []
    model = fake_model(calls)
    labels = torch.tensor([0, 1, 2, 0, 1])
    noise = torch.randn(5, 1, 2, 2, generator=torch.Generator().manual_seed(2))
    whole = model.sample(noise=noise, labels=labels, guidance=1.0, sampler="heun", steps=3)
    calls.clear()
    split = model.sample(noise=noise, labels=labels, guidance=1.0, sampler="heun", steps=3, batch=2)
    assert torch.allclose(whole, split, atol=1e-6)
    assert [len(c) for c in calls] == [4] * 5 + [4] * 5 + [2] * 5   # 2, 2, 1 images, conditional + null
    with pytest.raises(ValueError, match="batch must be"):
        model.sample(noise=noise, labels=labels, batch=0)


def test_unguided_sampling_calls_the_network_once_per_evaluation_and_never_with_the_null_class():
    calls = []
    model = fake_model(calls)
    labels = torch.tensor([2, 1])
    model.sample(noise=torch.randn(2, 1, 2, 2), labels=labels, sampler="heun", steps=5)
    assert len(calls) == model.nfe(sampler="heun", steps=5) == 9
    assert all(torch.equal(c, labels) for c in calls)
    calls.clear()
    model.sample(noise=torch.randn(2, 1, 2, 2), labels=labels, guidance=2.0, **explore.spec("DDIM", 4))
    assert len(calls) == 4 and all(c.tolist() == [2, 1, NULL, NULL] for c in calls)  # one batch of 2B


def test_guided_samples_of_gaussian_classes_have_the_closed_form_mean():
    """For class data N(m_c, S^2) and null data N(0, S^2), Eq. (cfg) gives exactly the denoiser of
    N((1 + w) m_c, S^2): D_w = D_null + (1 + w)(D_c - D_null) = m' + S^2/(S^2 + sigma^2)(x - m') with
    m' = (1 + w) m_c. The deterministic sampler maps the noise affinely, so each class comes out as
    (1 + w) m_c + S n (to discretisation error), n its noise."""
    model = fake_model(shape=(1, 1, 1))
    n = 4000
    labels = torch.tensor([0, 2]).repeat_interleave(n // 2)
    noise = torch.randn(n, 1, 1, 1, generator=torch.Generator().manual_seed(1))
    for w in (0.0, 1.0):
        x0 = model.sample(noise=noise, labels=labels, guidance=w, sampler="dpmpp_2m", steps=60)[:, 0, 0, 0]
        for c in (0, 2):
            xs, ns = x0[labels == c], noise[labels == c, 0, 0, 0]
            assert abs(xs.mean().item() - (1 + w) * MEANS[c]) < 4 * S / math.sqrt(n / 2)
            assert abs(xs.std().item() / (S * ns.std().item()) - 1) < 0.02


def test_labels_default_to_balanced_classes_and_take_an_int_or_a_list():
    calls = []
    model = fake_model(calls)
    model.sample(5, sampler="euler", steps=1)
    assert calls[0].tolist() == [0, 1, 2, 0, 1]
    calls.clear()
    model.sample(3, sampler="euler", steps=1, labels=2)
    assert calls[0].tolist() == [2, 2, 2]
    calls.clear()
    model.sample(2, sampler="euler", steps=1, labels=[1, NULL])   # the null class: an unconditional image
    assert calls[0].tolist() == [1, NULL]


def test_seeded_sampling_is_deterministic_and_seeds_differ():
    model = fake_model()
    a, b = model.sample(4, seed=3, sampler="euler_maruyama", steps=4), model.sample(4, seed=3, sampler="euler_maruyama",
                                                                                  steps=4)
    c = model.sample(4, seed=4, sampler="euler_maruyama", steps=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    g = torch.Generator().manual_seed(3)
    assert torch.equal(model.sample(4, generator=g, sampler="euler_maruyama", steps=4), a)


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(sampler="DPM++"), ValueError, "unknown sampler"),
    (dict(steps=0), ValueError, "steps"),
    (dict(guidance=float("nan")), ValueError, "finite"),
    (dict(guidance="strong"), ValueError, "finite number"),
    (dict(labels=torch.tensor([0, 1, 2])), ValueError, "shape [2]"),
    (dict(labels=torch.tensor([0.0, 1.0])), TypeError, "integer"),
    (dict(labels=torch.tensor([0, NULL + 1])), ValueError, "0..3"),
    (dict(labels=[0, "a"]), TypeError, "integers"),
    (dict(noise=[[0.0]]), TypeError, "torch.Tensor"),
    (dict(noise=torch.randn(2, 2, 2)), ValueError, r"unsqueeze\(1\)"),
    (dict(noise=torch.randn(2, 1, 3, 3)), ValueError, r"\[B, 1, 2, 2\]"),
    (dict(n=3), ValueError, "noise holds 2"),
    (dict(schedule="cosine"), ValueError, "unknown schedule"),
    (dict(sampler="heun", eta=0.5), ValueError, "takes no option"),
    (dict(seed=1, generator=torch.Generator()), ValueError, "not both"),
])
def test_bad_input_gets_one_clear_error(kwargs, error, words):
    args = dict(labels=torch.tensor([0, 1]), noise=torch.randn(2, 1, 2, 2))
    args.update(kwargs)
    with pytest.raises(error, match=words.replace("[2]", r"\[2\]")):
        fake_model().sample(**args)


def test_a_model_without_null_class_is_refused_labels_and_guidance():
    model = fake_model(null_class=None)
    with pytest.raises(ValueError, match="not class-conditional"):
        model.sample(1, labels=torch.tensor([0]))
    with pytest.raises(ValueError, match="not class-conditional"):
        model.sample(1, guidance=1.0)
    with pytest.raises(ValueError, match="not class-conditional"):
        explore.Explorer(model)


def test_explorer_caches_settings_and_its_widget_resamples_when_a_control_moves():
    ipywidgets = pytest.importorskip("ipywidgets")
    calls = []
    ex = explore.Explorer(fake_model(calls), n=3, class_names=["a", "b", "c"])
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


def test_the_shipped_model_loads_in_one_line_and_samples_deterministically():
    model = diffbook.load("fmnist-ddpm")
    assert model.card["name"] == "fmnist-ddpm" and model.num_classes == 10 and model.image_shape == (1, 32, 32)
    assert model.prior_std == pytest.approx(math.sqrt(1 + model.sigma_max**2))
    best = model.card["evaluation"]["best_sampler_at_most_50_nfe"]
    assert model.default_spec() == {k: best[k] for k in ("sampler", "schedule", "steps", "w")}
    noise = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    a = model.sample(noise=noise, labels=7, **explore.spec("DDIM", 2))
    b = samplers.sample_ddim(model.denoiser, noise * model.prior_std, model.sigmas(**explore.spec("DDIM", 2)).float(),
                             cond={"class_labels": torch.tensor([7])}).clamp(-1, 1)
    assert a.shape == (1, 1, 32, 32) and torch.equal(a, b)


def test_every_shipped_generative_model_samples_with_its_defaults():
    for name in ("fmnist-ncsn", "fmnist-gan"):
        model = diffbook.load(name)
        x = model.sample(2, **({} if isinstance(model, GeneratorModel) else {"steps": 2}))
        assert x.shape == (2, 1, 32, 32) and x.abs().max() <= 1
    with pytest.raises(ValueError, match="GAN generator"):
        diffbook.load("fmnist-gan").sample(2, steps=4)
    clf = diffbook.load("fmnist-clf")
    assert clf.predict(torch.zeros(3, 1, 32, 32)).shape == (3,)
