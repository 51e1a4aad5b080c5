"""Live capture through libpcap/Npcap: the portable back end, and Windows' only one.

No Python runs per packet. Each handle's `pcap_dispatch` is given libpcap's own `pcap_dump` as
its callback, so libpcap writes each packet it takes as a pcap record into a spool file (in
memory on Linux); once per call, the new records are read in one piece and walked by the
capture-file reader's record walk into one Batch. Reading packets one `pcap_next_ex` at a time
cost 3-8 us a packet and lost a quarter of them at 300,000 packets/s (see the README).

The choices libpcap leaves open, made explicit:
- a kernel (Npcap: driver) buffer of KERNEL_BUFFER_BYTES per handle, the Linux ring's size,
  so that a burst or a slow moment of the machine is not a loss;
- immediate mode off, with a TIMEOUT_MS read timeout: the kernel hands packets over in
  batches, at most TIMEOUT_MS late (windows are seconds long), which is what lets one call
  take thousands of packets; immediate mode would wake the process for each one;
- non-blocking handles, waited on together (select on Unix, the handles' events on Windows),
  so that several interfaces and the stop request are served at once.

It yields exactly what the Linux back end yields for the same packets (a contract test checks
this on Linux, where both run).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from traffic_capture.frames import Batch
from traffic_capture.rules import SNAPLEN_COUNTING
from traffic_capture.sources import libpcap, record_walk
from traffic_capture.sources.classic_pcap import PCAP_ROW, walked_records
from traffic_capture.sources.file_format import PCAP_HEADER_BYTES, ClassicPcap, file_format
from traffic_capture.sources.lost_interfaces import LostInterfaces

SNAPLEN = SNAPLEN_COUNTING  # by default, as the Linux back end (rules.py says why)
KERNEL_BUFFER_BYTES = 64 * 1024 * 1024  # as the Linux ring (live_linux.py)
TIMEOUT_MS = 50  # as the Linux ring's block timeout
IDLE_SECONDS = 0.2  # how long to wait for packets before saying the source is idle
# Packets one pcap_dispatch takes at most: bounds one read of the spool, and one Batch.
DISPATCH_PACKETS = 16_384
# The spool starts again (pcap_dump_open truncates) once it holds this much; one dispatch
# writes no more than this either (fewer packets when the snap length is long).
SPOOL_BYTES = 16 * 1024 * 1024
# What libpcap says of a device that is not back yet (activation: no such device, or not up).
NOT_BACK_ERRORS = frozenset({errno.ENODEV, errno.ENETDOWN, errno.ENXIO})
LAST_DISPATCHES = 64  # at stop: at most this many more calls per handle


class PcapLiveSource:
    """libpcap/Npcap handles on the given devices, with an optional kernel (BPF) filter.

    A device whose capture fails (it went down or away: a VPN restart, an adapter reset) is
    said once through `warn`; with `reopen`, capture resumes on the device of the same name
    when it can be opened again, as on the Linux back end (lost_interfaces.py).
    """

    live = True

    def __init__(self, interfaces: list[str], description: str, bpf_filter: str | None,
                 warn: Callable[[str], None] | None = None, reopen: bool = True,
                 snaplen: int = SNAPLEN) -> None:
        self.interfaces = interfaces
        self.description = description
        self._lib = libpcap.library()
        self._filter, self._snaplen = bpf_filter, snaplen
        self._handles: list[_Handle] = []
        self._drops = 0  # the kernel drops of the handles closed so far
        # The status thread reads the figures while the capture thread closes or adds handles.
        self._lock = threading.Lock()
        self._spool_folder: str | None = None
        self._spools = 0  # spools made: each handle, a reopened one too, has its own
        self._lost = LostInterfaces(warn or (lambda message: None), reopen, self._open_again)
        try:
            for name in interfaces:
                self._handles.append(self._new_handle(name))
        except BaseException:
            self.close()
            raise

    def _new_handle(self, name: str) -> _Handle:
        self._spools += 1
        return _Handle(self._lib, name, self._filter, self._snaplen,
                       self._spool_path(self._spools))

    def _open_again(self, name: str) -> _Handle | None:
        """The device's capture again, once it opens and reads; None while it is absent or
        down. Any other refusal (no right to capture, a spool that cannot be written) ends
        the run with libpcap's reason, as at start."""
        try:
            handle = self._new_handle(name)
        except OSError as error:
            if error.errno in NOT_BACK_ERRORS:
                return None
            raise
        try:  # a device can open and still fail to read: it is not back until it reads
            handle.probe()
        except HandleFailed:
            handle.close()
            return None
        return handle

    def _spool_path(self, number: int) -> str | tuple[int, str]:
        """An anonymous in-memory file on Linux; elsewhere a file in a folder of our own
        (owner-only, removed at close): it holds the packets' first bytes."""
        if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                descriptor = os.memfd_create(f"traffic-capture-spool-{number}")
                return descriptor, f"/proc/self/fd/{descriptor}"
        if self._spool_folder is None:
            self._spool_folder = tempfile.mkdtemp(prefix="traffic-capture-")
        return os.path.join(self._spool_folder, f"spool-{number}.pcap")

    def close(self) -> None:
        with self._lock:
            self._drops += self._read_drops()
            for handle in self._handles:
                handle.close()
            self._handles = []
        if self._spool_folder is not None:
            for name in os.listdir(self._spool_folder):
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(self._spool_folder, name))
            with contextlib.suppress(OSError):
                os.rmdir(self._spool_folder)
            self._spool_folder = None

    def progress(self) -> None:
        return None

    def warnings(self) -> list[str]:
        return []

    def kernel_drops(self) -> int:
        with self._lock:
            return self._drops + self._read_drops()

    def _read_drops(self) -> int:
        return sum(handle.drops() for handle in self._handles)

    def batches(self, stop: threading.Event) -> Iterator[Batch | None]:
        while not stop.is_set():
            busy = False
            for handle in list(self._handles):
                try:
                    batch = handle.take()
                except HandleFailed as failure:  # all it held was taken first
                    self._lose(handle, str(failure))
                    continue
                if batch is not None:
                    busy = True
                    yield batch
            if self._lost:
                for handle in self._lost.back():
                    with self._lock:
                        self._handles.append(handle)
            if not busy and not self._wait(IDLE_SECONDS):
                yield None
        # What the kernel already holds is counted too: it hands a batch over within its
        # timeout. Bounded, for a flood does not stop when we do.
        time.sleep(2 * TIMEOUT_MS / 1000)
        for handle in self._handles:
            for _ in range(LAST_DISPATCHES):
                try:
                    batch = handle.take()
                except HandleFailed:
                    break
                if batch is None:
                    break
                yield batch

    def _lose(self, handle: _Handle, reason: str) -> None:
        with self._lock:
            self._handles.remove(handle)
            self._drops += handle.drops()
        handle.close()
        self._lost.lose(handle.device, reason)

    def _wait(self, seconds: float) -> bool:
        """Whether a handle may have packets, waiting up to `seconds` for one."""
        if not self._handles:  # every device lost: only the clock goes on
            time.sleep(seconds)
            return False
        return _wait(self._lib, self._handles, seconds)


class HandleFailed(libpcap.CaptureError):
    """A handle's capture failed (its device went down or away), after all it held was
    taken; the message is libpcap's."""


def _wait(lib: Any, handles: list[_Handle], seconds: float) -> bool:
    """Whether a handle may have packets, waiting up to `seconds` for one."""
    if sys.platform == "win32":
        return libpcap.wait_for_events([handle.event for handle in handles],
                                       int(seconds * 1000))
    readable, _, _ = select.select(handles, [], [], seconds)
    return bool(readable)


class _Handle:
    """One device's libpcap handle and the spool its pcap_dispatch writes."""

    def __init__(self, lib: Any, device: str, bpf_filter: str | None, snaplen: int,
                 spool: str | tuple[int, str]) -> None:
        self._lib = lib
        self.device = device
        self._pcap: Any = None
        self._memory_file: int | None = None
        self._spool_is_file = not isinstance(spool, tuple)  # removed at close
        if isinstance(spool, tuple):
            self._memory_file, self._spool = spool
        else:
            self._spool = spool
        self._dumper: int | None = None
        self._reader: Any = None
        self._header = ClassicPcap("<", False, 0)
        self._read_at = self._written = 0  # in the spool: read up to, written up to
        self._failure: str | None = None  # what libpcap said when the capture first failed
        self._ftell = getattr(lib, "pcap_dump_ftell64", None) or lib.pcap_dump_ftell
        self._dump = ctypes.cast(lib.pcap_dump, ctypes.c_void_p)
        self._packets = max(64, min(DISPATCH_PACKETS, SPOOL_BYTES // (16 + snaplen)))
        self._data = np.empty(0, dtype=np.uint8)
        self._offsets = np.empty(self._packets, dtype=np.int64)
        self._table = np.empty((self._packets, PCAP_ROW), dtype=np.uint8)
        try:
            self._pcap = _open(lib, device, bpf_filter, snaplen)
            self._start_spool()
            self.event = lib.pcap_getevent(self._pcap) if sys.platform == "win32" else 0
        except BaseException:
            self.close()
            raise

    def fileno(self) -> int:
        return int(self._lib.pcap_get_selectable_fd(self._pcap))

    def _start_spool(self) -> None:
        """(Re)open the spool empty: libpcap writes the file header, which says the link type,
        the byte order and the time unit of the records that follow."""
        self._stop_spool()
        dumper = self._lib.pcap_dump_open(self._pcap,
                                          libpcap.path_bytes(self._spool, self._lib.utf8))
        if not dumper:
            raise libpcap.CaptureError(f"cannot write the capture spool {self._spool}: "
                                       f"{_error(self._lib, self._pcap)}")
        self._dumper = dumper
        if self._lib.pcap_dump_flush(dumper) != 0:
            raise libpcap.CaptureError(f"cannot write the capture spool {self._spool}")
        self._reader = open(self._spool, "rb", buffering=0)  # noqa: SIM115 - kept open
        header = file_format(self._reader.read(PCAP_HEADER_BYTES))
        if not isinstance(header, ClassicPcap):
            raise libpcap.CaptureError(f"libpcap wrote no pcap header to {self._spool}")
        self._header = header
        self._read_at = self._written = PCAP_HEADER_BYTES

    def _stop_spool(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._dumper is not None:
            self._lib.pcap_dump_close(self._dumper)
            self._dumper = None

    def take(self) -> Batch | None:
        """The packets the kernel holds (up to DISPATCH_PACKETS) as one Batch; None if none.
        The Batch's buffer is reused by the next call."""
        if self._read_at >= self._written:  # all read: ask libpcap for more
            if self._written >= SPOOL_BYTES:
                self._start_spool()
            if not self._fill_spool():
                return None
        size = self._written - self._read_at
        if size > len(self._data):
            self._data = np.empty(max(size, 2 * len(self._data)), dtype=np.uint8)
        self._reader.seek(self._read_at)
        got = self._reader.readinto(memoryview(self._data)[:size])  # type: ignore[arg-type]
        count, consumed = record_walk.walk(self._data, 0, got, self._offsets,
                                           self._header.endian == ">", self._table, PCAP_ROW)
        # Records past the walk's room (a dispatch that failed after writing some, then its
        # retry) stay in the spool for the next call; bytes no walk can take are dropped.
        self._read_at = self._read_at + consumed if count else self._written
        return walked_records(self._header, self._data, self._offsets, self._table,
                              count).batch if count else None

    def probe(self) -> None:
        """One read of what the kernel holds (kept in the spool for take()); HandleFailed if
        the device cannot be read."""
        if self._dispatch() < 0:
            raise HandleFailed(_error(self._lib, self._pcap) or "libpcap gave no reason")
        self._note_written()

    def _fill_spool(self) -> bool:
        """libpcap writes what it holds into the spool; whether it wrote any packet."""
        taken = self._dispatch()
        if taken < 0:
            if self._failure is None:
                # The interface went away (or failed): the kernel hands over its last, partly
                # filled batch only at its timeout; wait for it once, so that nothing already
                # captured is lost (as the Linux ring does).
                self._failure = _error(self._lib, self._pcap)
                time.sleep(2 * TIMEOUT_MS / 1000)
                taken = self._dispatch()
            if taken < 0:
                self._note_written()  # what the failed call wrote is still read first
                if self._read_at < self._written:
                    return True
                raise HandleFailed(self._failure or "libpcap gave no reason")
        if taken == 0:
            return False
        self._note_written()
        return self._read_at < self._written

    def _note_written(self) -> None:
        if self._lib.pcap_dump_flush(self._dumper) != 0:
            raise libpcap.CaptureError(f"cannot write the capture spool {self._spool} "
                                       "(is its disk full?)")
        self._written = int(self._ftell(self._dumper))

    def _dispatch(self) -> int:
        """libpcap writes up to self._packets of the packets it holds into the spool."""
        return int(self._lib.pcap_dispatch(self._pcap, self._packets, self._dump, self._dumper))

    def drops(self) -> int:
        stats = libpcap.Stat()
        if self._lib.pcap_stats(self._pcap, ctypes.byref(stats)) != 0:
            return 0
        return int(stats.ps_drop) + int(stats.ps_ifdrop)

    def close(self) -> None:
        self._stop_spool()
        if self._pcap:
            self._lib.pcap_close(self._pcap)
            self._pcap = None
        if self._memory_file is not None:
            os.close(self._memory_file)
            self._memory_file = None
        if self._spool_is_file:  # gone with its handle (a device that comes and goes leaves none)
            self._spool_is_file = False
            with contextlib.suppress(OSError):
                os.remove(self._spool)


def _open(lib: Any, device: str, bpf_filter: str | None, snaplen: int) -> Any:
    """An activated, non-blocking handle with the filter set, or the reason why not."""
    errors = ctypes.create_string_buffer(libpcap.ERRBUF_SIZE)
    pcap = lib.pcap_create(libpcap.path_bytes(device, lib.utf8), errors)
    if not pcap:
        raise libpcap.CaptureError(f"cannot capture on {device}: {_text(errors.value)}")
    try:
        lib.pcap_set_snaplen(pcap, snaplen)
        lib.pcap_set_promisc(pcap, 0)
        lib.pcap_set_timeout(pcap, TIMEOUT_MS)
        lib.pcap_set_buffer_size(pcap, KERNEL_BUFFER_BYTES)
        lib.pcap_set_immediate_mode(pcap, 0)
        if hasattr(lib, "pcap_set_tstamp_precision"):  # else microseconds, as files often are
            lib.pcap_set_tstamp_precision(pcap, libpcap.TSTAMP_PRECISION_NANO)
        status = lib.pcap_activate(pcap)
        if status < 0:
            raise _activate_error(lib, pcap, status, device)
        if bpf_filter:
            _set_filter(lib, pcap, bpf_filter)
        if lib.pcap_setnonblock(pcap, 1, errors) < 0:
            raise libpcap.CaptureError(f"cannot capture on {device}: {_text(errors.value)}")
    except BaseException:
        lib.pcap_close(pcap)
        raise
    return pcap


def _activate_error(lib: Any, pcap: Any, status: int, device: str) -> OSError:
    if status in (libpcap.ERROR_PERM_DENIED, libpcap.ERROR_PROMISC_PERM_DENIED):
        return PermissionError(f"no permission to capture on {device}")
    said = _error(lib, pcap) or _text(lib.pcap_statustostr(status))
    number = libpcap.ACTIVATE_ERRNO.get(status)
    if number is not None:
        return libpcap.CaptureError(number, f"{device}: {said}")
    return libpcap.CaptureError(f"cannot capture on {device}: {said}")


def _set_filter(lib: Any, pcap: Any, expression: str) -> None:
    program = libpcap.Program()
    if lib.pcap_compile(pcap, ctypes.byref(program), expression.encode(), 1,
                        libpcap.NETMASK_UNKNOWN) < 0:
        raise libpcap.CaptureError(f"invalid --filter {expression!r}: {_error(lib, pcap)}")
    try:
        if lib.pcap_setfilter(pcap, ctypes.byref(program)) < 0:
            raise libpcap.CaptureError(f"cannot set --filter {expression!r}: "
                                       f"{_error(lib, pcap)}")
    finally:
        lib.pcap_freecode(ctypes.byref(program))


def _error(lib: Any, pcap: Any) -> str:
    return _text(lib.pcap_geterr(pcap))


def _text(said: bytes | None) -> str:
    return (said or b"").decode("utf-8", "replace").strip()
