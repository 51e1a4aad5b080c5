"""--filter on capture files: tcpdump writes a copy holding only the packets it keeps."""

from __future__ import annotations

from pathlib import Path

from traffic_capture.errors import UsageError
from traffic_capture.sources.capture_file import CaptureFileError


class PrefilterError(UsageError):
    """--filter cannot be applied to a file (no tcpdump, or a filter it rejects)."""


def prefilter(path: Path, expression: str, folder: Path) -> tuple[Path, bool]:
    """A copy of a capture holding only the packets `expression` keeps, and whether the
    original was cut short.

    libpcap's filter compiler is the only faithful reading of tcpdump syntax, and it runs
    packets only inside tcpdump (as scapy's own offline sniff does): so a file gets exactly
    the filter a live capture would.
    """
    import shutil
    import subprocess

    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        raise PrefilterError("--filter with --read needs tcpdump (Debian: apt install tcpdump); "
                             "or filter the file first with Wireshark's File > Export "
                             "Specified Packets")
    if not path.is_file():
        raise CaptureFileError(f"capture file {path} not found")
    filtered = folder / f"{path.name}.filtered.pcap"
    result = subprocess.run([tcpdump, "-n", "-r", str(path), "-w", str(filtered), "--",
                             expression], capture_output=True, text=True, errors="replace")
    message = " ".join(line for line in result.stderr.splitlines()
                       if not line.startswith("reading from file")).strip()
    truncated = "truncated" in message
    if result.returncode != 0 and not truncated:
        raise CaptureFileError(f"{path}: {message or 'tcpdump could not read it'}")
    return filtered, truncated
