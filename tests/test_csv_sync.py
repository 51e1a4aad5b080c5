"""When the CSV's rows reach the disk (fsync): within CSV_SYNC_SECONDS of their write, at the
end, and after every window with --fsync. A live capture's windows, further apart than that,
are each synced before the next; a file read, whose windows close many times a second, is not
slowed by a sync per window. A sync that fails costs no row: the file is cut back and the rows
written again.

Through the real CSV sink and its thread; the syncs are seen by a spy that notes each fsync's
file and then makes it, and in the daemon's own system calls (strace).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DAEMON, child_env, fill_disk
from tests.csv_helpers import HOUR, chattr, closed_windows, data_rows, udp_capture, wait_until
from tests.frames import SERVER4
from tests.requirements import needs_root, needs_tools, tool
from traffic_capture.sinks import Sink, csv_file
from traffic_capture.sinks.csv_file import CsvSink

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the spy reads /proc/self/fd")


class Syncs:
    """The files fsync'd, in order; `failing` makes the next syncs of a file fail (EIO), as a
    disk or a network share that loses a write-back does (no real fault here gives that:
    tmpfs and ext4 report a full disk at write())."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.failing: dict[str, int] = {}

    def count(self, path: Path) -> int:
        return self.seen.count(str(path))


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> Syncs:
    real, syncs = os.fsync, Syncs()

    def spy(descriptor: int) -> None:
        name = os.readlink(f"/proc/self/fd/{descriptor}")
        if syncs.failing.get(name, 0) > 0:
            syncs.failing[name] -= 1
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        syncs.seen.append(name)
        real(descriptor)

    monkeypatch.setattr(os, "fsync", spy)
    return syncs


class Clock:
    """The sink's monotonic clock, moved by the test: when a sync is due is then certain."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1000.0
        monkeypatch.setattr(csv_file.time, "monotonic", lambda: self.now)


def start_synced(sink: CsvSink, out: Path, synced: Syncs) -> None:
    """Open and start the sink: the new file's header is synced by its thread, at once (not
    on the capture's way); the spy's notes are then emptied."""
    sink.open()
    assert data_rows(out) == 0 and out.read_text().startswith("window_start,")
    assert synced.count(out) == 0  # open() wrote the header, did not sync it
    sink.start()
    wait_until(lambda: synced.count(out) == 1, 10, "the header's sync")
    del synced.seen[:]


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
        tmp_path: Path, synced: Syncs, sync_seconds: float, fsync: bool,
        syncs_while_running: int) -> None:
    out = tmp_path / "traffic.csv"
    said: list[str] = []
    sink = CsvSink(out, ",", said.append, said.append, fsync=fsync, sync_seconds=sync_seconds)
    start_synced(sink, out, synced)
    feed_one_by_one(sink, out, 6)
    # A window's rows show before its sync is made: wait for the syncs, then count them.
    wait_until(lambda: synced.count(out) >= syncs_while_running, 10, "the windows' syncs")
    assert synced.count(out) == syncs_while_running
    sink.stop()
    # At the end, whatever was written since the last sync is synced (once).
    assert synced.count(out) == syncs_while_running + (syncs_while_running < 6)
    assert synced.seen[-1] == str(out) or fsync  # --fsync also syncs the folder
    assert data_rows(out) == 18 and not said


def test_rows_written_and_not_yet_synced_are_synced_when_the_interval_ends(
        tmp_path: Path, synced: Syncs, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sink's thread wakes for it, with no new window to write."""
    clock = Clock(monkeypatch)
    out = tmp_path / "traffic.csv"
    sink = CsvSink(out, ",", print, print, sync_seconds=0.5)
    start_synced(sink, out, synced)  # the header's sync: the next is due at 1000.5
    feed_one_by_one(sink, out, 3)
    assert synced.count(out) == 0  # within the interval
    clock.now += 0.6  # the thread sleeps at most the 0.5 s it computed, then syncs
    wait_until(lambda: synced.count(out) == 1, 5, "the deferred sync")
    sink.stop()
    assert synced.count(out) == 1  # nothing left to sync at stop


def test_a_sync_that_fails_costs_no_row(tmp_path: Path, synced: Syncs) -> None:
    """The rows written since the last sync may not be on the disk: the file is cut back to
    where they began and they are written again (once, in order), with one warning."""
    out = tmp_path / "traffic.csv"
    said: list[str] = []
    sink = CsvSink(out, ",", said.append, said.append, sync_seconds=3600)
    start_synced(sink, out, synced)
    feed_one_by_one(sink, out, 4)
    expected = out.read_text()
    synced.failing[str(out)] = 1  # the final sync fails once, then the retry succeeds
    sink.stop()
    assert out.read_text() == expected and data_rows(out) == 12 and sink.written == 12
    assert synced.count(out) == 1  # the retry's, after the rows were written again
    assert said[0].startswith(f"cannot write {out} (OSError: Input/output error)")
    assert said[1].startswith(f"{out} is writable again: wrote 12 waiting rows")


def test_a_sync_that_keeps_failing_at_stop_leaves_the_rows_in_a_side_file(
        tmp_path: Path, synced: Syncs) -> None:
    """Cut back and refused again until the stop gives up (a second Ctrl+C here): the rows
    go to the side file beside the CSV, never twice."""
    out = tmp_path / "traffic.csv"
    said: list[str] = []
    sink = CsvSink(out, ",", said.append, said.append, sync_seconds=3600)
    start_synced(sink, out, synced)
    feed_one_by_one(sink, out, 2)
    synced.failing[str(out)] = 1000
    sink.hurry.set()
    sink.stop()
    side = sorted(tmp_path.glob("traffic.pending-*.csv"))
    assert len(side) == 1 and data_rows(side[0]) == 6 and data_rows(out) == 0
    assert any(f"saved to {side[0]}" in line for line in said)


@pytest.mark.root
def test_a_full_disk_also_writes_again_the_rows_not_yet_synced(small_disk: Path, synced: Syncs
                                                               ) -> None:
    """A write refused (a real full disk: a tiny tmpfs): the rows written since the file's
    last sync are cut back and wait with it (a network share's failed write-back may hold
    them too), and all are written once, in order, when space comes back."""
    out = small_disk / "traffic.csv"
    said: list[str] = []
    sink = CsvSink(out, ",", said.append, said.append, sync_seconds=3600)
    start_synced(sink, out, synced)
    windows = closed_windows(60)
    for number, window in enumerate(windows[:2], start=1):
        sink.window(window)
        wait_until(lambda n=number: data_rows(out) == 3 * n, 10, f"window {number}")
    expected = out.read_text()
    filler = fill_disk(small_disk, leave_free=0)
    given = 2
    while not any("disk is full" in line for line in said):  # until one no longer fits
        sink.window(windows[given])
        given += 1
        wait_until(lambda: Sink.pending(sink) == 0, 10, "the window's write")
    # Cut back to where the unsynced writes began: after the header, synced at start.
    assert out.read_text() == expected.splitlines(keepends=True)[0]
    filler.unlink()
    for window in windows[given:]:
        sink.window(window)
    wait_until(lambda: data_rows(out) == 180, 10, "the rows written again")
    sink.stop()
    rows = out.read_text()
    assert rows.startswith(expected) and rows.count("\n") == 181 and sink.written == 180
    assert [line.split(",")[4] for line in rows.splitlines()[1::3]] == [
        str(100 + second) for second in range(60)]  # each window once, in order


@pytest.mark.root
def test_a_file_made_immutable_after_its_rows_were_written_is_still_synced(
        tmp_path: Path, synced: Syncs) -> None:
    """chattr +i: nothing may write it, but its rows are already there; the sync opens it to
    read, which an immutable file allows."""
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
    assert synced.count(out) == 1 and data_rows(out) == 12 and not said


def test_a_failed_sink_syncs_what_it_wrote_and_then_sleeps(tmp_path: Path, synced: Syncs,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """A hook's exception stops the sink: its written rows are synced, and its thread waits
    for items instead of polling for the syncs it will no longer make."""
    out = tmp_path / "traffic.csv"
    said: list[str] = []
    sink = CsvSink(out, ",", said.append, said.append, sync_seconds=3600)
    start_synced(sink, out, synced)
    feed_one_by_one(sink, out, 2)
    monkeypatch.setattr(csv_file, "format_window", lambda *arguments: 1 / 0)
    sink.window(closed_windows(3)[2])
    wait_until(lambda: sink.failed is not None, 10, "the sink's failure")
    wait_until(lambda: synced.count(out) == 1, 10, "the sync of what it wrote")
    assert sink.poll_seconds() is None
    sink.stop()
    assert data_rows(out) == 6


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
    if flag:  # every window's write and its sync (the header's sync first, if it came first)
        assert calls[calls[0] == "fsync":] == ["write", "fsync"] * writes
