"""Where a run ran: the device's name, the commit of the code, and a device synchronisation for honest timings."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch

__all__ = ["device_name", "sync", "git_commit"]


def device_name(device: torch.device) -> str:
    """The GPU's name, or "cpu (processor, N threads)"."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def sync(device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously), so a clock read after it measures the work."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def git_commit() -> str:
    """The commit the run's code came from ($DIFFBOOK_COMMIT where the tree travels without .git)."""
    if os.environ.get("DIFFBOOK_COMMIT"):
        return os.environ["DIFFBOOK_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=10).stdout.strip() or "unknown"
    except Exception:  # noqa: BLE001 - no git, not a repository: the commit is unknown, the run is not
        return "unknown"
