"""The U-Net inside the book's image models, measured: its blocks, their parameters, FLOPs and CPU time, how the
noise level and the class enter, and what the blocks compute at several noise levels.

Everything is read off the actual network (a diffusers ``UNet2DModel``): :func:`profile_blocks` runs one forward
pass with hooks and returns one row per block (resolution, channels, parameters, FLOPs, median CPU milliseconds);
:func:`draw_unet` draws those rows as the U the network forms; :func:`capture` keeps the outputs of chosen blocks;
:func:`noise_embedding` is the path from a timestep to the vector that every residual block receives.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

__all__ = ["blocks", "profile_blocks", "draw_unet", "capture", "noise_embedding", "attention_flops"]


def blocks(unet) -> list[tuple[str, nn.Module]]:
    """The U-Net's blocks in the order of a forward pass: input convolution, down blocks, middle, up blocks, output
    normalisation and convolution.

    (The time and class embeddings run first, once per call; they are reported by :func:`profile_blocks` too.)
    """
    out = [("conv_in", unet.conv_in)]
    out += [(f"down_blocks.{i}", b) for i, b in enumerate(unet.down_blocks)]
    out.append(("mid_block", unet.mid_block))
    out += [(f"up_blocks.{i}", b) for i, b in enumerate(unet.up_blocks)]
    out += [("conv_norm_out", unet.conv_norm_out), ("conv_out", unet.conv_out)]
    return out


def _embedding_modules(unet) -> list[tuple[str, nn.Module]]:
    mods = [("time_embedding", unet.time_embedding)]
    if getattr(unet, "class_embedding", None) is not None:
        mods.append(("class_embedding", unet.class_embedding))
    return mods


def attention_flops(tokens: int, channels: int, heads: int = 1) -> int:
    """FLOPs of the two matrix products inside one self-attention layer, Q K^T and the weighted sum of V: 2 * 2 L^2 C
    (a multiply-add counts as 2). FLOP counters that skip fused attention kernels miss exactly these."""
    return 4 * tokens * tokens * channels


def _kind(module: nn.Module) -> str:
    names = [type(m).__name__ for m in module.modules()]
    if any(n == "Attention" for n in names):
        return "residual + attention"
    if any(n == "ResnetBlock2D" for n in names):
        return "residual"
    return type(module).__name__


@torch.no_grad()
def profile_blocks(unet, x: torch.Tensor, timesteps: torch.Tensor, repeats: int = 3, **cond) -> list[dict]:
    """One row per block of the U-Net on the batch ``x`` at ``timesteps``: where it sits and what it costs.

    Each row: ``block`` (its name in the module tree), ``kind``, ``resolution`` (of its output), ``channels`` (out),
    ``parameters``, ``gflops`` (per image, from :class:`torch.utils.flop_counter.FlopCounterMode`, plus the attention
    products it cannot see, :func:`attention_flops`) and ``cpu_ms`` (per call on the whole batch: the median over
    ``repeats`` forward passes, timed by forward hooks). The embeddings come first, then the blocks in order.
    """
    from torch.utils.flop_counter import FlopCounterMode

    mods = _embedding_modules(unet) + blocks(unet)
    times = {name: [] for name, _ in mods}
    shapes: dict[str, tuple] = {}   # each block's output shape
    inputs: dict[str, tuple] = {}   # and its input's (the resolution it computes at)
    handles = []
    for name, mod in mods:
        def pre(_m, args, kwargs, name=name):
            times[name].append(-time.perf_counter())
            first = args[0] if args else kwargs.get("hidden_states")
            if isinstance(first, torch.Tensor):
                inputs[name] = tuple(first.shape)

        def post(_m, _inp, out, name=name):
            times[name][-1] += time.perf_counter()
            out = out[0] if isinstance(out, tuple) else out
            shapes[name] = tuple(out.shape)

        handles += [mod.register_forward_pre_hook(pre, with_kwargs=True), mod.register_forward_hook(post)]
    try:
        unet(x, timesteps, **cond)   # warm-up
        for v in times.values():
            v.clear()
        for _ in range(repeats):
            unet(x, timesteps, **cond)
    finally:
        for h in handles:
            h.remove()
    with FlopCounterMode(display=False) as counter:
        unet(x[:1], timesteps[:1], **{k: v[:1] for k, v in cond.items()})
    flops = {k.removeprefix(f"{type(unet).__name__}."): sum(v.values()) for k, v in counter.get_flop_counts().items()}
    rows = []
    for name, mod in mods:
        extra = 0
        for sub in mod.modules():
            if type(sub).__name__ == "Attention":
                # the attention layer sees the block's feature map as tokens: resolution^2 of them
                extra += attention_flops(inputs[name][-1] ** 2, sub.to_q.out_features)  # at the input's size
        shape, shape_in = shapes[name], inputs.get(name, ())
        rows.append(dict(block=name, kind=_kind(mod) if "embedding" not in name else "embedding",
                         resolution=f"{shape_in[-2]}x{shape_in[-1]}" if len(shape_in) == 4 else "-",
                         channels=shape[1], parameters=sum(p.numel() for p in mod.parameters()),
                         gflops=(flops.get(name, 0) + extra) / 1e9,
                         cpu_ms=1e3 * statistics.median(times[name])))
    return rows


@torch.no_grad()
def capture(unet, x: torch.Tensor, timesteps: torch.Tensor, names: list[str], **cond) -> dict[str, torch.Tensor]:
    """The outputs of the named blocks (names as in :func:`blocks`) in one forward pass, and ``"output"``."""
    found = dict(blocks(unet))
    unknown = [n for n in names if n not in found]
    if unknown:
        raise ValueError(f"unknown blocks {unknown}; the U-Net's blocks are {list(found)}.")
    kept, handles = {}, []
    for name in names:
        def keep(_m, _inp, out, name=name):
            kept[name] = (out[0] if isinstance(out, tuple) else out).detach()

        handles.append(found[name].register_forward_hook(keep))
    try:
        out = unet(x, timesteps, **cond)
    finally:
        for h in handles:
            h.remove()
    kept["output"] = (out.sample if hasattr(out, "sample") else out).detach()
    return kept


@torch.no_grad()
def noise_embedding(unet, timesteps: torch.Tensor, class_labels: torch.Tensor | None = None) -> dict:
    """The path of the noise level into the network: ``sinusoid`` (the fixed sinusoidal features of the timestep),
    ``time`` (after the two-layer MLP) and ``total`` (plus the class embedding, if any): what each residual block
    receives and projects to its own channels."""
    sinusoid = unet.time_proj(timesteps)
    time_emb = unet.time_embedding(sinusoid.to(unet.dtype))
    total = time_emb
    if class_labels is not None and getattr(unet, "class_embedding", None) is not None:
        total = time_emb + unet.class_embedding(class_labels).to(time_emb.dtype)
    return dict(sinusoid=sinusoid, time=time_emb, total=total)


def draw_unet(ax, rows: list[dict]) -> None:
    """Draw the blocks of :func:`profile_blocks` as the U they form: each block at the height of the resolution it
    computes at (32x32 on top), in the order of the forward pass; box width grows with the block's parameters,
    attention blocks in orange, skip connections (a down block's features handed to its mirror image) dashed red."""
    import matplotlib.patches as mpatches

    body = [r for r in rows if r["kind"] != "embedding"]
    levels = sorted({int(r["resolution"].split("x")[0]) for r in body}, reverse=True)
    biggest = max(r["parameters"] for r in body)
    centres = {}
    for k, r in enumerate(body):
        y = -levels.index(int(r["resolution"].split("x")[0]))
        centres[r["block"]] = (k, y)
        width = 0.4 + 0.5 * (r["parameters"] / biggest) ** 0.5
        colour = "#f4c7a1" if "attention" in r["kind"] else "#bcd4ea" if r["kind"] == "residual" else "#dddddd"
        ax.add_patch(mpatches.FancyBboxPatch((k - width / 2, y - 0.28), width, 0.56, boxstyle="round,pad=0.02",
                                             fc=colour, ec="0.3", lw=0.8))
        label = r["block"].replace("_blocks.", " ").replace("_block", "").replace("_", " ")
        ax.text(k, y + 0.08, label, ha="center", va="center", fontsize=7)
        ax.text(k, y - 0.13, f"{r['resolution']}, {r['channels']} ch", ha="center", va="center", fontsize=6,
                color="0.25")
    order = [r["block"] for r in body]
    for a, b in zip(order, order[1:]):
        (xa, ya), (xb, yb) = centres[a], centres[b]
        ax.annotate("", xy=(xb - 0.32, yb), xytext=(xa + 0.32, ya),
                    arrowprops=dict(arrowstyle="->", lw=0.8, color="0.3"))
    downs = [n for n in order if n.startswith("down")]
    ups = [n for n in order if n.startswith("up")]
    for d, u in zip(downs, reversed(ups)):
        (xd, yd), (xu, yu) = centres[d], centres[u]
        ax.plot([xd, xd, xu, xu], [yd + 0.3, yd + 0.42, yu + 0.42, yu + 0.3], ls="--", lw=0.8, color="C3")
    ax.set_xlim(-0.7, len(body) - 0.3)
    ax.set_ylim(-len(levels) + 0.55, 0.55)
    ax.axis("off")
