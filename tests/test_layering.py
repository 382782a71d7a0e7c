"""Imports only go downwards between the pipeline's rooms (design.md §3; issue 19 item 4).

``test_seams.test_no_import_cycle_between_modules`` catches a module-level import circle at run time; this test
reads every ``import`` statement of the package (function-level and TYPE_CHECKING ones too, since a lazy import is
still an arrow) and checks, per top-level module or folder of ``gtpt_deploy`` (a "unit"):

* every unit has a layer (a new folder must be placed on purpose);
* no import points to a unit in a higher layer;
* the arrows between units form no circle (within a layer, too: e.g. runtime -> runners, never back).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "gtpt_deploy"

# top to bottom; an import may point into its own layer or a lower one
LAYERS: list[tuple[str, set[str]]] = [
    ("entry points", {"__main__", "cli"}),
    # the stages of the pipeline; the chains among them (engines -> calib -> export -> eval, demo over several) are
    # arrows within the layer, kept acyclic by the circle check
    ("stages", {"export", "calib", "engines", "eval", "serve", "demo"}),
    ("runtime and backends", {"runtime", "runners", "tensorrt"}),
    # the root package is here: its public API is loaded lazily by name, so `from .. import __version__` loads
    # nothing above
    ("base", {"gtpt_deploy", "models", "metadata", "artifacts", "errors", "keypoints", "coco", "inputs", "leftovers",
              "scratch", "threads", "bundled"}),
]
RANK = {unit: rank for rank, (_, units) in enumerate(LAYERS) for unit in units}


def _unit(module: str, root: Path) -> str:
    """``gtpt_deploy.runners.trt`` -> ``runners``; ``gtpt_deploy`` (or a name in its ``__init__``) -> ``gtpt_deploy``."""
    parts = module.split(".")
    if len(parts) < 2 or not ((root / parts[1]).is_dir() or (root / f"{parts[1]}.py").is_file()):
        return "gtpt_deploy"
    return parts[1]


def _targets(node: ast.AST, package: str) -> list[str]:
    """The gtpt_deploy modules (or names inside them) an import statement refers to, as dotted absolute names."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "gtpt_deploy"]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level == 0:
        return [node.module] if node.module and node.module.split(".")[0] == "gtpt_deploy" else []
    base = package.split(".")[: len(package.split(".")) - node.level + 1]
    if node.module:
        return [".".join([*base, node.module])]
    return [".".join([*base, a.name]) for a in node.names]  # from .. import x: x may be a module


def import_arrows(root: Path = PACKAGE) -> list[tuple[str, str, str]]:
    """Every import between two different units: (from unit, to unit, "file:line")."""
    arrows = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        package = module if rel.name == "__init__" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for target in _targets(node, package):
                a, b = _unit(module, root), _unit(target, root)
                if a != b:
                    arrows.append((a, b, f"{path.relative_to(root.parent)}:{node.lineno}"))
    return arrows


def upward_arrows(arrows: list[tuple[str, str, str]]) -> list[str]:
    return [f"{where}: {a} ({LAYERS[RANK[a]][0]}) imports {b} ({LAYERS[RANK[b]][0]})"
            for a, b, where in arrows if RANK[b] < RANK[a]]


def circles(arrows: list[tuple[str, str, str]]) -> list[list[str]]:
    """Circles in the unit graph (depth-first search; each reported once by its first unit)."""
    graph: dict[str, set[str]] = {}
    for a, b, _ in arrows:
        graph.setdefault(a, set()).add(b)
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    return found


def test_every_unit_has_a_layer():
    units = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"} | \
            {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert units - set(RANK) == set(), "place the new module/folder in a layer of tests/test_layering.py"


def test_imports_only_go_downwards():
    arrows = import_arrows()
    assert len(arrows) > 50  # the reader sees the package's imports
    assert upward_arrows(arrows) == []


def test_no_circle_between_units():
    assert circles(import_arrows()) == []


def test_the_guard_sees_an_upward_import_and_a_circle(tmp_path):
    """The checks fail on a package with one upward arrow (metadata -> runtime, as before issue 19) and a circle."""
    pkg = tmp_path / "gtpt_deploy"
    for name, text in {"__init__.py": "", "metadata.py": "from .runtime.transforms import MEAN_RGB\n",
                       "runtime/__init__.py": "", "runtime/transforms.py": "def f():\n    from ..runners import x\n",
                       "runners/__init__.py": "from ..runtime import transforms\n"}.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    arrows = import_arrows(pkg)
    assert [a[:2] for a in sorted(arrows)] == [("metadata", "runtime"), ("runners", "runtime"), ("runtime", "runners")]
    assert len(upward_arrows(arrows)) == 1 and "metadata (base) imports runtime" in upward_arrows(arrows)[0]
    assert circles(arrows) == [["runtime", "runners", "runtime"]]


@pytest.mark.parametrize("module", ["gtpt_deploy.metadata", "gtpt_deploy.runners.base", "gtpt_deploy.runners.ort",
                                    "gtpt_deploy.models"])
def test_low_modules_load_neither_cv2_nor_torch(module):
    """metadata took MEAN/STD from runtime/transforms, so importing any runner loaded cv2 (issue 19)."""
    code = f"import sys, {module}; print(sorted(m for m in ('cv2', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
