"""Checks of the wiring that executes the chapters.

`python -m pytest` runs every book/*.ipynb with nbval (pyproject.toml: testpaths include book/, addopts
`--nbval-lax --nbval-current-env`): each cell must run without error, outputs are not compared, so an
`assert` in a chapter that stops holding fails the suite. The tests here check that this wiring does what
it claims (a failing assert does fail, stale outputs do not, the kernel is this environment's Python), and
that the chapters are stored the way the build expects (listed in _toc.yml, outputs stripped, kernel python3).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from conftest import BOOK, ROOT, chapter_notebooks, toc_docnames

PYTEST_CONFIG = ROOT / "pyproject.toml"


# ------------------------------------------------------------------------- how chapters are stored
def test_book_has_chapters():
    assert chapter_notebooks(), f"no chapter notebooks in {BOOK}"


def test_toc_and_chapters_agree():
    """Every chapter notebook is in _toc.yml (only_build_toc_files would silently skip it), and every
    _toc.yml entry exists as a .ipynb or .md file."""
    docnames = toc_docnames()
    listed = set(docnames)
    not_listed = [nb.relative_to(ROOT).with_suffix("").as_posix() for nb in chapter_notebooks()
                  if nb.relative_to(ROOT).with_suffix("").as_posix() not in listed]
    assert not not_listed, f"chapters missing from _toc.yml: {not_listed}"
    missing = [d for d in docnames if not any((ROOT / (d + ext)).exists() for ext in (".ipynb", ".md"))]
    assert not missing, f"_toc.yml lists pages that do not exist: {missing}"
    assert len(docnames) == len(listed), f"_toc.yml lists a page twice: {docnames}"


@pytest.mark.parametrize("nb_path", chapter_notebooks(), ids=lambda p: p.name)
def test_chapter_is_stored_without_outputs(nb_path):
    """Chapters are committed with outputs stripped: the build and nbval execute them from scratch."""
    nb = nbformat.read(nb_path, as_version=4)
    with_outputs = [i for i, c in enumerate(nb.cells)
                    if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not with_outputs, (f"{nb_path.name}: cells {with_outputs} have stored outputs or execution counts; "
                              "clear them (e.g. `jupyter nbconvert --clear-output --inplace`)")
    assert "widgets" not in nb.metadata, f"{nb_path.name}: stored widget state in metadata; strip it"


@pytest.mark.parametrize("nb_path", chapter_notebooks(), ids=lambda p: p.name)
def test_chapter_uses_python3_kernel(nb_path):
    """The build executes each chapter with the kernel its metadata names; it must be `python3`."""
    nb = nbformat.read(nb_path, as_version=4)
    name = nb.metadata.get("kernelspec", {}).get("name")
    assert name == "python3", f"{nb_path.name}: kernelspec name is {name!r}, expected 'python3'"


# ------------------------------------------------------------------ the kernel the build runs with
def test_python3_kernel_is_this_environment():
    """The kernel named `python3` (what jupyter-book starts for each chapter) runs this Python."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    out = []
    try:
        kc.execute_interactive(
            "import sys; print(sys.prefix)", timeout=60,
            output_hook=lambda msg: out.append(msg["content"].get("text", "")) if msg["msg_type"] == "stream" else None,
        )
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert "".join(out).strip() == sys.prefix, (
        f"kernel 'python3' runs {''.join(out).strip()!r}, not {sys.prefix!r}; run `bash scripts/setup.sh`, "
        "which installs the kernelspec into .venv")


# ------------------------------------------------------------------------ nbval does what we claim
def _write_notebook(path: Path, cells: list[tuple[str, list]]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for i, (source, outputs) in enumerate(cells):
        cell = nbformat.v4.new_code_cell(source)
        if outputs:  # a stored result of an earlier run (nbval wants its execution count too)
            cell.outputs, cell.execution_count = outputs, i + 1
        nb.cells.append(cell)
    nbformat.write(nb, path)
    return path


def test_nbval_executes_chapters_and_fails_on_a_failing_assert(tmp_path):
    """Under this project's pytest configuration (addopts), in one run over two notebooks:
    every cell of a good notebook passes, in a kernel of this environment's Python, even where its stored
    output is stale (--nbval-lax compares no outputs); a notebook whose assert fails fails the run."""
    stale = [nbformat.v4.new_output("stream", name="stdout", text="output saved long ago\n")]
    _write_notebook(tmp_path / "good.ipynb", [
        ("import sys\nx = 2 + 2", []),
        (f"assert sys.prefix == {sys.prefix!r}, sys.prefix  # kernel runs this environment's Python", []),
        ("print('a fresh output', x)", stale),
    ])
    _write_notebook(tmp_path / "bad.ipynb", [
        ("measured = 0.5", []),
        ("assert measured < 0.1, 'the claim in the text no longer holds'", []),
        ("print('after')", []),
    ])
    cmd = [sys.executable, "-m", "pytest", "-c", str(PYTEST_CONFIG), "--rootdir", str(tmp_path),
           "-n", "0", "-rA", "good.ipynb", "bad.ipynb"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL, check=False)
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    for cell in range(3):
        assert f"PASSED good.ipynb::Cell {cell}" in out, out
    assert "FAILED bad.ipynb::Cell 1" in out and "the claim in the text no longer holds" in out, out
    assert "1 failed" in out, out


def test_pytest_collects_every_chapter():
    """`python -m pytest` with no arguments (the README's and CI's command) collects each chapter:
    book/ is among the configured testpaths, and pytest, given book/, collects every notebook in it."""
    import tomllib

    config = tomllib.loads(PYTEST_CONFIG.read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]
    assert "book" in config["testpaths"], config["testpaths"]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0", "book"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    collected = {line.split("::")[0] for line in proc.stdout.splitlines() if "::" in line}
    chapters = {nb.relative_to(ROOT).as_posix() for nb in chapter_notebooks()}
    assert chapters, "no chapters to collect"
    assert chapters <= collected, f"chapters not collected by pytest: {sorted(chapters - collected)}"


# ------------------------------------------------------------------ what the chapters say and cite
def _cells(nb_path, kind):
    nb = nbformat.read(nb_path, as_version=4)
    return [c for c in nb.cells if c.cell_type == kind]


def test_first_cell_is_the_one_colab_cell():
    """Every chapter starts with the same hidden cell, written by scripts/colab_cell.py from _config.yml's
    repository URL and the package version."""
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "colab_cell.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


TOC_TITLES = None


def _toc_titles() -> list[str]:
    """The title (first heading) of every page in _toc.yml."""
    global TOC_TITLES
    if TOC_TITLES is None:
        titles = []
        for doc in toc_docnames():
            path = ROOT / (doc + ".ipynb")
            text = ("\n".join(c.source for c in _cells(path, "markdown")) if path.exists()
                    else (ROOT / (doc + ".md")).read_text(encoding="utf-8"))
            titles.append(re.search(r"^# (.+)$", text, re.M).group(1).strip())
        TOC_TITLES = titles
    return TOC_TITLES


CHAPTER_NAMED = re.compile(r"\b[Tt]he ((?:[A-Z][\w-]*)(?: (?:[A-Z][\w-]*|and|of|in|with|to))*) (?:chapter|appendix)\b")
ITALIC = re.compile(r"(?<![*\w])\*([^*\n]+)\*(?![*\w])")


def _named_chapters(text: str) -> list[str]:
    """Chapter names written out in prose: 'the Guidance chapter', or an italic name in a sentence about a
    chapter ('chapter *Applications*', 'the *Samplers* and *Drawbacks* chapters')."""
    text = re.sub(r"^#.*$", "", text, flags=re.M)   # headings are titles, not sentences about chapters
    names = CHAPTER_NAMED.findall(text)
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        if re.search(r"\bchapters?\b|\bappendix\b", sentence, re.I):
            names += ITALIC.findall(sentence)
    return names


def _acronym(title: str) -> str:
    return "".join(w[0] for w in re.findall(r"[A-Za-z][\w-]*", title) if w[0].isupper() or len(w) > 3).upper()


@pytest.mark.parametrize("nb_path", chapter_notebooks(), ids=lambda p: p.name)
def test_prose_names_only_chapters_that_exist(nb_path):
    """'the Guidance chapter' must be a chapter the table of contents has (better: link it with {doc}); a promise
    of a chapter that does not exist yet fails here."""
    titles = _toc_titles()
    bad = []
    for cell in _cells(nb_path, "markdown"):
        for name in _named_chapters(cell.source):
            n = name.lower()
            if not any(n in t.lower() or n.upper() == _acronym(t) for t in titles):
                bad.append(name)
    assert not bad, f"{nb_path.name} names chapters the table of contents lacks: {bad}"


LABEL_CITE = re.compile(r"Eqs?\. \(([a-z][a-z0-9]*-[a-z0-9-]+)\)")


@pytest.mark.parametrize("nb_path", chapter_notebooks(), ids=lambda p: p.name)
def test_equations_are_cited_by_role_never_by_bare_label(nb_path):
    """Prose cites equations with {eq}`label` (the page shows the number); code and its printed output never show a
    bare label such as 'Eq. (ddpm-closed-form)', which the reader cannot find on the page."""
    leaks = [m for kind in ("markdown", "code") for c in _cells(nb_path, kind) for m in LABEL_CITE.findall(c.source)]
    assert not leaks, f"{nb_path.name} shows equation labels instead of numbers: {sorted(set(leaks))}"


def _solution_code(nb_path) -> list[str]:
    blocks = []
    for cell in _cells(nb_path, "markdown"):
        for sol in re.findall(r"`{3,4}\{solution\}.*?\n`{3,4}\s*$", cell.source, re.S | re.M):
            blocks += re.findall(r"```python\n(.*?)```", sol, re.S)
    return blocks


@pytest.mark.parametrize("nb_path", chapter_notebooks(), ids=lambda p: p.name)
def test_solution_code_uses_the_package_as_it_is(nb_path):
    """Code in exercise solutions compiles, and every diffbook module and name it imports exists."""
    import ast
    import importlib

    problems = []
    for code in _solution_code(nb_path):
        try:
            tree = ast.parse(code)
        except SyntaxError as err:
            problems.append(f"syntax error: {err}")
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("diffbook"):
                try:
                    mod = importlib.import_module(node.module)
                except ImportError as err:
                    problems.append(str(err))
                    continue
                problems += [f"{node.module} has no {a.name}" for a in node.names if not hasattr(mod, a.name)
                             and not importlib.util.find_spec(f"{node.module}.{a.name}")]
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("diffbook") and importlib.util.find_spec(a.name) is None:
                        problems.append(f"no module {a.name}")
    assert not problems, f"{nb_path.name}: {problems}"
