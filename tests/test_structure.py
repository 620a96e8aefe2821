"""The code's shape, as ARCHITECTURE.md promises it: lint, sizes, layers.

- ruff (E, F, I, W everywhere; D and ANN for imagebuilder/, see pyproject.toml) passes;
- no module of imagebuilder/ over 400 lines, no function over 80;
- at most 8 modules directly in imagebuilder/ besides its packages;
- the library never imports invoke; a test module never imports another test module.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.common import REPO

LIBRARY = REPO / "imagebuilder"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
MAX_TOP_MODULES = 8


def library_modules() -> list[Path]:
    return sorted(LIBRARY.rglob("*.py"))


def test_ruff_passes():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed; .ci/setup installs it with the test extras")
    run = subprocess.run([ruff, "check", "--no-cache", "imagebuilder", "imagebuilder_invoke",
                          "tasks.py", "tests", "bench"], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]


def test_modules_are_small():
    long = {str(p.relative_to(REPO)): n for p in library_modules()
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_functions_are_short():
    long = []
    for path in library_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                size = node.end_lineno - first + 1
                if size > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({size})")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_few_modules_beside_the_packages():
    top = sorted(p.name for p in LIBRARY.glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, top


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_the_library_never_imports_invoke():
    offenders = [str(p.relative_to(REPO)) for p in library_modules()
                 if any(n == "invoke" or n.startswith("invoke.") for n in imported_modules(p))]
    assert not offenders


def test_test_modules_do_not_import_each_other():
    offenders = [f"{p.relative_to(REPO)} imports {n}" for p in sorted((REPO / "tests").rglob("*.py"))
                 for n in imported_modules(p) if n.split(".")[-1].startswith("test_")]
    assert not offenders
