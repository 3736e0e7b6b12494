"""Argument checks shared by diffbook (each raises one clear error that names the problem and the fix), and
:func:`per_sample`, the reshape that lets one value per sample act on a batch."""

from __future__ import annotations

import math

import torch


def check_tensor(name: str, t, *, min_dim: int = 1) -> torch.Tensor:
    """Check that ``t`` is a floating-point tensor with at least ``min_dim`` dimensions and no NaN/inf."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}; wrap it with torch.as_tensor(...).")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}; call .float() on it.")
    if t.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dimension(s) (batch first), got shape {tuple(t.shape)}.")
    check_finite(name, t)
    return t


def check_finite(name: str, t: torch.Tensor) -> torch.Tensor:
    """Raise ValueError if ``t`` holds NaN or infinite values."""
    if t.numel() and not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite values; check the inputs (and the step size) that produced it.")
    return t


def check_batch_sigma(x: torch.Tensor, sigma) -> torch.Tensor:
    """Return ``sigma`` as a float tensor of shape [B] matching the batch of ``x``.

    A Python number or a 0-d tensor is broadcast to the batch; a [B] tensor is checked.
    """
    check_tensor("x", x)
    if isinstance(sigma, (int, float)):
        sigma = torch.tensor(float(sigma))
    if not isinstance(sigma, torch.Tensor):
        raise TypeError(f"sigma must be a number or a tensor of shape [B], got {type(sigma).__name__}.")
    sigma = sigma.to(device=x.device, dtype=x.dtype)
    if sigma.dim() == 0:
        sigma = sigma.expand(x.shape[0])
    if sigma.dim() != 1 or sigma.shape[0] != x.shape[0]:
        raise ValueError(
            f"sigma must have shape [B] = [{x.shape[0]}] (one noise level per sample), got {tuple(sigma.shape)}."
        )
    check_finite("sigma", sigma)
    if (sigma < 0).any():
        raise ValueError("sigma must be >= 0 (it is a noise standard deviation).")
    return sigma


def check_sigmas(sigmas) -> torch.Tensor:
    """Check a sampler's noise levels: 1-D, finite, >= 2 entries, strictly decreasing, non-negative."""
    if not isinstance(sigmas, torch.Tensor):
        raise TypeError(f"sigmas must be a 1-D torch.Tensor, got {type(sigmas).__name__}; use diffbook.schedules to make one.")
    if sigmas.dim() != 1 or sigmas.shape[0] < 2:
        raise ValueError(
            f"sigmas must be a 1-D tensor with at least 2 entries (start and end level), got shape {tuple(sigmas.shape)}."
        )
    check_finite("sigmas", sigmas)
    if (sigmas < 0).any():
        raise ValueError("sigmas must be non-negative noise levels.")
    if not (sigmas[1:] < sigmas[:-1]).all():
        raise ValueError(
            "sigmas must be strictly decreasing (from the largest noise level down to the smallest, usually ending in 0); "
            "reverse it or use diffbook.schedules to build it."
        )
    return sigmas


def check_nfe(n) -> int:
    """Check a number of steps / network evaluations: an integer >= 1."""
    if isinstance(n, bool) or not isinstance(n, (int,)) and not (isinstance(n, float) and n.is_integer()):
        raise TypeError(f"the number of steps must be an integer >= 1, got {n!r}.")
    n = int(n)
    if n < 1:
        raise ValueError(f"the number of steps must be >= 1, got {n}.")
    return n


def check_positive(name: str, v) -> float:
    """Check a strictly positive finite scalar."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a positive number, got {v!r}.") from None
    if not math.isfinite(f) or f <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {v!r}.")
    return f


def per_sample(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape one value per sample, ``v`` of shape [B] (or a scalar), to [B, 1, ..., 1] so it broadcasts over ``x``.

    ``v`` takes ``x``'s device; a tensor keeps its own dtype (so float64 schedules stay float64 until they meet x),
    a Python number gets ``x``'s dtype.
    """
    if not isinstance(v, torch.Tensor):
        v = torch.as_tensor(v, dtype=x.dtype)
    v = v.to(x.device)
    if v.dim() == 0:
        v = v.expand(x.shape[0])
    return v.reshape(-1, *([1] * (x.dim() - 1)))  # (B, 1, ..., 1)


def _fix_for_images(x: torch.Tensor, shape: tuple[int, int, int]) -> str:
    """The likely fix when ``x`` is not a batch of images of ``shape`` = (C, H, W)."""
    C, H, W = shape
    if x.dim() == 3 and tuple(x.shape[1:]) == (H, W) and C == 1:
        return "it lacks the channel dimension: use x.unsqueeze(1)"
    if x.dim() == 3 and tuple(x.shape) == shape:
        return "it is one image without the batch dimension: use x.unsqueeze(0)"
    if x.dim() == 4 and x.shape[-1] == C and tuple(x.shape[1:3]) == (H, W):
        return "it is channels-last: use x.permute(0, 3, 1, 2)"
    if x.dim() == 4 and tuple(x.shape[-2:]) == (28, 28) and (H, W) == (32, 32):
        return ("Fashion-MNIST's 28x28 images must be padded to 32x32 with the background value -1: "
                "torch.nn.functional.pad(x, (2, 2, 2, 2), value=-1.0), or load_fashion_mnist(pad_to=32)")
    if x.dim() == 4 and x.shape[1] != C:
        return f"the model takes {C} channel(s)"
    return f"the model was trained on {H}x{W} images with {C} channel(s)"


def check_images(name: str, x, shape) -> torch.Tensor:
    """Check that ``x`` is a finite floating-point batch of images [B, C, H, W] with (C, H, W) = ``shape``."""
    check_tensor(name, x)
    shape = tuple(int(s) for s in shape)
    if x.dim() != 4 or tuple(x.shape[1:]) != shape or x.shape[0] == 0:
        raise ValueError(f"{name} must be a batch of images of shape [B, {shape[0]}, {shape[1]}, {shape[2]}], "
                         f"got {tuple(x.shape)}; {_fix_for_images(x, shape)}.")
    return x


def check_labels(name: str, labels, batch: int, n_labels: int) -> torch.Tensor:
    """Check class labels: an integer tensor of shape [batch] (or one 0-d label for all) with values in
    0..n_labels-1. Returns it."""
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"{name} must be an integer torch.Tensor of shape [{batch}], got {type(labels).__name__}; "
                        "make one with torch.tensor([...]) or torch.full((B,), c).")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class indices, got dtype {labels.dtype}; call .long() on it.")
    if labels.dim() > 1 or (labels.dim() == 1 and labels.shape[0] != batch):
        raise ValueError(f"{name} must have shape [{batch}] (one class per image in the batch of {batch}), "
                         f"got {tuple(labels.shape)}.")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_labels):
        raise ValueError(f"{name} must lie in 0..{n_labels - 1}, got values from {int(labels.min())} to "
                         f"{int(labels.max())}.")
    return labels


def check_network_input(net, x: torch.Tensor, cond: dict) -> None:
    """Check a batch ``x`` and its ``class_labels`` against a diffusers network's config (``in_channels``,
    ``sample_size``, ``num_class_embeds``), so a wrong shape fails here, named, and not deep inside the network.
    Networks without such a config (the 2D MLPs) are not checked."""
    config = getattr(net, "config", None)
    if config is None or not hasattr(config, "get") or config.get("in_channels") is None:
        return
    size = config.get("sample_size")
    H, W = (size, size) if isinstance(size, int) else tuple(size)
    check_images("x", x, (config["in_channels"], H, W))
    n_classes = config.get("num_class_embeds")
    if n_classes:
        if "class_labels" not in cond:
            raise ValueError(f"this network is class-conditional ({n_classes} class embeddings): pass "
                             "class_labels=... (a tensor of shape [B]).")
        check_labels("class_labels", cond["class_labels"], x.shape[0], n_classes)
    elif cond.get("class_labels") is not None:
        raise ValueError("this network is not class-conditional; drop class_labels.")
