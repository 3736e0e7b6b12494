"""Training loop of the DCGAN baseline, with the same command, checkpoints and logs as the diffusion models."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

from . import zoo
from .gan import Discriminator, Generator, discriminator_loss, generator_loss, init_weights


def train_gan(cfg: dict, data: torch.Tensor, acc, out: Path, *, model: str, config: str,
              kill_at_step: int | None = None, fresh: bool = False) -> dict:
    """Alternate one discriminator and one generator Adam step per batch (Goodfellow et al. 2014, Alg. 1, k=1).

    Both losses are logged every 50 steps: the chapter plots them to show the adversarial game oscillating.
    """
    from tqdm.auto import tqdm

    from .training import StepLog, _device_name, _sync, load_checkpoint, save_checkpoint

    device = acc.device
    G, D = Generator(cfg["nz"], cfg["ngf"]), Discriminator(cfg["ndf"])
    G.apply(init_weights)
    D.apply(init_weights)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg["lr"], betas=tuple(cfg["betas"]))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg["lr"], betas=tuple(cfg["betas"]))
    G, D, opt_g, opt_d = acc.prepare(G, D, opt_g, opt_d)
    g = torch.Generator(device=device).manual_seed(cfg["seed"] * 1000 + acc.process_index)
    per_proc = cfg["batch"] // acc.num_processes
    ckpt_path = out / "checkpoint.pt"
    modules, optimizers = {"G": G, "D": D}, {"opt_g": opt_g, "opt_d": opt_d}
    start, log, elapsed_before = 0, [], 0.0
    if ckpt_path.exists() and not fresh:
        ck = load_checkpoint(ckpt_path, acc, g, modules, optimizers)
        start, log, elapsed_before, cfg["steps"] = ck["step"], ck["log"], ck["elapsed"], ck["planned_steps"]
        acc.print(f"resumed {model} from {ckpt_path} at step {start}")
    nz = acc.unwrap_model(G).nz
    budget, t0, step = cfg.get("time_budget_s"), time.perf_counter(), start
    bar = tqdm(total=cfg["steps"], initial=start, desc=model, disable=not acc.is_main_process, mininterval=5)
    step_log = StepLog(out / f"{model}.log.jsonl", acc, cfg["batch"], log)
    while step < cfg["steps"]:
        if kill_at_step is not None and step == kill_at_step:
            os._exit(137)
        idx = torch.randint(0, data.shape[0], (per_proc,), generator=g, device=device)
        x_real = data[idx]
        z = torch.randn(per_proc, nz, generator=g, device=device)
        with acc.autocast():
            fake = G(z)
            loss_d = discriminator_loss(D, x_real, fake)
        opt_d.zero_grad(set_to_none=True)
        acc.backward(loss_d)
        opt_d.step()
        with acc.autocast():
            loss_g = generator_loss(D, fake)
        opt_g.zero_grad(set_to_none=True)
        acc.backward(loss_g)
        opt_g.step()
        step += 1
        step_log.count()
        bar.update(1)
        if step_log.due(step, cfg["steps"]):
            step_log.write(step=step, loss_d=round(loss_d.item(), 5), loss_g=round(loss_g.item(), 5), lr=cfg["lr"])
        if budget and step == 100 and start == 0:
            _sync(device)
            cfg["steps"] = max(200, min(cfg["steps"], int(100 / (time.perf_counter() - t0) * budget)))
            bar.total = cfg["steps"]
        if step % cfg["ckpt_every"] == 0 and step < cfg["steps"]:
            save_checkpoint(ckpt_path, acc, g, modules, optimizers, step=step, log=log, planned_steps=cfg["steps"],
                            elapsed=elapsed_before + time.perf_counter() - t0)
    bar.close()
    _sync(device)
    wall = elapsed_before + time.perf_counter() - t0
    rates = [r["img_s"] for r in log[len(log) // 4:]] or [float("nan")]
    card = dict(arch="dcgan", config=dict(nz=cfg["nz"], ngf=cfg["ngf"]), model=model, parameterisation="generator",
                data="Fashion-MNIST train (60,000 images), padded to 32x32, in [-1, 1]",
                command=f"python -m diffbook train {model} --config {config}", config_name=config, steps=step,
                batch=cfg["batch"], lr=cfg["lr"], betas=list(cfg["betas"]), device=_device_name(device),
                n_processes=acc.num_processes, precision="bf16 autocast" if device.type == "cuda" else "fp32",
                train_wall_s=round(wall, 1), img_s=round(sorted(rates)[len(rates) // 2], 1),
                n_params=sum(p.numel() for p in acc.unwrap_model(G).parameters()), torch=torch.__version__,
                python=sys.version.split()[0], date=time.strftime("%Y-%m-%d"), gpu_trained=device.type == "cuda")
    if acc.is_main_process:
        zoo.save_model(model, acc.unwrap_model(G).state_dict(), card, root=out)
        if ckpt_path.exists():
            ckpt_path.unlink()
    acc.wait_for_everyone()
    return card
