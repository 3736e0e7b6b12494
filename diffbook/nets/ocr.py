"""A per-character OCR model for rendered words: reads which character (or none) sits in each of the four slots
of a 16x48 image (:mod:`diffbook.data.text`); the judge of the spelling experiment.

A small CNN (two stride-2 stages) ends in one linear layer that gives, for each slot, scores over the 26 lower-case
letters and "blank" (an empty slot). It is trained on renders of random strings with noise and one-pixel shifts
(:mod:`diffbook.train.ocr`), so it also reads imperfect generated images.
"""

from __future__ import annotations

import torch
from torch import nn

from ..checks import check_images

__all__ = ["CLASSES", "BLANK", "SlotOCR", "targets", "read", "read_slots", "OCR_CONFIG"]

CLASSES = "abcdefghijklmnopqrstuvwxyz"
BLANK = len(CLASSES)  # class index of an empty slot
OCR_CONFIG = dict(channels=(32, 64, 96), slots=4, height=16, width=48)


class SlotOCR(nn.Module):
    """images [B, 1, 16, 48] in [-1, 1] -> logits [B, slots, 27] (26 letters + blank)."""

    def __init__(self, channels=(32, 64, 96), slots: int = 4, height: int = 16, width: int = 48):
        super().__init__()
        c1, c2, c3 = channels
        self.config = dict(channels=list(channels), slots=slots, height=height, width=width)
        self.slots, self.shape = slots, (1, height, width)

        def block(c_in, c_out, stride):
            return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]

        self.features = nn.Sequential(*block(1, c1, 1), *block(c1, c2, 2), *block(c2, c2, 1), *block(c2, c3, 2),
                                      nn.Dropout(0.1))
        self.head = nn.Linear(c3 * (height // 4) * (width // 4), slots * (BLANK + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x).flatten(1)  # (B, c3 * H/4 * W/4)
        return self.head(h).view(-1, self.slots, BLANK + 1)


def targets(words, slots: int = 4) -> torch.Tensor:
    """The class of each slot of each word [N, slots]: letter index, or BLANK after the word ends."""
    out = torch.full((len(words), slots), BLANK, dtype=torch.long)
    for i, w in enumerate(words):
        bad = [c for c in w if c not in CLASSES]
        if bad or len(w) > slots:
            raise ValueError(f"the OCR reads up to {slots} lower-case letters a-z; {w!r} has {bad or 'too many'}.")
        out[i, :len(w)] = torch.tensor([CLASSES.index(c) for c in w])
    return out


@torch.no_grad()
def read_slots(model: SlotOCR, images: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """The most likely class of each slot [N, slots] (eval mode, batched)."""
    check_images("images", images, model.shape)
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    out = torch.cat([model(images[i:i + batch].to(dev)).argmax(-1).cpu() for i in range(0, images.shape[0], batch)])
    model.train(was)
    return out


def read(model: SlotOCR, images: torch.Tensor) -> list[str]:
    """The words the OCR reads in ``images``: the letters of the non-blank slots, in order."""
    return ["".join(CLASSES[k] for k in row if k != BLANK) for row in read_slots(model, images).tolist()]
