"""The training-recipe study (diffbook.eval.recipe_study): every arm trains the same network from the same start on
the same number of images, the scores are those of the zoo (FD over its floor in fmnist-clf's features), and the
results file is written atomically after each arm."""

from __future__ import annotations

import json
import math

import pytest
import torch

from diffbook.eval import recipe_study as R


def test_arms_differ_from_the_release_recipe_in_what_they_say():
    release = R.ARMS["release"]
    assert (release["batch"], release["lr"], release["ema"], release["param"]) == (1024, 5e-4, 0.9995, "eps")
    assert {a["param"] for a in R.ARMS.values()} == {"eps", "v", "edm"}
    assert {a["levels"] for a in R.ARMS.values()} == {"linear", "cosine", "lognormal"}
    # "auto": a half-life of a tenth of the steps
    assert R.ema_decay_for(dict(ema="auto"), 1000) ** 100 == pytest.approx(0.5)


def test_down_and_up_sampling_keep_block_means():
    x = torch.randn(3, 1, 32, 32)
    small = R.downsample(x)
    assert small.shape == (3, 1, 16, 16)
    assert torch.allclose(R.downsample(R.upsample(small)), small)
    assert torch.allclose(small[0, 0, 0, 0], x[0, 0, :2, :2].mean())


@pytest.mark.parametrize("levels", ["linear", "cosine", "lognormal"])
def test_training_levels_lie_in_the_range_of_each_schedule(levels):
    s = R._train_sigmas(levels, 4096, torch.Generator().manual_seed(0))
    assert s.shape == (4096,) and (s > 0).all()
    if levels == "lognormal":   # EDM: ln sigma ~ N(-1.2, 1.2^2)
        assert abs(s.log().mean().item() + 1.2) < 0.1 and abs(s.log().std().item() - 1.2) < 0.1
    else:                       # the DDPM table: from about 0.01 up to about 157 (linear)
        assert s.min() < 0.05 and s.max() > 20


def test_a_tiny_study_writes_every_score_for_every_sampler(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setattr(R, "SAMPLERS", {"dpmpp_2m, 3 steps": ("dpmpp_2m", 3), "ancestral, 3 steps": ("ancestral", 3)})
    out = tmp_path / "study.json"
    arms = {"EDM": R.ARMS["EDM"]}
    res = R.run_study(out, arms, n_images=256, n_eval=130, command="test")
    on_disk = json.loads(out.read_text())
    assert on_disk == json.loads(json.dumps(res)) and not (tmp_path / "study.tmp").exists()
    assert res["floor"] > 0 and res["command"] == "test" and res["settings"]["n_images"] == 256
    (arm,) = res["arms"]
    assert arm["name"] == "EDM" and arm["steps"] == 2 and arm["images"] == 256
    assert set(arm["scores"]) == set(R.SAMPLERS)
    for s in arm["scores"].values():
        assert math.isfinite(s["fd"]) and s["fd_over_floor"] == pytest.approx(s["fd"] / res["floor"])
        assert 0 <= s["precision"] <= 1 and 0 <= s["recall"] <= 1 and 0 <= s["class_agreement"] <= 1


def test_merge_joins_disjoint_runs_and_refuses_mixed_settings(tmp_path):
    base = dict(command="c", commit="x", device="cpu", date="d", torch="t", settings=dict(n_images=1), floor=1.0)
    a = dict(base, arms=[dict(name="EDM")], wall_s=5.0)
    b = dict(base, arms=[dict(name="release")], wall_s=7.0)
    for name, part in (("a", a), ("b", b)):
        (tmp_path / f"{name}.json").write_text(json.dumps(part))
    merged = R.merge([tmp_path / "a.json", tmp_path / "b.json"], tmp_path / "m.json")
    assert [arm["name"] for arm in merged["arms"]] == ["release", "EDM"]        # in the order of ARMS
    assert merged["wall_s"] == 7.0 and merged["command"] == ["c", "c"]
    assert json.loads((tmp_path / "m.json").read_text()) == merged
    (tmp_path / "c.json").write_text(json.dumps(dict(b, floor=2.0)))
    with pytest.raises(ValueError, match="different settings"):
        R.merge([tmp_path / "a.json", tmp_path / "c.json"], tmp_path / "m.json")
    with pytest.raises(ValueError, match="more than one file"):
        R.merge([tmp_path / "a.json", tmp_path / "a.json"], tmp_path / "m.json")


def test_ema_warmup_forgets_the_initial_weights_like_the_release_loop():
    """fit(..., ema_warmup=True) uses min(decay, (1 + i) / (10 + i)) at step i: after one step the EMA holds a tenth
    of the initial weights and nine tenths of the trained ones, where a plain EMA of 0.9995 keeps almost all of the
    initial weights."""
    from diffbook.train.fit import fit

    def make():
        torch.manual_seed(0)
        return torch.nn.Linear(2, 1)

    init = make().weight.detach().clone()

    def loss_fn(model, x, g):
        return (model(x) - 1).pow(2).mean()

    def data(n, g):
        return torch.randn(n, 2, generator=g)

    plain, _ = fit(make(), loss_fn, data, steps=1, batch=8, lr=0.1, ema_decay=0.9995)
    warm, _ = fit(m := make(), loss_fn, data, steps=1, batch=8, lr=0.1, ema_decay=0.9995, ema_warmup=True)
    trained = m.weight.detach()
    assert torch.allclose(warm.weight, 0.1 * init + 0.9 * trained)
    assert torch.allclose(plain.weight, 0.9995 * init + 0.0005 * trained)
    assert R.ARMS["release"]["ema_warmup"] and R.ARMS["batch 128"]["ema_warmup"]
