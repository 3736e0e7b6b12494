"""Progressive distillation (diffbook.distill): the target in closed form, the v-denoiser, the rounds, and the
``fmnist-fast`` training command (smoke config: trains, loads, samples at 1/2/4 steps, resumes bit-identically)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffbook import zoo
from diffbook.denoisers import from_diffusers_unet, from_eps_model, gaussian_denoiser
from diffbook.distill import (distillation_loss, distillation_target, from_v_model, round_plan, round_sigmas,
                              teacher_two_steps, truncated_snr_weight)
from diffbook.samplers import sample_ddim
from diffbook.schedules import betas_to_alpha_bar, ddpm_sigmas, linear_betas
from diffbook.train.distill import _check_teacher, _steps_per_round, _teacher_denoiser
from diffbook.train.loop import train
from diffbook.zoo import load_student
from diffbook.zoo.model import student_sigmas

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
ALPHA_BAR = betas_to_alpha_bar(linear_betas(1000))
S = 0.7  # std of the Gaussian data whose exact denoiser is the closed-form teacher


# ----------------------------------------------------------------------------------------------- the target
@pytest.mark.parametrize("n_teacher", [2, 8, 64])
def test_one_ddim_step_to_the_target_lands_on_two_teacher_steps(n_teacher):
    teacher = gaussian_denoiser(S)
    grid, _ = round_sigmas(ALPHA_BAR, n_teacher)
    g = torch.Generator().manual_seed(0)
    for i in range(n_teacher // 2):  # every student step, the last one (to sigma = 0) included
        sigma, sigma_next = grid[2 * i], grid[2 * i + 2]
        x = torch.randn(5, 3, generator=g, dtype=torch.float64) * (S**2 + sigma**2).sqrt()
        x_teacher = sample_ddim(teacher, x, grid[2 * i: 2 * i + 3])  # the library's two DDIM steps
        torch.testing.assert_close(teacher_two_steps(teacher, x, sigma, grid[2 * i + 1], sigma_next), x_teacher,
                                   rtol=0, atol=1e-10)
        x0_tilde = distillation_target(x, sigma.item(), sigma_next.item(), x_teacher)
        x_student = sample_ddim(lambda x, s, **c: x0_tilde, x, torch.stack([sigma, sigma_next]))
        torch.testing.assert_close(x_student, x_teacher, rtol=0, atol=1e-6)
        if sigma_next == 0:  # the last step: the target is the teacher's own output
            assert torch.equal(x0_tilde, x_teacher)
        else:  # and not the teacher's one-step estimate: the student learns something new
            assert (x0_tilde - teacher(x, sigma)).abs().max() > 1e-4


def _exact_two_step_student(teacher, grid):
    """The denoiser whose one DDIM step is exactly the teacher's two steps on ``grid`` (a perfect student)."""

    def student(x, sigma, **cond):
        j = (grid[None, :] == sigma[:, None]).int().argmax(1)
        x_teacher = teacher_two_steps(teacher, x, sigma, grid[j + 1], grid[j + 2], **cond)
        return distillation_target(x, sigma, grid[j + 2], x_teacher)

    return student


def test_loss_is_zero_for_the_exact_two_step_student():
    teacher = gaussian_denoiser(S)
    grid, _ = round_sigmas(ALPHA_BAR, 16)
    x0 = torch.randn(64, 1, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * S
    loss = distillation_loss(_exact_two_step_student(teacher, grid), teacher, x0, grid,
                             generator=torch.Generator().manual_seed(2))
    assert loss.item() < 1e-20
    # the teacher itself is not a perfect 8-step student: the loss sees the difference
    assert distillation_loss(teacher, teacher, x0, grid, generator=torch.Generator().manual_seed(2)).item() > 1e-6


def test_truncated_snr_weight():
    sigma = torch.tensor([0.1, 0.5, 1.0, 2.0, 157.0])
    torch.testing.assert_close(truncated_snr_weight(sigma), torch.tensor([100.0, 4.0, 1.0, 1.0, 1.0]))


# ----------------------------------------------------------------------------------------------- the student
def test_v_denoiser_recovers_x0_from_the_exact_v():
    g = torch.Generator().manual_seed(3)
    x0, eps = torch.randn(4, 1, 2, 2, generator=g, dtype=torch.float64), torch.randn(4, 1, 2, 2, generator=g,
                                                                                      dtype=torch.float64)
    sigma = torch.tensor([0.05, 1.0, 10.0, 157.0], dtype=torch.float64)
    c_in = (1 + sigma**2).rsqrt().reshape(-1, 1, 1, 1)
    x = x0 + sigma.reshape(-1, 1, 1, 1) * eps
    v = c_in * eps - sigma.reshape(-1, 1, 1, 1) * c_in * x0  # v = alpha eps - sigma_VP x0
    torch.testing.assert_close(from_v_model(lambda x_t, t: v, ALPHA_BAR)(x, sigma), x0, rtol=0, atol=1e-12)


def test_v_denoiser_matches_diffusers_v_prediction():
    from diffusers import DDPMScheduler

    def net(x_t, t, **cond):  # any network of (x_t, t)
        return torch.sin(3 * x_t) + t.reshape(-1, 1, 1, 1) / 1000

    sched = DDPMScheduler(num_train_timesteps=1000, prediction_type="v_prediction")
    x = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(4)) * 5
    sigma = torch.tensor([0.1, 2.0, 100.0])
    torch.testing.assert_close(from_v_model(net, ALPHA_BAR)(x, sigma), from_diffusers_unet(net, sched)(x, sigma),
                               rtol=1e-4, atol=1e-4)


def test_copied_eps_network_read_as_v_agrees_with_the_teacher_only_at_low_noise():
    def net(x_t, t, **cond):
        return torch.tanh(x_t) + 0.1

    x = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    for sigma, close in [(0.01, True), (10.0, False)]:
        gap = (from_v_model(net, ALPHA_BAR)(x, sigma) - from_eps_model(net, ALPHA_BAR)(x, sigma)).abs().max()
        assert (gap < 1e-3) == close, (sigma, gap)


def test_only_the_round_one_teacher_is_guided_and_clipped():
    def net(x_t, t, class_labels=None):  # an eps-network whose x0_hat = x - sigma eps_hat is far outside [-1, 1]
        return -3 * x_t * (1 + class_labels.reshape(-1, 1, 1, 1))

    x, y = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(6)), torch.tensor([0, 10])
    eps_model = from_eps_model(net, ALPHA_BAR)
    guided = eps_model(x, 50.0, class_labels=torch.tensor([10, 10]))
    guided += 2 * (eps_model(x, 50.0, class_labels=y) - guided)  # Eq. (cfg) with w = 1 against the null class 10
    teacher = _teacher_denoiser(0, net, ALPHA_BAR, 1.0, 10, clip=False)
    torch.testing.assert_close(teacher(x, 50.0, class_labels=y), guided)
    torch.testing.assert_close(_teacher_denoiser(0, net, ALPHA_BAR, 1.0, 10, clip=True)(x, 50.0, class_labels=y),
                               guided.clamp(-1, 1))
    assert guided.abs().max() > 10  # so the clamp did something
    later = _teacher_denoiser(1, net, ALPHA_BAR, 1.0, 10, clip=True)
    torch.testing.assert_close(later(x, 50.0, class_labels=y), from_v_model(net, ALPHA_BAR)(x, 50.0, class_labels=y))


# ----------------------------------------------------------------------------------------------- the rounds
def test_rounds_halve_on_nested_trailing_grids():
    assert round_plan(64, 1) == [(64, 32), (32, 16), (16, 8), (8, 4), (4, 2), (2, 1)]
    assert round_plan(8, 2) == [(8, 4), (4, 2)]
    for n_teacher, n in round_plan(64, 1):
        teacher, student = round_sigmas(ALPHA_BAR, n_teacher)
        assert torch.equal(student, ddpm_sigmas(ALPHA_BAR, n, "trailing")) and torch.equal(teacher[::2], student)
        assert teacher[0] == ddpm_sigmas(ALPHA_BAR, 1, "trailing")[0] and student[-1] == 0


def test_steps_per_round_and_the_steps_override():
    assert _steps_per_round(dict(steps_per_round=200), 6) == [200] * 6
    assert _steps_per_round(dict(steps_per_round=[1, 2, 3]), 3) == [1, 2, 3]
    split = _steps_per_round(dict(steps_per_round=[100, 100, 200], steps=9), 3)
    assert sum(split) == 9 and min(split) >= 1 and split[2] > split[0]


def test_bad_inputs_name_the_problem_and_the_fix():
    with pytest.raises(ValueError, match="powers of two"):
        round_plan(48, 1)
    with pytest.raises(ValueError, match="powers of two"):
        round_plan(4, 4)
    with pytest.raises(ValueError, match="must be even"):
        round_sigmas(ALPHA_BAR, 3)
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="sigma_next must be smaller than sigma"):
        distillation_target(x, 1.0, 1.0, x)
    with pytest.raises(ValueError, match="shape of x"):
        distillation_target(x, 2.0, 1.0, x[:1])
    with pytest.raises(ValueError, match="sigma > sigma_mid > sigma_next"):
        teacher_two_steps(gaussian_denoiser(S), x, 1.0, 2.0, 0.0)
    with pytest.raises(ValueError, match="even number 2N of steps ending in 0"):
        distillation_loss(gaussian_denoiser(S), gaussian_denoiser(S), x, torch.tensor([3.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="steps_per_round must be"):
        _steps_per_round(dict(steps_per_round=[10, 10]), 3)
    with pytest.raises(ValueError, match="eps-prediction DDPM"):
        _check_teacher(dict(parameterisation="score", arch="ncsn-unet"), "fmnist-ncsn")
    with pytest.raises(ValueError, match="no sampling_sigmas"):
        student_sigmas({"name": "fmnist-ddpm"})


# ----------------------------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One smoke run of the training command, in this process."""
    out = tmp_path_factory.mktemp("fast")
    card = train("fmnist-fast", "smoke", out, fresh=True)
    assert card["steps"] == 9 and card["gpu_trained"] is False and card["device"].startswith("cpu")
    return out


def _train_in_subprocess(out, **kw):
    """Each run in its own process with one thread, so floating-point reductions match between runs."""
    args = ", ".join(f"{k}={v!r}" for k, v in kw.items())
    code = f"from diffbook.train.loop import train; train('fmnist-fast', 'smoke', {str(out)!r}, {args})"
    return subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=600)


def test_smoke_run_writes_every_round_student_and_each_samples(smoke_run):
    card = json.loads((smoke_run / "fmnist-fast.json").read_text())
    assert card["command"] == "python -m diffbook train fmnist-fast --config smoke"
    assert card["parameterisation"] == "v" and card["sampling_steps"] == 1 and card["steps"] == 9
    assert [(r["teacher_steps"], r["student_steps"]) for r in card["rounds"]] == [(8, 4), (4, 2), (2, 1)]
    assert card["round_models"] == {"4": "fmnist-fast-4step", "2": "fmnist-fast-2step", "1": "fmnist-fast"}
    assert card["teacher"] == "fmnist-ddpm" and card["guidance_w"] == 1.0 and card["null_class"] == 10
    assert card["teacher_clip"] is True
    assert not (smoke_run / "checkpoint.pt").exists()
    log = [json.loads(line) for line in (smoke_run / "fmnist-fast.log.jsonl").read_text().splitlines()]
    assert [rec["round"] for rec in log] == [1, 2, 3] and log[-1]["step"] == 9
    labels = torch.tensor([0, 7, 10])  # two classes and the null class (unconditional)
    for n in (1, 2, 4):
        model = zoo.load(card["round_models"][str(n)], root=smoke_run)
        rcard = model.card
        assert rcard["sampling_steps"] == n
        sigmas = student_sigmas(card, n)
        assert torch.equal(sigmas, student_sigmas(rcard))
        assert torch.equal(sigmas, ddpm_sigmas(ALPHA_BAR, n, "trailing"))
        den, hi, prior = model.denoiser, model.sigma_max, model.prior_std
        assert hi == sigmas[0].item()
        x = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(n)) * prior
        calls = []
        img = sample_ddim(den, x, sigmas.float(), cond={"class_labels": labels}, callback=calls.append)
        assert img.shape == x.shape and torch.isfinite(img).all() and len(calls) == n
        student = load_student(n, root=smoke_run)
        assert torch.equal(student.sigmas(), sigmas.to(student.sigmas().dtype)) and student.prior_std == prior
        assert torch.equal(student.sample(3, labels=labels, seed=n, noise=None), student.sample(3, labels=labels,
                                                                                              seed=n))
    with pytest.raises(ValueError, match="not 8; add 8 to keep_rounds"):
        load_student(8, root=smoke_run)


def test_killed_run_resumes_to_identical_weights(tmp_path):
    """Rounds of 3 steps, checkpoints every 2: killed at step 5 it resumes mid-round (step 4, with the AdamW state);
    killed again at step 7 it resumes at step 6, a round's end, and starts round 3 itself."""
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    assert _train_in_subprocess(ref, fresh=True).returncode == 0
    for kill_at, ckpt_step in [(5, 4), (7, 6)]:
        proc = _train_in_subprocess(killed, kill_at_step=kill_at)
        assert proc.returncode == 137, proc.stderr[-2000:]
        assert torch.load(killed / "checkpoint.pt", weights_only=True)["step"] == ckpt_step
        assert not (killed / "fmnist-fast.safetensors").exists()
    proc = _train_in_subprocess(killed)
    assert proc.returncode == 0 and "resumed fmnist-fast" in proc.stdout + proc.stderr, proc.stderr[-2000:]
    assert json.loads((killed / "fmnist-fast.json").read_text())["steps"] == 9
    for name in ("fmnist-fast-4step", "fmnist-fast-2step", "fmnist-fast"):
        a, b = load_file(ref / f"{name}.safetensors"), load_file(killed / f"{name}.safetensors")
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)
