"""Each chapter runs once per test session: nbval executes it, and this plugin keeps what it printed and drew.

When the last cell of a chapter has run under nbval and every cell passed, the executed notebook (the chapter with
each cell's outputs and execution counts) is written to ``_build/nbval/<run>/<chapter>.ipynb``; a chapter with a
failing cell gets ``<chapter>.failed`` instead. ``tests/test_site.py`` then builds the website from these executed
notebooks through myst-nb's cache (``execute_notebooks: cache``) instead of executing every chapter a second time;
a chapter nbval did not run (or that failed) is executed by the build as usual. ``<run>`` is the test run's id,
shared by the pytest-xdist workers, so the two workers meet in one folder and a later run never reads an older one.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent
EXECUTED = ROOT / "_build" / "nbval"


def run_id(config) -> str:
    """The id of this test run: pytest-xdist's ``testrunuid`` (the same on every worker), else one per session."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput and workerinput.get("testrunuid"):
        return workerinput["testrunuid"]
    if not hasattr(config, "_diffbook_run_id"):
        config._diffbook_run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex
    return config._diffbook_run_id


def executed_dir(config) -> Path:
    return EXECUTED / run_id(config)


def is_nbval_cell(item) -> bool:
    return type(item).__name__ == "IPyNbCell"


def pytest_configure(config):
    config._diffbook_cells = {}
    if getattr(config, "workerinput", None) is None and EXECUTED.is_dir():  # the controller: drop old runs' notebooks
        for old in EXECUTED.iterdir():
            if old.is_dir() and time.time() - old.stat().st_mtime > 3600:
                shutil.rmtree(old, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """Chapters first (the slowest work, and what the site test builds from), the site test last: under
    pytest-xdist (``--dist loadfile --no-loadscope-reorder``) it then starts when the other work is dealt out, and
    waits only for the chapters still running on the other worker."""
    items.sort(key=lambda item: 0 if is_nbval_cell(item) else 2 if item.get_closest_marker("site") else 1)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if not is_nbval_cell(item) or call.when != "call":
        return
    report = outcome.get_result()
    path = Path(str(item.parent.path))
    cells = item.config._diffbook_cells.setdefault(path, {})
    cells[item.cell_num] = (report.passed, list(item.test_outputs or []))
    n_code = sum(c.cell_type == "code" for c in item.parent.nb.cells)
    if item.cell_num != n_code - 1:
        return
    out = executed_dir(item.config)
    out.mkdir(parents=True, exist_ok=True)
    if len(cells) != n_code or not all(ok for ok, _ in cells.values()):
        (out / f"{path.stem}.failed").write_text("a cell failed or did not run under nbval\n")
        return
    nb = nbformat.read(path, as_version=4)
    k = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs = [nbformat.from_dict(dict(o)) for o in cells[k][1]]
        cell.execution_count = k + 1
        for o in cell.outputs:
            if o.get("output_type") == "execute_result":
                o["execution_count"] = k + 1
        k += 1
    tmp = out / f".{path.stem}.ipynb.tmp"
    nbformat.write(nb, tmp)
    os.replace(tmp, out / f"{path.stem}.ipynb")
    (out / f"{path.stem}.json").write_text(json.dumps({"source": str(path), "cells": n_code}))
