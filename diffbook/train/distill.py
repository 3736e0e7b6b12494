"""The distillation objective of ``fmnist-fast``: progressive distillation of ``fmnist-ddpm`` (the mathematics:
:mod:`diffbook.distill`).

``python -m diffbook train fmnist-fast --config {smoke,release}`` runs it through :func:`diffbook.train.loop.train`,
with that loop's conventions: HF Accelerate (CPU, one GPU or DDP), bf16 autocast and fused AdamW on CUDA, an EMA of the
weights, a tqdm bar, a JSON-lines log, atomic checkpoints every ``ckpt_every`` steps from which a killed run resumes
to bit-identical weights, and a time budget. One global step counter runs through all rounds; round r owns steps
[sum_{q<r} n_q, sum_{q<=r} n_q). At a round's end the EMA weights become both the next teacher and the next student,
the optimiser state is reset and the learning rate warms up and decays linearly to 0 again: each round is a fresh
regression onto a new teacher (Salimans & Ho 2022, Algorithm 2, where each round's student is the next teacher).

Config keys (:data:`diffbook.train.recipes.CONFIGS`): ``teacher`` and ``teacher_root`` (a zoo model and folder, None for
the shipped zoo), ``start_steps`` -> ``end_steps`` (powers of two), ``steps_per_round`` (an int or one per round;
``--steps`` instead sets the total, split in the same proportions), ``batch``, ``lr``, ``warmup``, ``ema_decay``,
``guidance_w`` and ``teacher_clip`` (the round-1 teacher), ``label_drop`` (to the null class), ``keep_rounds``,
``time_budget_s`` (after 60 steps the rounds are shortened alike if the measured speed, and each round's cost in
network passes, predict an overrun), ``ckpt_every``, ``seed``.

Written into the output folder: ``fmnist-fast`` (the last round's student, ``end_steps`` steps) and
``fmnist-fast-{N}step`` for each N in ``keep_rounds``, each as fp16 safetensors with a card that records its
parameterisation ("v"), ``sampling_steps`` and ``sampling_sigmas``; :func:`diffbook.zoo.load_student` picks one.
"""

from __future__ import annotations

import copy

import torch

from ..denoisers import clip_denoiser, from_eps_model, from_v_model
from ..distill import SPACING, distillation_loss, round_plan, round_sigmas
from ..guidance import cfg as classifier_free_guidance
from ..schedules import betas_to_alpha_bar, linear_betas
from ..zoo.registry import build, load_network, read_registry
from .objective import Objective
from .steps import optimiser_step, set_lr, warmup_factor

__all__ = ["DistillObjective"]


def _steps_per_round(cfg: dict, n_rounds: int) -> list[int]:
    """Optimiser steps of each round: ``steps_per_round`` (one int, or one per round), or the ``--steps`` total
    (``cfg["steps"]``) split over the rounds in the same proportions."""
    spr = cfg["steps_per_round"]
    per = [spr] * n_rounds if isinstance(spr, int) else list(spr)
    if len(per) != n_rounds or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in per):
        raise ValueError(f"steps_per_round must be an integer >= 1 or a list of {n_rounds} of them (one per round), "
                         f"got {spr!r}.")
    total = cfg.get("steps")
    if total is None:
        return per
    if total < n_rounds:
        raise ValueError(f"--steps {total} is fewer than one step for each of the {n_rounds} rounds.")
    out = [1 + (total - n_rounds) * n // sum(per) for n in per]
    out[-1] += total - sum(out)
    return out


def _check_teacher(card: dict, name: str) -> None:
    if card.get("parameterisation") != "eps" or card.get("arch") != "unet2d" or card.get("null_class") is None:
        raise ValueError(f"teacher {name!r} must be a class-conditional eps-prediction DDPM UNet like fmnist-ddpm "
                         f"(parameterisation 'eps', arch 'unet2d', a null class); its card says parameterisation "
                         f"{card.get('parameterisation')!r}, arch {card.get('arch')!r}; set 'teacher' in the config.")


def _teacher_denoiser(r: int, teacher_net, alpha_bar, w: float, null_class: int, clip: bool):
    """Round 1: the eps-prediction DDPM, guided with weight w (Eq. (cfg)), its guided x0_hat clamped to [-1, 1] if
    ``clip`` (:func:`diffbook.denoisers.clip_denoiser`); later rounds: the previous v-student, never clamped (its
    x0_hat are one-step targets, not estimates of E[x_0 | x], and may leave the pixel range)."""
    if r > 0:
        return from_v_model(teacher_net, alpha_bar)
    denoiser = from_eps_model(teacher_net, alpha_bar)
    if w:
        denoiser = classifier_free_guidance(denoiser, w, {"class_labels": null_class})
    return clip_denoiser(denoiser) if clip else denoiser


def _cost_per_image(r: int, w: float) -> int:
    """Relative cost of one student image in round r, in teacher forward passes: 2 teacher steps (each on a batch
    of 2B when guided) plus one student forward/backward (~3 forward passes)."""
    return 2 * (2 if r == 0 and w else 1) + 3


class DistillObjective(Objective):
    """Round by round, a v-prediction student learns to take one DDIM step where its teacher takes two; the plan is
    the list of optimiser steps of each round."""

    def __init__(self, name, cfg, data, labels, acc):
        super().__init__(name, cfg, data, labels, acc)
        device = acc.device
        self.rounds = round_plan(cfg["start_steps"], cfg["end_steps"])
        self.plan = _steps_per_round(cfg, len(self.rounds))
        self.keep = {int(n) for n in cfg.get("keep_rounds") or ()}
        if not self.keep <= {n for _, n in self.rounds}:
            raise ValueError(f"keep_rounds {sorted(self.keep)} must be student step counts of the rounds, "
                             f"{[n for _, n in self.rounds]}.")
        self.w, self.clip = float(cfg["guidance_w"]), bool(cfg.get("teacher_clip", False))
        teacher_net, self.tcard = load_network(cfg["teacher"], root=cfg.get("teacher_root"))
        _check_teacher(self.tcard, cfg["teacher"])
        self.teacher_sha = read_registry(cfg.get("teacher_root"))[cfg["teacher"]]["sha256"]
        self.null_class = int(self.tcard["null_class"])
        t = self.tcard
        self.alpha_bar = betas_to_alpha_bar(linear_betas(t["T"], t["beta_start"], t["beta_end"]))
        self.grids = [round_sigmas(self.alpha_bar, n_teacher) for n_teacher, _ in self.rounds]

        net = build(self.tcard)
        net.load_state_dict(teacher_net.state_dict())  # the student starts as a copy of the teacher (see distill)
        teacher_net = teacher_net.to(device).requires_grad_(False).eval()
        net = net.to(device)
        if device.type == "cuda":
            net, teacher_net = (m.to(memory_format=torch.channels_last) for m in (net, teacher_net))
        opt = torch.optim.AdamW(net.parameters(), lr=cfg["lr"], weight_decay=0.0, fused=device.type == "cuda")
        self.ema = copy.deepcopy(net).requires_grad_(False)
        self.net, self.opt = acc.prepare(net, opt)
        self.teacher_net = teacher_net
        self.modules = {"student": self.net, "ema": self.ema, "teacher": teacher_net}
        self.optimizers = {"opt": self.opt}
        self.student = from_v_model(self.net, self.alpha_bar)
        self.r = 0

    # -------------------------------------------------------------------------------------------- the plan
    def bounds(self) -> list[int]:
        """The first step of each round, and the total: [0, n_1, n_1 + n_2, ...]."""
        return [sum(self.plan[:r]) for r in range(len(self.rounds) + 1)]

    def total_steps(self) -> int:
        return self.bounds()[-1]

    def segment_end(self, step: int) -> int:
        b = self.bounds()
        return next(b[q + 1] for q in range(len(self.rounds)) if step < b[q + 1]) if step < b[-1] else b[-1]

    def fit_budget(self, step, sec_per_step, seconds_left):
        """Shorten every round alike if the rest would overrun, from round 1's speed and each round's relative cost
        in network passes (:func:`_cost_per_image`); only while round 1 is still running."""
        steps, w = self.plan, self.w
        if steps[0] <= step:
            return
        sec = sec_per_step / _cost_per_image(0, w)
        need = sec * ((steps[0] - step) * _cost_per_image(0, w)
                      + sum(n * _cost_per_image(q, w) for q, n in enumerate(steps) if q > 0))
        if need > seconds_left:
            f = max(seconds_left, 0.0) / need
            self.plan = [step + max(1, int((steps[0] - step) * f))] + [max(1, int(n * f)) for n in steps[1:]]

    # -------------------------------------------------------------------------------------------- the rounds
    def _teacher(self):
        return _teacher_denoiser(self.r, self.teacher_net, self.alpha_bar, self.w, self.null_class, self.clip)

    def start(self, step, run):
        b = self.bounds()
        self.r = max((q for q in range(len(self.rounds)) if b[q] < step), default=0)  # the round of the last step done
        self.teacher = self._teacher()

    def before_step(self, step, run):
        if step != self.bounds()[self.r + 1]:
            return
        # round r is done: keep its student if asked, then it teaches round r + 1
        N = self.rounds[self.r][1]
        if N in self.keep:
            run.save(f"{self.name}-{N}step", self.ema.state_dict(), self.card_for(self.r, f"{self.name}-{N}step", step,
                                                                                  run))
        self.teacher_net.load_state_dict(self.ema.state_dict())
        self.acc.unwrap_model(self.net).load_state_dict(self.ema.state_dict())
        self.opt.state.clear()  # a fresh AdamW for the new regression problem
        self.r += 1
        self.teacher = self._teacher()

    def train_step(self, step, x0, labels, g):
        cfg, r = self.cfg, self.r
        k = step - self.bounds()[r]  # the step within the round
        lr = set_lr(self.opt, cfg["lr"] * warmup_factor(k, cfg["warmup"]) * (1 - k / self.plan[r]))
        drop = torch.rand(labels.shape, generator=g, device=labels.device) < cfg["label_drop"]
        y = torch.where(drop, torch.full_like(labels, self.null_class), labels)
        with self.acc.autocast():
            loss = distillation_loss(self.student, self.teacher, x0, self.grids[r][0], generator=g, class_labels=y)
        optimiser_step(self.acc, self.opt, loss, self.net, self.ema, min(cfg["ema_decay"], (1 + k) / (10 + k)))
        return dict(round=r + 1, student_steps=self.rounds[r][1], loss=loss.detach(), lr=lr)

    # -------------------------------------------------------------------------------------------- cards
    def card_for(self, r: int, name: str, n_steps: int, run) -> dict:
        """The card of round r's student ``name``: the teacher's architecture, parameterisation "v", how to sample."""
        cfg, t, N, w, steps = self.cfg, self.tcard, self.rounds[r][1], self.w, self.plan
        rounds = [dict(teacher_steps=tq, student_steps=n, optimizer_steps=steps[q],
                       loss=next((rec["loss"] for rec in reversed(run.log) if rec["round"] == q + 1), None),
                       model=(self.name if q == len(self.rounds) - 1 else f"{self.name}-{n}step" if n in self.keep
                              else None))
                  for q, (tq, n) in enumerate(self.rounds[: r + 1])]
        return run.card(
            n_steps, sum(p.numel() for p in self.ema.parameters()),
            arch="unet2d", config=t["config"], parameterisation="v", schedule=t["schedule"], T=t["T"],
            beta_start=t["beta_start"], beta_end=t["beta_end"], null_class=self.null_class,
            label_drop=cfg["label_drop"], model=name,
            method="progressive distillation (Salimans & Ho 2022), v-prediction student, truncated-SNR loss",
            teacher=cfg["teacher"], teacher_sha256=self.teacher_sha, teacher_command=t.get("command"),
            guidance_w=w, guidance_note=f"classes 0-9 sample the teacher guided with CFG weight w={w} "
                                        f"(diffbook.guidance.cfg); class {self.null_class} samples it unconditionally",
            teacher_clip=self.clip, sampling_steps=N, sampling_sampler="ddim (eta = 0), no clipping",
            sampling_spacing=SPACING, sampling_sigmas={str(N): [float(s) for s in self.grids[r][1]]}, rounds=rounds,
            steps_per_round=list(steps), start_steps=cfg["start_steps"], end_steps=cfg["end_steps"], lr=cfg["lr"],
            warmup=cfg["warmup"], ema_decay=cfg["ema_decay"])

    def outputs(self, step, run):
        card = self.card_for(len(self.rounds) - 1, self.name, step, run)
        card["round_models"] = {str(n): rnd["model"] for rnd, (_, n) in zip(card["rounds"], self.rounds)
                                if rnd["model"]}
        card["sampling_sigmas"] = {str(n): [float(s) for s in round_sigmas(self.alpha_bar, 2 * n)[1]]
                                   for n in map(int, card["round_models"])}
        return [(self.name, self.ema.state_dict(), card)]
