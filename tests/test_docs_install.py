"""The install lines the READMEs give work from a clone (issue 16, 9): the package is not on
PyPI, so `pip install traffic-capture` finds nothing, and a bare `pip` may be the system's
rather than the venv's the rest of the README runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.excel_data import traffic_rows, write_traffic_csv

DOCS = ("README.md", "excel/README.md")
# Whose pip: the venv's (Linux), or the Python launcher's in the project folder (Windows).
PIPS = (".venv/bin/pip", ".venv/bin/python -m pip", "py -m pip")
# What it installs: the clone itself, with extras or not.
CLONE = re.compile(r"-e (\.|'\.\[[a-z,]+\]')(\s|`|$)")


def pip_installs(text: str) -> list[str]:
    """Every `pip install ...` the text gives, with what stands before it on its line."""
    return [line.strip() for line in text.splitlines() if "pip install" in line]


@pytest.mark.parametrize("doc", DOCS)
def test_every_pip_install_is_the_venvs_pip_on_the_clone(doc: str) -> None:
    lines = pip_installs((REPO / doc).read_text(encoding="utf-8"))
    assert lines, f"{doc} gives no install at all"
    for line in lines:
        for found in re.finditer(r"pip install", line):
            before = line[:found.start()]
            assert before.endswith(tuple(p.removesuffix("pip") for p in PIPS)), (doc, line)
            assert CLONE.match(line[found.end():].lstrip()), (doc, line)


@pytest.mark.parametrize("part", ["## English", "## Português (Brasil)"])
def test_the_excel_readme_installs_from_a_clone_in_both_languages(part: str) -> None:
    text = (REPO / "excel" / "README.md").read_text(encoding="utf-8")
    start = text.index(part)
    section = text[start:text.find("\n## ", start + 1)]
    first_block = section[section.index("```sh"):]
    first_block = first_block[:first_block.index("```", 5)]
    assert ".venv/bin/pip install -e ." in first_block
    assert "py -m pip install -e ." in section  # Windows, in the project folder


def test_a_missing_excel_dependency_names_the_install_that_works(tmp_path: Path) -> None:
    """Without XlsxWriter the command says how to install it into the Python that runs it."""
    csv = write_traffic_csv(tmp_path / "traffic.csv", traffic_rows(windows=2))
    blocked = ("import sys; sys.modules['xlsxwriter'] = None; "
               "from traffic_capture.excel.dashboard import main; "
               f"sys.exit(main(['--csv', {str(csv)!r}, '--out', {str(tmp_path / 'd.xlsx')!r}]))")
    done = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "xlsxwriter" in lines[0] and f"{sys.executable} -m pip install -e ." in lines[0]
    assert "pip install traffic-capture" not in lines[0]
