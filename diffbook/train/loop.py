"""The training command: ``python -m diffbook train MODEL --config {smoke,release}`` -- one loop for every model.

Built on HF Accelerate, so one script runs on a CPU, one GPU, or several (``accelerate launch``, DDP):

- the whole data set is held on the device and each process draws its own seeded random batches;
- bf16 autocast on CUDA, fused AdamW, large batches, EMA of the weights (in the objectives);
- a tqdm bar and a JSON-lines log (step, losses, lr, img/s);
- checkpoints written atomically every ``ckpt_every`` steps; a killed run resumes from the last one with the same
  result as an uninterrupted run (the RNG states are part of the checkpoint);
- a time budget: after 60 steps the measured speed sets how many steps fit (the objective decides how to shrink).

The loop knows no model names: what a model trains (networks, loss, update, cards) is its objective
(:mod:`diffbook.train.objective`), declared beside its configs in :mod:`diffbook.train.recipes`. The weights go to
the output folder as fp16 safetensors plus a model card (:mod:`diffbook.zoo.registry`).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

from ..data.fashion import load_fashion_mnist
from ..zoo.registry import save_model
from .checkpoint import load_checkpoint, save_checkpoint
from .provenance import device_name, sync
from .recipes import get_config, objective_class
from .steps import StepLog

__all__ = ["train", "Run"]

DATA = "Fashion-MNIST train (60,000 images), padded to 32x32, in [-1, 1]"
BUDGET_FROM, BUDGET_AT = 10, 60  # the speed that plans a time budget is measured between these two steps


class Run:
    """What the loop knows about a run, for the objectives' model cards: :meth:`card` adds the common entries."""

    def __init__(self, model: str, config: str, cfg: dict, acc, out: Path, log: list, elapsed_before: float):
        self.model, self.config, self.cfg, self.acc, self.out = model, config, cfg, acc, out
        self.log, self.elapsed_before, self.t0 = log, elapsed_before, time.perf_counter()
        self.extra: dict = {}

    def wall(self) -> float:
        """Seconds of training so far, over all resumed parts of the run."""
        return self.elapsed_before + time.perf_counter() - self.t0

    def card(self, steps: int, n_params: int, **entries) -> dict:
        """The common part of every card (data, command, device, precision, wall time, median img/s over the last
        three quarters of the log, versions, date) with the objective's ``entries`` first."""
        device = self.acc.device
        rates = [r["img_s"] for r in self.log[len(self.log) // 4:]] or [float("nan")]
        return dict(entries, model=entries.get("model", self.model), data=DATA,
                    command=f"python -m diffbook train {self.model} --config {self.config}", config_name=self.config,
                    steps=steps, batch=self.cfg["batch"], device=device_name(device),
                    n_processes=self.acc.num_processes,
                    precision="bf16 autocast" if device.type == "cuda" else "fp32", train_wall_s=round(self.wall(), 1),
                    img_s=round(sorted(rates)[len(rates) // 2], 1), n_params=n_params, torch=torch.__version__,
                    python=sys.version.split()[0], date=time.strftime("%Y-%m-%d"), gpu_trained=device.type == "cuda",
                    **self.extra)

    def save(self, name: str, state_dict: dict, card: dict) -> None:
        """Write weights and card into the output folder (main process only)."""
        if self.acc.is_main_process:
            save_model(name, state_dict, card, root=self.out)


def train(model: str, config: str = "smoke", out: str | Path = "runs", *, steps: int | None = None,
          fresh: bool = False, measure_eager: bool = False, kill_at_step: int | None = None,
          overrides: dict | None = None) -> dict:
    """Train ``model`` with ``config`` into ``out``; resume from ``out/checkpoint.pt`` unless ``fresh``.

    ``overrides`` replaces entries of the config (e.g. ``{"teacher_root": out}`` to distil a teacher trained in
    the same run); a key the config does not have is an error. ``steps`` sets the number of steps (and drops the
    time budget). Returns the model card of ``model`` (also written beside its weights). ``kill_at_step`` (tests
    only) ends the process abruptly at that step, as a crash or SIGKILL would, to test resuming.
    """
    from accelerate import Accelerator
    from accelerate.utils import broadcast_object_list
    from tqdm.auto import tqdm

    cfg = get_config(model, config)
    unknown = sorted(set(overrides or {}) - set(cfg))
    if unknown:
        raise ValueError(f"overrides {unknown} are not keys of the {config} config of {model}; its keys are: "
                         f"{', '.join(sorted(cfg))}.")
    cfg.update(overrides or {})
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}.")
        cfg["steps"], cfg["time_budget_s"] = steps, None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    acc = Accelerator(mixed_precision="bf16" if torch.cuda.is_available() else "no", cpu=not torch.cuda.is_available())
    device = acc.device
    torch.manual_seed(cfg["seed"])
    data, labels = load_fashion_mnist("train", pad_to=32)
    data, labels = data.to(device), labels.to(device)

    objective = objective_class(model)(model, cfg, data, labels, acc)
    eager_img_s = objective.eager_baseline(data, labels) if measure_eager else None
    g = torch.Generator(device=device).manual_seed(cfg["seed"] * 1000 + acc.process_index)
    ckpt_path = out / "checkpoint.pt"
    start, log, elapsed_before = 0, [], 0.0
    if ckpt_path.exists() and not fresh:
        ck = load_checkpoint(ckpt_path, acc, g, objective.modules, objective.optimizers)
        start, log, elapsed_before, objective.plan = ck["step"], ck["log"], ck["elapsed"], ck["planned_steps"]
        acc.print(f"resumed {model} from {ckpt_path} at step {start}")

    objective.start(start, run := Run(model, config, cfg, acc, out, log, elapsed_before))
    run.t0 = time.perf_counter()  # compiling (in start) happens before the clock
    per_proc = cfg["batch"] // acc.num_processes
    budget, t_from, step = cfg.get("time_budget_s"), None, start
    bar = tqdm(total=objective.total_steps(), initial=start, desc=model, disable=not acc.is_main_process,
               mininterval=5)
    step_log = StepLog(out / f"{model}.log.jsonl", acc, cfg["batch"], log)
    while step < objective.total_steps():
        if kill_at_step is not None and step == kill_at_step:
            os._exit(137)
        objective.before_step(step, run)
        idx = torch.randint(0, data.shape[0], (per_proc,), generator=g, device=device)
        x0 = data[idx]
        if device.type == "cuda":
            x0 = x0.contiguous(memory_format=torch.channels_last)
        values = objective.train_step(step, x0, labels[idx], g)
        step += 1
        step_log.count()
        bar.update(1)
        if step_log.due(step, objective.segment_end(step - 1)):
            rec = step_log.write(step=step, **{k: round(v.item(), 6) if isinstance(v, torch.Tensor) else v
                                               for k, v in values.items()})
            bar.set_postfix({k: v for k, v in rec.items() if k.startswith("loss") or k == "img_s"})
        if budget and start == 0 and step in (BUDGET_FROM, BUDGET_AT):
            sync(device)
            if step == BUDGET_FROM:
                t_from = time.perf_counter()
            else:  # plan the rest from the speed between the two steps (compiling and warm-up excluded)
                sec_per_step = (time.perf_counter() - t_from) / (BUDGET_AT - BUDGET_FROM)
                objective.fit_budget(step, sec_per_step, budget - (time.perf_counter() - run.t0))
                if acc.num_processes > 1:  # every process must take the same number of steps: the main one's
                    objective.plan = broadcast_object_list([objective.plan], from_process=0)[0]
                bar.total = objective.total_steps()
        if step % cfg["ckpt_every"] == 0 and step < objective.total_steps():
            save_checkpoint(ckpt_path, acc, g, objective.modules, objective.optimizers, step=step, log=log,
                            planned_steps=objective.plan, elapsed=run.wall())
    bar.close()
    sync(device)
    if eager_img_s:
        run.extra["eager_baseline_img_s"] = eager_img_s
    outputs = objective.outputs(step, run)
    for name, state_dict, card in outputs:
        if eager_img_s and name == model:
            card["speedup_vs_eager"] = round(card["img_s"] / eager_img_s, 2)
        run.save(name, state_dict, card)
    if acc.is_main_process and ckpt_path.exists():
        ckpt_path.unlink()
    acc.wait_for_everyone()
    return next(card for name, _, card in outputs if name == model)
