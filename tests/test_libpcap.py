"""Finding and calling libpcap: the Windows-only lookups (Npcap's folder, its events) with the
operating system's answers given, and the real library on this machine."""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from typing import Any

import pytest

from tests.requirements import needs_root
from traffic_capture.sources import libpcap

NPCAP = r"C:\Windows\System32\Npcap"


def test_npcap_is_looked_for_in_its_own_folder_under_the_windows_folder() -> None:
    assert libpcap.npcap_folder({"SystemRoot": "C:\\Windows"}) == NPCAP
    assert libpcap.npcap_folder({"SystemRoot": "D:\\WINNT\\"}) == r"D:\WINNT\System32\Npcap"
    assert libpcap.npcap_folder({"windir": r"E:\Win"}) == r"E:\Win\System32\Npcap"
    assert libpcap.npcap_folder({}) == NPCAP


def test_windows_loads_npcaps_wpcap_first_then_a_winpcap_compatible_one() -> None:
    found = {"wpcap": r"C:\Windows\System32\wpcap.dll"}
    both = libpcap.library_candidates("win32", {"SystemRoot": r"C:\Windows"}, found.get,
                                      lambda folder: folder == NPCAP)
    # The folder goes on the DLL search path: wpcap.dll loads Packet.dll from beside it.
    assert both == [(NPCAP + r"\wpcap.dll", NPCAP), (r"C:\Windows\System32\wpcap.dll", None)]
    only_compatible = libpcap.library_candidates("win32", {"SystemRoot": r"C:\Windows"},
                                                 found.get, lambda folder: False)
    assert only_compatible == [(r"C:\Windows\System32\wpcap.dll", None)]
    assert libpcap.library_candidates("win32", {}, {}.get, lambda folder: False) == []


def test_unix_tries_what_find_library_says_then_the_usual_names() -> None:
    linux = libpcap.library_candidates("linux", {}, {"pcap": "libpcap.so.0.8"}.get)
    assert [path for path, _ in linux] == ["libpcap.so.0.8", "libpcap.so.1", "libpcap.so.0.8"]
    assert [p for p, _ in libpcap.library_candidates("darwin", {}, {}.get)] == ["libpcap.dylib"]


def test_without_npcap_or_libpcap_the_message_says_what_to_install() -> None:
    assert "wpcap.dll" in libpcap.missing_message("win32")
    assert "apt install libpcap0.8" in libpcap.missing_message("linux")


def test_paths_reach_libpcap_in_the_encoding_it_was_told() -> None:
    folder = "C:\\Users\\João\\AppData\\Local\\Temp\\spool-0.pcap"
    assert libpcap.path_bytes(folder, utf8=True, platform="win32") == folder.encode("utf-8")
    assert libpcap.path_bytes("/tmp/ç", utf8=False, platform="linux") == "/tmp/ç".encode()


class Kernel32:
    """WaitForMultipleObjects' answers, as Windows gives them."""

    def __init__(self, answer: int) -> None:
        self.answer = answer
        self.asked: list[tuple[int, list[int], bool, int]] = []

    def WaitForMultipleObjects(self, count: int, handles: Any, wait_all: bool,  # noqa: N802
                               timeout_ms: int) -> int:
        self.asked.append((count, [handles[i] for i in range(count)], wait_all, timeout_ms))
        return self.answer


# WAIT_FAILED (-1, 0xFFFFFFFF: more than 64 handles, one without an event): poll, never spin.
@pytest.mark.parametrize(("answer", "ready"), [(0, True), (1, True), (0x102, False),
                                               (0xFFFFFFFF, True), (-1, True), (0x80, False)])
def test_windows_waits_for_any_handles_event(answer: int, ready: bool) -> None:
    kernel32 = Kernel32(answer)
    assert libpcap.wait_for_events([11, 22], 200, kernel32) is ready
    # Any one of the two, not all; the timeout in milliseconds.
    assert kernel32.asked == [(2, [11, 22], False, 200)]


def test_this_machines_libpcap_loads_and_says_its_version() -> None:
    lib = libpcap.library()
    assert lib.pcap_lib_version().startswith(b"libpcap version")
    assert lib.pcap_dispatch.argtypes[2] is ctypes.c_void_p  # pcap_dump, a C function


@pytest.mark.root
def test_a_device_that_does_not_exist_is_named_in_one_line() -> None:
    needs_root()
    from traffic_capture.sources.live_pcap import PcapLiveSource

    descriptors = set(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError) as raised:
        PcapLiveSource(["nosuch0"], "nosuch0", None)
    assert raised.value.errno == errno.ENODEV
    assert set(os.listdir("/proc/self/fd")) <= descriptors  # no spool or handle left open
    assert "nosuch0" in str(raised.value) and "\n" not in str(raised.value)


class FakeHandle:
    """A device's handle as the portable back end sees it (its libpcap calls are the live
    tests'): what each one does is scripted by the test, per device, in the order opened."""

    script: dict[str, list[str]] = {}  # device -> what each handle made for it does
    opened: list[FakeHandle] = []

    def __init__(self, lib: Any, device: str, bpf_filter: str | None, snaplen: int,
                 spool: Any) -> None:
        self.device, self.closed = device, False
        self.does = FakeHandle.script[device].pop(0)
        if self.does == "absent":
            raise libpcap.CaptureError(errno.ENODEV, f"{device}: No such device exists")
        if self.does == "refused":
            raise PermissionError(f"no permission to capture on {device}")
        FakeHandle.opened.append(self)

    def probe(self) -> None:
        from traffic_capture.sources.live_pcap import HandleFailed

        if self.does == "opens, cannot read":
            raise HandleFailed("read error")

    def take(self) -> Any:
        from traffic_capture.sources.live_pcap import HandleFailed

        if self.does == "reads, then fails":
            self.does = "failed"
            return "a batch"
        if self.does == "failed":
            raise HandleFailed("The interface disappeared")
        return "a batch" if self.does == "reads" else None

    def drops(self) -> int:
        return 7

    def close(self) -> None:
        self.closed = True


def lossy_source(monkeypatch: pytest.MonkeyPatch, script: list[str], reopen: bool = True
                 ) -> tuple[Any, list[str]]:
    from traffic_capture.sources import live_pcap, lost_interfaces

    monkeypatch.setattr(live_pcap, "_Handle", FakeHandle)
    monkeypatch.setattr(libpcap, "library", lambda: None)
    monkeypatch.setattr(live_pcap, "_wait", lambda lib, handles, seconds: False)
    monkeypatch.setattr(live_pcap, "IDLE_SECONDS", 0.0)
    monkeypatch.setattr(lost_interfaces, "REOPEN_SECONDS", 0.0)
    FakeHandle.script, FakeHandle.opened = {"eth0": list(script)}, []
    said: list[str] = []
    return live_pcap.PcapLiveSource(["eth0"], "eth0", None, said.append, reopen), said


def run_until(source: Any, batches: int) -> list[Any]:
    """What the source yields until it has yielded `batches` batches (or 200 items)."""
    got: list[Any] = []
    for item in source.batches(threading.Event()):
        got.append(item)
        if got.count("a batch") == batches or len(got) > 200:
            break
    return got


def test_a_device_lost_is_said_once_tried_again_quietly_and_read_again_when_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    source, said = lossy_source(monkeypatch, ["reads, then fails", "absent",
                                              "opens, cannot read", "absent", "reads"])
    got = run_until(source, 2)
    assert got.count("a batch") == 2 and None in got  # the clock went on while it was away
    assert said == ["eth0 went down or away (The interface disappeared): nothing is captured "
                    "on it until it is back, then capture resumes on it; rows counted so far "
                    "are written as usual", "eth0 is back: capturing on it again"]
    assert [handle.closed for handle in FakeHandle.opened] == [True, True, False]
    assert source.kernel_drops() == 7 + 7  # the lost handle's drops are kept
    source.close()
    assert source.kernel_drops() == 14


def test_a_device_that_refuses_when_back_ends_the_run_with_its_reason(
        monkeypatch: pytest.MonkeyPatch) -> None:
    source, _ = lossy_source(monkeypatch, ["reads, then fails", "refused"])
    with pytest.raises(PermissionError, match="no permission to capture on eth0"):
        run_until(source, 5)


def test_without_reopen_a_lost_device_ends_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from traffic_capture.sources.lost_interfaces import InterfaceLost

    source, _ = lossy_source(monkeypatch, ["reads, then fails"], reopen=False)
    with pytest.raises(InterfaceLost, match=r"^eth0 went down or away \(The interface "
                                            r"disappeared\) \(--no-reopen\)$"):
        run_until(source, 5)
