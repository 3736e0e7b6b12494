"""The OCR objective (``text-ocr``): a per-slot character classifier (:class:`diffbook.nets.ocr.SlotOCR`) trained on
renders of random strings, the judge of the spelling experiment.

Each step renders a fresh batch of random strings of 1 to 4 letters (:func:`diffbook.data.text.random_strings`),
so the OCR never learns a word list, only letters in slots, and augments them as generated images differ from
clean renders: a shift of up to one pixel, Gaussian noise of a random strength, and a random contrast. The card
records its accuracy on 2,000 clean renders of fresh random strings and on 2,000 noisy ones. The loop hands every
objective a Fashion-MNIST batch; this one ignores it (its data are the rendered words).

``OCR_CONFIGS`` holds the configs the lead developer registers in :mod:`diffbook.train.recipes`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.text import random_strings, render_words
from ..nets.ocr import SlotOCR, read_slots, targets
from .objective import Objective
from .steps import set_lr, warmup_factor

__all__ = ["OCRObjective", "OCR_CONFIGS", "augment", "ocr_accuracy"]

DATA = "renders of random strings of 1-4 letters a-z (DejaVu Sans Mono, 16x48), fresh every step"

OCR_CONFIGS = {
    "text-ocr": {
        "release": dict(channels=(32, 64, 96), batch=256, lr=2e-3, warmup=50, steps=3000, time_budget_s=120,
                        ckpt_every=500, seed=11, n_eval=2000),
        # what ran on the CPU for the shipped model: the release config with
        # --set steps=400 batch=64 ckpt_every=50 time_budget_s=null (its card's train_config)
        "smoke": dict(channels=(8, 8, 8), batch=8, lr=2e-3, warmup=2, steps=4, time_budget_s=None, ckpt_every=2,
                      seed=11, n_eval=40),
    },
}


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Shift each image by up to one pixel (background fill), scale its contrast by 0.6-1 and add Gaussian noise
    with a standard deviation drawn from 0-0.4 per image."""
    B = x.shape[0]
    dy, dx = (torch.randint(-1, 2, (B,), generator=g) for _ in range(2))
    out = torch.full_like(x, -1.0)
    for i in range(B):
        out[i] = torch.roll(x[i], (int(dy[i]), int(dx[i])), dims=(1, 2))
    contrast = 0.6 + 0.4 * torch.rand(B, 1, 1, 1, generator=g)
    noise = 0.4 * torch.rand(B, 1, 1, 1, generator=g) * torch.randn(x.shape, generator=g)
    return ((out + 1) * contrast - 1 + noise).clamp(-1.5, 1.5)


def ocr_accuracy(model: SlotOCR, words, images: torch.Tensor) -> dict:
    """Exact-word accuracy (every slot right, blanks included) and per-character accuracy (the word's letters)."""
    pred, true = read_slots(model, images), targets(words)
    exact = (pred == true).all(dim=1).double().mean().item()
    lengths = torch.tensor([len(w) for w in words])
    in_word = torch.arange(true.shape[1])[None] < lengths[:, None]
    per_char = ((pred == true) & in_word).sum().item() / in_word.sum().item()
    return dict(word_accuracy=round(exact, 4), char_accuracy=round(per_char, 4))


class OCRObjective(Objective):
    """Cross-entropy over the slots of augmented renders, AdamW with a linear warm-up."""

    def __init__(self, name, cfg, data, labels, acc):
        super().__init__(name, cfg, data, labels, acc)
        net = SlotOCR(tuple(cfg["channels"]))
        opt = torch.optim.AdamW(net.parameters(), lr=cfg["lr"], weight_decay=1e-4)
        self.net, self.opt = acc.prepare(net, opt)
        self.modules, self.optimizers, self.plan = {"net": self.net}, {"opt": self.opt}, cfg["steps"]

    def train_step(self, step, x0, labels, g):
        g_cpu = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=g, device=g.device)))
        lengths = tuple(range(1, 5))
        words = random_strings(self.cfg["batch"], g_cpu, lengths=lengths)
        x = augment(render_words(words), g_cpu).to(self.acc.device)
        y = targets(words).to(self.acc.device)
        lr = set_lr(self.opt, self.cfg["lr"] * warmup_factor(step, self.cfg["warmup"]))
        loss = F.cross_entropy(self.net(x).flatten(0, 1), y.flatten())
        self.opt.zero_grad(set_to_none=True)
        self.acc.backward(loss)
        self.opt.step()
        return dict(loss=loss.detach(), lr=lr)

    def outputs(self, step, run):
        net = self.acc.unwrap_model(self.net).cpu().eval()
        g = torch.Generator().manual_seed(12345)
        words = random_strings(self.cfg["n_eval"], g, lengths=(3, 4))
        clean = render_words(words)
        card = run.card(step, sum(p.numel() for p in net.parameters()), arch="ocr", config=net.config,
                        parameterisation="classifier", lr=self.cfg["lr"],
                        evaluation=dict(words=f"{len(words)} random strings of 3-4 letters (seed 12345)",
                                        clean=ocr_accuracy(net, words, clean),
                                        noisy=ocr_accuracy(net, words, augment(clean, g))),
                        train_config={k: list(v) if isinstance(v, tuple) else v for k, v in self.cfg.items()})
        card["data"] = DATA
        return [(self.name, net.state_dict(), card)]
