"""Reading traffic.csv: delimiter detection, typed columns, one-line errors, the sheet limit."""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.excel_data import traffic_rows, write_traffic_csv
from traffic_capture.csvformat import COLUMNS, TIME_FORMAT
from traffic_capture.excel.read import (
    TrafficCsvError,
    detect_delimiter,
    newest_that_fit,
    parse_rows,
    read_traffic,
    read_typed,
)
from traffic_capture.rules import CLASSES


@pytest.mark.parametrize("delimiter", [",", ";"])
def test_both_delimiters_read_the_same_typed_rows(tmp_path: Path, delimiter: str) -> None:
    rows = traffic_rows()
    df = read_traffic(write_traffic_csv(tmp_path / "t.csv", rows, delimiter))
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == len(rows)
    assert df["window_start"].dtype == "datetime64[ns]"
    assert df["window_start"].iloc[0] == pd.Timestamp(rows[0][0])
    for col in COLUMNS[4:]:
        assert df[col].dtype == "int64"
    assert df["total_bytes"].sum() == sum(int(r[4]) for r in rows)
    assert (df["total_bytes"] == df[[f"{c}_bytes" for c in CLASSES]].sum(axis=1)).all()
    assert set(df["client_ip"]) >= {"2001:db8::17", "10.0.0.7"}


def test_header_with_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    lines = [";".join(COLUMNS)] + [";".join(r) for r in traffic_rows(windows=2)]
    path.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8"))
    df = read_traffic(path)
    assert len(df) == len(lines) - 1
    assert df["other_bytes"].dtype == "int64"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty file"),
        (",".join(COLUMNS) + "\n", "no data rows"),
        ("a,b,c\n1,2,3\n", "not a traffic-capture CSV"),
        # (tab was here, refused: a bug, since the daemon writes it; see the round-trip test)
        (" ".join(COLUMNS) + "\n", "not a traffic-capture CSV"),
        (",".join(COLUMNS) + "\n2026-01-01 00:00:00,2026-01-01 00:00:05,::1,sideways,1,1,0,0,0,0\n",
         "line 2: bad direction"),
        (",".join(COLUMNS) + "\n2026-01-01 00:00:00,2026-01-01 00:00:05,::1,in,x,1,0,0,0,0\n",
         "line 2: bad total_bytes"),
        (",".join(COLUMNS) + "\n01/02/2026 00:00,2026-01-01 00:00:05,::1,in,1,1,0,0,0,0\n",
         "line 2: bad window_start"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TrafficCsvError, match=message) as info:
        read_traffic(path)
    assert "\n" not in str(info.value)


def test_a_row_being_appended_is_left_for_next_time(tmp_path: Path) -> None:
    rows = traffic_rows(windows=2)
    path = write_traffic_csv(tmp_path / "t.csv", rows)
    with path.open("a", encoding="utf-8") as fh:
        fh.write("2026-03-03 00:01:00,2026-03-03 00:01:05,10.0.")  # no newline yet
    assert len(read_traffic(path)) == len(rows)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(TrafficCsvError, match="no such file"):
        read_traffic(tmp_path / "absent.csv")
    with pytest.raises(TrafficCsvError, match="is a directory"):
        read_traffic(tmp_path)


def test_detect_delimiter_rejects_a_near_miss() -> None:
    assert detect_delimiter(";".join(COLUMNS) + "\r\n") == ";"
    with pytest.raises(TrafficCsvError):
        detect_delimiter(",".join(COLUMNS[:-1]))


def test_newest_that_fit_keeps_the_last_rows() -> None:
    df = pd.DataFrame({"n": range(10)})
    kept, dropped = newest_that_fit(df, limit=4)
    assert dropped == 6
    assert list(kept["n"]) == [6, 7, 8, 9]
    same, none = newest_that_fit(df, limit=10)
    assert none == 0 and len(same) == 10


row = st.tuples(
    st.integers(0, 10_000),
    st.sampled_from(["10.0.0.1", "192.168.1.200", "::1", "2001:db8:0:1::a"]),
    st.sampled_from(["in", "out"]),
    st.lists(st.integers(0, 2**40), min_size=len(CLASSES), max_size=len(CLASSES)),
)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(row, min_size=1, max_size=20), delimiter=st.sampled_from([",", ";"]))
def test_round_trip(tmp_path: Path, rows, delimiter: str) -> None:
    base = datetime(2026, 1, 1)
    text_rows = []
    for offset, ip, direction, classes in rows:
        ws = base + timedelta(seconds=5 * offset)
        we = ws + timedelta(seconds=5)
        text_rows.append([ws.strftime(TIME_FORMAT), we.strftime(TIME_FORMAT), ip, direction,
                          str(sum(classes)), *map(str, classes)])
    df = read_traffic(write_traffic_csv(tmp_path / "rt.csv", text_rows, delimiter))
    assert df["total_bytes"].tolist() == [sum(r[3]) for r in rows]
    assert df["client_ip"].tolist() == [r[1] for r in rows]
    assert df["window_start"].tolist() == [base + timedelta(seconds=5 * r[0]) for r in rows]


REPO_SAMPLES = Path(__file__).resolve().parents[1] / "samples"


@pytest.mark.parametrize(("kind", "says"), [
    ("pcap", "that is a capture file (pcap)"), ("pcapng", "that is a capture file (pcapng)"),
    ("gzip", "that is a capture file (gzip"), ("binary", "binary file"),
    ("latin1", "binary file"),
])
@pytest.mark.parametrize("command", ["excel", "report"])
def test_a_capture_or_binary_file_as_csv_is_one_plain_line(tmp_path: Path, capsys, kind: str,
                                                          says: str, command: str) -> None:
    """`report --csv capture.pcap` says to use --read, and no raw byte reaches the terminal."""
    import gzip

    from traffic_capture.excel import dashboard, report

    pcap = (REPO_SAMPLES / "sample.pcap").read_bytes()
    content = {
        "pcap": pcap,
        "pcapng": b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x4d\x3c\x2b\x1a" + bytes(range(256)),
        "gzip": gzip.compress(pcap),
        "binary": b"window_start\x00\x07\x1b[31m" + bytes(range(256)),
        "latin1": ",".join(COLUMNS).encode() + b"\n\xe9\xe8\xff\xfe" * 10,
    }[kind]
    path = tmp_path / f"capture.{kind}"
    path.write_bytes(content)
    main = dashboard.main if command == "excel" else report.main
    assert main(["--csv", str(path), "--out", str(tmp_path / "x.xlsx")]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and says in err
    if kind != "binary" and "capture file" in says:
        assert "--read" in err
    assert err.isascii() and all(c.isprintable() for c in err.strip())


HEADER = ",".join(COLUMNS)
ROW = "2026-03-02 00:00:00,2026-03-02 00:00:05"


@pytest.mark.parametrize(("body", "typed"), [
    (f"{ROW},10.0.0.1,in,5,1,1,1,1,1\n{ROW},::1,out,7,0,0,0,0,7\n", True),
    (f"{ROW}, 10.0.0.1 , in, 5, 1, 1, 1, 1, 1\n", True),  # spaces after the commas, and after
    (f"{ROW},10.0.0.1,in,5.0,1,1,1,1,1\n", True),  # a whole number written as a decimal
    (f"{ROW},,in,5,1,1,1,1,1\n{ROW},NA,out,5,1,1,1,1,1\n", True),  # no address; the text NA
    (f"{ROW},10.0.0.1,in,-5,1,1,1,1,1\n", False),
    (f"{ROW},10.0.0.1,in,5.5,1,1,1,1,1\n", False),
    (f"{ROW},10.0.0.1,up,5,1,1,1,1,1\n", False),
    (f"{ROW},10.0.0.1,in,5,1,1\n", False),
    ("2026-03-02 00:00,2026-03-02 00:00:05,10.0.0.1,in,5,1,1,1,1,1\n", False),
])
def test_reading_as_types_gives_what_reading_as_text_gives(body: str, typed: bool) -> None:
    """read_typed (each column as its type, the fast way) and parse_rows (every field as a
    text, then typed: the way that names a bad line) agree, or read_typed leaves it to it."""
    data = ("\ufeff" + HEADER + "\n" + body).encode()
    raw = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False,
                      encoding="utf-8-sig", skipinitialspace=True)
    try:
        as_text = parse_rows(raw)
    except TrafficCsvError:
        as_text = None
    as_types = read_typed(data, ",")
    assert (as_types is not None) == typed
    if as_types is not None:
        assert as_text is not None
        pd.testing.assert_frame_equal(as_types, as_text)
