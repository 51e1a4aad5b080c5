"""When the CSV's rows reach the disk (fsync): within CSV_SYNC_SECONDS of their write, at the
end, and after every window with --fsync. A live capture's windows, further apart than that,
are each synced before the next; a file read, whose windows close many times a second, is not
slowed by a sync per window.

Through the real CSV sink and its thread; the syncs are seen by a spy that notes each fsync's
file and then makes it, and in the daemon's own system calls (strace).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import DAEMON, child_env
from tests.csv_helpers import HOUR, chattr, closed_windows, data_rows, udp_capture, wait_until
from tests.frames import SERVER4
from tests.requirements import needs_root, needs_tools, tool
from traffic_capture.sinks.csv_file import CsvSink


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files fsync'd, in order (the real fsync still runs)."""
    real, seen = os.fsync, []

    def spy(descriptor: int) -> None:
        seen.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        real(descriptor)

    monkeypatch.setattr(os, "fsync", spy)
    return seen


def start_synced(sink: CsvSink, out: Path, synced: list[str]) -> None:
    """Open and start the sink: the new file's header is synced by its thread, at once (not
    on the capture's way); `synced` is then emptied."""
    sink.open()
    assert data_rows(out) == 0 and out.read_text().startswith("window_start,")
    assert str(out) not in synced  # open() wrote the header, did not sync it
    sink.start()
    wait_until(lambda: synced.count(str(out)) == 1, 10, "the header's sync")
    del synced[:]


def feed_one_by_one(sink: CsvSink, out: Path, count: int) -> None:
    """`count` windows of 3 rows, each written before the next is given."""
    for number, window in enumerate(closed_windows(count), start=1):
        sink.window(window)
        wait_until(lambda n=number: data_rows(out) == 3 * n, 10, f"window {number}")


@pytest.mark.parametrize(("sync_seconds", "fsync", "syncs_while_running"), [
    (3600.0, False, 0),  # windows within the interval of the last sync (the header's)
    (0.0, False, 6),  # windows as far apart as the interval (a live capture): each one
    (3600.0, True, 6),  # --fsync: each one, however fast
])
def test_windows_are_synced_within_the_interval_and_all_at_the_end(
        tmp_path: Path, synced: list[str], sync_seconds: float, fsync: bool,
        syncs_while_running: int) -> None:
    out = tmp_path / "traffic.csv"
    said: list[str] = []
    sink = CsvSink(out, ",", said.append, said.append, fsync=fsync, sync_seconds=sync_seconds)
    start_synced(sink, out, synced)
    feed_one_by_one(sink, out, 6)
    assert synced.count(str(out)) == syncs_while_running
    sink.stop()
    # At the end, whatever was written since the last sync is synced (once).
    assert synced.count(str(out)) == syncs_while_running + (syncs_while_running < 6)
    assert synced[-1] == str(out) or fsync  # --fsync also syncs the folder
    assert data_rows(out) == 18 and not said


def test_rows_written_and_not_yet_synced_are_synced_when_the_interval_ends(
        tmp_path: Path, synced: list[str]) -> None:
    """The sink's thread wakes for it, with no new window to write."""
    out = tmp_path / "traffic.csv"
    sink = CsvSink(out, ",", print, print, sync_seconds=0.5)
    start_synced(sink, out, synced)
    feed_one_by_one(sink, out, 3)
    written = synced.count(str(out))
    assert written < 3  # the second and third came within 0.5 s of the first
    wait_until(lambda: synced.count(str(out)) == written + 1, 5, "the deferred sync")
    sink.stop()
    assert synced.count(str(out)) == written + 1  # nothing left to sync at stop


@pytest.mark.root
def test_a_sync_refused_at_the_end_is_said_and_no_row_is_lost(tmp_path: Path,
                                                              synced: list[str]) -> None:
    """An immutable file (chattr +i) refuses to be opened to sync: the rows are written; one
    warning says the last second's may not survive a power loss."""
    needs_root()
    needs_tools("chattr")
    out = tmp_path / "traffic.csv"
    said: list[str] = []
    sink = CsvSink(out, ",", said.append, said.append, sync_seconds=3600)
    start_synced(sink, out, synced)
    feed_one_by_one(sink, out, 4)
    chattr("+i", out)
    try:
        sink.stop()
    finally:
        chattr("-i", out)
    assert not synced  # none while it ran: the header's sync was less than an hour before
    assert data_rows(out) == 12 and sink.written == 12
    assert said == [f"could not flush {out} to the disk (Operation not permitted): its rows "
                    "are written, but a power loss now could lose the last second's"]


@pytest.mark.parametrize("flag", ["", "--fsync"])
def test_a_file_read_ends_with_its_csv_synced(tmp_path: Path, flag: str) -> None:
    """The daemon's own calls: after the last write to the CSV, an fsync of it; with --fsync,
    an fsync after every write."""
    strace = tool("strace")
    pcap = udp_capture(tmp_path / "t.pcap", [second for second in range(0, HOUR // 4, 5)])
    out = tmp_path / "traffic.csv"
    trace = tmp_path / "trace"
    result = subprocess.run([strace, "-f", "-ff", "-y", "-e", "trace=write,fsync",
                             "-o", str(trace), *DAEMON, "--read", str(pcap), "--server-ip",
                             SERVER4, "--out", str(out), "--quiet", *([flag] if flag else [])],
                            capture_output=True, text=True, timeout=120, env=child_env())
    assert result.returncode == 0, result.stderr
    # -y names each call's file; -ff writes one file per thread. The CSV's writer is the
    # thread that writes it most (the main thread writes the header at start).
    threads = [[line.split("(", 1)[0] for line in per_thread.read_text().splitlines()
                if f"<{out}>" in line] for per_thread in tmp_path.glob("trace.*")]
    calls = max(threads, key=lambda calls: calls.count("write"))
    writes = calls.count("write")
    assert writes >= 2 and data_rows(out) == len(range(0, HOUR // 4, 5))
    assert calls[-1] == "fsync"
    if flag:  # the header's sync first, then every window's write and its sync
        assert calls == ["fsync"] + ["write", "fsync"] * writes
