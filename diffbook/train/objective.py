"""What one model trains: the interface between a model's recipe and the one training loop.

:func:`diffbook.train.loop.train` knows no model names. It holds the data, the clock, the log, the checkpoints and
the time budget; an *objective* holds everything that is particular to a model: its networks, its optimisers, its
loss and update (:meth:`Objective.train_step`), how its planned steps shrink to fit a time budget, and the weights
and model cards it writes at the end. Each model's objective is declared beside its configs
(:mod:`diffbook.train.recipes`).
"""

from __future__ import annotations

import torch

__all__ = ["Objective"]


class Objective:
    """Base class of the training objectives; subclasses set, in ``__init__``:

    - ``modules``: every module whose state a checkpoint keeps (name -> nn.Module; trained ones already prepared
      by ``acc.prepare``);
    - ``optimizers``: name -> optimiser;
    - ``plan``: the planned steps, an int (the default methods) or whatever a subclass needs (kept in the
      checkpoint, so it must be a plain int, list or dict).
    """

    modules: dict
    optimizers: dict
    plan: object

    def __init__(self, name: str, cfg: dict, data: torch.Tensor, labels: torch.Tensor, acc):
        self.name, self.cfg, self.acc = name, cfg, acc

    # -------------------------------------------------------------------------------------------- the plan
    def total_steps(self) -> int:
        """The number of optimiser steps planned in all."""
        return int(self.plan)

    def segment_end(self, step: int) -> int:
        """The last step of the segment (e.g. distillation round) that ``step`` falls in; the log records it."""
        return self.total_steps()

    def fit_budget(self, step: int, sec_per_step: float, seconds_left: float) -> None:
        """Shrink the plan so the rest fits ``seconds_left`` at the measured speed (never below 200 steps)."""
        self.plan = max(200, min(int(self.plan), step + int(seconds_left / sec_per_step)))

    # -------------------------------------------------------------------------------------------- hooks
    def start(self, step: int, run) -> None:
        """Called once before the first step (``step`` > 0 after a resume)."""

    def before_step(self, step: int, run) -> None:
        """Called before each step (a distillation round ends here and hands its student on)."""

    def train_step(self, step: int, x0: torch.Tensor, labels: torch.Tensor, g: torch.Generator) -> dict:
        """One optimiser step on the batch ``x0`` (with its class ``labels``), noise from ``g``; returns the values
        to log (0-d tensors are read from the device only when a record is written)."""
        raise NotImplementedError

    def eager_baseline(self, data: torch.Tensor, labels: torch.Tensor) -> float | None:
        """Images/s of a plain eager fp32 loop on this model (the speed-up's baseline), if the objective has one."""
        return None

    def outputs(self, step: int, run) -> list[tuple[str, dict, dict]]:
        """What to write at the end: ``(model name, state_dict, card)`` triples (cards: :meth:`Run.card`)."""
        raise NotImplementedError
