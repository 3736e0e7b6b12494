"""The measurements of the spelling experiment: how often a text-to-image model writes the word it was asked for,
read by the OCR model, on seen and held-out words, for several sampling seeds.

``python -m diffbook sweep spelling --root ZOO``
loads ``text-token``, ``text-char`` and ``text-ocr`` from the zoo folder ZOO (default: the shipped zoo), and writes
``diffbook/zoo/results/spelling.json``: the OCR's own accuracy on clean renders of every word set (its ceiling),
then for each model, word set (:data:`diffbook.data.words.SETS`) and seed the exact-word accuracy (all four slots
right) and the per-character accuracy (the word's letters), plus a small gallery of generated images (uint8,
base64) for the chapter's figures and explorer, with the provenance of the run.
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..data.text import render_words
from ..data.words import SETS, word_sets
from ..nets.ocr import read_slots, targets
from ..train.provenance import device_name, git_commit
from ..zoo.registry import atomic_write_json
from ..zoo.text import load_text_model

__all__ = ["spelling_scores", "encode_images", "decode_images", "run_spelling", "main"]

MODELS = ("text-token", "text-char")
#: Images per model and word set kept for the gallery (the first words of each set, first seed).
GALLERY_PER_SET = 3


def spelling_scores(ocr_net, words, images: torch.Tensor) -> dict:
    """Exact-word accuracy (every slot right, the empty slot of a 3-letter word included) and per-character
    accuracy (the share of the word's letters read correctly), and what the OCR read."""
    pred, true = read_slots(ocr_net, images), targets(words)
    lengths = torch.tensor([len(w) for w in words])
    in_word = torch.arange(true.shape[1])[None] < lengths[:, None]
    return dict(word_accuracy=(pred == true).all(1).double().mean().item(),
                char_accuracy=((pred == true) & in_word).sum().item() / in_word.sum().item())


def encode_images(images: torch.Tensor) -> str:
    """Images in [-1, 1] -> base64 of their uint8 pixels (for small galleries inside a results JSON)."""
    u8 = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    return base64.b64encode(u8.tobytes()).decode("ascii")


def decode_images(text: str, shape) -> torch.Tensor:
    """The inverse of :func:`encode_images`: a float tensor of ``shape`` in [-1, 1]."""
    u8 = np.frombuffer(base64.b64decode(text), dtype=np.uint8).reshape(shape)
    return torch.from_numpy(u8.astype(np.float32)) / 127.5 - 1


def run_spelling(out, *, root=None, seeds=(0, 1, 2), guidance: float = 2.0, steps: int = 10, word_seed: int = 0,
                 command: str = "python -m diffbook.eval.spelling") -> dict:
    """Measure both text-to-image models on every word set and seed; write and return the results dict."""
    t0 = time.perf_counter()
    sets = word_sets(word_seed)
    ocr = load_text_model("text-ocr", root)
    res = dict(what="Spelling of the token-level and character-level text-to-image models, read by the OCR model",
               command=command, commit=git_commit(), device=device_name(torch.device("cpu")),
               date=time.strftime("%Y-%m-%d %H:%M:%S %Z"), torch=torch.__version__,
               settings=dict(seeds=list(seeds), guidance=guidance, steps=steps, sampler="dpmpp_2m (Karras levels)",
                             word_seed=word_seed, noise="seed s: torch.Generator().manual_seed(s) per set"),
               sets={k: list(sets[k]) for k in SETS}, ocr_on_renders={}, rows=[], gallery={})
    for name in SETS:
        res["ocr_on_renders"][name] = spelling_scores(ocr.net, sets[name], render_words(sets[name]))
    for m in MODELS:
        model = load_text_model(m, root)
        res["cards"] = res.get("cards", {})
        res["cards"][m] = {k: model.card.get(k) for k in ("device", "train_wall_s", "steps", "batch", "n_params",
                                                          "n_encoder_params", "img_s", "date")}
        for name in SETS:
            words = list(sets[name])
            for seed in seeds:
                images = model.sample(words, guidance=guidance, steps=steps, seed=seed)
                scores = spelling_scores(ocr.net, words, images)
                res["rows"].append(dict(model=m, set=name, seed=seed, n_words=len(words),
                                        known_tokens=sum(model.encoder.known(w) for w in words), **scores))
                if seed == seeds[0]:
                    k = GALLERY_PER_SET
                    res["gallery"][f"{m}/{name}"] = dict(words=words[:k], read=ocr.read(images[:k]),
                                                         images=encode_images(images[:k]))
                atomic_write_json(Path(out), dict(res, wall_s=round(time.perf_counter() - t0, 1)))
                print(m, name, seed, {k: round(v, 3) for k, v in scores.items()}, flush=True)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    atomic_write_json(Path(out), res)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m diffbook.eval.spelling", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=None, help="zoo folder with text-token, text-char, text-ocr (default: shipped)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "zoo" / "results" / "spelling.json"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--guidance", type=float, default=2.0)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    run_spelling(a.out, root=a.root, seeds=tuple(a.seeds), guidance=a.guidance, steps=a.steps,
                 command=f"python -m diffbook sweep spelling {argv_text}".strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
