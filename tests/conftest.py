"""Shared test helpers: repository paths and the book's page list (read from _toc.yml)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import yaml

# Under pytest-xdist two workers share the two cores: one torch thread each avoids oversubscription
# (measured: a sampler test file took 300 s instead of 28 s with two threads per worker). The notebook
# kernels that nbval and the site build start inherit OMP_NUM_THREADS, so they use one thread too.
# One thread is also faster for the tests' tiny networks, so it holds without xdist too.
torch.set_num_threads(1)
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"


def toc_docnames(root: Path = ROOT) -> list[str]:
    """Return every page of the book in reading order (root first), as docnames without suffix.

    Reads _toc.yml (jb-book format: root, then chapters or parts/chapters, each with optional sections).
    """
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    names = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                names.append(entry["file"])
            walk(entry.get("sections"))

    walk(toc.get("chapters"))
    for part in toc.get("parts") or []:
        walk(part.get("chapters"))
    return names


def chapter_notebooks(root: Path = ROOT) -> list[Path]:
    """Return the chapter notebooks book/*.ipynb, sorted by name."""
    return sorted((root / "book").glob("*.ipynb"))
