"""Load Fashion-MNIST as tensors scaled to [-1, 1] and padded to 32x32.

Data set: Xiao, Rasul and Vollgraf 2017, "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine
Learning Algorithms" (60,000 training and 10,000 test images, 28x28 grey, 10 classes, MIT licence).

Where the files are looked for, in this order (the first folder that holds the split's two files wins):

1. ``root=`` if given, else the folder named by the environment variable ``$DIFFBOOK_DATA``;
2. Debian's package ``dataset-fashion-mnist``: ``/usr/share/datasets/fashion-mnist``;
3. the user cache ``~/.cache/diffbook/fashion-mnist`` (``$XDG_CACHE_HOME`` is honoured);
4. only with ``download=True``, or on Colab (:func:`downloads_allowed`): the official URLs (or
   ``$DIFFBOOK_DATA_URL``), saved into the user cache.

Each folder holds the original idx files, gzipped (``train-images-idx3-ubyte.gz`` ...) or not.

Integrity: every file is checked against the SHA-256 of its *decompressed* idx bytes (``IDX_SHA256``).
We hash the decompressed bytes, not the ``.gz`` files, because the same data ships in different gzip
wrappers: Debian's ``.gz`` files carry no original file name in their gzip header, so each is 23-24 bytes
shorter than the official download (26,421,856 vs 26,421,880 bytes for the training images) although the
idx bytes inside are identical. The hashes below were computed from Debian's files; the official ``.gz``
sizes and MD5s (as published by the Fashion-MNIST authors and used by torchvision) are kept in
``OFFICIAL_GZ`` for reference and checked on download.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.request
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

__all__ = ["CLASS_NAMES", "load_fashion_mnist", "find_fashion_mnist", "downloads_allowed", "base_url", "DEBIAN_DIR",
           "BASE_URL"]

CLASS_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_N = {"train": 60000, "test": 10000}

# SHA-256 of the decompressed idx files (identical in Debian's and the official copies).
IDX_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

# The official .gz files: (size in bytes, MD5 as published). Debian's copies differ only in the gzip header.
OFFICIAL_GZ = {
    "train-images-idx3-ubyte": (26421880, "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    "train-labels-idx1-ubyte": (29515, "25c81989df183df01b3e8a0aad5dffbe"),
    "t10k-images-idx3-ubyte": (4422102, "bef4ecab320f06d8554ea6380940ec79"),
    "t10k-labels-idx1-ubyte": (5148, "bb300cfdad3c16e7a12a480ee83cd310"),
}


def base_url() -> str:
    """Where downloads come from: the official Fashion-MNIST server, or ``$DIFFBOOK_DATA_URL`` (a mirror, or a
    local test server); every downloaded file is checked against :data:`IDX_SHA256` whatever its origin."""
    url = os.environ.get("DIFFBOOK_DATA_URL") or BASE_URL
    return url if url.endswith("/") else url + "/"


def downloads_allowed() -> bool:
    """Whether :func:`load_fashion_mnist` may download a missing split when its caller does not say: on Colab
    (``google.colab`` importable), or when ``$DIFFBOOK_DOWNLOAD`` is 1; never while building or testing the book
    here. The one place that decides, so a chapter needs no ``download=`` argument to run on a fresh Colab runtime."""
    if os.environ.get("DIFFBOOK_DOWNLOAD") in ("0", "1"):
        return os.environ["DIFFBOOK_DOWNLOAD"] == "1"
    import importlib.util

    try:
        return importlib.util.find_spec("google.colab") is not None
    except (ImportError, ValueError):
        return False


def _cache_dir() -> Path:
    """The user cache folder for Fashion-MNIST (``$XDG_CACHE_HOME`` or ``~/.cache``)/diffbook/fashion-mnist."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "diffbook" / "fashion-mnist"


def _file_in(folder: Path, name: str) -> Path | None:
    """Return the path of ``name`` (gzipped or not) inside ``folder``, or None."""
    for candidate in (folder / (name + ".gz"), folder / name):
        if candidate.is_file():
            return candidate
    return None


def _candidates(root) -> list[tuple[str, Path]]:
    """The folders searched, in order, each with a short description for error messages."""
    places = []
    if root is not None:
        places.append(("root= argument", Path(root).expanduser()))
    elif os.environ.get("DIFFBOOK_DATA"):
        places.append(("$DIFFBOOK_DATA", Path(os.environ["DIFFBOOK_DATA"]).expanduser()))
    if os.environ.get("DIFFBOOK_NO_SYSTEM_DATA") != "1":  # set by the test of a fresh Colab-like environment
        places.append(("Debian package dataset-fashion-mnist", DEBIAN_DIR))
    places.append(("user cache", _cache_dir()))
    return places


def find_fashion_mnist(split: str = "train", root=None) -> Path | None:
    """Return the first folder that holds both idx files of ``split``, or None (see the module docstring)."""
    _check_split(split)
    for _, folder in _candidates(root):
        if all(_file_in(folder, name) is not None for name in _FILES[split]):
            return folder
    return None


def _check_split(split) -> str:
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    return split


def _read_verified(path: Path, name: str) -> bytes:
    """Read (and gunzip) one idx file and check the SHA-256 of its decompressed bytes."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise ValueError(
                f"{path} is not a valid gzip file ({err}); delete it and reinstall the data "
                "(apt-get install dataset-fashion-mnist, or load_fashion_mnist(..., download=True))."
            ) from None
    digest = hashlib.sha256(raw).hexdigest()
    if digest != IDX_SHA256[name]:
        raise ValueError(
            f"{path} does not hold the official Fashion-MNIST data (SHA-256 of its idx bytes is {digest[:16]}..., "
            f"expected {IDX_SHA256[name][:16]}...); delete it and reinstall the data "
            "(apt-get install dataset-fashion-mnist, or load_fashion_mnist(..., download=True))."
        )
    return raw


def _parse_idx(raw: bytes, path: Path) -> np.ndarray:
    """Parse an idx file (big-endian header: magic, dims) holding unsigned bytes into a numpy array."""
    zero, dtype_code, ndim = raw[0:2], raw[2], raw[3]
    if zero != b"\x00\x00" or dtype_code != 0x08:
        raise ValueError(f"{path} is not an idx file of unsigned bytes; delete it and reinstall the data.")
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _load_uint8(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Read, verify and parse one split from ``folder`` into uint8 tensors (cached while the files are unchanged)."""
    files = []
    for name in _FILES[split]:
        path = _file_in(folder, name)
        stat = path.stat()
        files.append((name, str(path), stat.st_size, stat.st_mtime_ns))
    return _load_files(split, tuple(files))


@lru_cache(maxsize=4)
def _load_files(split: str, files: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """Verify and parse the split's two files; cached per process, keyed by path, size and modification time."""
    arrays = []
    for name, path, _, _ in files:
        arrays.append(_parse_idx(_read_verified(Path(path), name), Path(path)))
    images, labels = arrays
    if images.shape != (_N[split], 28, 28) or labels.shape != (_N[split],):
        raise ValueError(f"Fashion-MNIST {split} files {files[0][1]} and {files[1][1]} have unexpected shapes; reinstall the data.")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.copy())


def _download(split: str, dest: Path) -> None:
    """Download the split's two official .gz files into ``dest`` and verify them (size, MD5, SHA-256)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in _FILES[split]:
        target = dest / (name + ".gz")
        if target.is_file():
            continue
        url = base_url() + name + ".gz"
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                data = response.read()
        except OSError as err:
            raise FileNotFoundError(
                f"could not download {url} ({err}); check the internet connection, or install the data with "
                "`apt-get install dataset-fashion-mnist`."
            ) from None
        size, md5 = OFFICIAL_GZ[name]
        if len(data) == size and hashlib.md5(data).hexdigest() != md5:
            raise ValueError(f"{url} has the official size but not the official MD5; the download is corrupt, retry.")
        with tempfile.NamedTemporaryFile(dir=dest, delete=False, suffix=".part") as tmp:
            tmp.write(data)
        try:
            _read_verified(Path(tmp.name), name)  # SHA-256 of the decompressed bytes
            os.replace(tmp.name, target)
        finally:
            if os.path.exists(tmp.name):
                os.unlink(tmp.name)


def _not_found(split: str, root) -> FileNotFoundError:
    lines = [f"Fashion-MNIST ({split} split) was not found. Looked for {' and '.join(n + '.gz' for n in _FILES[split])} in:"]
    for label, folder in _candidates(root):
        lines.append(f"  - {folder}  ({label})")
    lines.append(
        "Fix it with one of: `apt-get install dataset-fashion-mnist` (Debian/Ubuntu); copy the four official "
        f"files into {_cache_dir()} (or set $DIFFBOOK_DATA to their folder); or call "
        "load_fashion_mnist(..., download=True) where the internet is reachable (e.g. Colab)."
    )
    return FileNotFoundError("\n".join(lines))


def load_fashion_mnist(split: str = "train", pad_to: int = 32, root=None, download: bool | None = None):
    """Return Fashion-MNIST as (images float32 [N, 1, pad_to, pad_to] in [-1, 1], labels int64 [N]).

    Pixels p in 0..255 map to 2 p / 255 - 1, so the background is -1; padding (to 32x32 by default, the size
    the book's U-Nets take) uses the background value -1 and centres the 28x28 image. Sources and integrity
    checks: see the module docstring. A missing split is downloaded if ``download`` is True, or if it is None
    (the default) and :func:`downloads_allowed` says so (on Colab). Parsed files are cached in memory per process;
    each call returns fresh tensors, so callers may modify them.
    """
    _check_split(split)
    if isinstance(pad_to, bool) or not isinstance(pad_to, int) or pad_to < 28:
        raise ValueError(f"pad_to must be an integer >= 28 (the images are 28x28), got {pad_to!r}; use 32 for the book's models.")
    folder = find_fashion_mnist(split, root)
    if folder is None:
        if not (downloads_allowed() if download is None else download):
            raise _not_found(split, root)
        folder = _cache_dir()
        _download(split, folder)
    images, labels = _load_uint8(folder, split)
    before = (pad_to - 28) // 2
    x = torch.full((images.shape[0], 1, pad_to, pad_to), -1.0)
    inner = x[:, 0, before : before + 28, before : before + 28]
    inner.copy_(images).mul_(2.0 / 255.0).sub_(1.0)
    return x, labels.to(torch.int64)
