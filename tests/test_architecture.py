"""The package's shape: no import cycles, figures that import no stage, reference code kept out
of the stages (import-linter contracts in pyproject.toml), small files, scripts that use only
the package's public names."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "anchorflow"
MAX_MODULE_LINES = 400


def test_import_contracts_hold() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), str(REPO / "pyproject.toml")],
        cwd=REPO / "src",
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_no_python_file_exceeds_the_line_limit() -> None:
    sizes = {
        path.relative_to(REPO).as_posix(): len(path.read_text().splitlines())
        for folder in ("src", "scripts", "tests", "bench")
        for path in (REPO / folder).rglob("*.py")
    }
    assert sum(name.startswith("src/anchorflow/") for name in sizes) > 40
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_scripts_import_no_private_package_names() -> None:
    private = []
    for script in sorted((REPO / "scripts").glob("*.py")):
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("anchorflow"):
                private += [
                    f"{script.name}: {node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_")
                ]
    assert private == []
