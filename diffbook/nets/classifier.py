"""The Fashion-MNIST classifier whose penultimate features the book's Frechet distances use.

The Frechet Inception Distance (Heusel et al. 2017) compares Gaussians fitted to the features of a classifier
trained on natural images. Fashion-MNIST is far from ImageNet, so the book fits the Gaussians to the features
of a small CNN trained on Fashion-MNIST itself: `FashionClassifier.features(x)` returns its 128-d penultimate
layer. Numbers computed this way are comparable with each other, not with published FIDs.

Input: images [N, 1, 32, 32] in [-1, 1] as returned by `diffbook.data.fashion.load_fashion_mnist` (28x28 padded
with the background value -1). The shipped weights load with ``diffbook.load("fmnist-clf")``; the training
command is in :mod:`diffbook.train.classifier`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..checks import check_tensor

__all__ = [
    "FashionClassifier",
    "DEFAULT_CONFIG",
    "NAME",
    "evaluate_accuracy",
    "predict",
    "predict_from_features",
    "extract_features",
    "build_classifier",
]

NAME = "fmnist-clf"

# channels of each block, convolutions per block (each conv-BN-ReLU, then a 2x2 max-pool per block).
DEFAULT_CONFIG = {
    "in_channels": 1,
    "image_size": 32,
    "channels": [32, 64, 128],
    "convs_per_block": [1, 2, 1],
    "feature_dim": 128,
    "num_classes": 10,
}


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class FashionClassifier(nn.Module):
    """Small CNN: conv-BN-ReLU blocks with max-pooling, a 128-d feature layer, then 10 logits."""

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 32,
        channels=(32, 64, 128),
        convs_per_block=(1, 2, 1),
        feature_dim: int = 128,
        num_classes: int = 10,
    ):
        super().__init__()
        if len(channels) != len(convs_per_block):
            raise ValueError("channels and convs_per_block must have the same length (one entry per block).")
        if image_size % (2 ** len(channels)):
            raise ValueError(f"image_size {image_size} must be divisible by 2**{len(channels)} (one pooling per block).")
        self.config = {
            "in_channels": int(in_channels),
            "image_size": int(image_size),
            "channels": [int(c) for c in channels],
            "convs_per_block": [int(n) for n in convs_per_block],
            "feature_dim": int(feature_dim),
            "num_classes": int(num_classes),
        }
        layers: list[nn.Module] = []
        c_prev = in_channels
        for c, n in zip(channels, convs_per_block):
            for _ in range(n):
                layers += _conv_bn_relu(c_prev, c)
                c_prev = c
            layers.append(nn.MaxPool2d(2))
        self.body = nn.Sequential(*layers)
        side = image_size // 2 ** len(channels)
        self.feature = nn.Sequential(
            nn.Flatten(), nn.Linear(c_prev * side * side, feature_dim, bias=False), nn.BatchNorm1d(feature_dim), nn.ReLU()
        )
        self.head = nn.Linear(feature_dim, num_classes)

    def _check_input(self, x) -> torch.Tensor:
        check_tensor("x", x)
        c, s = self.config["in_channels"], self.config["image_size"]
        if x.dim() != 4 or tuple(x.shape[1:]) != (c, s, s) or x.shape[0] == 0:
            raise ValueError(
                f"the classifier takes images of shape [N, {c}, {s}, {s}] scaled to [-1, 1], got {tuple(x.shape)}; "
                "load them with diffbook.data.fashion.load_fashion_mnist(pad_to=32)."
            )
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the penultimate features [N, feature_dim] (non-negative, after ReLU) used by the metrics."""
        x = self._check_input(x)
        return self.feature(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the class logits [N, num_classes]."""
        return self.head(self.features(x))


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def _batched(model: FashionClassifier, images: torch.Tensor, batch_size: int, fn) -> torch.Tensor:
    """``fn(batch)`` over ``images`` in batches on the model's device and dtype, in eval mode; results concatenated."""
    model._check_input(images)
    was_training = model.training
    model.eval()
    device, dtype = _device_of(model), next(model.parameters()).dtype
    out = [fn(images[i : i + batch_size].to(device, dtype)) for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(out)


def extract_features(model: FashionClassifier, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Return ``model.features`` of ``images`` [N,1,32,32] as float32 [N, feature_dim], in eval mode, batched."""
    return _batched(model, images, batch_size, lambda b: model.features(b).float())


def predict(model: FashionClassifier, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Return the predicted class (arg-max logit) of each image, int64 [N] on the CPU."""
    return _batched(model, images, batch_size, lambda b: model(b).argmax(1).cpu())


@torch.no_grad()
def predict_from_features(model: FashionClassifier, feats: torch.Tensor) -> torch.Tensor:
    """The predicted class of images from their :func:`extract_features` (the model's last layer only), int64 [N]
    on the CPU: ``predict(model, x)`` without running the network a second time on images already embedded."""
    p = next(model.head.parameters())
    return model.head(feats.to(p.device, p.dtype)).argmax(1).cpu()


def evaluate_accuracy(model: FashionClassifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500) -> float:
    """Return the fraction of ``images`` whose predicted class equals ``labels``."""
    model._check_input(images)
    if not isinstance(labels, torch.Tensor) or labels.shape != (images.shape[0],):
        raise ValueError(f"labels must be a tensor of shape [{images.shape[0]}] (one class per image).")
    return (predict(model, images, batch_size) == labels.cpu()).double().mean().item()


def build_classifier(config: dict) -> FashionClassifier:
    """Build an untrained `FashionClassifier` from the ``config`` dict stored in its model card."""
    return FashionClassifier(**config)
