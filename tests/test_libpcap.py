"""Finding and calling libpcap: the Windows-only lookups (Npcap's folder, its events) with the
operating system's answers given, and the real library on this machine."""

from __future__ import annotations

import ctypes
import errno
import os
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
