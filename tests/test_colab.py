"""The Colab path, as a student on a fresh runtime meets it, simulated offline.

A fresh Colab runtime has PyTorch and the scientific stack but no diffbook and no data. Here:

- a new virtual environment sees the packages of this project's .venv (torch, diffusers, jupyter, ...) through a
  .pth file, except diffbook itself: like Colab, it "already has a torch";
- a stand-in ``google.colab`` package makes the chapters' first cell believe it runs on Colab;
- the first cell (scripts/colab_cell.py, with the repository URL pointed at a copy of this checkout) installs
  diffbook with pip, offline (``PIP_NO_INDEX``): it must not replace or upgrade torch;
- there is no Debian data (``DIFFBOOK_NO_SYSTEM_DATA=1``) and an empty cache; Fashion-MNIST is served by a local
  127.0.0.1 HTTP server standing in for the official URLs (``DIFFBOOK_DATA_URL``), so a chapter that needs a split
  must fetch it (``downloads_allowed()`` says yes on Colab);
- then every chapter that loads a dataset runs, first cell included, in a kernel of that environment.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT, chapter_notebooks

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
SITE = Path(next(p for p in sys.path if p.endswith("site-packages")))


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """A fresh 'Colab' environment: (python, env, served requests, torch before install)."""
    tmp = tmp_path_factory.mktemp("colab")
    # 1. a venv that sees this project's packages (torch included) but not diffbook
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp / "venv")], check=True, timeout=120)
    py = tmp / "venv" / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    system = tmp / "preinstalled"
    system.mkdir()
    for entry in SITE.iterdir():
        if "diffbook" not in entry.name and not entry.name.endswith(".pth"):
            (system / entry.name).symlink_to(entry)
    (site / "preinstalled.pth").write_text(str(system) + "\n")
    # 2. google.colab, as far as the first cell can tell
    fake = tmp / "fake_colab" / "google" / "colab"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('"""A stand-in for Colab\'s google.colab package (tests only)."""\n')
    # 3. a copy of the checkout to install from (pip builds in the source folder)
    src = tmp / "src"
    shutil.copytree(ROOT / "diffbook", src / "diffbook", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE", "LICENSE-CONTENT.md"):
        shutil.copy(ROOT / name, src / name)
    # 4. the data, served on 127.0.0.1
    served = tmp / "served"
    served.mkdir()
    for f in DEBIAN.glob("*.gz"):
        shutil.copy(f, served)
    requests = []

    class Logged(_Quiet):
        def do_GET(self):  # noqa: N802 - the base class's name
            requests.append(self.path)
            super().do_GET()

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Logged, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIFFBOOK_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(PYTHONPATH=str(tmp / "fake_colab"), DIFFBOOK_NO_SYSTEM_DATA="1", PIP_NO_INDEX="1",
               PIP_NO_BUILD_ISOLATION="0", PIP_DISABLE_PIP_VERSION_CHECK="1",
               DIFFBOOK_DATA_URL=f"http://127.0.0.1:{server.server_address[1]}/", XDG_CACHE_HOME=str(tmp / "cache"),
               HOME=str(tmp / "home"), JUPYTER_PATH=str(tmp / "venv" / "share" / "jupyter"),
               JUPYTER_DATA_DIR=str(tmp / "venv" / "share" / "jupyter"), OMP_NUM_THREADS="1",
               MPLBACKEND="Agg")
    torch_before = subprocess.run([str(py), "-c", "import torch; print(torch.__version__, torch.__file__)"],
                                  capture_output=True, text=True, env=env, check=True, cwd=tmp).stdout.strip()
    subprocess.run([str(py), "-m", "ipykernel", "install", "--prefix", str(tmp / "venv"), "--name", "python3"],
                   env=env, check=True, capture_output=True, timeout=120, cwd=tmp)
    yield dict(py=py, env=env, src=src, requests=requests, torch_before=torch_before, tmp=tmp)
    server.shutdown()


def _first_cell(src: Path) -> str:
    """The chapters' first cell, installing from the local copy instead of the public repository."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import colab_cell

    text = colab_cell.cell_source()
    url = f"git+{colab_cell.repository_url()}@v{colab_cell.version()}"
    assert url in text
    return text.replace(url, src.as_uri())


def test_the_first_cell_installs_diffbook_offline_and_keeps_torch(colab):
    py, env = colab["py"], colab["env"]
    check = "import importlib.util; print(importlib.util.find_spec('diffbook') is None)"
    assert subprocess.run([str(py), "-c", check], capture_output=True, text=True, env=env, cwd=colab["tmp"]).stdout.strip() == "True"
    proc = subprocess.run([str(py), "-c", _first_cell(colab["src"])], capture_output=True, text=True, env=env,
                          timeout=600, cwd=colab["tmp"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    after = subprocess.run([str(py), "-c", "import torch, diffbook; print(torch.__version__, torch.__file__); "
                                           "print(diffbook.__version__, diffbook.__file__)"],
                           capture_output=True, text=True, env=env, check=True, cwd=colab["tmp"]).stdout.splitlines()
    assert after[0] == colab["torch_before"], "installing diffbook replaced or upgraded torch"
    assert after[1].split()[1].startswith(str(colab["tmp"] / "venv")), after[1]  # installed, not the checkout
    # running the cell again (a second chapter in the same runtime) installs nothing
    again = subprocess.run([str(py), "-c", _first_cell(colab["src"])], capture_output=True, text=True, env=env,
                           cwd=colab["tmp"])
    assert again.returncode == 0 and "Successfully installed" not in again.stdout


def _chapters_that_load_data() -> list[Path]:
    """The chapters that read a dataset: on a fresh runtime they differ from the nbval run (no Debian files, an
    empty cache); the others run the same code on the same installed package, which nbval already checks."""
    return [p for p in chapter_notebooks() if any(name in p.read_text(encoding="utf-8")
                                                  for name in ("load_fashion_mnist", "load_mnist_5k"))]


@pytest.mark.parametrize("nb_path", _chapters_that_load_data(), ids=lambda p: p.name)
def test_every_chapter_that_loads_data_runs_from_a_fresh_colab_runtime(colab, nb_path):
    """Each such chapter, first cell included, in a kernel of the fresh environment: the data it needs is
    fetched."""
    py, env = colab["py"], colab["env"]
    if subprocess.run([str(py), "-c", "import diffbook"], env=env, cwd=colab["tmp"]).returncode != 0:
        pytest.skip("diffbook did not install: see test_the_first_cell_installs_diffbook_offline_and_keeps_torch")
    nb = nbformat.read(nb_path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    first.source = _first_cell(colab["src"])
    work = colab["tmp"] / "book"
    work.mkdir(exist_ok=True)
    path = work / nb_path.name
    nbformat.write(nb, path)
    proc = subprocess.run([str(py), "-m", "nbconvert", "--to", "notebook", "--execute", "--inplace",
                           "--ExecutePreprocessor.kernel_name=python3", "--ExecutePreprocessor.timeout=600",
                           str(path)], capture_output=True, text=True, env=env, cwd=work, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    uses_data = "load_fashion_mnist" in json.dumps(nbformat.writes(nb))
    if uses_data:
        assert list((colab["tmp"] / "cache" / "diffbook" / "fashion-mnist").glob("*.gz")), \
            "the chapter loads Fashion-MNIST, but nothing was downloaded into the cache"
