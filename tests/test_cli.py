"""``python -m diffbook``: the sample command writes what it says (a PNG grid, .npy or .pt of the images it drew,
the same images as ``diffbook.load(...).sample`` with the same arguments), and the help lists every command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

import diffbook
from diffbook.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_sample_writes_tensors_equal_to_the_model_objects_samples(tmp_path, capsys):
    args = ["sample", "fmnist-ddpm", "--n", "3", "--sampler", "heun", "--steps", "2", "--label", "3", "--seed", "5",
            "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "x.pt")]) == 0
    assert "wrote 3 images (1, 32, 32) from fmnist-ddpm" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "x.npy")]) == 0
    ours = diffbook.load("fmnist-ddpm").sample(3, sampler="heun", steps=2, labels=3, seed=5)
    assert torch.equal(torch.load(tmp_path / "x.pt"), ours)
    assert np.array_equal(np.load(tmp_path / "x.npy"), ours.numpy())


def test_sample_writes_a_png_grid(tmp_path):
    assert main(["sample", "fmnist-gan", "--n", "6", "--nrow", "3", "--out", str(tmp_path / "grid.png")]) == 0
    img = plt.imread(tmp_path / "grid.png")
    assert img.shape[:2] == (2 * 33 + 1, 3 * 33 + 1)   # 2 rows of 3 images of 32 pixels, 1-pixel gaps


def test_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "diffbook", "--help"], capture_output=True, text=True, cwd=ROOT,
                         timeout=120).stdout
    for command in ("sample", "train", "zoo", "compare", "sweep"):
        assert command in out


def test_sweep_runs_each_chapters_sweep_module_with_its_own_arguments(capsys):
    """`python -m diffbook sweep NAME ARGS` is `python -m <the sweep's module> ARGS`: same parser, same help."""
    import importlib

    from diffbook.cli import SWEEPS

    for name, (module, _) in SWEEPS.items():
        with pytest.raises(SystemExit) as through_cli:
            main(["sweep", name, "--help"])
        via_cli = capsys.readouterr().out
        with pytest.raises(SystemExit) as direct:
            importlib.import_module(module).main(["--help"])
        assert through_cli.value.code == direct.value.code == 0
        assert via_cli == capsys.readouterr().out and "--out" in via_cli
    with pytest.raises(SystemExit):
        main(["sweep", "no-such-sweep"])
    assert "invalid choice" in capsys.readouterr().err
