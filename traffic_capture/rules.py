"""The product's rules, in one place, each with its reason.

Every other module imports these; a change of rule is a change here (and in the tests that pin it).
"""

from __future__ import annotations

# Protocol classes, in column order. A packet falls in exactly one, so total = their sum.
CLASSES: tuple[str, ...] = ("http", "ftp", "tcp", "udp", "other")
HTTP, FTP, TCP, UDP, OTHER = range(len(CLASSES))

IN, OUT = "in", "out"

# FTP wins over HTTP: port 20/21 on either side is FTP even if the other side is 80.
FTP_PORTS = frozenset({20, 21})
# The control port whose replies and commands announce data connections (PASV/EPSV/PORT/EPRT).
FTP_CONTROL_PORT = 21
# How many announced FTP data endpoints are remembered; the oldest are forgotten first, so a
# long-running daemon facing a busy FTP server keeps bounded memory.
FTP_DATA_ENDPOINTS_MAX = 65_536

# Plain-text web ports. 443 is deliberately not HTTP: its bytes are TLS and count as tcp.
HTTP_PORTS = frozenset({80, 8080, 8000})

# Bytes kept of each live packet. Counting needs the headers and an FTP reply or command line
# (the byte counts come from the IP length fields, so they stay exact); the packet log and the
# viewer show payloads, so with them on a full 1500-byte Ethernet packet (with VLAN tags) is kept
# and its MD5 is that of its whole payload. Larger packets (loopback, offloaded segments) are
# logged as truncated. --snaplen sets it, within these bounds.
SNAPLEN_COUNTING = 384
SNAPLEN_PACKETS = 1536
SNAPLEN_MIN, SNAPLEN_MAX = 384, 262_144

# IP protocol numbers.
PROTO_TCP = 6
PROTO_UDP = 17

DEFAULT_WINDOW_SECONDS = 5
DEFAULT_OUT = "traffic.csv"

# A live window is written this long after its end by the wall clock, so packets still in kernel
# buffers when the window ends land in it instead of in a late extra row.
CLOSE_DELAY_SECONDS = 1.0


# At stop, how long the writer keeps retrying a locked CSV before it saves the pending rows to a
# side file next to it.
STOP_RETRY_SECONDS = 10.0
# Between two attempts to write a locked or failing CSV.
RETRY_INTERVAL_SECONDS = 1.0

# Excel's sheet size; the CSV may grow beyond it, the dashboard and report say so.
EXCEL_MAX_ROWS = 1_048_576
