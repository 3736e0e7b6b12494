"""Measured results that ship with the package: what the GPU runs measured, with their provenance.

Each results file is JSON with the command, commit, device, date and wall time of the run that wrote it, beside
the numbers (``zoo-release.json``: the release training run's Frechet distances, floor, precision/recall and
timings). They ship inside the package, like the weights, so a chapter reads them the same way in a clone, after
``pip install`` and in Colab::

    from diffbook.zoo import results
    release = results.load("zoo-release")

``logs/`` holds the training logs (JSON lines: step, loss, lr, img/s) of the shipped models.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def available() -> list[str]:
    """Names of the shipped results files (without ``.json``)."""
    return sorted(p.stem for p in ROOT.glob("*.json"))


def path(name: str) -> Path:
    """The file of results ``name``; one clear error naming the files that exist when it is not there."""
    p = ROOT / f"{name}.json"
    if not p.is_file():
        raise FileNotFoundError(f"no shipped results named {name!r} (looked for {p}); available: "
                                f"{', '.join(available()) or 'none'}. Reinstall diffbook if the folder is empty.")
    return p


def load(name: str) -> dict:
    """The results file ``name`` as a dict (e.g. ``load("zoo-release")``)."""
    return json.loads(path(name).read_text())


def load_log(model: str) -> list[dict]:
    """The training log of a shipped model: one dict per logged step (``step``, ``loss``, ``lr``, ``img_s``)."""
    p = ROOT / "logs" / f"{model}.log.jsonl"
    if not p.is_file():
        raise FileNotFoundError(f"no training log for {model!r} (looked for {p}); logs exist for: "
                                f"{', '.join(sorted(q.name.split('.')[0] for q in (ROOT / 'logs').glob('*.jsonl')))}.")
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
