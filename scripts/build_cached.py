"""Build the website re-executing only the chapters that changed: ``python scripts/build_cached.py [OUT]``.

The README's build command executes every chapter (``execute_notebooks: force``). While writing a chapter that is
slow; this builds into ``OUT`` (default ``_build``) with myst-nb's cache (``execute_notebooks: cache``, the cache in
``OUT/_build/.jupyter_cache``), so a chapter whose code cells did not change is taken from the cache. The same
``-W --keep-going`` rules apply. Check the result with ``DIFFBOOK_SITE_HTML=OUT/_build/html python -m pytest
tests/test_site.py`` (screenshots in ``_build/screens/``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def cached_config(out: Path, cache_dir: Path | None = None, extra_bib: list[str] = ()) -> Path:
    """A copy of _config.yml in ``out`` that executes through a jupyter-cache (local extensions made absolute);
    ``extra_bib`` adds bibliography files (entries not yet merged into book/references.bib)."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    config["bibtex_bibfiles"] = list(config.get("bibtex_bibfiles") or []) + [str(Path(b).resolve()) for b in extra_bib]
    config["execute"]["execute_notebooks"] = "cache"
    if cache_dir is not None:
        config["execute"]["cache"] = str(cache_dir)
    # jupyter-book resolves local extensions against the config file's folder: make them absolute
    local = config["sphinx"].get("local_extensions") or {}
    config["sphinx"]["local_extensions"] = {name: str((ROOT / path).resolve()) for name, path in local.items()}
    out.mkdir(parents=True, exist_ok=True)
    path = out / "_config.cached.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", nargs="?", default=str(ROOT / "_build"), help="output folder (default _build)")
    p.add_argument("--toc", default=None, help="another table of contents (e.g. one that adds a new chapter)")
    p.add_argument("--bib", nargs="*", default=[], help="extra .bib files (entries not yet in book/references.bib)")
    p.add_argument("--builder", default="html", help="html (default) or pdflatex (the PDF; needs LaTeX, see README)")
    a = p.parse_args(argv)
    out = Path(a.out).resolve()
    jb = Path(sys.executable).with_name("jupyter-book")
    config = cached_config(out, extra_bib=a.bib)
    cmd = [str(jb), "build", str(ROOT), "--path-output", str(out), "--config", str(config), "--builder", a.builder,
           "-W", "--keep-going"]
    if a.toc:
        cmd += ["--toc", str(Path(a.toc).resolve())]
    return subprocess.run(cmd, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
