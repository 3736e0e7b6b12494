"""Reading a sampler comparison: the goal checks (best sampler at 10 and 20 NFE against the 1000-step ancestral
reference; diffbook against diffusers at every NFE) and the FD-vs-NFE plot."""

from __future__ import annotations

from .specs import label

__all__ = ["GOALS", "summarize", "plot_fd_vs_nfe"]

# The goals: at NFE m the best diffbook sampler's excess FD (fd - floor) is within ``factor`` times the
# excess of the 1000-step ancestral sampler; and at every NFE diffbook's best <= diffusers' best.
GOALS = ((10, 1.3), (20, 1.1))


def _excess(row: dict) -> float:
    return row["fd"] - row["floor"]


def _brief(row: dict | None) -> dict | None:
    if row is None:
        return None
    keep = ("library", "sampler", "schedule", "spacing", "steps", "nfe", "n", "clip", "fd", "floor")
    return {**{k: row[k] for k in keep if k in row}, "excess": round(_excess(row), 4)}


def summarize(results: dict, *, tie_rtol: float = 0.01) -> dict:
    """The issue's goal checks, read from a :func:`run_comparison` results dict (or its JSON).

    excess = fd - floor (each row against the floor at its own N). The reference is the T-step (1000-step)
    diffbook ancestral sampler. "Best at NFE m" is the lowest excess among rows with nfe <= m (the best a budget
    of m evaluations buys); guided rows (w != 0) change the target distribution and are left out. diffbook's best
    counts as <= diffusers' best within a relative ``tie_rtol`` (1 %): the same method in both libraries differs
    only by round-off and diffusers' slightly different x_T scale for Euler/Heun (measured: 2e-4 relative in FD),
    which must not decide the check; ``margin`` reports the raw differences. Returns::

        reference        the reference row (brief) or None
        best             {"diffbook": {m: brief row or None}, "diffusers": {...}} for every grid value m
        ratio            {m: best diffbook excess / reference excess, or None} for the goals' m
        margin           {m: best diffbook excess - best diffusers excess, or None} for every grid value m
        checks           {"nfe10_within_1.3x_of_reference": bool or None, "nfe20_within_1.1x_of_reference": ...,
                          "diffbook_le_diffusers_at_nfe{m}": bool or None for every m}
        all_pass         True / False, or None when any check could not be made (missing rows)
        excess_by_line   {label: {nfe: excess}}: what each sampler and schedule buys at each NFE

    A check is None where its rows are missing (skipped, not run, or not in the grid).
    """
    rows = [r for r in results.get("rows", []) if r.get("fd") is not None and r.get("floor") is not None]
    unguided = [r for r in rows if not r.get("w")]
    refs = [r for r in unguided if r.get("library", "diffbook") == "diffbook" and r.get("sampler") == "ancestral"
            and r.get("schedule") == "ddpm" and r.get("nfe") == 1000 and not r.get("clip")]
    ref = min(refs, key=_excess) if refs else None
    ref_excess = _excess(ref) if ref else None
    grid = sorted({int(m) for m in results.get("nfe_grid") or ()} | {r.get("nfe_target", r["nfe"]) for r in rows})

    def best(lib: str, m: int):
        cands = [r for r in unguided if r.get("library", "diffbook") == lib and r["nfe"] <= m]
        return min(cands, key=_excess) if cands else None

    best_rows = {lib: {m: best(lib, m) for m in grid} for lib in ("diffbook", "diffusers")}
    checks, ratio = {}, {}
    for m, factor in GOALS:
        b = best_rows["diffbook"].get(m) or best("diffbook", m)
        ok = None if b is None or ref is None else _excess(b) <= factor * ref_excess
        checks[f"nfe{m}_within_{factor}x_of_reference"] = ok
        ratio[m] = (round(_excess(b) / ref_excess, 4) if b is not None and ref is not None and ref_excess > 0
                    else None)
    margin = {}
    for m in grid:
        db, dz = best_rows["diffbook"][m], best_rows["diffusers"][m]
        both = db is not None and dz is not None
        margin[m] = round(_excess(db) - _excess(dz), 4) if both else None
        checks[f"diffbook_le_diffusers_at_nfe{m}"] = (_excess(db) <= _excess(dz) + tie_rtol * abs(_excess(dz))
                                                      if both else None)
    values = list(checks.values())
    all_pass = None if any(v is None for v in values) else all(values)
    by_line: dict[str, dict[int, float]] = {}
    for r in sorted(rows, key=lambda r: r["nfe"]):
        by_line.setdefault(label(r), {})[r["nfe"]] = round(_excess(r), 4)
    return dict(reference=_brief(ref), best={lib: {m: _brief(r) for m, r in d.items()} for lib, d in best_rows.items()},
                ratio=ratio, margin=margin, checks=checks, all_pass=all_pass, tie_rtol=tie_rtol,
                excess_by_line=by_line)


def plot_fd_vs_nfe(results: dict, ax):
    """FD against NFE (log-log), one line per sampler/schedule and library (diffbook solid, diffusers dashed),
    with the real-vs-real floor and the 1000-step ancestral reference as horizontal lines. Returns ``ax``."""
    rows = [r for r in results.get("rows", []) if r.get("fd") is not None]
    lines: dict[str, list] = {}
    for r in rows:
        lines.setdefault(label(r), []).append(r)
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    for k, (name, rs) in enumerate(sorted(lines.items())):
        rs = sorted(rs, key=lambda r: r["nfe"])
        ax.plot([r["nfe"] for r in rs], [r["fd"] for r in rs], marker="o", markersize=3, lw=1.2,
                ls="--" if name.startswith("diffusers") else "-", color=cmap(k % 20), label=name)
    floor = results.get("floor", {}).get("fd")
    if floor is not None:
        ax.axhline(floor, color="k", ls=":", lw=1, label=f"real-vs-real floor (N = {results['floor'].get('n')})")
    ref = (results.get("summary") or summarize(results)).get("reference")
    if ref is not None:
        ax.axhline(ref["fd"], color="0.5", ls="-.", lw=1, label="1000-step DDPM ancestral")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("network evaluations per image (NFE)")
    ax.set_ylabel("Frechet distance (classifier features)")
    ax.legend(fontsize=6, ncol=2)
    return ax
