"""The zoo: weights are saved atomically with a SHA-256, and a corrupt or missing file fails with one clear message."""

import json

import pytest
import torch

from diffbook import zoo
from diffbook.zoo import registry
from diffbook.nets.unet import make_unet

TINY = dict(block_out_channels=(8, 16), down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"), layers_per_block=1, norm_num_groups=4, sample_size=8)


@pytest.fixture()
def tiny_zoo(tmp_path):
    torch.manual_seed(0)
    net = make_unet(**TINY)
    registry.save_model("tiny", net.state_dict(), {"arch": "unet2d", "config": TINY}, root=tmp_path)
    return tmp_path, net


def test_roundtrip_is_fp16_exact(tiny_zoo):
    root, net = tiny_zoo
    loaded, card = zoo.load_network("tiny", root=root)
    assert card["name"] == "tiny" and zoo.available(root) == ["tiny"]
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v.half().float()), k
    entry = json.loads((root / "registry.json").read_text())["tiny"]
    assert entry["sha256"] == registry.sha256_file(root / "tiny.safetensors")


def test_corrupt_file_names_file_and_fix(tiny_zoo):
    root, _ = tiny_zoo
    path = root / "tiny.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(zoo.ZooError, match=r"tiny\.safetensors.*SHA-256.*(reinstall|restore)"):
        zoo.load_network("tiny", root=root)


def test_missing_and_unknown(tiny_zoo):
    root, _ = tiny_zoo
    with pytest.raises(zoo.ZooError, match="unknown model 'nope'.*tiny"):
        zoo.load_network("nope", root=root)
    (root / "tiny.safetensors").unlink()
    with pytest.raises(zoo.ZooError, match="missing"):
        zoo.load_network("tiny", root=root)


def test_shipped_registry_hashes_match():
    """Every shipped weight file matches its registered SHA-256 and the total stays within the 24 MiB budget."""
    reg = registry.read_registry()
    assert {"fmnist-clf", "fmnist-ddpm", "fmnist-ncsn", "fmnist-gan"} <= reg.keys()
    total = 0
    for name, entry in reg.items():
        path = zoo.WEIGHTS_DIR / entry["file"]
        assert registry.sha256_file(path) == entry["sha256"], name
        card = json.loads((zoo.WEIGHTS_DIR / entry["card"]).read_text())
        assert {"command", "device", "date"} <= card.keys(), name
        if name in ("fmnist-ddpm", "fmnist-ncsn", "fmnist-gan"):  # the GPU release: measured FD beside the floor
            assert card["gpu_trained"] and card["evaluation"]["floor"] > 0, name
        else:  # the classifier, the latent and the spelling experiment's models say where they were trained
            assert card.get("gpu_trained", True) == ("cpu" not in card["device"]), name
        total += path.stat().st_size
    assert total <= 24 * 2**20
