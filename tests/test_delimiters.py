"""Every delimiter the daemon writes round-trips: the real command writes the sample capture's
CSV with it, and `traffic-capture excel` and `report` read it back whole."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from tests.conftest import REPO, SAMPLE, run_cli
from traffic_capture.csvformat import COLUMNS

SERVERS = ["--server-ip", "192.0.2.1", "--server-ip", "2001:db8::1"]
# What --delimiter takes -> the character the file holds.
DELIMITERS = {",": ",", ";": ";", "tab": "\t", "|": "|"}


@pytest.fixture(params=sorted(DELIMITERS))
def written(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str]:
    out = tmp_path / "traffic.csv"
    result = run_cli(["--read", str(SAMPLE), *SERVERS, "--out", str(out),
                      "--delimiter", request.param, "--quiet"], TZ="UTC")
    assert result.returncode == 0, result.stderr
    return out, DELIMITERS[request.param]


def test_the_daemon_writes_the_delimiter_asked_for(written: tuple[Path, str]) -> None:
    out, delimiter = written
    header, *rows = out.read_text().splitlines()
    assert header.split(delimiter) == list(COLUMNS)
    reference = (REPO / "samples" / "traffic.csv").read_text().splitlines()[1:]
    assert [row.split(delimiter) for row in rows] == [row.split(",") for row in reference]


@pytest.mark.parametrize(("command", "sheet"), [("excel", "Data"), ("report", "Data")])
def test_the_workbook_commands_read_every_delimiter(written: tuple[Path, str], command: str,
                                                    sheet: str) -> None:
    out, delimiter = written
    workbook = out.with_suffix(".xlsx")
    result = run_cli([command, "--csv", str(out), "--out", str(workbook)])
    assert result.returncode == 0, result.stderr
    expected = pd.read_csv(out, sep=delimiter, dtype={"client_ip": str})
    values = list(openpyxl.load_workbook(workbook, read_only=True)[sheet].values)
    header = list(values[0])
    assert header[:len(COLUMNS)] == list(COLUMNS)
    got = pd.DataFrame([row[:len(COLUMNS)] for row in values[1:] if row[0] is not None],
                       columns=list(COLUMNS))
    assert got["client_ip"].tolist() == expected["client_ip"].tolist()
    assert got["total_bytes"].astype(int).sum() == expected["total_bytes"].sum()
