"""One version for the book and its package: pyproject.toml, diffbook.__version__, the website's footer and
Sphinx config, CHANGELOG.md's latest entry and the tag the Colab cell installs all agree."""

import re
import sys
import tomllib
from pathlib import Path

import yaml

import diffbook

ROOT = Path(__file__).resolve().parents[1]


def test_one_version_everywhere():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert diffbook.__version__ == version
    assert config["sphinx"]["config"]["version"] == config["sphinx"]["config"]["release"] == version
    assert f"diffbook {version} " in config["html"]["extra_footer"]
    latest = re.search(r"^## (\d+\.\d+\.\d+) ", (ROOT / "CHANGELOG.md").read_text(), re.M).group(1)
    assert latest == version, "add a CHANGELOG.md entry for the new version"
    sys.path.insert(0, str(ROOT / "scripts"))
    import colab_cell

    assert f"@v{version}\"" in colab_cell.cell_source()
    assert colab_cell.repository_url() == config["repository"]["url"].rstrip("/")
