"""Training loop of ``fmnist-fast``: progressive distillation of ``fmnist-ddpm`` (the math: :mod:`diffbook.distill`).

``python -m diffbook train fmnist-fast --config {smoke,release}`` runs it through :func:`diffbook.training.train`, with
that loop's conventions: HF Accelerate (CPU, one GPU or DDP), bf16 autocast and fused AdamW on CUDA, an EMA of the
weights, a tqdm bar, a JSON-lines log, atomic checkpoints every ``ckpt_every`` steps from which a killed run resumes
to bit-identical weights, and a time budget. One global step counter runs through all rounds; round r owns steps
[sum_{q<r} n_q, sum_{q<=r} n_q). At a round's end the EMA weights become both the next teacher and the next student,
the optimiser state is reset and the learning rate warms up and decays linearly to 0 again: each round is a fresh
regression onto a new teacher (Salimans & Ho 2022, Algorithm 2, where each round's student is the next teacher).

Config keys (:data:`diffbook.configs.CONFIGS`): ``teacher`` and ``teacher_root`` (a zoo model and folder, None for
the shipped zoo), ``start_steps`` -> ``end_steps`` (powers of two), ``steps_per_round`` (an int or one per round;
``--steps`` instead sets the total, split in the same proportions), ``batch``, ``lr``, ``warmup``, ``ema_decay``,
``guidance_w`` and ``teacher_clip`` (the round-1 teacher), ``label_drop`` (to the null class), ``keep_rounds``,
``time_budget_s`` (after 60 steps the rounds are shortened alike if the measured speed, and each round's cost in
network passes, predict an overrun), ``ckpt_every``, ``seed``.

Written into the output folder: ``fmnist-fast`` (the last round's student, ``end_steps`` steps) and
``fmnist-fast-{N}step`` for each N in ``keep_rounds``, each as fp16 safetensors with a card that records its
parameterisation ("v"), ``sampling_steps`` and ``sampling_sigmas``; :func:`diffbook.distill.load_student` picks one.
"""

from __future__ import annotations

import copy
import os
import sys
import time
from pathlib import Path

import torch

from . import zoo
from .denoisers import clip_denoiser, from_eps_model
from .distill import SPACING, distillation_loss, from_v_model, round_plan, round_sigmas
from .guidance import cfg as classifier_free_guidance
from .schedules import betas_to_alpha_bar, linear_betas


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


def train_distill(cfg: dict, data: torch.Tensor, labels: torch.Tensor, acc, out: Path, *, model: str, config: str,
                  kill_at_step: int | None = None, fresh: bool = False) -> dict:
    """Distil ``cfg["teacher"]`` into ``model`` round by round; return the final card (also written beside it)."""
    from accelerate.utils import broadcast_object_list
    from tqdm.auto import tqdm

    from .training import StepLog, _device_name, _lr_factor, _sync, load_checkpoint, optimiser_step, save_checkpoint

    device = acc.device
    plan = round_plan(cfg["start_steps"], cfg["end_steps"])
    steps = _steps_per_round(cfg, len(plan))
    keep = {int(n) for n in cfg.get("keep_rounds") or ()}
    if not keep <= {n for _, n in plan}:
        raise ValueError(f"keep_rounds {sorted(keep)} must be student step counts of the rounds, "
                         f"{[n for _, n in plan]}.")
    w, clip = float(cfg["guidance_w"]), bool(cfg.get("teacher_clip", False))
    teacher_net, tcard = zoo.load(cfg["teacher"], root=cfg.get("teacher_root"))
    _check_teacher(tcard, cfg["teacher"])
    teacher_sha = zoo.read_registry(cfg.get("teacher_root"))[cfg["teacher"]]["sha256"]
    null_class = int(tcard["null_class"])
    alpha_bar = betas_to_alpha_bar(linear_betas(tcard["T"], tcard["beta_start"], tcard["beta_end"]))
    grids = [round_sigmas(alpha_bar, n_teacher) for n_teacher, _ in plan]

    net = zoo.build(tcard)
    net.load_state_dict(teacher_net.state_dict())  # the student starts as a copy of the teacher (see distill)
    teacher_net = teacher_net.to(device).requires_grad_(False).eval()
    net = net.to(device)
    if device.type == "cuda":
        net, teacher_net = (m.to(memory_format=torch.channels_last) for m in (net, teacher_net))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg["lr"], weight_decay=0.0, fused=device.type == "cuda")
    ema = copy.deepcopy(net).requires_grad_(False)
    net, opt = acc.prepare(net, opt)
    per_proc = cfg["batch"] // acc.num_processes
    g = torch.Generator(device=device).manual_seed(cfg["seed"] * 1000 + acc.process_index)

    ckpt_path = out / "checkpoint.pt"
    modules, optimizers = {"student": net, "ema": ema, "teacher": teacher_net}, {"opt": opt}
    start, log, elapsed_before = 0, [], 0.0
    if ckpt_path.exists() and not fresh:
        ck = load_checkpoint(ckpt_path, acc, g, modules, optimizers)
        start, log, elapsed_before, steps = ck["step"], ck["log"], ck["elapsed"], ck["planned_steps"]
        acc.print(f"resumed {model} from {ckpt_path} at step {start}")

    def bounds():
        return [sum(steps[:r]) for r in range(len(plan) + 1)]

    def card_for(r: int, name: str, n_steps: int, wall: float) -> dict:
        """The card of round r's student ``name``: the teacher's architecture, parameterisation "v", how to sample."""
        N = plan[r][1]
        rates = [rec["img_s"] for rec in log[len(log) // 4:]] or [float("nan")]
        rounds = [dict(teacher_steps=t, student_steps=n, optimizer_steps=steps[q],
                       loss=next((rec["loss"] for rec in reversed(log) if rec["round"] == q + 1), None),
                       model=(model if q == len(plan) - 1 else f"{model}-{n}step" if n in keep else None))
                  for q, (t, n) in enumerate(plan[: r + 1])]
        return dict(
            arch="unet2d", config=tcard["config"], parameterisation="v", schedule=tcard["schedule"], T=tcard["T"],
            beta_start=tcard["beta_start"], beta_end=tcard["beta_end"], null_class=null_class,
            label_drop=cfg["label_drop"], model=name,
            method="progressive distillation (Salimans & Ho 2022), v-prediction student, truncated-SNR loss",
            teacher=cfg["teacher"], teacher_sha256=teacher_sha, teacher_command=tcard.get("command"),
            guidance_w=w, guidance_note=f"classes 0-9 sample the teacher guided with CFG weight w={w} "
                                        f"(diffbook.guidance.cfg); class {null_class} samples it unconditionally",
            teacher_clip=clip, sampling_steps=N, sampling_sampler="ddim (eta = 0), no clipping",
            sampling_spacing=SPACING,
            sampling_sigmas={str(N): [float(s) for s in grids[r][1]]}, rounds=rounds,
            data="Fashion-MNIST train (60,000 images), padded to 32x32, in [-1, 1]",
            command=f"python -m diffbook train {model} --config {config}", config_name=config,
            steps=n_steps, steps_per_round=list(steps), start_steps=cfg["start_steps"], end_steps=cfg["end_steps"],
            batch=cfg["batch"], lr=cfg["lr"], warmup=cfg["warmup"], ema_decay=cfg["ema_decay"],
            device=_device_name(device), n_processes=acc.num_processes,
            precision="bf16 autocast" if device.type == "cuda" else "fp32", train_wall_s=round(wall, 1),
            img_s=round(sorted(rates)[len(rates) // 2], 1), n_params=sum(p.numel() for p in ema.parameters()),
            torch=torch.__version__, python=sys.version.split()[0], date=time.strftime("%Y-%m-%d"),
            gpu_trained=device.type == "cuda")

    total = bounds()[-1]
    r = max((q for q in range(len(plan)) if bounds()[q] < start), default=0)  # the round of the last step done
    teacher = _teacher_denoiser(r, teacher_net, alpha_bar, w, null_class, clip)
    student = from_v_model(net, alpha_bar)
    budget = cfg.get("time_budget_s")
    t0, step, t10 = time.perf_counter(), start, None
    bar = tqdm(total=total, initial=start, desc=model, disable=not acc.is_main_process, mininterval=5)
    step_log = StepLog(out / f"{model}.log.jsonl", acc, cfg["batch"], log)
    while step < total:
        if kill_at_step is not None and step == kill_at_step:
            os._exit(137)
        if step == bounds()[r + 1]:  # round r is done: keep its student if asked, then it teaches round r + 1
            N = plan[r][1]
            if N in keep and acc.is_main_process:
                zoo.save_model(f"{model}-{N}step", ema.state_dict(),
                               card_for(r, f"{model}-{N}step", step, elapsed_before + time.perf_counter() - t0),
                               root=out)
            teacher_net.load_state_dict(ema.state_dict())
            acc.unwrap_model(net).load_state_dict(ema.state_dict())
            opt.state.clear()  # a fresh AdamW for the new regression problem
            r += 1
            teacher = _teacher_denoiser(r, teacher_net, alpha_bar, w, null_class, clip)
        k = step - bounds()[r]  # the step within the round
        lr = cfg["lr"] * _lr_factor(k, cfg["warmup"]) * (1 - k / steps[r])
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, data.shape[0], (per_proc,), generator=g, device=device)
        x0, y = data[idx], labels[idx]
        drop = torch.rand(y.shape, generator=g, device=device) < cfg["label_drop"]
        y = torch.where(drop, torch.full_like(y, null_class), y)
        if device.type == "cuda":
            x0 = x0.contiguous(memory_format=torch.channels_last)
        with acc.autocast():
            loss = distillation_loss(student, teacher, x0, grids[r][0], generator=g, class_labels=y)
        optimiser_step(acc, opt, loss, net, ema, min(cfg["ema_decay"], (1 + k) / (10 + k)))
        step += 1
        step_log.count()
        bar.update(1)
        if step_log.due(step, bounds()[r + 1]):
            rec = step_log.write(step=step, round=r + 1, student_steps=plan[r][1], loss=round(loss.item(), 6), lr=lr)
            bar.set_postfix(round=r + 1, loss=rec["loss"], img_s=rec["img_s"])
        if budget and start == 0 and steps[0] > 60 and step in (10, 60):
            _sync(device)
            if step == 10:
                t10 = time.perf_counter()
            else:  # plan the rest from round 1's measured speed and each round's relative cost
                sec = (time.perf_counter() - t10) / 50 / _cost_per_image(0, w)
                need = sec * ((steps[0] - step) * _cost_per_image(0, w)
                              + sum(n * _cost_per_image(q, w) for q, n in enumerate(steps) if q > 0))
                left = budget - (time.perf_counter() - t0)
                if need > left:
                    f = max(left, 0.0) / need
                    steps = [step + max(1, int((steps[0] - step) * f))] + [max(1, int(n * f)) for n in steps[1:]]
                if acc.num_processes > 1:  # every process must take the same number of steps: use the main one's
                    steps = broadcast_object_list([steps], from_process=0)[0]
                total = bounds()[-1]
                bar.total = total
        if step % cfg["ckpt_every"] == 0 and step < total:
            save_checkpoint(ckpt_path, acc, g, modules, optimizers, step=step, log=log, planned_steps=steps,
                            elapsed=elapsed_before + time.perf_counter() - t0)
    bar.close()
    _sync(device)
    card = card_for(len(plan) - 1, model, step, elapsed_before + time.perf_counter() - t0)
    card["round_models"] = {str(n): rnd["model"] for rnd, (_, n) in zip(card["rounds"], plan) if rnd["model"]}
    card["sampling_sigmas"] = {str(n): [float(s) for s in round_sigmas(alpha_bar, 2 * n)[1]]
                               for n in map(int, card["round_models"])}
    if acc.is_main_process:
        zoo.save_model(model, ema.state_dict(), card, root=out)
        if ckpt_path.exists():
            ckpt_path.unlink()
    acc.wait_for_everyone()
    return card
