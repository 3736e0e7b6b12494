"""``python -m diffbook.eval.applications``: the measured sweep behind the chapter on applications.

Every task runs on the same held-out Fashion-MNIST test images (the first ``--n-images``; the super-resolution
Frechet distances use the first ``--n-fd``), every method on the same measurements, each stochastic method with
several seeds, and writes one JSON file with its provenance (command, commit, device, date, wall time):

- ``superres``: 8x8 and 16x16 -> 32x32 (block averaging by 4 and 2): bicubic, replacement (ILVR), projection
  (DDNM); PSNR, SSIM, class agreement, and FD / precision / recall of the outputs beside the floor;
- ``inpaint``: centre box, left half, 80% of pixels missing: mean fill, replacement, RePaint; PSNR on the
  missing pixels, class agreement, and how far the observed pixels moved;
- ``deblur``: Gaussian blur, noiseless (Tikhonov, projection, replacement) and noisy (Tikhonov, projection, PiGDM);
- ``denoise``: shrinkage, Tweedie's one-call posterior mean, ancestral sampling started at sigma_y;
- ``sdedit``: sketches and collages noised to sigma_0 and sampled back: faithfulness and the classifier's verdict;
- ``translate``: shirts inverted by DDIM with their label and regenerated as dresses, with and without guidance;
  and the inversion's reconstruction error against the number of steps.

``--parts`` runs some of them (several processes can each write a part; ``--merge`` joins the files).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from ..data.fashion import load_fashion_mnist
from ..data.sketches import paste_patch, sketches
from ..denoisers import clip_denoiser
from ..editing import ddim_invert, sdedit
from ..guidance import cfg
from ..inverse import (Blur, Downsample, Identity, Inpaint, box_mask, half_mask, measure, random_mask,
                       sample_replacement)
from ..nets.classifier import extract_features, predict_from_features
from ..samplers import sample_ddim
from ..train.provenance import device_name, git_commit
from ..zoo.model import load
from .measure import measure as measure_features
from .measure import real_reference
from .metrics import density_coverage, precision_recall
from .restoration import encode_images, mean_fill, nfe_of, psnr, restore, ssim

__all__ = ["PARTS", "SETTINGS", "run", "main", "sdedit_levels", "translation_levels"]

PARTS = ("superres", "inpaint", "deblur", "denoise", "sdedit", "translate", "explorer", "ablation")
SETTINGS = dict(steps=10, seeds=(0, 1), n_images=16, n_fd=0, resample=2, blur_std=2.0, blur_noise=0.05,
                denoise_stds=(0.2, 0.5), sdedit_sigmas=(1.0, 2.0, 4.0, 8.0, 16.0), translate_from=6,
                translate_to=3, translate_w=(0.0, 2.0), translate_depths=(16.0, None), n_translate=12,
                inversion_steps=(5, 10, 20, 40), n_inversion=4, n_collage=8, n_shown=3,
                explorer_sigmas=(1.0, 4.0, 16.0, None), explorer_w=(-1.0, 0.0, 2.0))
#: What the CPU run above skips: FD needs more than 128 outputs per method (a 128x128 covariance); on a GPU run
#: ``--n-images 256 --n-fd 1000 --steps 50``.


def _r(v, nd=4):
    return [round(float(a), nd) for a in v] if isinstance(v, torch.Tensor) and v.dim() else round(float(v), nd)


class _Judge:
    """The shipped classifier and the training images' mean, shared by every part."""

    def __init__(self, n_shown: int = 3):
        self.n_shown = n_shown
        self.clf = load("fmnist-clf").net
        self.train_x, _ = load_fashion_mnist("train")
        self.mean_image = self.train_x[:10000].mean(0, keepdim=True)
        test_x, _ = load_fashion_mnist("test")
        self.real = extract_features(self.clf, test_x[5000:7000])  # a real reference disjoint from the inputs

    def scores(self, out, x0, labels, mask=None) -> dict:
        feats = extract_features(self.clf, out)
        agree = (predict_from_features(self.clf, feats) == labels).double()
        fidelity = dict(precision=precision_recall(self.real, feats, k=3)["precision"],
                        density=density_coverage(self.real, feats, k=5)["density"])
        row = dict(psnr=_r(psnr(out, x0).mean()), ssim=_r(ssim(out, x0).mean()), class_agreement=_r(agree.mean()),
                   **{k: _r(v) for k, v in fidelity.items()}, psnr_per_image=_r(psnr(out, x0), 3),
                   images=encode_images(out[:self.n_shown]))
        if mask is not None:
            row["psnr_missing"] = _r(psnr(out, x0, mask=~mask).mean())
            row["known_max_change"] = float((out - x0).abs().masked_select(mask.expand_as(out)).max())
        return row, feats


def _timed_restore(model, op, y, method, **kw):
    t0 = time.perf_counter()
    out = restore(model, op, y, method, **kw)
    return out, round(time.perf_counter() - t0, 2)


def _superres(model, judge, x0, labels, s) -> dict:
    fd_ok = x0.shape[0] > 128  # a 128-d covariance needs more than 128 images
    real, floor = real_reference(judge.clf, x0, judge.train_x, x0.shape[0], "cpu") if fd_ok else (None, None)
    rows = []
    for factor in (4, 2):
        op = Downsample(factor)
        y = measure(op, x0)
        for method in ("bicubic", "replacement", "projection"):
            for seed in (s["seeds"] if method != "bicubic" else (0,)):
                n = x0.shape[0] if seed == 0 else s["n_images"]  # seed 0 on all n_fd images, the others on fewer
                out, wall = _timed_restore(model, op, y[:n], method, steps=s["steps"], seed=seed)
                row, feats = judge.scores(out, x0[:n], labels[:n])
                if seed == 0 and fd_ok:
                    row.update(measure_features(feats, real, floor))
                if seed == 0:
                    row["psnr_first"] = _r(psnr(out, x0[:n])[: s["n_images"]].mean())
                rows.append(dict(task=f"{32 // factor}x{32 // factor} -> 32x32", factor=factor, method=method,
                                 seed=seed, n=n, nfe=nfe_of(method, s["steps"]), wall_s=wall, **row))
                print(json.dumps({k: v for k, v in rows[-1].items() if k not in ("psnr_per_image", "images")}), flush=True)
    return dict(rows=rows, floor=_r(floor) if fd_ok else None, n_fd=x0.shape[0])


def _masks():
    return {"centre box": box_mask(32, 14), "left half": half_mask(32, "left"),
            "80% missing": random_mask(32, 0.8, torch.Generator().manual_seed(0))}


def _inpaint(model, judge, x0, labels, s) -> dict:
    rows = []
    for name, mask in _masks().items():
        op = Inpaint(mask)
        y = measure(op, x0)
        for method in ("mean fill", "replacement", "RePaint"):
            for seed in (s["seeds"] if method != "mean fill" else (0,)):
                out, wall = _timed_restore(model, op, y, method, steps=s["steps"], seed=seed, resample=s["resample"],
                                           fill=judge.mean_image)
                row, _ = judge.scores(out, x0, labels, mask=mask)
                rows.append(dict(task=name, method=method, seed=seed, nfe=nfe_of(method, s["steps"], s["resample"]),
                                 wall_s=wall, **row))
                print(json.dumps({k: v for k, v in rows[-1].items() if k not in ("psnr_per_image", "images")}), flush=True)
    return dict(rows=rows)


def _deblur(model, judge, x0, labels, s) -> dict:
    rows = []
    op = Blur(s["blur_std"])
    for noise_std, methods in ((0.0, ("Tikhonov", "projection", "replacement")),
                               (s["blur_noise"], ("Tikhonov", "projection", "PiGDM"))):
        y = measure(op, x0, noise_std, torch.Generator().manual_seed(1))
        for method in methods:
            for seed in (s["seeds"][:1]):
                out, wall = _timed_restore(model, op, y, method, steps=s["steps"], seed=seed, noise_std=noise_std,
                                           lam=max(noise_std, 0.01) ** 2 * 10)
                row, _ = judge.scores(out, x0, labels)
                rows.append(dict(task=f"blur, noise {noise_std:g}", noise_std=noise_std, method=method, seed=seed,
                                 nfe=nfe_of(method, s["steps"]), wall_s=wall, **row))
                print(json.dumps({k: v for k, v in rows[-1].items() if k not in ("psnr_per_image", "images")}), flush=True)
    return dict(rows=rows, blur_std=s["blur_std"])


def _denoise(model, judge, x0, labels, s) -> dict:
    rows = []
    op = Identity()
    for noise_std in s["denoise_stds"]:
        y = measure(op, x0, noise_std, torch.Generator().manual_seed(2))
        for method in ("Tikhonov", "Tweedie", "posterior from y"):
            for seed in (s["seeds"] if method == "posterior from y" else (0,)):
                out, wall = _timed_restore(model, op, y, method, steps=50, seed=seed, noise_std=noise_std,
                                           lam=noise_std**2)
                row, _ = judge.scores(out, x0, labels)
                rows.append(dict(task=f"noise {noise_std:g}", noise_std=noise_std, method=method, seed=seed,
                                 wall_s=wall, **row))
                print(json.dumps({k: v for k, v in rows[-1].items() if k not in ("psnr_per_image", "images")}), flush=True)
    return dict(rows=rows)


def sdedit_levels(model, sigma_start: float, steps: int = 20) -> torch.Tensor:
    """SDEdit's levels: sigma_0, then DDPM's ``steps``-step trailing levels below it, then 0."""
    sig = model.sigmas("ancestral", steps, schedule="ddpm", spacing="trailing").float()
    return torch.cat([torch.tensor([sigma_start], dtype=sig.dtype), sig[sig < sigma_start]])


def _collages(x0, n):
    donors = x0.roll(1, dims=0)[:n]
    return paste_patch(x0[:n], donors, (4, 16, 14, 12))


def _sdedit(model, judge, x0, labels, s) -> dict:
    guides = {"sketch": sketches(), "collage": (_collages(x0, s["n_collage"]), labels[:s["n_collage"]])}
    d = clip_denoiser(model.denoiser)
    rows = []
    for kind, (x_guide, intended) in guides.items():
        null = {"class_labels": torch.full((x_guide.shape[0],), model.null_class)}
        for sigma_start in s["sdedit_sigmas"]:
            for seed in s["seeds"]:
                g = torch.Generator().manual_seed(seed)
                out = sdedit(d, x_guide, sdedit_levels(model, sigma_start, s["steps"]), generator=g, cond=null)
                out = out.clamp(-1, 1)
                probs = _probs(judge.clf, out)
                rows.append(dict(kind=kind, sigma_start=sigma_start, seed=seed,
                                 rms_to_guide=_r((out - x_guide).pow(2).flatten(1).mean(1).sqrt().mean()),
                                 confidence=_r(probs.max(1).values.mean()),
                                 intended_class=_r((probs.argmax(1) == intended).double().mean())))
                print(json.dumps(rows[-1]), flush=True)
                rows[-1]["images"] = encode_images(out)
    return dict(rows=rows, sketch_classes=[int(c) for c in guides["sketch"][1]])


@torch.no_grad()
def _probs(clf, x):
    clf.eval()
    return torch.softmax(clf(x), 1)


def translation_levels(model, steps: int, depth: float | None) -> torch.Tensor:
    """DDIM's levels for an inversion to ``depth`` (None: all the way to sigma_max)."""
    sig = model.sigmas("ddim", steps, schedule="ddpm", spacing="trailing").float()
    return sig if depth is None else sdedit_levels(model, depth, steps)


def _translate(model, judge, x_src, s) -> dict:
    n = x_src.shape[0]
    d = model.denoiser
    src = {"class_labels": torch.full((n,), s["translate_from"])}
    tgt = torch.full((n,), s["translate_to"])
    null = {"class_labels": torch.full((n,), model.null_class)}
    rows, recon = [], []
    for depth in s["translate_depths"]:
        sig = translation_levels(model, s["steps"], depth)
        x_T = ddim_invert(d, x_src, sig, cond=src)
        for w in s["translate_w"]:
            dw = cfg(d, w, null) if w else d
            out = sample_ddim(dw, x_T, sig, cond={"class_labels": tgt}).clamp(-1, 1)
            probs = _probs(judge.clf, out)
            rows.append(dict(depth=depth or float(sig[0]), w=w, target_accuracy=_r((probs.argmax(1) == tgt).double()
                                                                                   .mean()),
                             ssim_to_source=_r(ssim(out, x_src).mean()), psnr_to_source=_r(psnr(out, x_src).mean())))
            print(json.dumps(rows[-1]), flush=True)
            rows[-1]["images"] = encode_images(out[:s["n_shown"]])
    x_rec = x_src[:s["n_inversion"]]
    cond_rec = {"class_labels": src["class_labels"][:s["n_inversion"]]}
    for steps in s["inversion_steps"]:
        sig = translation_levels(model, steps, None)
        back = sample_ddim(d, ddim_invert(d, x_rec, sig, cond=cond_rec), sig, cond=cond_rec)
        recon.append(dict(steps=steps, rms=_r((back - x_rec).pow(2).flatten(1).mean(1).sqrt().mean(), 5),
                          psnr=_r(psnr(back.clamp(-1, 1), x_rec).mean())))
        print(json.dumps(recon[-1]), flush=True)
    return dict(rows=rows, reconstruction=recon, source_class=s["translate_from"], target_class=s["translate_to"])


def _ablation(model, judge, x0, labels, s) -> dict:
    """What the sampler changes: projection super-resolution (by 4) and centre-box replacement with the clamp of
    x0_hat switched off, and with 4 times the steps (seed 0)."""
    rows = []
    for task, op, method in (("8x8 -> 32x32", Downsample(4), "projection"),
                             ("centre box", Inpaint(box_mask(32, 14)), "replacement")):
        y = measure(op, x0)
        for steps, clip in ((s["steps"], False), (4 * s["steps"], True)):
            out, wall = _timed_restore(model, op, y, method, steps=steps, clip=clip, seed=0)
            row, _ = judge.scores(out, x0, labels, mask=getattr(op, "mask", None))
            rows.append(dict(task=task, method=method, steps=steps, clip=clip, seed=0, wall_s=wall, **row))
            print(json.dumps({k: v for k, v in rows[-1].items() if k not in ("psnr_per_image", "images")}), flush=True)
    op = Downsample(4)  # the perception-distortion trade-off: the mean of several posterior samples
    y = measure(op, x0)
    outs = [restore(model, op, y, "projection", steps=s["steps"], seed=seed) for seed in range(4)]
    mean_rows = []
    for k in (1, 2, 4):
        row, _ = judge.scores(torch.stack(outs[:k]).mean(0), x0, labels)
        mean_rows.append(dict(task="8x8 -> 32x32", method="projection", samples_averaged=k, **row))
        print(json.dumps({kk: v for kk, v in mean_rows[-1].items() if kk not in ("psnr_per_image", "images")}),
              flush=True)
    return dict(rows=rows, averaged=mean_rows)


def _explorer(model, judge, x0, labels, s) -> dict:
    """Frames of the chapter's explorer: the first images inpainted from a noise level sigma_0 (None: from pure
    noise) with the missing pixels first filled with the training mean, by replacement, guided towards their
    class with weight w (-1: the unconditional model), for each mask."""
    x0, labels = x0[:s["n_shown"]], labels[:s["n_shown"]]
    n, frames = x0.shape[0], {}
    d = clip_denoiser(model.denoiser)
    for name, mask in _masks().items():
        op = Inpaint(mask)
        y = measure(op, x0)
        start = mean_fill(y, op, judge.mean_image)
        for sigma0 in s["explorer_sigmas"]:
            sig = translation_levels(model, s["steps"], sigma0)
            for w in s["explorer_w"]:
                g = torch.Generator().manual_seed(0)
                cond = {"class_labels": torch.full((n,), model.null_class) if w == -1 else labels}
                dw = cfg(d, w, {"class_labels": torch.full((n,), model.null_class)}) if w > 0 else d
                x = start + float(sig[0]) * torch.randn(start.shape, generator=g) if sigma0 else \
                    torch.randn(start.shape, generator=g) * model.prior_std
                out = sample_replacement(dw, x, sig, op, y, generator=g, cond=cond).clamp(-1, 1)
                frames[f"{name}|{sigma0 or 'max'}|{w:g}"] = encode_images(out)
        print(f"explorer frames for {name} done", flush=True)
    return dict(frames=frames, labels=[int(c) for c in labels])


def run(parts=PARTS, **overrides) -> dict:
    """Run the parts of the sweep; returns the results dict (see the module docstring)."""
    s = dict(SETTINGS, **overrides)
    torch.manual_seed(0)
    model = load("fmnist-ddpm")
    judge = _Judge(s["n_shown"])
    test_x, test_y = load_fashion_mnist("test")
    out = dict(settings={k: list(v) if isinstance(v, tuple) else v for k, v in s.items()}, model="fmnist-ddpm",
               images=f"the first {s['n_images']} Fashion-MNIST test images (and the first {s['n_fd']} for the "
                      "super-resolution FD, when that is above 128)", parts={})
    x0, labels = test_x[:s["n_images"]], test_y[:s["n_images"]]
    for part in parts:
        t0 = time.perf_counter()
        if part == "superres":
            n_sr = max(s["n_fd"], s["n_images"])
            res = _superres(model, judge, test_x[:n_sr], test_y[:n_sr], s)
        elif part == "translate":
            shirts = test_x[test_y == s["translate_from"]][:s["n_translate"]]
            res = _translate(model, judge, shirts, s)
        else:
            res = {"inpaint": _inpaint, "deblur": _deblur, "denoise": _denoise, "sdedit": _sdedit,
                   "explorer": _explorer, "ablation": _ablation}[part](
                model, judge, x0, labels, s)
        res["wall_s"] = round(time.perf_counter() - t0, 1)
        out["parts"][part] = res
    return out


def _provenance(argv, wall, device="cpu") -> dict:
    return dict(command="python -m diffbook.eval.applications " + " ".join(argv), commit=git_commit(),
                device=device_name(torch.device(device)), date=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                wall_s=round(wall, 1), torch=torch.__version__)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="the JSON file to write")
    p.add_argument("--parts", nargs="*", default=list(PARTS), choices=PARTS)
    p.add_argument("--n-images", type=int, default=SETTINGS["n_images"])
    p.add_argument("--n-fd", type=int, default=SETTINGS["n_fd"])
    p.add_argument("--steps", type=int, default=SETTINGS["steps"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--merge", nargs="*", default=None, help="join these result files into --out instead")
    a = p.parse_args(argv)
    if a.merge:
        files = [json.loads(Path(f).read_text()) for f in a.merge]
        out = dict(files[0], parts={}, runs=[])
        for f in files:
            out["parts"].update(f["parts"])
            out["runs"] += f.get("runs", [f["provenance"]])
        out["provenance"] = dict(out["runs"][0], wall_s=round(sum(r["wall_s"] for r in out["runs"]), 1),
                                 command=f"python -m diffbook.eval.applications --out {a.out}",
                                 note="run as the separate processes listed in 'runs' (each the command with "
                                      "--parts), joined with --merge; the same as the one command")
        Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
        return 0
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    res = run(a.parts, n_images=a.n_images, n_fd=a.n_fd, steps=a.steps)
    res["provenance"] = _provenance(argv, time.perf_counter() - t0)
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
