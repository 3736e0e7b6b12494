"""Train the feature classifier ``fmnist-clf`` (:mod:`diffbook.nets.classifier`) and register it in a zoo folder.

Command::

    python -m diffbook.train.classifier --epochs 8 --out runs/zoo

writes ``fmnist-clf.safetensors`` (fp16) and its model card ``fmnist-clf.json`` into that zoo folder and registers
their SHA-256 in its ``registry.json`` (:mod:`diffbook.zoo.registry`). The shipped one was trained on an H100 with
``--device cuda --epochs 15 --batch 256``.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from ..data.fashion import load_fashion_mnist
from ..nets.classifier import NAME, DEFAULT_CONFIG, FashionClassifier, build_classifier, evaluate_accuracy, predict
from ..zoo.registry import save_model

__all__ = ["augment", "train_classifier", "save_classifier", "describe_run", "main"]


def augment(x: torch.Tensor, generator: torch.Generator | None = None, shift: int = 2) -> torch.Tensor:
    """Randomly translate each image by up to ``shift`` pixels (background fill -1) and flip half left-right."""
    b, c, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift), value=-1.0)
    oy = torch.randint(0, 2 * shift + 1, (b,), generator=generator, device="cpu").to(x.device)
    ox = torch.randint(0, 2 * shift + 1, (b,), generator=generator, device="cpu").to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # [B,1,H,1]
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # [B,1,1,W]
    bidx = torch.arange(b, device=x.device)[:, None, None, None]
    cidx = torch.arange(c, device=x.device)[None, :, None, None]
    out = padded[bidx, cidx, rows, cols]
    flip = (torch.rand(b, generator=generator, device="cpu") < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


def train_classifier(
    epochs: int = 8,
    batch: int = 128,
    lr: float = 0.1,
    seed: int = 0,
    device="cpu",
    config: dict | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    weight_decay: float = 5e-4,
    label_smoothing: float = 0.1,
    log=print,
) -> tuple[FashionClassifier, dict]:
    """Train `FashionClassifier` on the Fashion-MNIST training split; return (model in eval mode, history).

    SGD with Nesterov momentum 0.9 and a one-cycle learning-rate schedule peaking at ``lr``; augmentation:
    random translations of up to 2 pixels and left-right flips. Seeded: the same seed, device and thread count
    give the same weights. ``n_train`` / ``n_test`` limit the training set and the per-epoch test evaluation
    (for smoke tests).
    """
    for name, v in (("epochs", epochs), ("batch", batch)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}.")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}.")
    device = torch.device(device)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    images, labels = load_fashion_mnist("train", pad_to=32)
    if n_train is not None:
        images, labels = images[:n_train], labels[:n_train]
    test_images, test_labels = load_fashion_mnist("test", pad_to=32)
    if n_test is not None:
        test_images, test_labels = test_images[:n_test], test_labels[:n_test]
    images, labels = images.to(device), labels.to(device)

    model = FashionClassifier(**(config or DEFAULT_CONFIG)).to(device)
    memory_format = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    steps_per_epoch = (len(images) + batch - 1) // batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.25)
    history = {"epoch": [], "train_loss": [], "test_accuracy": [], "seconds": []}
    start = time.time()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(images), generator=gen).to(device)
        total, count = 0.0, 0
        for i in range(0, len(images), batch):
            idx = perm[i : i + batch]
            x = augment(images[idx], generator=gen).contiguous(memory_format=memory_format)
            loss = F.cross_entropy(model(x), labels[idx], label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            count += len(idx)
        acc = evaluate_accuracy(model, test_images, test_labels)
        history["epoch"].append(epoch + 1)
        history["train_loss"].append(total / count)
        history["test_accuracy"].append(acc)
        history["seconds"].append(time.time() - start)
        log(f"epoch {epoch + 1}/{epochs}: train loss {total / count:.4f}, test accuracy {acc:.4f}, {time.time() - start:.0f} s")
    model = model.to(memory_format=torch.contiguous_format).eval()
    return model, history


def _fp16_round_trip(model: FashionClassifier) -> FashionClassifier:
    """A float32 copy of ``model`` whose weights went through fp16, as they ship (to measure what ships)."""
    copy = build_classifier(model.config)
    copy.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in model.state_dict().items()})
    return copy.eval()


def save_classifier(model: FashionClassifier, card: dict, root=None) -> dict:
    """Register the classifier in a zoo folder (default: the package's) as fp16 ``fmnist-clf`` with ``card``."""
    card = {"arch": "classifier", "config": model.config, **card}
    return save_model(NAME, model.state_dict(), card, root=None if root is None else Path(root))


def main(argv=None) -> int:
    """Command line: train the classifier and register its fp16 weights and model card in a zoo folder."""
    p = argparse.ArgumentParser(prog="python -m diffbook.train.classifier", description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--n-train", type=int, default=None, help="use only the first N training images (smoke runs)")
    p.add_argument("--n-test", type=int, default=None,
                   help="evaluate (each epoch and for the card) on the first N test images only (smoke runs)")
    p.add_argument("--out", required=True, help="zoo folder for fmnist-clf.safetensors, fmnist-clf.json, registry.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.time()
    model, history = train_classifier(
        epochs=args.epochs, batch=args.batch, lr=args.lr, seed=args.seed, device=args.device,
        n_train=args.n_train, n_test=args.n_test,
    )
    wall = time.time() - start
    card = describe_run(model.cpu(), args, history, wall, argv)
    entry = save_classifier(model, card, root=args.out)
    print(f"test accuracy (fp16 weights) {card['test_accuracy']:.4f}; registered {entry['file']} in {args.out} "
          f"({entry['bytes']} bytes) after {wall:.0f} s")
    return 0


def describe_run(model: FashionClassifier, args, history: dict, wall: float, argv=None) -> dict:
    """The model card of a training run, with the test accuracy of the fp16 weights as they ship."""
    test_images, test_labels = load_fashion_mnist("test", pad_to=32)
    n_test = len(test_images) if args.n_test is None else min(args.n_test, len(test_images))
    correct = (predict(_fp16_round_trip(model), test_images[:n_test]) == test_labels[:n_test]).double()
    device = f"cpu ({args.threads} cores)"
    if torch.device(args.device).type == "cuda":
        device = torch.cuda.get_device_name(torch.device(args.device))
    card = {
        "description": "Fashion-MNIST CNN classifier; its 128-d penultimate features define the book's Frechet "
        "distance, precision/recall and density/coverage.",
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": "float16 (computed in float32)",
        "data": {
            "train": "Fashion-MNIST training split (60,000 images)"
            if args.n_train is None else f"first {args.n_train} Fashion-MNIST training images",
            "test": "Fashion-MNIST test split (10,000 images)"
            if n_test == len(test_images) else f"first {n_test} Fashion-MNIST test images",
            "preprocessing": "pixels p -> 2p/255 - 1, padded 28x28 -> 32x32 with -1",
            "augmentation": "random translation up to 2 px, left-right flip",
        },
        "command": "python -m diffbook.train.classifier " + " ".join(argv if argv is not None else sys.argv[1:]),
        "training": {
            "epochs": args.epochs,
            "batch": args.batch,
            "optimizer": "SGD, Nesterov momentum 0.9, weight decay 5e-4, one-cycle lr (25% warm-up)",
            "lr_max": args.lr,
            "label_smoothing": 0.1,
            "seed": args.seed,
            "history": history,
        },
        "device": device,
        "platform": platform.platform(),
        "torch": torch.__version__,
        "wall_time_s": round(wall, 1),
        "test_accuracy": correct.mean().item(),
        "date": datetime.date.today().isoformat(),
    }
    if n_test >= 2000:
        card["test_accuracy_first_2000"] = correct[:2000].mean().item()
    return card


if __name__ == "__main__":
    raise SystemExit(main())
