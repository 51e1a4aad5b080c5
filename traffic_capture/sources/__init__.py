"""Where packets come from: capture files, or live capture through one of two back ends.

Every source hands out Batches (frames.py) and nothing else: sources know nothing of servers,
classes or windows. The live back end is picked here, once, as psutil and scapy pick their
platform module: Linux packet sockets with a memory-mapped ring, or libpcap/Npcap through
ctypes (portable; Windows' only one), neither with Python per packet. A contract test checks
both yield the same packets.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from typing import Protocol

from traffic_capture.frames import Batch
from traffic_capture.rules import SNAPLEN_COUNTING

BACKENDS = ("linux", "pcap")


class Source(Protocol):
    """A source of packets, read on the capture thread.

    - `batches(stop)` yields Batches in capture order until `stop` is set or the packets end.
      A live source also yields None when idle, so that windows close by the wall clock; a
      batch's buffer may be reused once the next one is asked for.
    - `kernel_drops()` is how many packets the kernel dropped before the capture saw them
      (None for files); it may be called from any thread.
    - `progress()` is (bytes read, bytes in all) for a progress bar, or None (live).
    - `close()` releases what the source holds; it is called once, on the capture thread.
    - `warnings()`, after the end, says what the user must know about what was read (a
      damaged or cut file), one line each.
    - `live` says whether the wall clock may close windows while idle.
    """

    live: bool
    description: str  # what is read: interface or file names, for messages

    def batches(self, stop: threading.Event) -> Iterator[Batch | None]: ...

    def kernel_drops(self) -> int | None: ...

    def progress(self) -> tuple[int, int] | None: ...

    def close(self) -> None: ...

    def warnings(self) -> list[str]: ...


def default_backend() -> str:
    return "linux" if sys.platform.startswith("linux") else "pcap"


def open_live(backend: str, devices: list[str], description: str, bpf_filter: str | None,
              warn: Callable[[str], None] | None = None, reopen: bool = True,
              snaplen: int = SNAPLEN_COUNTING) -> Source:
    """The live source of a back end ('auto', 'linux' or 'pcap') on capture devices, keeping
    at most `snaplen` bytes of each frame. `warn` says, and `reopen` decides, what happens
    when an interface goes away.

    Raises PermissionError without the right to capture, ImportError when the back end cannot
    run here (no Npcap, not Linux), OSError for the rest.
    """
    if backend == "auto":
        backend = default_backend()
    if backend == "linux":
        from traffic_capture.sources.live_linux import LinuxLiveSource

        return LinuxLiveSource(devices, description, bpf_filter, warn, reopen, snaplen)
    from traffic_capture.sources.live_pcap import PcapLiveSource

    return PcapLiveSource(devices, description, bpf_filter, warn, reopen, snaplen)
