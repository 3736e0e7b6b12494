"""Checkpoints of a training run: every module's and optimiser's state and each process's RNG, written atomically,
so a killed run resumes to the same weights as an uninterrupted one."""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["save_checkpoint", "load_checkpoint"]


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
        _atomic_torch_save(dict(state, gen=gens.cpu(), **meta), Path(path))
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
