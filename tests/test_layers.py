"""The import layering (pyproject.toml [tool.importlinter]) holds, and breaking it is caught."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.requirements import missing

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
# Test modules that still import another one until the web tests' split (issue 16) lands; one
# that no longer does must leave this list, so that it only shrinks.


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    if not LINT_IMPORTS.exists():
        missing("needs lint-imports (.venv/bin/pip install -e '.[test]')")
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--config", "pyproject.toml"],
                          cwd=root, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def test_the_package_keeps_its_layers() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "planted"), [
    ("sources/capture_file.py", "from traffic_capture import windows"),  # a source that classifies
    ("excel/read.py", "from traffic_capture import pipeline"),  # Excel reaching into capture
    ("parse.py", "from traffic_capture import pipeline"),  # the core reaching up
    ("sinks/__init__.py", "from traffic_capture import cli"),  # anything importing cli
    ("web/answers.py", "from traffic_capture.web import memory_store"),  # answers over one store
    ("web/memory_store.py", "from traffic_capture.web import api"),  # the store knowing FastAPI
    ("web/tiered.py", "from traffic_capture.history import reader"),  # one store's class
])
def test_a_planted_violation_is_caught(tmp_path: Path, module: str, planted: str) -> None:
    shutil.copytree(REPO / "traffic_capture", tmp_path / "traffic_capture",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    target = tmp_path / "traffic_capture" / module
    target.write_text(target.read_text() + f"\n{planted}  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0 and "BROKEN" in result.stdout, result.stdout


def test_the_command_line_starts_without_the_heavy_libraries() -> None:
    """`--help`, usage errors and the subcommands' parsing must not pay for numpy, pandas or
    scapy (a tenth of a second each run): they load when a run needs them."""
    code = ("import sys, traffic_capture.cli; "
            "print(sorted(m for m in ('numpy', 'pandas', 'scapy', 'fastapi') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def imported_test_modules(path: Path) -> list[str]:
    """The test modules (tests/test_*.py) that a file imports, in any spelling."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.startswith("tests.test_")]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.startswith(("tests.test_", "test_")):
                found.append(module)
            elif module == "tests" or (node.level and not module):
                found += [alias.name for alias in node.names if alias.name.startswith("test_")]
    return found


def test_no_test_module_imports_another() -> None:
    """What tests share lives in helper modules (tests/frames.py, pcapng_builder.py...): a test
    module imported by another runs its set-up there too, and ties the two together."""
    importing = {path.name: imported for path in sorted((REPO / "tests").glob("*.py"))
                 if (imported := imported_test_modules(path))}
    assert importing == {}
