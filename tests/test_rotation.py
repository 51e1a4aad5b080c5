"""Files that stay usable over days: rotation by hour or day, the Excel sheet's row limit,
and --keep / --max-disk removing the oldest files, never the current one."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO, read_rows, run_cli
from tests.csv_helpers import HOUR, udp_capture
from tests.frames import SERVER4, feed_file
from traffic_capture.argtypes import parse_size
from traffic_capture.csvformat import COLUMNS
from traffic_capture.pipeline import Pipeline
from traffic_capture.servers import ServerSet, parse_server
from traffic_capture.sinks import FanOut
from traffic_capture.sinks.csv_file import CsvSink
from traffic_capture.sinks.csv_rotation import SeriesFile, to_remove


def count(pcap: Path, out: Path, *extra: str) -> str:
    result = run_cli(["--read", str(pcap), "--server-ip", SERVER4, "--out", str(out),
                      "--quiet", *extra], TZ="UTC")
    assert result.returncode == 0, result.stderr
    return result.stderr


def series(folder: Path) -> dict[str, pd.DataFrame]:
    return {p.name: read_rows(p) for p in sorted(folder.glob("traffic*.csv"))}


def test_hourly_rotation_gives_one_file_per_hour_each_with_its_header(tmp_path: Path) -> None:
    pcap = udp_capture(tmp_path / "t.pcap", [0, HOUR, 2 * HOUR + 10, 2 * HOUR + 20])
    out = tmp_path / "out" / "traffic.csv"
    count(pcap, out, "--rotate", "hourly")
    files = series(out.parent)
    assert list(files) == ["traffic-2023-11-14-22.csv", "traffic-2023-11-14-23.csv",
                           "traffic-2023-11-15-00.csv"]
    assert all(list(rows.columns) == list(COLUMNS) for rows in files.values())
    assert [len(rows) for rows in files.values()] == [1, 1, 2]
    # Each file holds its own hour's windows.
    assert all(rows["window_start"].str.startswith(f"{name[8:18]} {name[19:21]}:").all()
               for name, rows in files.items())
    assert not out.exists()  # with rotation, --out names the series only


def test_daily_rotation_and_a_restart_appending_to_the_days_file(tmp_path: Path) -> None:
    out = tmp_path / "traffic.csv"
    count(udp_capture(tmp_path / "a.pcap", [0, 24 * HOUR]), out, "--rotate", "daily")
    count(udp_capture(tmp_path / "b.pcap", [24 * HOUR + 60]), out, "--rotate", "daily")
    files = series(tmp_path)
    assert list(files) == ["traffic-2023-11-14.csv", "traffic-2023-11-15.csv"]
    assert len(files["traffic-2023-11-15.csv"]) == 2  # the restart appended, one header


def test_keep_removes_the_oldest_files_never_the_current_one(tmp_path: Path) -> None:
    out = tmp_path / "traffic.csv"
    said = count(udp_capture(tmp_path / "t.pcap", [0, HOUR, 2 * HOUR, 3 * HOUR]), out,
                 "--rotate", "hourly", "--keep", "1")
    assert list(series(tmp_path)) == ["traffic-2023-11-15-00.csv", "traffic-2023-11-15-01.csv"]
    assert "removed" not in said  # --quiet: information is not shown; warnings would be


def test_max_disk_caps_the_series_and_says_when_the_current_file_alone_passes(tmp_path: Path
                                                                             ) -> None:
    out = tmp_path / "traffic.csv"
    pcap = udp_capture(tmp_path / "t.pcap", [0, HOUR, 2 * HOUR, 3 * HOUR])
    count(pcap, out, "--rotate", "hourly", "--max-disk", "400")
    files = sorted(tmp_path.glob("traffic*.csv"))
    assert sum(p.stat().st_size for p in files) <= 400
    assert files[-1].name == "traffic-2023-11-15-01.csv"  # the newest, current file stays
    said = count(pcap, tmp_path / "small.csv", "--max-disk", "100")
    assert "the current file alone takes more than --max-disk" in said
    assert (tmp_path / "small.csv").exists()


def test_a_file_that_would_pass_a_sheet_goes_on_in_the_next_of_its_series(tmp_path: Path
                                                                          ) -> None:
    """Through the real source, pipeline and sink, with a sheet of 5 rows instead of Excel's
    1,048,575 (the rule is the same; writing a million rows would only make the test slow)."""
    pcap = udp_capture(tmp_path / "t.pcap", [0, 5, 10, 15], clients=3)  # 4 windows of 3 rows
    out = tmp_path / "traffic.csv"
    said: list[str] = []
    sink = CsvSink(out, ",", said.append, said.append, max_rows=5)
    fan_out = FanOut([sink])
    fan_out.open()
    fan_out.start()
    feed_file(Pipeline(ServerSet([parse_server(SERVER4)]), 5, fan_out.window), pcap)
    fan_out.stop()
    files = series(tmp_path)
    # A window's rows never split across files; each file at most 5 rows (one window is 3).
    assert {name: len(rows) for name, rows in files.items()} == {
        "traffic.csv": 3, "traffic-2.csv": 3, "traffic-3.csv": 3, "traffic-4.csv": 3}
    assert any("traffic.csv holds the 5 rows an Excel sheet takes: the next rows go to "
               in line for line in said)
    # A restart goes on in the series' last file.
    sink = CsvSink(out, ",", said.append, said.append, max_rows=5)
    assert sink._current_of(out) == (4, 3)


@pytest.mark.parametrize(("text", "value"), [("500M", 500 * 2**20), ("2G", 2 * 2**30),
                                             ("1.5GiB", int(1.5 * 2**30)), ("100", 100)])
def test_sizes(text: str, value: int) -> None:
    assert parse_size(text) == value


def test_bad_rotation_options_are_usage_errors(tmp_path: Path) -> None:
    for args, message in ((["--rotate", "weekly"], "invalid choice"),
                          (["--keep", "-1"], "must be 0 or more"),
                          (["--max-disk", "lots"], "is not a size")):
        result = run_cli(["--read", str(REPO / "samples" / "sample.pcap"), "--server-ip",
                          SERVER4, *args])
        assert result.returncode == 2 and message in result.stderr, result.stderr


def test_to_remove_takes_the_oldest_first() -> None:
    files = [SeriesFile(Path(f"traffic-{n}.csv"), 100, float(n)) for n in range(1, 6)]
    current = {Path("traffic-5.csv")}
    assert to_remove(files, current, keep=2, max_bytes=None) == [
        Path("traffic-1.csv"), Path("traffic-2.csv")]
    assert to_remove(files, current, keep=None, max_bytes=250) == [
        Path(f"traffic-{n}.csv") for n in range(1, 4)]
    assert to_remove(files, current, keep=0, max_bytes=10) == [
        Path(f"traffic-{n}.csv") for n in range(1, 5)]  # never the current one


def test_fsync_also_syncs_a_new_files_folder(tmp_path: Path) -> None:
    """With --fsync, each file created (a new hour here) has its folder synced too, so a power
    loss cannot lose its directory entry; without, only the files' data are synced."""
    import subprocess

    from tests.conftest import DAEMON, child_env
    from tests.requirements import tool

    strace = tool("strace")
    pcap = udp_capture(tmp_path / "t.pcap", [0, HOUR, 2 * HOUR])
    for flag, folder_syncs in (("--fsync", 3), ("", 0)):
        out = tmp_path / f"out{flag}" / "traffic.csv"
        trace = tmp_path / f"trace{flag}.txt"
        # -ff: a file per thread, so that no other thread's calls come between two of one.
        result = subprocess.run([strace, "-f", "-ff", "-e", "trace=openat,fsync", "-o", str(trace),
                                 *DAEMON, "--read", str(pcap), "--server-ip", SERVER4,
                                 "--out", str(out), "--rotate", "hourly", "--quiet",
                                 *([flag] if flag else [])],
                                capture_output=True, text=True, timeout=120,
                                env=child_env(TZ="UTC"))
        assert result.returncode == 0, result.stderr
        # The folder opened as a directory, and that descriptor synced next by that thread.
        synced = []
        for per_thread in tmp_path.glob(f"{trace.name}.*"):
            lines = per_thread.read_text().splitlines()
            synced += [opened for opened, then in zip(lines, lines[1:], strict=False)
                       if f'"{out.parent}", O_RDONLY' in opened and "O_DIRECTORY" in opened
                       and then.startswith(f"fsync({opened.rsplit('= ', 1)[1].strip()})")]
        assert len(synced) == folder_syncs, (flag, synced)
        assert len(list(out.parent.glob("traffic-*.csv"))) == 3
