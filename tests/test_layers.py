"""The import layering (pyproject.toml [tool.importlinter]) holds, and breaking it is caught."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    if not LINT_IMPORTS.exists():
        pytest.fail("lint-imports is missing: pip install -e '.[test]' (CI does)")
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
