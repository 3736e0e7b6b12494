"""diffbook.compare: the sampler comparison at equal NFE (the GPU run is scripts/device_compare.py).

On the CPU: NFE accounting (counted on a stand-in network), spec checks, diffbook and diffusers giving the same
images where their configurations are the same, one small end-to-end run with a deadline, the goal checks of
the summary on hand-made results, the plot and the command line.
"""

from __future__ import annotations

import importlib.util
import json
import math
import types

import pytest
import torch

from diffbook import zoo
from diffbook.cli import main
from diffbook.eval import compare, summary
from diffbook.eval import specs as sp
from diffbook.eval.measure import sample_images
from diffbook.zoo.model import DiffusionModel, sigmas_for

from conftest import ROOT

CARD = json.loads((zoo.WEIGHTS_DIR / "fmnist-ddpm.json").read_text())


class ZeroEps(torch.nn.Module):
    """A stand-in eps-network (eps_hat = 0): instant, so NFE can be counted for every spec."""

    def forward(self, x, t, class_labels=None):
        return types.SimpleNamespace(sample=torch.zeros_like(x))


@pytest.fixture(scope="module")
def ddpm():
    return zoo.load_network("fmnist-ddpm")


# --------------------------------------------------------------------------------------- NFE accounting
def test_nfe_counted_equals_nfe_of_for_every_line():
    specs = sp.grid_specs(sp.DEFAULT_LINES, (1, 2, 5))
    specs += [dict(sampler="ddim", schedule="ddpm", spacing="trailing", steps=3, w=1.0),
              dict(library="diffusers", sampler="DDIMScheduler", spacing="trailing", steps=3, w=1.0)]
    for spec in specs:
        net = compare._Counted(ZeroEps())
        imgs = compare.sample(spec, net, CARD, 3, device="cpu", batch=2)  # two batches
        assert imgs.shape == (3, 1, 32, 32) and imgs.abs().max() <= 1
        assert net.calls == 2 * sp.nfe_of(spec), (sp.label(spec), spec["steps"], net.calls)


def test_steps_chosen_for_each_nfe_budget():
    specs = sp.grid_specs(sp.DEFAULT_LINES, sp.NFE_GRID)
    by_line = {}
    for s in specs:
        by_line.setdefault(sp.label(s), {})[s["nfe_target"]] = (s["steps"], sp.nfe_of(s))
        assert sp.nfe_of(s) <= s["nfe_target"]
    # Heun: 2 steps - 1 calls; NFE 2 would repeat the 1-step (= one Euler step) row, so it is left out
    heun = {1: (1, 1), 5: (3, 5), 10: (5, 9), 20: (10, 19), 50: (25, 49), 100: (50, 99), 250: (125, 249),
            1000: (500, 999)}
    assert by_line["diffbook heun karras"] == heun
    assert by_line["diffusers HeunDiscreteScheduler karras/linspace"] == heun
    assert by_line["diffbook dpmpp_2m karras"] == {m: (m, m) for m in sp.NFE_GRID}
    # a DDPM-timestep schedule stops at T steps; Karras sigmas do not
    assert max(sp.grid_specs([dict(sampler="ddim", schedule="ddpm")], (500, 1000, 2000)), key=lambda s: s["steps"])[
        "steps"] == 1000
    assert [s["steps"] for s in sp.grid_specs([dict(sampler="euler", schedule="karras")], (1000, 2000))] == [1000, 2000]
    # the reference is in the default grid, and goes first among the expensive rows
    order = compare._order(specs, 10_000, 1000)
    ref = next(i for i, s in enumerate(order) if sp.is_reference(s, 1000))
    assert all(s.get("nfe_target") <= 20 for s in order[:ref])
    assert sp.image_nfes([dict(sampler="heun", steps=5), dict(sampler="ddim", steps=10, n=7)], 100) == 9 * 100 + 70


@pytest.mark.parametrize("spec, words", [
    (dict(sampler="ddpm_magic", steps=10), "unknown diffbook sampler"),
    (dict(library="diffusers", sampler="LMSDiscreteScheduler", steps=10), "unknown diffusers scheduler"),
    (dict(sampler="ddim", schedule="ddpm", steps=0), "steps must be an integer >= 1"),
    (dict(sampler="ddim", schedule="ddpm", steps=2000), "at most 1000 steps"),
    (dict(sampler="ddim", schedule="karras", spacing="trailing", steps=5), "only applies to schedule 'ddpm'"),
    (dict(sampler="ddim", schedule="ddpm", spacing="middle", steps=5), "spacing must be one of"),
    (dict(library="diffusers", sampler="DDIMScheduler", schedule="karras", steps=5), "cannot use schedule"),
    (dict(library="diffusers", sampler="EulerDiscreteScheduler", steps=5, clip=True), "no clip_sample"),
    (dict(sampler="ddim", steps=5, step=4), "unknown key"),
    (dict(sampler="ddim", steps=5, clip="yes"), "clip must be True or False"),
    (dict(library="torch", sampler="ddim", steps=5), "library must be"),
])
def test_bad_specs_raise_one_clear_error(spec, words):
    with pytest.raises(ValueError, match=words):
        sp.check_spec(spec, T=1000)


# --------------------------------------------------------------------------------------- diffbook == diffusers
@pytest.mark.parametrize("ours, theirs", [
    (dict(sampler="ddim", schedule="ddpm", spacing="trailing"),
     dict(library="diffusers", sampler="DDIMScheduler", spacing="trailing")),
    (dict(sampler="ancestral", schedule="ddpm", spacing="trailing"),  # the same seeded noise at every step
     dict(library="diffusers", sampler="DDPMScheduler", spacing="trailing")),
    (dict(sampler="ancestral", schedule="ddpm", spacing="leading", clip=True),
     dict(library="diffusers", sampler="DDPMScheduler", spacing="leading", clip=True)),
    (dict(sampler="dpmpp_2m", schedule="ddpm", spacing="trailing"),
     dict(library="diffusers", sampler="DPMSolverMultistepScheduler", spacing="trailing")),
    (dict(sampler="ddim", schedule="ddpm", spacing="leading", w=1.0),
     dict(library="diffusers", sampler="DDIMScheduler", spacing="leading", w=1.0)),
], ids=["ddim", "ddpm-same-noise", "ddpm-clip", "dpmpp-2m", "ddim-cfg"])
def test_same_configuration_gives_the_same_images(ddpm, ours, theirs):
    net, card = ddpm
    a = compare.sample(dict(ours, steps=5), net, card, 3, device="cpu", seed=4)
    b = compare.sample(dict(theirs, steps=5), net, card, 3, device="cpu", seed=4)
    assert (a - b).abs().max().item() < 1e-4


def test_diffusers_euler_differs_only_by_its_initial_scale(ddpm):
    """diffusers' Euler starts from z * sigma_max, not z * sqrt(1 + sigma_max^2); from its x_T we agree."""
    net, card = ddpm
    spec = dict(sampler="euler", schedule="ddpm", spacing="trailing", steps=5)
    theirs = compare.sample(dict(library="diffusers", sampler="EulerDiscreteScheduler", spacing="trailing", steps=5),
                      net, card, 3, device="cpu")
    model = DiffusionModel("fmnist-ddpm", net, card)
    model.prior_std = float(sigmas_for(spec, card, model.sigma_min, model.sigma_max)[0])  # diffusers' x_T scale
    ours = sample_images(model, spec, 3)
    assert (ours - theirs).abs().max().item() < 1e-4


# --------------------------------------------------------------------------------------- the run
ROW_FIELDS = {"library", "sampler", "schedule", "steps", "nfe", "n", "what", "fd", "floor", "fd_over_floor",
              "precision", "recall", "density", "coverage", "excess", "sample_s", "ms_per_image", "row_s",
              "class_agreement"}


def test_small_comparison_end_to_end_with_deadline(tmp_path):
    specs = [dict(sampler="ancestral", schedule="ddpm", spacing="leading", steps=1000),  # the reference
             dict(sampler="dpmpp_2m", schedule="karras", steps=1),
             dict(library="diffusers", sampler="DPMSolverMultistepScheduler", schedule="karras", steps=1)]
    out = tmp_path / "compare.json"
    seen = []
    res = compare.run_comparison(out, n=130, specs=specs, deadline_s=300, device="cpu", on_progress=seen.append)
    assert json.loads(out.read_text()) == json.loads(json.dumps(res))
    assert len(seen) >= 4 and all(p == out for p in seen)
    for key in ("command", "commit", "device", "date", "torch", "diffusers", "wall_s", "floor", "model_sha256"):
        assert res[key], key
    assert res["floor"]["n"] == 130 and res["floor"]["fd"] > 0 and res["nfe_grid"] == [1, 1000]
    done = [r for r in res["rows"] if "skipped" not in r]
    assert [r["library"] for r in done] == ["diffbook", "diffusers"]  # cheapest first: 1 NFE before 1000
    for r in done:
        assert ROW_FIELDS <= set(r), ROW_FIELDS - set(r)
        assert r["nfe"] == 1 and r["n"] == 130 and r["floor"] == res["floor"]["fd"]
        assert math.isclose(r["excess"], r["fd"] - r["floor"], abs_tol=1e-3) and r["fd"] > r["floor"]
        assert 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1 and 0 <= r["class_agreement"] <= 1
        assert r["ms_per_image"] > 0 and r["row_s"] >= r["sample_s"]
    # the 1000-step reference would not end before the deadline: recorded as skipped, with the estimate
    (ref,) = [r for r in res["rows"] if "skipped" in r]
    assert ref["skipped"] == "deadline" and ref["steps"] == 1000 and ref["nfe"] == 1000 and ref["estimated_s"] > 300
    summary = res["summary"]
    assert summary["reference"] is None and summary["all_pass"] is None
    assert summary["checks"]["nfe10_within_1.3x_of_reference"] is None
    assert isinstance(summary["checks"]["diffbook_le_diffusers_at_nfe1"], bool)

    # a deadline already passed skips every row (no throughput is known yet: only the clock decides)
    res0 = compare.run_comparison(tmp_path / "none.json", n=130, specs=specs[1:2], deadline_s=0, device="cpu")
    assert [r["skipped"] for r in res0["rows"]] == ["deadline"]


def test_bad_n_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="N >= 129"):
        compare.run_comparison(tmp_path / "x.json", n=64, specs=[dict(sampler="ddim", steps=1)], device="cpu")


# --------------------------------------------------------------------------------------- summary and plot
def row(lib, sampler, nfe, fd, *, floor=0.1, schedule="karras", **extra):
    base = dict(library=lib, sampler=sampler, schedule=schedule, steps=nfe, nfe=nfe, nfe_target=nfe, n=2000,
                fd=fd, floor=floor)
    return {**base, **extra}


def hand_made():
    return dict(nfe_grid=[10, 20, 1000], floor=dict(fd=0.1, n=2000), rows=[
        row("diffbook", "ancestral", 1000, 1.1, schedule="ddpm", spacing="leading"),  # reference: excess 1.0
        row("diffbook", "dpmpp_2m", 10, 1.3),  # excess 1.2 <= 1.3
        row("diffbook", "heun", 19, 1.25, nfe_target=20),  # excess 1.15 > 1.1: the NFE-20 goal fails
        row("diffbook", "dpmpp_2m", 20, 1.22, w=1.0),  # guided: not counted
        dict(row("diffbook", "ddim", 20, 0.0), fd=None, skipped="deadline"),  # skipped: not counted
        row("diffusers", "DPMSolverMultistepScheduler", 10, 1.6),
        row("diffusers", "DPMSolverMultistepScheduler", 20, 1.2),  # excess 1.1 < diffbook's 1.15
    ])


def test_summary_checks_the_goals():
    s = summary.summarize(hand_made())
    assert s["reference"]["excess"] == pytest.approx(1.0) and s["reference"]["nfe"] == 1000
    assert s["ratio"] == {10: pytest.approx(1.2), 20: pytest.approx(1.15)}
    assert s["checks"] == {"nfe10_within_1.3x_of_reference": True, "nfe20_within_1.1x_of_reference": False,
                           "diffbook_le_diffusers_at_nfe10": True, "diffbook_le_diffusers_at_nfe20": False,
                           "diffbook_le_diffusers_at_nfe1000": True}  # the reference itself (1.0 < 1.1)
    assert s["all_pass"] is False
    assert s["margin"] == {10: pytest.approx(-0.3), 20: pytest.approx(0.05), 1000: pytest.approx(-0.1)}
    # a difference within 1 % of diffusers' excess is a tie (round-off between the same method in both libraries)
    res = hand_made()
    res["rows"][-1]["fd"] = 1.2 + 0.05 / 1.01  # diffusers' excess 1.1495: diffbook's 1.15 is 0.04 % above it
    assert summary.summarize(res)["checks"]["diffbook_le_diffusers_at_nfe20"] is True
    assert summary.summarize(res, tie_rtol=0.0)["checks"]["diffbook_le_diffusers_at_nfe20"] is False
    assert s["best"]["diffbook"][20]["sampler"] == "heun"  # best with at most 20 NFE (the guided row is out)
    assert s["best"]["diffusers"][1000]["excess"] == pytest.approx(1.1)
    assert s["excess_by_line"]["diffbook dpmpp_2m karras"] == {10: pytest.approx(1.2)}


def test_summary_is_none_where_rows_are_missing():
    res = hand_made()
    res["rows"] = [r for r in res["rows"] if r["library"] == "diffbook" and r["nfe"] != 1000]
    s = summary.summarize(res)
    assert s["reference"] is None and s["ratio"] == {10: None, 20: None}
    assert set(s["checks"].values()) == {None} and s["all_pass"] is None
    assert s["best"]["diffusers"][10] is None and s["best"]["diffbook"][10]["sampler"] == "dpmpp_2m"
    assert summary.summarize({"rows": []})["all_pass"] is None


def test_plot_fd_vs_nfe():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    assert summary.plot_fd_vs_nfe(hand_made(), ax) is ax
    assert ax.get_xscale() == "log"
    labels = [line.get_label() for line in ax.get_lines()]
    assert "diffbook dpmpp_2m karras" in labels and "diffusers DPMSolverMultistepScheduler karras" in labels
    assert any("floor" in name for name in labels) and any("1000-step" in name for name in labels)
    plt.close(fig)


# --------------------------------------------------------------------------------------- command line, GPU script
def test_cli_compare_smoke_passes_the_smoke_grid(tmp_path, monkeypatch):
    calls = []

    def fake_run(out, **kwargs):
        calls.append((out, kwargs))
        return {"summary": {"checks": {}}}

    monkeypatch.setattr(compare, "run_comparison", fake_run)
    assert main(["compare", "--smoke", "--out", str(tmp_path / "r.json")]) == 0
    (out, kw), = calls
    assert out == str(tmp_path / "r.json") and kw["n"] == sp.SMOKE_N and kw["nfe_grid"] == (1, 2)
    assert kw["specs"] == sp.grid_specs(sp.SMOKE_LINES, (1, 2))
    assert {s["library"] for s in kw["specs"]} == {"diffbook", "diffusers"}
    assert kw["command"].startswith("python -m diffbook compare --smoke")
    main(["compare", "--n", "500", "--nfe", "10", "20", "--deadline-s", "60", "--out", str(tmp_path / "g.json")])
    kw = calls[-1][1]
    assert kw["n"] == 500 and kw["deadline_s"] == 60 and {s["nfe_target"] for s in kw["specs"]} == {10, 20}


def test_device_script_grid_matches_its_budget():
    spec = importlib.util.spec_from_file_location("device_compare", ROOT / "scripts" / "device_compare.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    specs = mod.device_specs()
    assert len(specs) == 117 and sp.image_nfes(specs, 1) == 4598  # the numbers its docstring plans with
    assert sum(sp.is_reference(s, 1000) for s in specs) == 1
    assert sp.image_nfes(specs, 2000) * 0.035e-3 < 330  # seconds of H100 sampling at the release throughput
