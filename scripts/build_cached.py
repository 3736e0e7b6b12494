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


def cached_config(out: Path, cache_dir: Path | None = None) -> Path:
    """A copy of _config.yml in ``out`` that executes through a jupyter-cache (local extensions made absolute)."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
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
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0] if argv else ROOT / "_build").resolve()
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb), "build", str(ROOT), "--path-output", str(out), "--config", str(cached_config(out)), "-W",
           "--keep-going"]
    return subprocess.run(cmd, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
