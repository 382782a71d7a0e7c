"""Guards of issue 19: no function in gtpt_deploy/ longer than 80 lines or with more than 12 parameters.

Long functions and long parameter lists are where options drift apart between the CLI, the Python API and Triton;
the options travel as small typed objects instead (``runtime/options.py``). ``self`` / ``cls`` do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gtpt_deploy"
MAX_LINES = 80
MAX_PARAMS = 12


def _functions(source: str):
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = fn.args
    names = [*a.posonlyargs, *a.args, *a.kwonlyargs]
    count = len(names) + (a.vararg is not None) + (a.kwarg is not None)
    return count - (1 if names and names[0].arg in ("self", "cls") else 0)


def oversized(source: str, label: str = "<src>") -> list[str]:
    """'file:line name (N lines, M params)' for every function over either limit."""
    found = []
    for fn in _functions(source):
        lines, params = fn.end_lineno - fn.lineno + 1, _params(fn)
        if lines > MAX_LINES or params > MAX_PARAMS:
            found.append(f"{label}:{fn.lineno} {fn.name} ({lines} lines, {params} params)")
    return found


def test_the_guard_sees_a_long_function_and_a_long_parameter_list():
    long_body = "def f():\n" + "    x = 1\n" * MAX_LINES
    many = "def g(" + ", ".join(f"a{i}" for i in range(MAX_PARAMS + 1)) + "):\n    pass\n"
    method = "class C:\n    def m(self, " + ", ".join(f"a{i}" for i in range(MAX_PARAMS)) + "):\n        pass\n"
    assert [s.split()[1] for s in oversized(long_body + many + method)] == ["f", "g"]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_function_over_80_lines_or_12_parameters(path: Path):
    assert oversized(path.read_text(), str(path.relative_to(PACKAGE))) == []
