"""The pieces of one optimiser step that every training objective shares: the update with its EMA, the learning-rate
warm-up, and the JSON-lines log of the run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .provenance import sync

__all__ = ["StepLog", "ema_update", "optimiser_step", "warmup_factor", "set_lr"]


class StepLog:
    """The JSON-lines training log shared by every objective: one record every ``every`` steps and at the last.

    Each record holds the values the loop passes (step, losses, lr, ...) and ``img_s``, the training images per
    second since the previous record. ``records`` (the list kept in checkpoints) gets every record; the main process
    also appends it to ``path``. Call :meth:`count` once per optimiser step, :meth:`due` to ask whether a record is
    due (so losses are read from the device only then) and :meth:`write` to make it.
    """

    def __init__(self, path: Path, acc, batch: int, records: list, every: int = 50):
        self.path, self.acc, self.batch, self.records, self.every = Path(path), acc, batch, records, every
        self.t, self.n = time.perf_counter(), 0

    def count(self) -> None:
        self.n += self.batch

    def due(self, step: int, last_step: int) -> bool:
        return step % self.every == 0 or step == last_step

    def write(self, **values) -> dict:
        sync(self.acc.device)
        now = time.perf_counter()
        rec = dict(values, img_s=round(self.n / (now - self.t), 1))
        self.t, self.n = now, 0
        self.records.append(rec)
        if self.acc.is_main_process:
            with open(self.path, "a") as f:
                f.write(json.dumps(rec) + "\n")
        return rec


@torch.no_grad()
def ema_update(ema: torch.nn.Module, net: torch.nn.Module, decay: float) -> None:
    """EMA of the weights: theta_ema <- decay theta_ema + (1 - decay) theta, in place for all parameters at once."""
    torch._foreach_lerp_(list(ema.parameters()), list(net.parameters()), 1 - decay)


def optimiser_step(acc, opt, loss: torch.Tensor, net, ema, ema_decay: float) -> None:
    """One update of ``net`` on ``loss`` (Accelerate's backward, so DDP and mixed precision work), then of its EMA."""
    opt.zero_grad(set_to_none=True)
    acc.backward(loss)
    opt.step()
    ema_update(ema, acc.unwrap_model(net), ema_decay)


def warmup_factor(step: int, warmup: int) -> float:
    """Linear learning-rate warm-up: (step + 1) / warmup for the first ``warmup`` steps, then 1."""
    return min(1.0, (step + 1) / warmup) if warmup else 1.0


def set_lr(opt, lr: float) -> float:
    """Set every parameter group's learning rate; returns it."""
    for group in opt.param_groups:
        group["lr"] = lr
    return lr
