"""The public entry points people actually call with wrong inputs: a model's denoiser, ``model.sample``, sampler specs
and the ``sample`` command. Each wrong input gets one ValueError/TypeError that says what was given and what was
expected (never an error from inside PyTorch, never a silent wrong answer); hypothesis throws random malformed
tensors, labels, sigmas and specs at them."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffbook.cli import main
from diffbook.eval.specs import check_spec
from diffbook.nets.unet import make_unet
from diffbook.zoo import load
from diffbook.zoo.registry import save_model

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                            HealthCheck.function_scoped_fixture],
                    derandomize=True)
TINY = dict(block_out_channels=(8, 16, 16), layers_per_block=1, norm_num_groups=4, num_class_embeds=11)
CARD = dict(arch="unet2d", config=TINY, parameterisation="eps", schedule="linear", T=1000, beta_start=1e-4,
            beta_end=0.02, null_class=10)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny class-conditional eps-prediction U-Net registered in a zoo folder, loaded as users load models."""
    root = tmp_path_factory.mktemp("zoo")
    torch.manual_seed(0)
    save_model("tiny-ddpm", make_unet(**TINY).state_dict(), CARD, root=root)
    return load("tiny-ddpm", root=root)


def clean_error(fn, *args, **kwargs) -> str:
    """fn must raise ValueError or TypeError with a message (not RuntimeError, IndexError, ... from torch)."""
    with pytest.raises((ValueError, TypeError)) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert msg.strip() and "Traceback" not in msg
    return msg


# --------------------------------------------------------------------------------------- the denoiser
def test_the_three_mistakes_of_the_issue_name_the_fix(model):
    sigma = torch.full((2,), 5.0)
    labels = torch.tensor([1, 2])
    assert "unsqueeze(1)" in clean_error(model.denoiser, torch.randn(2, 32, 32), sigma, class_labels=labels)
    assert "pad" in clean_error(model.denoiser, torch.randn(2, 1, 28, 28), sigma, class_labels=labels)
    assert "shape [2]" in clean_error(model.denoiser, torch.randn(2, 1, 32, 32), sigma,
                                      class_labels=torch.tensor([1, 2, 3]))
    assert "0..10" in clean_error(model.denoiser, torch.randn(2, 1, 32, 32), sigma, class_labels=torch.tensor([1, 11]))
    assert "class_labels" in clean_error(model.denoiser, torch.randn(2, 1, 32, 32), sigma)
    assert model.denoiser(torch.randn(2, 1, 32, 32), sigma, class_labels=labels).shape == (2, 1, 32, 32)


@st.composite
def bad_images(draw):
    kind = draw(st.sampled_from(["no_channel", "28", "3ch", "channels_last", "5d", "int", "nan", "list", "empty"]))
    b = draw(st.integers(1, 3))
    return {"no_channel": lambda: torch.randn(b, 32, 32), "28": lambda: torch.randn(b, 1, 28, 28),
            "3ch": lambda: torch.randn(b, 3, 32, 32), "channels_last": lambda: torch.randn(b, 32, 32, 1),
            "5d": lambda: torch.randn(b, 1, 1, 32, 32), "int": lambda: torch.zeros(b, 1, 32, 32, dtype=torch.long),
            "nan": lambda: torch.full((b, 1, 32, 32), float("nan")), "list": lambda: [[0.0] * 32] * 32,
            "empty": lambda: torch.zeros(0, 1, 32, 32)}[kind]()


@SETTINGS
@given(x=bad_images())
def test_denoiser_rejects_malformed_images(model, x):
    b = x.shape[0] if isinstance(x, torch.Tensor) and x.dim() else 1
    clean_error(model.denoiser, x, torch.full((max(b, 1),), 2.0), class_labels=torch.zeros(max(b, 1), dtype=torch.long))


@SETTINGS
@given(labels=st.one_of(st.lists(st.integers(-3, 14), min_size=0, max_size=4).map(torch.tensor),
                        st.lists(st.floats(0, 9), min_size=2, max_size=2).map(torch.tensor),
                        st.just(torch.zeros(2, 2, dtype=torch.long)), st.just(torch.tensor([True, False])),
                        st.integers(), st.none(), st.text(max_size=2)))
def test_denoiser_rejects_malformed_labels(model, labels):
    ok = (isinstance(labels, torch.Tensor) and labels.dtype == torch.long and labels.shape == (2,)
          and bool(((labels >= 0) & (labels <= 10)).all()))
    x, sigma = torch.randn(2, 1, 32, 32), torch.full((2,), 3.0)
    if ok:
        assert model.denoiser(x, sigma, class_labels=labels).shape == x.shape
    else:
        clean_error(model.denoiser, x, sigma, class_labels=labels)


@SETTINGS
@given(sigma=st.one_of(st.just(torch.ones(3)), st.just(torch.ones(2, 1)), st.just(torch.tensor([1.0, -1.0])),
                       st.just(torch.tensor([float("nan"), 1.0])), st.text(max_size=2), st.none()))
def test_denoiser_rejects_malformed_sigma(model, sigma):
    clean_error(model.denoiser, torch.randn(2, 1, 32, 32), sigma, class_labels=torch.tensor([0, 1]))


# --------------------------------------------------------------------------------------- model.sample
sample_args = st.fixed_dictionaries({}, optional={
    "n": st.one_of(st.integers(-2, 3), st.floats(0, 3), st.text(max_size=1)),
    "sampler": st.one_of(st.sampled_from(["ddim", "heun", "dpmpp_2m", "DDIM", "nope", ""]), st.integers()),
    "steps": st.one_of(st.integers(-1, 3), st.floats(0.5, 2.5), st.none()),
    "schedule": st.sampled_from(["karras", "ddpm", "geometric", "cosine"]),
    "labels": st.one_of(st.integers(-1, 12), st.lists(st.integers(0, 10), max_size=3),
                        st.just(torch.tensor([0.5]))),
    "guidance": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=1)),
    "batch": st.one_of(st.integers(-1, 2), st.booleans()),
    "eta": st.floats(0, 1),
})


@SETTINGS
@given(args=sample_args)
def test_sample_gives_images_or_one_clean_error(model, args):
    try:
        x = model.sample(**args, progress=False)
    except (ValueError, TypeError) as e:
        assert str(e).strip()
        return
    n = args.get("n", 16)
    assert x.shape == (n, 1, 32, 32) and x.abs().max() <= 1 and torch.isfinite(x).all()


# --------------------------------------------------------------------------------------- specs
spec_values = st.one_of(st.none(), st.integers(-2, 1200), st.floats(allow_nan=True), st.booleans(),
                        st.text(alphabet="abcdeilnprstg_", max_size=8),
                        st.sampled_from(["ddim", "ddpm", "karras", "trailing", "diffusers", "DDIMScheduler", "heun"]))


@SETTINGS
@given(spec=st.dictionaries(st.sampled_from(["library", "sampler", "schedule", "spacing", "steps", "w", "clip", "n",
                                             "eta", "colour"]), spec_values, max_size=6))
def test_specs_are_checked_or_rejected_cleanly(spec):
    try:
        s = check_spec(spec, T=1000)
    except ValueError as e:
        assert str(e).startswith("spec") or "a spec must be" in str(e)
        return
    assert s["steps"] >= 1 and s["library"] in ("diffbook", "diffusers")


# --------------------------------------------------------------------------------------- the command
@pytest.mark.parametrize("args, words", [
    (["fmnist-nope"], "unknown model"),
    (["fmnist-ddpm", "--label", "12"], "0..10"),
    (["fmnist-ddpm", "--sampler", "fast"], "unknown sampler"),
    (["fmnist-ddpm", "--steps", "0"], ">= 1"),
    (["fmnist-gan", "--guidance", "2"], "GAN generator"),
    (["fmnist-ncsn", "--label", "3"], "not class-conditional"),
    (["fmnist-clf"], "not a generative model"),
])
def test_the_sample_command_exits_with_one_line_naming_the_problem(tmp_path, args, words):
    with pytest.raises(SystemExit) as info:
        main(["sample", *args, "--n", "2", "--out", str(tmp_path / "x.png")])
    assert words in str(info.value) and "\n" not in str(info.value).strip()
    with pytest.raises(SystemExit, match="must end in .png"):
        main(["sample", "fmnist-gan", "--out", str(tmp_path / "x.jpg")])
