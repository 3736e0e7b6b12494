"""The package's docstrings cite equations by the labels the chapters give them; every cited label must exist."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# "Implements Eq. (ddpm-closed-form)", "Eqs. (a) and (b)"; numeric ones such as "Eq. (6)" cite a paper's numbering
CITE = re.compile(r"Eqs?\. \(([a-z][a-z0-9-]*)\)((?:(?:,| and| or) \([a-z][a-z0-9-]*\))*)")
MORE = re.compile(r"\(([a-z][a-z0-9-]*)\)")
# MyST: "$$ ... $$ (label)" and ":label: name" inside a {math} directive
DEFINE = [re.compile(r"\$\$\s*\(([a-z][a-z0-9-]*)\)"), re.compile(r"```\{math\}[^`]*?:label:\s*([a-z][a-z0-9-]*)", re.S)]


def cited_labels() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for py in sorted((ROOT / "diffbook").rglob("*.py")):
        for m in CITE.finditer(py.read_text()):
            for label in [m.group(1), *MORE.findall(m.group(2))]:
                out.setdefault(label, set()).add(py.name)
    return out


def defined_labels() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for nb in sorted((ROOT / "book").glob("*.ipynb")):
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            text = "".join(cell["source"])
            for pattern in DEFINE:
                for label in pattern.findall(text):
                    out.setdefault(label, []).append(nb.name)
    return out


def test_every_cited_equation_is_defined_in_a_chapter():
    cited, defined = cited_labels(), defined_labels()
    assert len(cited) > 20  # the regex really finds the citations
    missing = {label: sorted(files) for label, files in cited.items() if label not in defined}
    assert not missing, f"equation labels cited in diffbook but defined in no chapter: {missing}"


def test_no_equation_label_is_defined_twice():
    dupes = {label: files for label, files in defined_labels().items() if len(files) > 1}
    assert not dupes, dupes
