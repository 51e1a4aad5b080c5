"""The expected traffic.csv rows of a capture, computed from tshark's dissection.

Why: an oracle that shares no code with the daemon (tshark parses the link layers, IP, IPv6
extension headers and FTP; this module only applies the product's rules to tshark's fields), so
a bug in the daemon's parsing can't hide in the test.

FTP data connections: tshark 4.0's FTP dissector marks PASV and EPSV data connections as
`ftp-data`, but not active ones in general: for PORT it expects the server to connect from port
20 (pyftpdlib and most modern servers use an ephemeral port), and for EPRT it registers the
wrong endpoint pair. So the oracle takes the endpoints that tshark parsed out of PASV/EPSV
replies and PORT/EPRT commands (ftp.passive.*, ftp.epsv.*, ftp.active.*, ftp.eprt.*) and marks
every later TCP connection (tcp.stream) with that endpoint, plus every stream tshark itself
tagged `ftp-data`.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd

COLUMNS = ["window_start", "window_end", "client_ip", "direction", "total_bytes", "http_bytes",
           "ftp_bytes", "tcp_bytes", "udp_bytes", "other_bytes"]
CLASSES = ["http", "ftp", "tcp", "udp", "other"]
BYTE_COLUMNS = COLUMNS[4:]
KEY = ["window_start", "client_ip", "direction"]
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
FTP_PORTS = {20, 21}
HTTP_PORTS = {80, 8080, 8000}
# Protocol names tshark puts in frame.protocols for IPv6 extension headers (skipped to find the
# upper protocol).
IPV6_EXT_PREFIX = "ipv6."

FIELDS = [
    "frame.number", "frame.time_epoch", "frame.protocols",
    "ip.src", "ip.dst", "ip.len", "ipv6.src", "ipv6.dst", "ipv6.plen",
    "tcp.stream", "tcp.srcport", "tcp.dstport",
    "ftp.passive.ip", "ftp.passive.port", "ftp.epsv.ip", "ftp.epsv.ipv6", "ftp.epsv.port",
    "ftp.active.cip", "ftp.active.port", "ftp.eprt.ip", "ftp.eprt.ipv6", "ftp.eprt.port",
]


class TsharkError(RuntimeError):
    """tshark failed on a file it should have read."""


def tshark_fields(path: Path, allow_truncated: bool = False,
                  timeout: float = 60.0) -> list[dict[str, str]]:
    """One dict per frame with FIELDS (first occurrence: the outer header of ICMP errors)."""
    argv = ["tshark", "-r", str(path), "-n", "-T", "fields", "-E", "separator=/t",
            "-E", "occurrence=f", "-E", "header=n"]
    for f in FIELDS:
        argv += ["-e", f]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0 and not (allow_truncated and "cut short" in res.stderr):
        raise TsharkError(f"tshark -r {path} exited {res.returncode}: {res.stderr}")
    rows = []
    for line in res.stdout.splitlines():
        values = line.split("\t")
        values += [""] * (len(FIELDS) - len(values))
        rows.append(dict(zip(FIELDS, values, strict=True)))
    return rows


def _upper_protocol(protocols: str) -> tuple[str, str] | None:
    """(ip layer, upper protocol) from frame.protocols: 'eth:ethertype:ipv6:ipv6.hopopts:tcp'."""
    names = protocols.split(":")
    for i, name in enumerate(names):
        if name in ("ip", "ipv6"):
            rest = [n for n in names[i + 1:] if not n.startswith(IPV6_EXT_PREFIX)]
            return name, (rest[0] if rest else "")
    return None


def _announced_endpoints(rows: Iterable[dict[str, str]]) -> list[tuple[int, str, int]]:
    """(frame, address, port) of every data endpoint announced on an FTP control connection."""
    out = []
    for r in rows:
        frame = int(r["frame.number"])
        pairs = [
            (r["ftp.passive.ip"], r["ftp.passive.port"]),
            (r["ftp.epsv.ip"] or r["ftp.epsv.ipv6"], r["ftp.epsv.port"]),
            (r["ftp.active.cip"], r["ftp.active.port"]),
            (r["ftp.eprt.ip"] or r["ftp.eprt.ipv6"], r["ftp.eprt.port"]),
        ]
        for addr, port in pairs:
            if addr and port:
                out.append((frame, str(ipaddress.ip_address(addr)), int(port)))
    return out


def ftp_data_streams(rows: Sequence[dict[str, str]]) -> tuple[set[int], set[int]]:
    """(streams tshark tagged ftp-data, streams that use an announced endpoint)."""
    tagged: set[int] = set()
    first: dict[int, tuple[int, set[tuple[str, int]]]] = {}
    for r in rows:
        if not r["tcp.stream"] or not r["tcp.srcport"]:
            continue
        stream = int(r["tcp.stream"])
        if "ftp-data" in r["frame.protocols"].split(":"):
            tagged.add(stream)
        if stream not in first:
            src = r["ip.src"] or r["ipv6.src"]
            dst = r["ip.dst"] or r["ipv6.dst"]
            ends = {(str(ipaddress.ip_address(src)), int(r["tcp.srcport"])),
                    (str(ipaddress.ip_address(dst)), int(r["tcp.dstport"]))}
            first[stream] = (int(r["frame.number"]), ends)
    announced = set()
    for frame, addr, port in _announced_endpoints(rows):
        for stream, (start, ends) in first.items():
            if start > frame and (addr, port) in ends:
                announced.add(stream)
    return tagged, announced


def packets(path: Path, servers: Iterable[str], window: int = 5,
            allow_truncated: bool = False) -> pd.DataFrame:
    """One row per counted packet: frame, epoch (Decimal), window, client, direction, cls, bytes."""
    server_set = {ipaddress.ip_address(s) for s in servers}
    rows = tshark_fields(path, allow_truncated=allow_truncated)
    tagged, announced = ftp_data_streams(rows)
    ftp_streams = tagged | announced
    out = []
    for r in rows:
        layers = _upper_protocol(r["frame.protocols"])
        if layers is None:
            continue  # not IP: ARP and the like
        ip_layer, upper = layers
        if ip_layer == "ip":
            src, dst, size = r["ip.src"], r["ip.dst"], int(r["ip.len"])
        else:
            src, dst, size = r["ipv6.src"], r["ipv6.dst"], int(r["ipv6.plen"]) + 40
        src_ip, dst_ip = ipaddress.ip_address(src), ipaddress.ip_address(dst)
        if dst_ip in server_set:
            direction, client = "in", src_ip
        elif src_ip in server_set:
            direction, client = "out", dst_ip
        else:
            continue
        if upper == "tcp":
            ports = {int(r["tcp.srcport"]), int(r["tcp.dstport"])}
            if ports & FTP_PORTS or int(r["tcp.stream"]) in ftp_streams:
                cls = "ftp"
            elif ports & HTTP_PORTS:
                cls = "http"
            else:
                cls = "tcp"
        elif upper == "udp":
            cls = "udp"
        else:
            cls = "other"
        epoch = Decimal(r["frame.time_epoch"])
        out.append({"frame": int(r["frame.number"]), "epoch": epoch,
                    "window": int((epoch // window) * window), "client_ip": str(client),
                    "direction": direction, "cls": cls, "bytes": size})
    return pd.DataFrame(out, columns=["frame", "epoch", "window", "client_ip", "direction",
                                      "cls", "bytes"])


def _local(epoch: int, tz: str) -> str:
    return datetime.fromtimestamp(epoch, ZoneInfo(tz)).strftime(TIME_FORMAT)


def rows_from_packets(pk: pd.DataFrame, window: int = 5, tz: str = "UTC") -> pd.DataFrame:
    """The contract's rows: one per (window, client, direction), bytes per class and total."""
    if pk.empty:
        return pd.DataFrame(columns=COLUMNS)
    wide = pk.pivot_table(index=["window", "client_ip", "direction"], columns="cls",
                          values="bytes", aggfunc="sum", fill_value=0)
    wide = wide.reindex(columns=CLASSES, fill_value=0).reset_index()
    wide.columns = ["window", "client_ip", "direction", *[f"{c}_bytes" for c in CLASSES]]
    wide["total_bytes"] = wide[[f"{c}_bytes" for c in CLASSES]].sum(axis=1)
    wide["window_start"] = [_local(int(w), tz) for w in wide["window"]]
    wide["window_end"] = [_local(int(w) + window, tz) for w in wide["window"]]
    return normalize(wide[COLUMNS])


def expected_rows(path: Path, servers: Iterable[str], window: int = 5,
                  tz: str = "UTC") -> pd.DataFrame:
    """What the daemon must write for `path`, grouped per (window_start, client, direction)."""
    return rows_from_packets(packets(path, servers, window), window, tz)


def normalize(df: pd.DataFrame) -> pd.DataFrame:
    """Group rows per key summing bytes (a late packet may split a key), sort, fix dtypes."""
    df = df.copy()
    df["client_ip"] = [str(ipaddress.ip_address(a)) for a in df["client_ip"]]
    for col in BYTE_COLUMNS:
        df[col] = df[col].astype("int64")
    grouped = df.groupby(KEY, as_index=False).agg(
        {"window_end": "first", **{c: "sum" for c in BYTE_COLUMNS}})
    return grouped[COLUMNS].sort_values(KEY).reset_index(drop=True)


def read_csv(path: Path) -> pd.DataFrame:
    """A daemon-written traffic.csv, normalized like the oracle's rows."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise AssertionError(f"{path}: missing columns {missing}; header {list(df.columns)}")
    return normalize(df[COLUMNS])


def diff(expected: pd.DataFrame, got: pd.DataFrame) -> str:
    """Human-readable differences between two normalized row sets ('' when equal)."""
    merged = expected.merge(got, how="outer", on=KEY, suffixes=("_exp", "_got"), indicator=True)
    lines = []
    for _, r in merged.iterrows():
        key = f"{r['window_start']} {r['client_ip']} {r['direction']}"
        if r["_merge"] == "left_only":
            lines.append(f"missing row {key}: expected {_bytes(r, '_exp')}")
        elif r["_merge"] == "right_only":
            lines.append(f"extra row {key}: got {_bytes(r, '_got')}")
        else:
            cols = ["window_end", *BYTE_COLUMNS]
            bad = [c for c in cols if r[f"{c}_exp"] != r[f"{c}_got"]]
            if bad:
                lines.append(f"row {key}: " + ", ".join(
                    f"{c} expected {r[f'{c}_exp']} got {r[f'{c}_got']}" for c in bad))
    return "\n".join(lines)


def _bytes(r: pd.Series, suffix: str) -> str:
    return " ".join(f"{c.removesuffix('_bytes')}={int(r[c + suffix])}" for c in BYTE_COLUMNS)
