"""The training command: smoke configs run, a killed run resumes to the same weights, DDP on 2 CPU processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffbook import zoo
from diffbook.train.loop import train
from diffbook.train.recipes import get_config

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("model", ["fmnist-ddpm", "fmnist-ncsn", "fmnist-gan"])
def test_smoke_config_trains_and_loads(model, tmp_path):
    card = train(model, "smoke", tmp_path, fresh=True)
    assert card["steps"] == get_config(model, "smoke")["steps"]
    assert card["gpu_trained"] is False and card["device"].startswith("cpu")
    loaded = zoo.load(model, root=tmp_path)
    card2 = loaded.card
    assert card2["command"] == f"python -m diffbook train {model} --config smoke"
    assert not (tmp_path / "checkpoint.pt").exists()  # removed once the weights are written
    log = [json.loads(line) for line in (tmp_path / f"{model}.log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == card["steps"] and all(k in log[-1] for k in ("lr", "img_s"))
    if model != "fmnist-gan":
        x = torch.randn(2, 1, 32, 32) * loaded.prior_std
        cond = {"class_labels": torch.tensor([0, 10])} if "null_class" in card2 else {}
        assert loaded.denoiser(x, torch.full((2,), loaded.sigma_max), **cond).shape == x.shape
    assert loaded.sample(2, **({} if model == "fmnist-gan" else {"steps": 2})).shape == (2, 1, 32, 32)


def _train_in_subprocess(model, out, **kw):
    """Each run in its own process with the same thread settings, so floating-point reductions match."""
    args = ", ".join(f"{k}={v!r}" for k, v in kw.items())
    code = f"from diffbook.train.loop import train; train({model!r}, 'smoke', {str(out)!r}, {args})"
    return subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("model", ["fmnist-ddpm", "fmnist-gan"])
def test_killed_run_resumes_to_identical_weights(model, tmp_path):
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    assert _train_in_subprocess(model, ref, fresh=True).returncode == 0
    proc = _train_in_subprocess(model, killed, fresh=True, kill_at_step=5)
    assert proc.returncode == 137, proc.stderr[-2000:]
    ck = torch.load(killed / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 4  # ckpt_every=2 in the smoke config: the last checkpoint before the kill
    assert not (killed / f"{model}.safetensors").exists()
    proc = _train_in_subprocess(model, killed)  # resumes from the checkpoint
    assert proc.returncode == 0 and "resumed" in proc.stdout + proc.stderr, proc.stderr[-2000:]
    assert json.loads((killed / f"{model}.json").read_text())["steps"] == 6
    a, b = load_file(ref / f"{model}.safetensors"), load_file(killed / f"{model}.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_two_process_cpu_ddp(tmp_path):
    """`accelerate launch --multi_gpu` with 2 processes on a CPU-only machine runs the same command (DDP over gloo)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29533",
           "-m", "diffbook", "train", "fmnist-ddpm", "--config", "smoke", "--out", str(tmp_path), "--fresh"]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    card = json.loads((tmp_path / "fmnist-ddpm.json").read_text())
    assert card["n_processes"] == 2 and card["steps"] == 6
    zoo.load_network("fmnist-ddpm", root=tmp_path)


def test_bad_model_and_config_names():
    with pytest.raises(ValueError, match="unknown model"):
        get_config("fmnist-nope", "smoke")
    with pytest.raises(ValueError, match="unknown config"):
        get_config("fmnist-ddpm", "huge")


def test_failed_compile_falls_back_to_the_same_eager_run(tmp_path, monkeypatch):
    """With ``compile`` on and a compiler that fails, training goes on eagerly, the card says why, and the weights
    are those of a run without compile: the compile attempt draws no batch or noise from the training RNG."""
    from diffbook.train import recipes as configs

    eager = train("fmnist-ddpm", "smoke", tmp_path / "eager", fresh=True)
    assert eager["compiled"] is False and "compile_error" not in eager

    def broken_compile(*args, **kwargs):
        raise RuntimeError("no compiler on this machine")

    monkeypatch.setitem(configs.CONFIGS["fmnist-ddpm"]["smoke"], "compile", True)
    monkeypatch.setattr(torch, "compile", broken_compile)
    card = train("fmnist-ddpm", "smoke", tmp_path / "fallback", fresh=True)
    assert card["compiled"] is False and "no compiler on this machine" in card["compile_error"]
    a = load_file(tmp_path / "eager" / "fmnist-ddpm.safetensors")
    b = load_file(tmp_path / "fallback" / "fmnist-ddpm.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cli_overrides_config_entries(tmp_path):
    from diffbook.cli import main

    assert main(["train", "fmnist-gan", "--config", "smoke", "--out", str(tmp_path), "--set", "steps=3"]) == 0
    assert zoo.registry.load_state("fmnist-gan", root=tmp_path)[1]["steps"] == 3
    with pytest.raises(ValueError, match="not keys of the smoke config of fmnist-gan"):
        main(["train", "fmnist-gan", "--config", "smoke", "--out", str(tmp_path), "--set", "stepz=3"])
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        main(["train", "fmnist-gan", "--config", "smoke", "--out", str(tmp_path), "--set", "steps"])
