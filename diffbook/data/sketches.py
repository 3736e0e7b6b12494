"""Rough sketches drawn in code, the guides of SDEdit: flat grey shapes on the background, and collages made by
pasting a patch of one image into another.

A sketch is a few filled polygons with a flat grey level on the background value -1, 32x32, in [-1, 1]: nothing a
Fashion-MNIST image looks like in detail, but the silhouette of a class.
"""

from __future__ import annotations

import torch

__all__ = ["SKETCHES", "sketch", "sketches", "paste_patch"]

# class index -> polygons (lists of (x, y) corners in a 32x32 frame) and a grey level, drawn by hand
SKETCHES = {
    0: ([[(6, 8), (12, 5), (20, 5), (26, 8), (28, 14), (23, 15), (22, 27), (10, 27), (9, 15), (4, 14)]], 0.2),
    1: ([[(10, 4), (22, 4), (23, 28), (18, 28), (16, 11), (14, 28), (9, 28)]], 0.0),
    3: ([[(13, 4), (19, 4), (20, 11), (25, 28), (7, 28), (12, 11)]], 0.1),
    5: ([[(3, 20), (12, 17), (20, 18), (29, 23), (29, 25), (3, 25)]], -0.1),
    7: ([[(3, 18), (12, 15), (18, 18), (29, 20), (29, 25), (3, 25)]], 0.3),
    8: ([[(5, 12), (27, 12), (27, 27), (5, 27)], [(11, 5), (21, 5), (21, 12), (19, 12), (19, 7), (13, 7),
                                                   (13, 12), (11, 12)]], 0.1),
    9: ([[(7, 5), (16, 5), (17, 16), (28, 20), (28, 27), (6, 27)]], -0.2),
}


def _inside(poly, px, py) -> torch.Tensor:
    """Even-odd rule: which pixel centres (px, py) lie inside the polygon."""
    inside = torch.zeros_like(px, dtype=torch.bool)
    n = len(poly)
    for k in range(n):
        (x1, y1), (x2, y2) = poly[k], poly[(k + 1) % n]
        crosses = (y1 > py) != (y2 > py)
        x_at = x1 + (py - y1) * (x2 - x1) / (y2 - y1 + 1e-12)
        inside ^= crosses & (px < x_at)
    return inside


def sketch(label: int, size: int = 32) -> torch.Tensor:
    """The sketch of class ``label`` (a key of :data:`SKETCHES`) as one image [1, size, size] in [-1, 1]."""
    if label not in SKETCHES:
        raise ValueError(f"there is a sketch for the classes {sorted(SKETCHES)}, not {label!r}.")
    polys, grey = SKETCHES[label]
    c = torch.arange(size, dtype=torch.float32) + 0.5
    py, px = torch.meshgrid(c * 32 / size, c * 32 / size, indexing="ij")
    img = torch.full((size, size), -1.0)
    for poly in polys:
        img[_inside(poly, px, py)] = grey
    return img[None]


def sketches(labels=None) -> tuple[torch.Tensor, torch.Tensor]:
    """All sketches (or those of ``labels``) as (images [N, 1, 32, 32], their classes [N])."""
    labels = sorted(SKETCHES) if labels is None else list(labels)
    return torch.stack([sketch(c) for c in labels]), torch.tensor(labels)


def paste_patch(images: torch.Tensor, donors: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """Collages: ``images`` [B, C, H, W] with the rectangle ``box`` = (top, left, height, width) copied from
    ``donors`` (same shape)."""
    if images.shape != donors.shape:
        raise ValueError(f"images and donors must have one shape, got {tuple(images.shape)} and {tuple(donors.shape)}.")
    top, left, h, w = box
    out = images.clone()
    out[..., top:top + h, left:left + w] = donors[..., top:top + h, left:left + w]
    return out
