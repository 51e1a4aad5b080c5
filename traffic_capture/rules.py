"""The product's rules, in one place, each with its reason.

Every other module imports these; a change of rule is a change here (and in the tests that pin it).
"""

from __future__ import annotations

# Protocol classes, in column order. A packet falls in exactly one, so total = their sum.
CLASSES: tuple[str, ...] = ("http", "ftp", "tcp", "udp", "other")
HTTP, FTP, TCP, UDP, OTHER = range(len(CLASSES))
# How workbooks and reports name each class in their headings.
CLASS_LABELS: dict[str, str] = {"http": "HTTP", "ftp": "FTP", "tcp": "TCP", "udp": "UDP",
                                "other": "Other"}

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
# Clients per window and direction before the rest are folded into an `other` row: a spoofed
# source flood makes a client per packet, and memory, CPU per window and rows must stay
# bounded. Far above a busy server's real clients per 5 s; a heavy client always keeps its row.
DEFAULT_MAX_CLIENTS = 10_000
DEFAULT_OUT = "traffic.csv"

# A live window is written this long after its end by the wall clock, so packets still in kernel
# buffers when the window ends land in it instead of in a late extra row.
CLOSE_DELAY_SECONDS = 1.0


# At stop, how long the writer keeps retrying a locked CSV before it saves the pending rows to a
# side file next to it.
STOP_RETRY_SECONDS = 10.0
# Between two attempts to write a locked or failing CSV.
RETRY_INTERVAL_SECONDS = 1.0
# The CSV's rows reach the disk (fsync) at most this long after they are written: a live
# capture's windows (a second or more apart) are each synced as written, while a file read, whose
# windows close many times a second, syncs once a second and at the end instead of once a
# window (each fsync also makes the kernel write the file out: 10 % of a fast read). --fsync
# syncs every window.
CSV_SYNC_SECONDS = 1.0

# Excel's sheet size; the CSV may grow beyond it, the dashboard and report say so.
EXCEL_MAX_ROWS = 1_048_576

# The web dashboard (the `web` extra). Service names of the server side's port, for the web's
# /api/services and drill-down only: the CSV keeps its five classes. One table, name -> (TCP
# ports, UDP ports); a port in no entry is "tcp/other" or "udp/other", and a packet without
# ports (ICMP, fragments...) "other". 443/udp is QUIC (HTTP/3).
SERVICES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "http": ((80, 8000, 8080), ()),
    "https": ((443, 8443), (443,)),
    "ssh": ((22,), ()),
    "ftp": ((20, 21), ()),
    "dns": ((53,), (53,)),
    "smtp": ((25, 465, 587), ()),
    "pop3": ((110, 995), ()),
    "imap": ((143, 993), ()),
    "rdp": ((3389,), (3389,)),
    "smb": ((445, 139), (137, 138)),
    "ldap": ((389, 636), (389,)),
    "ntp": ((), (123,)),
    "snmp": ((), (161, 162)),
    "dhcp": ((), (67, 68, 547)),
    "mysql": ((3306,), ()),
    "postgresql": ((5432,), ()),
    "telnet": ((23,), ()),
}
SERVICE_TCP_OTHER, SERVICE_UDP_OTHER, SERVICE_OTHER = "tcp/other", "udp/other", "other"

# Where the web listens without a host in --web, and the only addresses it serves without a
# --web-token: loopback is reachable by local users only.
WEB_DEFAULT_HOST = "127.0.0.1"
# History kept in memory for the web (--web-history default), and a cap on its rows, so a flood
# of clients cannot grow memory beyond ~WEB_HISTORY_MAX_ROWS * 60 bytes (oldest windows go first).
WEB_HISTORY_SECONDS = 3600
WEB_HISTORY_MAX_ROWS = 4_000_000
# /metrics labels only this many clients (the top by bytes over the last WEB_METRICS_SECONDS):
# Prometheus's label cardinality stays bounded under a flood of clients.
WEB_METRICS_TOP = 20
WEB_METRICS_SECONDS = 60
# The event stream's lighter event (the window in progress) at most this often.
WEB_CURRENT_EVENT_SECONDS = 1.0
# The event stream sends each closed window's text built once for all streams, kept while the
# window is held but at most this many bytes of it (the oldest windows' text goes first, and
# is built again if a stream asks for it): ~190 windows of 1,000 clients, ~16 min of 5-s ones.
WEB_STREAM_CACHE_BYTES = 64 * 1024 * 1024

# Off a terminal (a service's journal, a log file): one plain status line this often, not a
# line redrawn twice a second (17 MB a day).
DEFAULT_STATUS_INTERVAL = 60.0
# --rotate: one CSV per hour or per day, by window start.
ROTATIONS = ("none", "hourly", "daily")
