"""Tests of diffbook.data2d (toy 2D sets) and diffbook.fashion (Fashion-MNIST loader)."""

import gzip
import importlib.machinery
import hashlib
import math
import shutil
import time

import pytest
import torch

from diffbook.data import fashion
from diffbook.data.toy2d import Mixture2D, grid25, grid25_mixture, moons, ring8, ring8_mixture, swiss_roll


DEBIAN = fashion.DEBIAN_DIR  # the real folder (some tests monkeypatch the module's)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------------ 2D data


def test_ring8_centres_follow_the_protocol():
    mix = ring8_mixture()
    assert mix.centres.shape == (8, 2) and mix.std == 0.02
    radii = mix.centres.norm(dim=1)
    assert torch.allclose(radii, torch.full((8,), 2.0), atol=1e-6)
    angles = torch.atan2(mix.centres[:, 1], mix.centres[:, 0]) % (2 * math.pi)
    assert torch.allclose(angles.sort().values, torch.arange(8) * (math.pi / 4), atol=1e-6)
    assert torch.allclose(mix.weights, torch.full((8,), 1 / 8)) and torch.allclose(mix.stds, torch.full((8,), 0.02))


def test_grid25_centres_are_the_5x5_grid():
    mix = grid25_mixture()
    assert mix.std == 0.05
    got = {tuple(int(round(v)) for v in c.tolist()) for c in mix.centres}
    assert got == {(i, j) for i in (-4, -2, 0, 2, 4) for j in (-4, -2, 0, 2, 4)}


@pytest.mark.parametrize("mix", [ring8_mixture(), grid25_mixture(), ring8_mixture(radius=1.0, std=0.01)])
def test_mixture_samples_have_the_right_modes_spread_and_weights(mix):
    n = 40000
    x, labels = mix.sample(n, gen(1), return_labels=True)
    assert x.shape == (n, 2) and x.dtype == torch.float32
    resid = x - mix.centres[labels]
    # per-coordinate std of the residual matches std (standard error ~ std / sqrt(2n))
    assert abs(resid.std().item() / mix.std - 1) < 0.02
    # every sample is nearest to the centre it was drawn from (modes are > 20 std apart)
    assert torch.equal(torch.cdist(x, mix.centres).argmin(1), labels)
    # uniform weights: counts within 5 binomial standard errors
    k = mix.n_modes
    counts = torch.bincount(labels, minlength=k).double()
    assert ((counts - n / k).abs() < 5 * math.sqrt(n / k * (1 - 1 / k))).all()
    # closed-form spread of the mixture
    assert torch.allclose(x.std(0), mix.data_std(), rtol=0.02)


def test_samplers_are_seeded():
    for f in (ring8, grid25, moons, swiss_roll):
        a, b, c = f(500, gen(3)), f(500, gen(3)), f(500, gen(4))
        assert a.shape == (500, 2) and torch.equal(a, b) and not torch.equal(a, c)


def test_moons_lie_on_two_half_circles_without_noise():
    x = moons(5000, gen(), noise=0.0)
    upper = (x.norm(dim=1) - 1).abs() < 1e-5
    lower = ((x - torch.tensor([1.0, 0.5])).norm(dim=1) - 1).abs() < 1e-5
    assert (upper | lower).all()
    assert (x[upper & ~lower, 1] >= -1e-6).all() and (x[lower & ~upper, 1] <= 0.5 + 1e-6).all()
    assert 0.45 < upper.double().mean() < 0.55
    noisy = moons(20000, gen(), noise=0.1)
    dist = torch.minimum((noisy.norm(dim=1) - 1).abs(), ((noisy - torch.tensor([1.0, 0.5])).norm(dim=1) - 1).abs())
    assert 0.03 < dist.mean() < 0.1  # E|N(0, 0.1^2)| projected on the radius ~ 0.08, less near crossings


def test_swiss_roll_lies_on_the_spiral_without_noise():
    x = swiss_roll(5000, gen(), noise=0.0).double()
    t = x.norm(dim=1)  # |(t cos t, t sin t)| = t
    assert t.min() >= 1.5 * math.pi - 1e-4 and t.max() <= 4.5 * math.pi + 1e-4
    assert torch.allclose(x, torch.stack([t * t.cos(), t * t.sin()], 1), atol=1e-3)


def test_2d_bad_inputs_raise_one_clear_error():
    with pytest.raises(ValueError, match="integer >= 1"):
        ring8(0)
    with pytest.raises(ValueError, match="integer >= 1"):
        grid25(2.5)
    with pytest.raises(TypeError, match="torch.Generator"):
        moons(10, generator=0)
    with pytest.raises(ValueError, match="noise"):
        swiss_roll(10, noise=-1.0)
    with pytest.raises(ValueError, match="std"):
        ring8_mixture(std=0.0)
    with pytest.raises(ValueError, match="shape"):
        Mixture2D(torch.zeros(3), 0.1)
    with pytest.raises(ValueError, match="NaN"):
        Mixture2D(torch.tensor([[0.0, float("nan")]]), 0.1)


# ------------------------------------------------------------------------------------------- Fashion-MNIST


def test_load_test_split_shapes_range_and_labels():
    x, y = fashion.load_fashion_mnist("test")
    assert x.shape == (10000, 1, 32, 32) and x.dtype == torch.float32
    assert y.shape == (10000,) and y.dtype == torch.int64
    assert x.min() == -1.0 and x.max() == 1.0
    assert torch.equal(torch.bincount(y), torch.full((10,), 1000))
    # the 2-pixel frame is background (-1); the 28x28 image sits in the middle
    frame = torch.ones(32, 32, dtype=torch.bool)
    frame[2:30, 2:30] = False
    assert (x[:, 0][:, frame] == -1).all()
    x28, y28 = fashion.load_fashion_mnist("test", pad_to=28)
    assert torch.equal(x28, x[:, :, 2:30, 2:30]) and torch.equal(y28, y)
    # pixel values are k/255 rescaled
    assert torch.allclose((x28 + 1) * 127.5, ((x28 + 1) * 127.5).round(), atol=1e-4)
    assert len(fashion.CLASS_NAMES) == 10 and fashion.CLASS_NAMES[9] == "Ankle boot"


def test_load_train_split_is_fast_and_cached_per_process():
    fashion._load_files.cache_clear()
    start = time.process_time()  # CPU time: robust to other processes sharing the machine
    x, y = fashion.load_fashion_mnist("train")
    first = time.process_time() - start
    assert x.shape == (60000, 1, 32, 32) and torch.equal(torch.bincount(y), torch.full((10,), 6000))
    assert first < 2.0, f"loading the training split took {first:.2f} s"
    x[:] = 0.0  # callers may modify what they get ...
    hits = fashion._load_files.cache_info().hits
    x2, _ = fashion.load_fashion_mnist("train")
    assert fashion._load_files.cache_info().hits == hits + 1  # the files were parsed once per process
    assert x2.min() == -1.0  # ... without changing the cache


def test_the_idx_hashes_match_the_debian_files():
    for name, digest in fashion.IDX_SHA256.items():
        with gzip.open(DEBIAN / (name + ".gz"), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """No Debian folder, an empty user cache, no $DIFFBOOK_DATA."""
    monkeypatch.setattr(fashion, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DIFFBOOK_DATA", raising=False)
    monkeypatch.delenv("DIFFBOOK_DATA_URL", raising=False)
    monkeypatch.setenv("DIFFBOOK_DOWNLOAD", "0")
    return tmp_path


def test_missing_data_names_all_places_and_fixes(nowhere):
    with pytest.raises(FileNotFoundError) as err:
        fashion.load_fashion_mnist("test")
    msg = str(err.value)
    assert str(nowhere / "no-debian") in msg and str(nowhere / "cache" / "diffbook" / "fashion-mnist") in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "download=True" in msg
    with pytest.raises(FileNotFoundError, match="root= argument"):
        fashion.load_fashion_mnist("test", root=nowhere / "mine")


def test_root_and_env_folder_are_used_and_verified(nowhere, monkeypatch):
    mine = nowhere / "mine"
    mine.mkdir()
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        shutil.copy(DEBIAN / (name + ".gz"), mine)
    x, y = fashion.load_fashion_mnist("test", root=mine)
    assert x.shape == (10000, 1, 32, 32)
    monkeypatch.setenv("DIFFBOOK_DATA", str(mine))
    assert fashion.find_fashion_mnist("test") == mine
    assert fashion.find_fashion_mnist("train") is None
    # a corrupted label file (one label changed, still valid gzip) is refused by its SHA-256
    with gzip.open(mine / "t10k-labels-idx1-ubyte.gz", "rb") as f:
        raw = bytearray(f.read())
    raw[8] = (raw[8] + 1) % 10
    (mine / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(ValueError, match="SHA-256"):
        fashion.load_fashion_mnist("test")


def test_download_fetches_verifies_and_caches(nowhere, monkeypatch):
    served = nowhere / "served"
    served.mkdir()
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        shutil.copy(DEBIAN / (name + ".gz"), served)
    monkeypatch.setattr(fashion, "BASE_URL", served.as_uri() + "/")
    x, y = fashion.load_fashion_mnist("test", download=True)
    cache = nowhere / "cache" / "diffbook" / "fashion-mnist"
    assert (cache / "t10k-images-idx3-ubyte.gz").is_file() and x.shape == (10000, 1, 32, 32)
    assert fashion.find_fashion_mnist("test") == cache  # found in the cache next time, no download needed
    # a server that sends wrong bytes is refused and nothing is left in the cache
    (served / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 8))
    (served / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"junk"))
    with pytest.raises(ValueError, match="SHA-256"):
        fashion.load_fashion_mnist("train", download=True)
    assert not list(cache.glob("train-*"))
    assert not list(cache.glob("*.part"))


def test_one_function_decides_whether_a_missing_split_is_downloaded(nowhere, monkeypatch):
    """Colab (google.colab importable) or $DIFFBOOK_DOWNLOAD=1: a call without download= fetches the split, from
    $DIFFBOOK_DATA_URL when set; here (no Colab, no variable) it stays an error naming the fixes."""
    import sys
    import types

    served = nowhere / "mirror"
    served.mkdir()
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        shutil.copy(DEBIAN / (name + ".gz"), served)
    monkeypatch.setenv("DIFFBOOK_DATA_URL", served.as_uri())
    monkeypatch.delenv("DIFFBOOK_DOWNLOAD")
    assert fashion.base_url() == served.as_uri() + "/"
    assert not fashion.downloads_allowed()
    with pytest.raises(FileNotFoundError):
        fashion.load_fashion_mnist("test")
    google = types.ModuleType("google")
    google.__path__ = []
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    sys.modules["google.colab"].__spec__ = importlib.machinery.ModuleSpec("google.colab", None)
    assert fashion.downloads_allowed()
    x, _ = fashion.load_fashion_mnist("test")
    assert x.shape == (10000, 1, 32, 32)
    monkeypatch.setenv("DIFFBOOK_DOWNLOAD", "0")  # the variable wins over the detection
    assert not fashion.downloads_allowed()


def test_fashion_bad_arguments():
    with pytest.raises(ValueError, match="'train' or 'test'"):
        fashion.load_fashion_mnist("val")
    with pytest.raises(ValueError, match="pad_to"):
        fashion.load_fashion_mnist("test", pad_to=20)
