"""Run the release zoo on a lent GPU machine and mirror what it finishes into $OUT as it goes.

The GPU machine returns at most 8 files, so the weights come back one file per model and everything else
(cards, registry, logs, sample grids) in one tar, rewritten after every step. Usage (see README, "Training"):
    python3 scripts/device_release.py --deadline-s 480
    python3 scripts/device_release.py --models fmnist-fast --skip-classifier --deadline-s 300   # distil only
A full run plus fmnist-fast would return 9 weights files (the classifier, three models, four students): more than
the machine returns, so distil in a run of its own.
"""

import argparse
import os
import shutil
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffbook.eval.release import run_zoo  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--deadline-s", type=float, default=480)
p.add_argument("--work", default="/tmp/zoo")
p.add_argument("--n-eval", type=int, default=None)
p.add_argument("--config", default="release", choices=["smoke", "release"])
p.add_argument("--clf-epochs", type=int, default=15)
p.add_argument("--clf-n-train", type=int, default=None)
p.add_argument("--models", nargs="+", default=["fmnist-ddpm", "fmnist-ncsn", "fmnist-gan"])
p.add_argument("--skip-classifier", action="store_true", help="measure with the shipped fmnist-clf instead")
p.add_argument("--budget", nargs="+", default=[], metavar="MODEL=SECONDS", help="training time budget per model")
a = p.parse_args()
out = Path(os.environ.get("OUT", "out"))
out.mkdir(parents=True, exist_ok=True)
work = Path(a.work)


def mirror(path: Path) -> None:
    if path.suffix == ".safetensors":  # every weights file so far (a distillation run writes one per round)
        for f in sorted(work.glob("*.safetensors")):
            shutil.copy(f, out / f.name)
        return
    tmp = out / ".meta.tar.tmp"
    with tarfile.open(tmp, "w") as tar:
        for f in sorted(work.iterdir()):
            if f.suffix in (".json", ".jsonl", ".png"):
                tar.add(f, arcname=f.name)
    os.replace(tmp, out / "meta.tar")


import torch  # noqa: E402

from diffbook.train.classifier import main as train_classifier  # noqa: E402

# The feature classifier first: every Frechet distance of the run is measured in its features.
dev = "cuda" if torch.cuda.is_available() else "cpu"
clf_args = ["--device", dev, "--threads", str(os.cpu_count() if dev == "cuda" else 2), "--epochs", str(a.clf_epochs), "--batch", "256", "--out", str(work)]
if a.clf_n_train:
    clf_args += ["--n-train", str(a.clf_n_train)]
work.mkdir(parents=True, exist_ok=True)
if not a.skip_classifier:
    train_classifier(clf_args)
    mirror(work / "fmnist-clf.safetensors")
run_zoo(a.config, work, n_eval=a.n_eval, deadline_s=a.deadline_s, on_progress=mirror,
        clf_root=None if a.skip_classifier else work, models=tuple(a.models),
        budgets={m: float(v) for m, v in (kv.split("=", 1) for kv in a.budget)})
mirror(work / "results.json")
print("done", flush=True)
