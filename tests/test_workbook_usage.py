"""The workbook commands' usage errors read like every other command's: one line naming the
command's --help, exit 2 (issue 16, 7: `excel --group week` printed three lines of usage)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.excel_data import traffic_rows, write_traffic_csv


@pytest.mark.parametrize("command", ["excel", "report"])
@pytest.mark.parametrize(("args", "says"), [
    (["--group", "week"], "argument --group: invalid choice: 'week'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--out"], "argument --out: expected one argument"),
])
def test_a_usage_error_is_one_line_naming_the_commands_help(tmp_path: Path, command: str,
                                                            args: list[str], says: str) -> None:
    csv = write_traffic_csv(tmp_path / "traffic.csv", traffic_rows(windows=2))
    done = run_cli([command, "--csv", str(csv), *args], cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("traffic-capture: error: ") and says in lines[0]
    assert lines[0].endswith(f"(see traffic-capture {command} --help)")
    assert not list(tmp_path.glob("*.xlsx"))


@pytest.mark.parametrize("command", ["excel", "report"])
def test_help_still_prints_the_whole_usage(tmp_path: Path, command: str) -> None:
    done = run_cli([command, "--help"], cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout.startswith(f"usage: traffic-capture {command} ")
    assert "--group" in done.stdout
