"""libpcap (Npcap's wpcap.dll on Windows) through ctypes: loading it, and the few calls the
portable back end makes. No Python runs per packet: the only callback handed to libpcap is its
own `pcap_dump`, a C function, so `pcap_dispatch` writes every packet it takes as a pcap record
into a spool file, which the back end reads in whole batches with the capture-file walk.

ctypes rather than a binding package: it is in every Python, needs no compiler and no wheel
(pcapy-ng has none for Windows), and the calls are these twenty.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

ERRBUF_SIZE = 256  # PCAP_ERRBUF_SIZE
NETMASK_UNKNOWN = 0xFFFFFFFF  # PCAP_NETMASK_UNKNOWN: only for "ip broadcast", which we never use
TSTAMP_PRECISION_NANO = 1  # PCAP_TSTAMP_PRECISION_NANO
CHAR_ENC_UTF_8 = 1  # PCAP_CHAR_ENC_UTF_8 (libpcap 1.10, Npcap 1.x): paths and errors in UTF-8
# pcap_activate's errors that have an errno of their own (pcap/pcap.h).
ERROR_NO_SUCH_DEVICE = -5
ERROR_PERM_DENIED = -8
ERROR_IFACE_NOT_UP = -9
ERROR_PROMISC_PERM_DENIED = -11
ACTIVATE_ERRNO = {ERROR_NO_SUCH_DEVICE: errno.ENODEV, ERROR_IFACE_NOT_UP: errno.ENETDOWN}
WAIT_FAILED = 0xFFFFFFFF


class Stat(ctypes.Structure):
    """struct pcap_stat's fields common to every platform (Windows adds one after them)."""

    _fields_ = [("ps_recv", ctypes.c_uint), ("ps_drop", ctypes.c_uint),
                ("ps_ifdrop", ctypes.c_uint), ("bs_capt", ctypes.c_uint)]


class Program(ctypes.Structure):
    """struct bpf_program."""

    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.c_void_p)]


def npcap_folder(environ: Mapping[str, str] = os.environ) -> str:
    """Where Npcap installs wpcap.dll and Packet.dll: System32\\Npcap, not on the DLL path
    unless Npcap was installed in WinPcap API-compatible mode."""
    windows = environ.get("SystemRoot") or environ.get("windir") or r"C:\Windows"
    return windows.rstrip("\\/") + r"\System32\Npcap"


def library_candidates(platform: str = sys.platform,
                       environ: Mapping[str, str] = os.environ,
                       find: Callable[[str], str | None] = ctypes.util.find_library,
                       isdir: Callable[[str], bool] = os.path.isdir
                       ) -> list[tuple[str, str | None]]:
    """(library to load, folder to add to the DLL search path first) in the order to try."""
    if platform == "win32":
        folder = npcap_folder(environ)
        found = [(folder + r"\wpcap.dll", folder)] if isdir(folder) else []
        compatible = find("wpcap")  # WinPcap-compatible mode, or WinPcap itself
        return found + ([(compatible, None)] if compatible else [])
    name = find("pcap")
    # find_library needs ldconfig or a compiler; the usual sonames do without.
    fallbacks = ["libpcap.dylib"] if platform == "darwin" else ["libpcap.so.1", "libpcap.so.0.8"]
    return [(name, None) for name in ([name] if name else []) + fallbacks]


def missing_message(platform: str = sys.platform) -> str:
    if platform == "win32":  # the app says how to install Npcap (interfaces.py)
        return "Npcap's wpcap.dll was not found"
    return ("libpcap is not installed, which --backend pcap needs: install it (Debian and Ubuntu: "
            "apt install libpcap0.8; Fedora: dnf install libpcap), or use --backend linux")


_library: Any = None


def library() -> Any:
    """libpcap, loaded once and its calls declared. Raises ImportError when it is not there."""
    global _library
    if _library is None:
        _library = _declare(_load())
    return _library


def _load() -> Any:
    for path, folder in library_candidates():
        try:
            if folder is not None and hasattr(os, "add_dll_directory"):
                os.add_dll_directory(folder)  # wpcap.dll loads Packet.dll from beside it
            return ctypes.CDLL(path)
        except OSError:
            continue
    raise ImportError(missing_message())


def _declare(lib: Any) -> Any:
    handle, text, void, integer = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int
    calls: dict[str, tuple[Any, list[Any]]] = {
        "pcap_create": (handle, [text, ctypes.c_char_p]),
        "pcap_set_snaplen": (integer, [handle, integer]),
        "pcap_set_promisc": (integer, [handle, integer]),
        "pcap_set_timeout": (integer, [handle, integer]),
        "pcap_set_buffer_size": (integer, [handle, integer]),
        "pcap_set_immediate_mode": (integer, [handle, integer]),
        "pcap_activate": (integer, [handle]),
        "pcap_geterr": (text, [handle]),
        "pcap_statustostr": (text, [integer]),
        "pcap_compile": (integer, [handle, ctypes.POINTER(Program), text, integer,
                                   ctypes.c_uint32]),
        "pcap_setfilter": (integer, [handle, ctypes.POINTER(Program)]),
        "pcap_freecode": (None, [ctypes.POINTER(Program)]),
        "pcap_setnonblock": (integer, [handle, integer, ctypes.c_char_p]),
        "pcap_dispatch": (integer, [handle, integer, void, void]),
        "pcap_dump_open": (handle, [handle, text]),
        "pcap_dump_flush": (integer, [handle]),
        "pcap_dump_close": (None, [handle]),
        "pcap_stats": (integer, [handle, ctypes.POINTER(Stat)]),
        "pcap_close": (None, [handle]),
        "pcap_lib_version": (text, []),
    }
    optional: dict[str, tuple[Any, list[Any]]] = {
        "pcap_set_tstamp_precision": (integer, [handle, integer]),  # libpcap 1.5
        "pcap_init": (integer, [ctypes.c_uint, ctypes.c_char_p]),  # libpcap 1.10
        "pcap_get_selectable_fd": (integer, [handle]),  # not on Windows
        "pcap_getevent": (void, [handle]),  # Windows only
        "pcap_dump_ftell64": (ctypes.c_int64, [handle]),  # libpcap 1.9
        "pcap_dump_ftell": (ctypes.c_long, [handle]),
    }
    for name, (result, arguments) in (calls | optional).items():
        if name in optional and not hasattr(lib, name):
            continue
        function = getattr(lib, name)
        function.restype, function.argtypes = result, arguments
    # Paths given to libpcap in UTF-8 on Windows too (else its ANSI code page).
    lib.utf8 = hasattr(lib, "pcap_init") and lib.pcap_init(
        CHAR_ENC_UTF_8, ctypes.create_string_buffer(ERRBUF_SIZE)) == 0
    return lib


def path_bytes(path: str, utf8: bool, platform: str = sys.platform) -> bytes:
    """A path (for its fopen) or a device name as libpcap takes it: the ANSI code page on
    Windows unless pcap_init set UTF-8; the file-system encoding elsewhere."""
    if platform == "win32" and not utf8:
        return path.encode("mbcs")
    return path.encode("utf-8") if platform == "win32" else os.fsencode(path)


def wait_for_events(events: list[int], timeout_ms: int, kernel32: Any = None) -> bool:
    """Windows: whether any of the handles' events (pcap_getevent) was signalled within
    timeout_ms. Npcap signals a handle's event when its buffer has packets to read; the caller
    then dispatches on every handle, which costs nothing on those without."""
    if kernel32 is None:
        kernel32 = ctypes.WinDLL("kernel32")  # type: ignore[attr-defined,unused-ignore]
    array = (ctypes.c_void_p * len(events))(*events)
    first = kernel32.WaitForMultipleObjects(len(events), array, False, timeout_ms) & 0xFFFFFFFF
    if first == WAIT_FAILED:  # more than 64 handles, or one without an event: poll instead
        time.sleep(timeout_ms / 1000)
        return True
    return first < len(events)  # WAIT_OBJECT_0 + i; not WAIT_TIMEOUT


class CaptureError(OSError):
    """libpcap refused to open or set up a capture; the message is libpcap's own."""
