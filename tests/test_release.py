"""`python -m diffbook zoo --config smoke`: the whole train-and-evaluate pipeline the GPU release runs, on a CPU."""

import json

import pytest

from diffbook.eval.release import SMOKE_SPECS, run_zoo


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo")
    return out, run_zoo("smoke", out, n_eval=200)


def test_every_model_trained_and_measured(smoke_results):
    out, res = smoke_results
    assert json.loads((out / "results.json").read_text()) == res
    assert {"command", "commit", "device", "date", "wall_s", "floor"} <= res.keys()
    default = ("fmnist-ddpm", "fmnist-ncsn", "fmnist-gan")   # fmnist-fast only when asked for (test below)
    assert set(res["models"]) == set(default)
    measured = [(e["model"], e["sampler"]) for e in res["evaluations"]]
    assert measured == [(m, s["sampler"]) for m in default for s in SMOKE_SPECS[m]]
    for e in res["evaluations"]:
        assert e["n"] == 200 and e["fd"] > 0 and e["floor"] == res["floor"]["fd"] > 0
        assert 0 <= e["precision"] <= 1 and 0 <= e["recall"] <= 1
        # a few CPU smoke steps cannot model the data: far above the real-vs-real floor
        assert e["fd_over_floor"] > 2
        tag = f"{e['sampler']}-{e['steps']}{'-' + str(e['w']) if e.get('w') else ''}{'-clip' if e.get('clip') else ''}"
        assert (out / f"grid-{e['model']}-{tag}.png").exists()
        # class-conditional rows say how often the classifier sees the requested class (chance: 10%)
        assert ("class_agreement" in e) == (e["model"] == "fmnist-ddpm")
        assert 0 <= e.get("class_agreement", 0) <= 1
    assert any(e.get("clip") for e in res["evaluations"])


def test_deadline_skips_evaluations_but_keeps_results(tmp_path):
    res = run_zoo("smoke", tmp_path, n_eval=200, deadline_s=1e-9, models=("fmnist-gan",))
    assert res["evaluations"] and all(e.get("skipped") == "deadline" for e in res["evaluations"])


def test_distilled_students_are_trained_and_measured_at_their_steps(tmp_path):
    # fmnist-fast alone distils the shipped fmnist-ddpm; each row samples with the round's student
    res = run_zoo("smoke", tmp_path, n_eval=200, models=("fmnist-fast",))
    rows = [e for e in res["evaluations"] if e["model"] == "fmnist-fast"]
    assert [(e["steps"], e.get("weights")) for e in rows] == [(1, None), (2, "fmnist-fast-2step")]
    assert all(e["nfe"] == e["steps"] and e["fd"] > 0 and 0 <= e["class_agreement"] <= 1 for e in rows)
    assert res["models"]["fmnist-fast"]["steps"] > 0
