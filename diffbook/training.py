"""The training command: ``python -m diffbook train MODEL --config {smoke,release}``.

Built on HF Accelerate, so one script runs on a CPU, one GPU, or several (``accelerate launch``, DDP):
- the whole data set is held on the device and each process draws its own seeded random batches;
- bf16 autocast on CUDA, fused AdamW, large batches, EMA of the weights;
- a tqdm bar and a JSON-lines log (step, loss, lr, img/s);
- checkpoints written atomically every ``ckpt_every`` steps; a killed run resumes from the last one with the same
  result as an uninterrupted run (the RNG states are part of the checkpoint).
The final EMA weights go to the output folder as fp16 safetensors plus a model card (see :mod:`diffbook.zoo`).
"""

from __future__ import annotations

import copy
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from . import zoo
from .configs import get_config
from .fashion import load_fashion_mnist


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Objective:
    """What a model trains: its networks, its loss on a batch, and how its weights and card are saved."""

    def __init__(self, name: str, cfg: dict, data: torch.Tensor, labels: torch.Tensor):
        self.name, self.cfg = name, cfg
        if name == "fmnist-ddpm":
            from .nets import make_unet
            from .schedules import betas_to_alpha_bar, linear_betas

            self.net = make_unet(**cfg["unet"])
            self.alpha_bar = betas_to_alpha_bar(linear_betas(cfg["T"])).float()
            self.card = dict(arch="unet2d", config=cfg["unet"], parameterisation="eps", schedule="linear",
                             T=cfg["T"], beta_start=1e-4, beta_end=0.02, null_class=10,
                             label_drop=cfg["label_drop"])
        elif name == "fmnist-ncsn":
            from .ncsn import NCSNUNet, max_pairwise_distance, ncsnv2_sigmas

            sigma_max = max_pairwise_distance(data[:5000])
            self.sigmas = ncsnv2_sigmas(sigma_max, cfg["sigma_min"], dim=data[0].numel()).float()
            self.net = NCSNUNet(cfg["unet"], cfg["sigma_min"], sigma_max)
            self.card = dict(arch="ncsn-unet", config=dict(unet_config=cfg["unet"], sigma_min=cfg["sigma_min"],
                                                           sigma_max=sigma_max),
                             parameterisation="score", n_sigmas=len(self.sigmas),
                             sigma_ladder="NCSNv2 (Song & Ermon 2020): sigma_max = largest pairwise distance of "
                                          "5,000 training images, geometric ratio from Technique 2")
        else:
            raise ValueError(f"{name!r} has no diffusion objective; see diffbook.configs for the models.")

    def loss(self, net, x0, y, g):
        from .losses import ddpm_eps_loss, dsm_loss

        if self.name == "fmnist-ddpm":
            drop = torch.rand(y.shape, generator=g, device=y.device) < self.cfg["label_drop"]
            y = torch.where(drop, torch.full_like(y, 10), y)
            return ddpm_eps_loss(net, x0, self.alpha_bar.to(x0.device), generator=g, class_labels=y)
        return dsm_loss(net, x0, self.sigmas.to(x0.device), generator=g)


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(path: Path, acc, g: torch.Generator, modules: dict, optimizers: dict, **meta) -> None:
    """Write every module's and optimiser's state, each process's RNG state and ``meta`` to ``path`` atomically."""
    gens = acc.gather(g.get_state().to(acc.device)[None]) if acc.num_processes > 1 else g.get_state()[None]
    if acc.is_main_process:
        state = {k: acc.unwrap_model(m).state_dict() for k, m in modules.items()}
        state.update({k: o.state_dict() for k, o in optimizers.items()})
        _atomic_torch_save(dict(state, gen=gens.cpu(), **meta), path)
    acc.wait_for_everyone()


def load_checkpoint(path: Path, acc, g: torch.Generator, modules: dict, optimizers: dict) -> dict:
    """Restore what :func:`save_checkpoint` wrote into the given modules, optimisers and RNG; return the checkpoint."""
    ck = torch.load(path, map_location=acc.device, weights_only=True)
    for k, m in modules.items():
        acc.unwrap_model(m).load_state_dict(ck[k])
    for k, o in optimizers.items():
        o.load_state_dict(ck[k])
    g.set_state(ck["gen"][acc.process_index].cpu())
    return ck


class StepLog:
    """The JSON-lines training log shared by every training loop: one record every ``every`` steps and at the last.

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
        _sync(self.acc.device)
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


def _lr_factor(step: int, warmup: int) -> float:
    return min(1.0, (step + 1) / warmup) if warmup else 1.0


def measure_eager_baseline(objective: Objective, data, labels, device, batch: int = 256, steps: int = 30):
    """img/s of a plain eager fp32 loop (batch 256, unfused Adam) on a copy of the model: the speed-up's baseline."""
    net = copy.deepcopy(objective.net).to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, foreach=False)
    g = torch.Generator(device=device).manual_seed(0)
    t0 = None
    for i in range(steps + 5):
        if i == 5:
            _sync(device)
            t0 = time.perf_counter()
        idx = torch.randint(0, data.shape[0], (batch,), generator=g, device=device)
        loss = objective.loss(net, data[idx], labels[idx], g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    _sync(device)
    return steps * batch / (time.perf_counter() - t0)


def compiled_forward(net, objective: Objective, data, labels, batch: int, device, acc):
    """``torch.compile(net)`` for the training loss, compiled now on a throw-away batch; ``net`` if that fails.

    The compiled module shares ``net``'s parameters, so the optimiser, EMA and checkpoints see no difference.
    Compiling happens before the clock starts (its time goes to the card as ``compile_s``), with its own random
    generator and no optimiser step, so a compiled run draws the same batches and noise as an eager one. If the
    compiler is unavailable or fails, training goes on eagerly and the card says why (``compile_error``).
    """
    t = time.perf_counter()
    try:
        forward = torch.compile(net)
        g = torch.Generator(device=device).manual_seed(12345)
        idx = torch.randint(0, data.shape[0], (batch,), generator=g, device=device)
        x0 = data[idx].contiguous(memory_format=torch.channels_last) if device.type == "cuda" else data[idx]
        for _ in range(2):  # the second call checks that nothing recompiles on the next step
            with acc.autocast():
                loss = objective.loss(forward, x0, labels[idx], g)
            acc.backward(loss)
        for p in net.parameters():
            p.grad = None
        _sync(device)
        return forward, dict(compiled=True, compile_s=round(time.perf_counter() - t, 1))
    except Exception as e:  # noqa: BLE001 - any compiler failure falls back to eager training
        for p in net.parameters():
            p.grad = None
        acc.print(f"torch.compile failed ({type(e).__name__}: {e}); training eagerly")
        return net, dict(compiled=False, compile_error=f"{type(e).__name__}: {str(e)[:300]}")


def train(model: str, config: str = "smoke", out: str | Path = "runs", *, steps: int | None = None,
          fresh: bool = False, measure_eager: bool = False, kill_at_step: int | None = None,
          overrides: dict | None = None) -> dict:
    """Train ``model`` with ``config`` into ``out``; resume from ``out/checkpoint.pt`` unless ``fresh``.

    ``overrides`` replaces entries of the config (e.g. ``{"teacher_root": out}`` to distil a teacher trained in
    the same run); a key the config does not have is an error.
    Returns the model card (also written beside the weights). ``kill_at_step`` (tests only) ends the process
    abruptly at that step, as a crash or SIGKILL would, to test resuming.
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    cfg = get_config(model, config)
    unknown = sorted(set(overrides or {}) - set(cfg))
    if unknown:
        raise ValueError(f"overrides {unknown} are not keys of the {config} config of {model}; its keys are: "
                         f"{', '.join(sorted(cfg))}.")
    cfg.update(overrides or {})
    if steps is not None:
        cfg["steps"], cfg["time_budget_s"] = steps, None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    use_bf16 = torch.cuda.is_available()
    acc = Accelerator(mixed_precision="bf16" if use_bf16 else "no", cpu=not torch.cuda.is_available())
    device = acc.device
    torch.manual_seed(cfg["seed"])

    data, labels = load_fashion_mnist("train", pad_to=32)
    data, labels = data.to(device), labels.to(device)
    if model == "fmnist-gan":
        from .gan_training import train_gan

        return train_gan(cfg, data, acc, out, model=model, config=config, kill_at_step=kill_at_step, fresh=fresh)
    if model == "fmnist-fast":
        from .distill_training import train_distill

        return train_distill(cfg, data, labels, acc, out, model=model, config=config, kill_at_step=kill_at_step,
                             fresh=fresh)

    objective = Objective(model, cfg, data, labels)
    eager_img_s = measure_eager_baseline(objective, data, labels, device) if measure_eager else None

    net = objective.net.to(device)
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg["lr"], weight_decay=0.0,
                            fused=device.type == "cuda")
    ema = copy.deepcopy(net).requires_grad_(False)
    net, opt = acc.prepare(net, opt)
    per_proc = cfg["batch"] // acc.num_processes
    g = torch.Generator(device=device).manual_seed(cfg["seed"] * 1000 + acc.process_index)

    ckpt_path = out / "checkpoint.pt"
    modules, optimizers = {"net": net, "ema": ema}, {"opt": opt}
    start, log, elapsed_before = 0, [], 0.0
    if ckpt_path.exists() and not fresh:
        ck = load_checkpoint(ckpt_path, acc, g, modules, optimizers)
        start, log, elapsed_before, cfg["steps"] = ck["step"], ck["log"], ck["elapsed"], ck["planned_steps"]
        acc.print(f"resumed {model} from {ckpt_path} at step {start}")

    forward, compile_info = net, dict(compiled=False)
    if cfg.get("compile"):
        forward, compile_info = compiled_forward(net, objective, data, labels, per_proc, device, acc)

    budget = cfg.get("time_budget_s")
    t0, step = time.perf_counter(), start
    bar = tqdm(total=cfg["steps"], initial=start, desc=model, disable=not acc.is_main_process, mininterval=5)
    step_log = StepLog(out / f"{model}.log.jsonl", acc, cfg["batch"], log)
    while step < cfg["steps"]:
        if kill_at_step is not None and step == kill_at_step:
            os._exit(137)
        lr = cfg["lr"] * _lr_factor(step, cfg["warmup"])
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, data.shape[0], (per_proc,), generator=g, device=device)
        x0 = data[idx]
        if device.type == "cuda":
            x0 = x0.contiguous(memory_format=torch.channels_last)
        with acc.autocast():
            loss = objective.loss(forward, x0, labels[idx], g)
        optimiser_step(acc, opt, loss, net, ema, min(cfg["ema_decay"], (1 + step) / (10 + step)))
        step += 1
        step_log.count()
        bar.update(1)
        if step_log.due(step, cfg["steps"]):
            rec = step_log.write(step=step, loss=round(loss.item(), 6), lr=lr)
            bar.set_postfix(loss=rec["loss"], img_s=rec["img_s"])
        if budget and step == 100 and start == 0:
            _sync(device)
            rate = 100 / (time.perf_counter() - t0)
            cfg["steps"] = max(200, min(cfg["steps"], int(rate * budget)))
            bar.total = cfg["steps"]
        if step % cfg["ckpt_every"] == 0 and step < cfg["steps"]:
            save_checkpoint(ckpt_path, acc, g, modules, optimizers, step=step, log=log, planned_steps=cfg["steps"],
                            elapsed=elapsed_before + time.perf_counter() - t0)
    bar.close()
    _sync(device)
    wall = elapsed_before + time.perf_counter() - t0
    rates = [r["img_s"] for r in log[len(log) // 4:]] or [float("nan")]
    card = dict(objective.card, model=model, data="Fashion-MNIST train (60,000 images), padded to 32x32, in [-1, 1]",
                command=f"python -m diffbook train {model} --config {config}", config_name=config,
                steps=step, batch=cfg["batch"], lr=cfg["lr"], warmup=cfg["warmup"], ema_decay=cfg["ema_decay"],
                device=_device_name(device), n_processes=acc.num_processes, precision="bf16 autocast" if use_bf16
                else "fp32", train_wall_s=round(wall, 1),
                img_s=round(sorted(rates)[len(rates) // 2], 1), eager_baseline_img_s=eager_img_s,
                n_params=sum(p.numel() for p in ema.parameters()), torch=torch.__version__,
                python=sys.version.split()[0], date=time.strftime("%Y-%m-%d"),
                gpu_trained=device.type == "cuda", **compile_info)
    if eager_img_s:
        card["speedup_vs_eager"] = round(card["img_s"] / eager_img_s, 2)
    if acc.is_main_process:
        zoo.save_model(model, ema.state_dict(), card, root=out)
        if ckpt_path.exists():
            ckpt_path.unlink()
    acc.wait_for_everyone()
    return card
