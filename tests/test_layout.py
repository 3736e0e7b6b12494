"""The package's layout, as a newcomer should find it: the mathematics at the top of diffbook/ importing only torch,
numpy, the standard library and each other; the machinery in folders by role, imported in one direction; no import
circles; no module reaching for another's private names; short modules; a training loop that knows no model names;
and ``import diffbook`` giving access to every part."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "diffbook"
MATH = {"checks", "schedules", "forward", "sde", "losses", "denoisers", "samplers", "guidance", "likelihood", "distill",
        # the mathematics of the applications and of the newer chapters
        "inverse", "editing", "flow", "consistency", "preconditioning"}
# the roles, lowest first: a module may import its own role and the roles below it, never one above
LAYERS = {"math": 0, "data": 1, "nets": 1, "zoo": 2, "train": 3, "show": 4, "eval": 5, "cli": 6}
MAX_LINES = 400


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (diffbook.x.y)."""
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def role(name: str) -> str:
    parts = name.split(".")
    if len(parts) == 1:
        return "cli"  # diffbook/__init__.py: the front door
    if parts[1] in ("cli", "__main__"):
        return "cli"
    return parts[1] if len(parts) > 2 or parts[1] in LAYERS else "math"


def imports(name: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, imported names, line) for every import in the module, at any depth (functions too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((mod, [a.name for a in node.names], node.lineno))
    return out


def internal_edges() -> dict[str, set[str]]:
    """module -> the diffbook modules it imports (``from .x import y`` counts y when y is a module)."""
    mods = modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for target, names, _ in imports(m, path):
            if not target.startswith("diffbook"):
                continue
            for n in names:
                if f"{target}.{n}" in mods:
                    edges[m].add(f"{target}.{n}")
            if target in mods and target != m:
                edges[m].add(target)
    return edges


def test_the_mathematics_imports_only_torch_numpy_the_standard_library_and_itself():
    mods = modules()
    allowed_third_party = {"torch", "numpy"}
    bad = []
    for m, path in mods.items():
        if role(m) != "math":
            continue
        for target, names, line in imports(m, path):
            top = target.split(".")[0]
            if top == "diffbook":
                if role(target) != "math":
                    bad.append(f"{m}:{line} imports {target}")
            elif top not in allowed_third_party and top not in sys.stdlib_module_names and top != "__future__":
                bad.append(f"{m}:{line} imports {target}")
    assert not bad, "the mathematics must not import machinery or other libraries:\n" + "\n".join(bad)


def test_roles_import_downwards_only():
    bad = []
    for m, targets in internal_edges().items():
        for t in targets:
            if LAYERS[role(t)] > LAYERS[role(m)]:
                bad.append(f"{m} ({role(m)}) imports {t} ({role(t)})")
    assert not bad, "a role imports one above it:\n" + "\n".join(sorted(bad))


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    edges = internal_edges()
    # a package's __init__ importing its own modules is not a circle of the design; leave those edges out
    edges = {m: {t for t in ts if not (modules()[m].name == "__init__.py" and t.startswith(m + "."))}
             for m, ts in edges.items()}
    assert not _cycles(edges), f"import circles: {_cycles(edges)}"


def test_the_circle_detector_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_another_modules_private_names():
    mods = modules()
    bad = [f"{m}:{line} imports {n} from {target}"
           for m, path in mods.items() for target, names, line in imports(m, path)
           if target.startswith("diffbook") and target != m
           for n in names if n.startswith("_") and n != "__version__"]
    assert not bad, "\n".join(bad)


def test_modules_are_short():
    long = {m: n for m, p in modules().items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by concept): {long}"


def test_the_training_loop_knows_no_model_names():
    text = (PKG / "train" / "loop.py").read_text(encoding="utf-8")
    names = [n for n in ("fmnist-ddpm", "fmnist-ncsn", "fmnist-gan", "fmnist-fast") if n in text]
    assert not names, f"train/loop.py mentions {names}; a model's specifics belong to its objective (recipes.py)"


def test_every_role_has_a_folder_and_the_mathematics_stands_at_the_top():
    top = {p.stem for p in PKG.glob("*.py")} - {"__init__", "__main__", "cli"}
    assert top <= MATH, f"top-level modules must be the mathematics {sorted(MATH)}; found also {sorted(top - MATH)}"
    for folder in ("data", "nets", "train", "eval", "zoo", "show"):
        assert (PKG / folder / "__init__.py").is_file(), folder


def test_import_diffbook_gives_access_to_every_part_and_load():
    code = ("import diffbook, sys; "
            "assert 'diffbook.zoo' not in sys.modules; "  # imported on first use, so `import diffbook` is fast
            "print(diffbook.zoo.load.__module__, diffbook.samplers.sample_heun.__name__, diffbook.data.fashion.__name__,"
            " diffbook.train.__name__, diffbook.eval.metrics.__name__, diffbook.show.plots.__name__, "
            "type(diffbook.load('fmnist-gan')).__name__)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["diffbook.zoo.model", "sample_heun", "diffbook.data.fashion", "diffbook.train",
                                   "diffbook.eval.metrics", "diffbook.show.plots", "GeneratorModel"]
    import diffbook

    with pytest.raises(AttributeError, match="its parts are"):
        diffbook.nothing_here  # noqa: B018


@pytest.mark.parametrize("name", sorted(modules()))
def test_every_module_imports(name):
    if name.endswith("__main__"):
        pytest.skip("runs the command line")
    importlib.import_module(name)
