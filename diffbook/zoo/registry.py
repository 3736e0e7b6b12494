"""The registry of a zoo folder: weights, each with a model card and a SHA-256, written atomically, verified on load.

Layout of a zoo folder (``diffbook/zoo/weights`` for the shipped models)::

    registry.json            {name: {"file": ..., "card": ..., "sha256": ..., "bytes": ...}}
    NAME.safetensors         fp16 weights (no pickle)
    NAME.json                the model card: architecture config, data, command, steps, device, wall time, metrics

Loading verifies the hash first and fails with one message naming the file and the fix.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class ZooError(ValueError):
    """A shipped model is missing, unknown or corrupt."""


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, then os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_registry(root: Path | None = None) -> dict:
    """The registry of a zoo folder (the shipped one by default); {} if it has none."""
    reg = Path(root or WEIGHTS_DIR) / "registry.json"
    return json.loads(reg.read_text()) if reg.exists() else {}


def available(root: Path | None = None) -> list[str]:
    """Names of the models in a zoo folder."""
    return sorted(read_registry(root))


def save_model(name: str, state_dict: dict, card: dict, root: Path | None = None, dtype=torch.float16) -> dict:
    """Save weights (floating tensors cast to ``dtype``) and the card, and register their SHA-256. Atomic."""
    from safetensors.torch import save

    root = Path(root or WEIGHTS_DIR)
    tensors = {k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).contiguous().cpu()
               for k, v in state_dict.items()}
    blob = save(tensors, metadata={"name": name})
    wfile, cfile = f"{name}.safetensors", f"{name}.json"
    atomic_write_bytes(root / wfile, blob)
    atomic_write_json(root / cfile, {"name": name, **card})
    reg = read_registry(root)
    reg[name] = {"file": wfile, "card": cfile, "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}
    atomic_write_json(root / "registry.json", reg)
    return reg[name]


def load_state(name: str, root: Path | None = None, dtype=torch.float32) -> tuple[dict, dict]:
    """Return ``(state_dict, card)`` of a registered model after checking its SHA-256."""
    from safetensors.torch import load_file

    root = Path(root or WEIGHTS_DIR)
    reg = read_registry(root)
    if name not in reg:
        raise ZooError(f"unknown model {name!r}; the zoo in {root} has: {', '.join(sorted(reg)) or 'nothing'}.")
    entry = reg[name]
    path = root / entry["file"]
    card_path = root / entry["card"]
    command = json.loads(card_path.read_text()).get("command") if card_path.exists() else None
    fix = ("reinstall diffbook (pip install --force-reinstall diffbook) or restore the file from the repository "
           f"(git checkout -- {path.name}), or retrain it with `{command or f'python -m diffbook train {name}'}`")
    if not path.exists():
        raise ZooError(f"weights file {path} for {name!r} is missing; {fix}.")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise ZooError(f"weights file {path} for {name!r} has SHA-256 {digest[:12]}..., but the registry expects "
                       f"{entry['sha256'][:12]}...: the file is corrupt or was changed; {fix}.")
    state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in load_file(path).items()}
    return state, json.loads(card_path.read_text())


def build(card: dict) -> torch.nn.Module:
    """Build the untrained network a model card describes (``card["arch"]`` and ``card["config"]``)."""
    arch = card.get("arch")
    if arch == "unet2d":
        from ..nets.unet import make_unet

        return make_unet(**card["config"])
    if arch == "classifier":
        from ..nets.classifier import build_classifier

        return build_classifier(card["config"])
    if arch == "ncsn-unet":
        from ..nets.ncsn import NCSNUNet

        return NCSNUNet(**card["config"])
    if arch == "dcgan":
        from ..nets.gan import build_generator

        return build_generator(card["config"])
    if arch == "text-unet":
        from ..nets.text_encoders import TextUNet

        return TextUNet(**card["config"])
    if arch == "ocr":
        from ..nets.ocr import SlotOCR

        return SlotOCR(**card["config"])
    if arch == "autoencoder-kl":
        from ..nets.autoencoder import make_autoencoder

        return make_autoencoder(**card["config"])
    raise ZooError(f"model card names an unknown architecture {arch!r}; upgrade diffbook.")


def load_network(name: str, root: Path | None = None, device=None) -> tuple[torch.nn.Module, dict]:
    """Load a registered network: ``(network in eval mode, card)``. Verifies the SHA-256 before anything else.

    The raw network; :func:`diffbook.zoo.load` wraps it in a model object with ``.sample``.
    """
    state, card = load_state(name, root)
    net = build(card)
    net.load_state_dict(state)
    return net.to(device or "cpu").eval(), card
