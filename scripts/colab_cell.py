"""The first cell of every chapter: on Colab it installs this book's version of diffbook; elsewhere it does nothing.

One cell, identical in every chapter, hidden on the website (tag ``remove-cell``). Its repository URL and version
come from one place each: ``repository.url`` in ``_config.yml`` (also the website's launch buttons) and ``version``
in ``pyproject.toml`` (also ``diffbook.__version__``, the website's footer and CHANGELOG.md). After changing either:

    python scripts/colab_cell.py          # rewrite the first cell of every chapter
    python scripts/colab_cell.py --check  # exit 1 if a chapter's first cell differs (tests/test_notebooks.py)
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TAGS = ["remove-cell"]


def repository_url(root: Path = ROOT) -> str:
    return yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))["repository"]["url"].rstrip("/")


def version(root: Path = ROOT) -> str:
    return tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


def cell_source(root: Path = ROOT) -> str:
    """The text of the first cell."""
    return (
        "# Colab: install this book's version of diffbook (elsewhere it is installed already).\n"
        "# Colab keeps its own PyTorch; the data and the model weights come with the package or on first use.\n"
        "import importlib.util, subprocess, sys\n"
        "try:\n"
        "    import google.colab  # noqa: F401  (importable only on Colab)\n"
        "    ON_COLAB = True\n"
        "except ImportError:\n"
        "    ON_COLAB = False\n"
        "if ON_COLAB and importlib.util.find_spec(\"diffbook\") is None:\n"
        "    subprocess.run([sys.executable, \"-m\", \"pip\", \"install\", \"-q\",\n"
        f"                    \"diffbook @ git+{repository_url(root)}@v{version(root)}\"], check=True)"
    )


def chapters(root: Path = ROOT) -> list[Path]:
    return sorted((root / "book").glob("*.ipynb"))


def first_code_cell(nb: dict) -> dict:
    return next(c for c in nb["cells"] if c["cell_type"] == "code")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only report chapters whose first cell differs")
    a = p.parse_args(argv)
    want, bad = cell_source(), []
    for path in chapters():
        nb = json.loads(path.read_text(encoding="utf-8"))
        cell = first_code_cell(nb)
        if "".join(cell["source"]) == want and cell.get("metadata", {}).get("tags") == TAGS:
            continue
        bad.append(path.name)
        if not a.check:
            lines = want.split("\n")
            cell["source"] = [line + "\n" for line in lines[:-1]] + [lines[-1]]
            cell.setdefault("metadata", {})["tags"] = TAGS
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if a.check and bad:
        print(f"first cell differs from scripts/colab_cell.py in: {', '.join(bad)}", file=sys.stderr)
        return 1
    print(f"{'checked' if a.check else 'updated'} {len(chapters())} chapters; {'differ' if a.check else 'rewritten'}: "
          f"{bad or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
