"""Shipped results: they load by name, carry their provenance, and are inside the wheel a Colab user installs."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from diffbook import zoo
from diffbook.zoo import results

ROOT = Path(__file__).resolve().parents[1]


def test_release_results_load_with_provenance():
    release = results.load("zoo-release")
    for key in ("command", "commit", "device", "date", "wall_s", "n_eval", "floor", "evaluations"):
        assert key in release, key
    assert "H100" in release["device"]
    models = {e["model"] for e in release["evaluations"]}
    assert {"fmnist-ddpm", "fmnist-ncsn", "fmnist-gan"} <= models
    # the shipped weights are the ones the results measured: same training steps in the cards and the results
    for m in ("fmnist-ddpm", "fmnist-ncsn", "fmnist-gan"):
        assert zoo.registry.load_state(m)[1]["steps"] == release["models"][m]["steps"]


def test_training_logs_load():
    log = results.load_log("fmnist-ddpm")
    assert log[0]["step"] < log[-1]["step"] and {"loss", "lr", "img_s"} <= set(log[-1])


def test_unknown_names_fail_with_the_list_of_what_exists():
    with pytest.raises(FileNotFoundError, match="available: .*zoo-release"):
        results.load("zoo-relase")
    with pytest.raises(FileNotFoundError, match="logs exist for: .*fmnist-ddpm"):
        results.load_log("fmnist-ddqm")


def test_wheel_ships_weights_and_results(tmp_path):
    # build from a copy, so setuptools' build/ and egg-info folders land in tmp_path, not in the source tree
    src = tmp_path / "src"
    shutil.copytree(ROOT / "diffbook", src / "diffbook", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE", "LICENSE-CONTENT.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(src)], check=True, timeout=300, capture_output=True)
    (wheel,) = tmp_path.glob("diffbook-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "diffbook/zoo/results/zoo-release.json" in names
    assert "diffbook/zoo/results/logs/fmnist-ddpm.log.jsonl" in names
    for m in ("fmnist-clf", "fmnist-ddpm", "fmnist-ncsn", "fmnist-gan"):
        assert f"diffbook/zoo/weights/{m}.safetensors" in names and f"diffbook/zoo/weights/{m}.json" in names
    assert "diffbook/zoo/weights/registry.json" in names
