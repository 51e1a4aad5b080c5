"""Deterministic synthetic trace for the performance benchmark, with its exact expected totals.

Why synthetic: a real capture can't be shipped (privacy) and can't be checked for exactness. This
generator knows every packet it writes, so it also writes what a correct daemon must report:
per (5-second window, client, direction) byte totals by class, and per-packet metadata so a live
run that replays only part of the trace (or loops it) can still be checked.

Mix (by packets): 1 % ARP, 5 % IP between other hosts (ignored by the rules), 94 % to/from the
server, whose IP traffic is 35 % TCP/443, 20 % TCP/80+8080, 5 % TCP/21, 5 % TCP/20, 10 % TCP/22,
15 % UDP/53, 5 % ICMP echo, 5 % other UDP. ~500 IPv4 and 50 IPv6 clients with Zipf weights.
Frames 60-1514 bytes (short frames padded to 60, so frame length != IP length for those).
Classic little-endian pcap, microsecond timestamps, 10 minutes starting 2026-01-01 00:00:00 UTC.
L4 checksums are left 0 (nothing on the measured path verifies them); IPv4 header checksums are
correct.

Usage: python benchmarks/gen_trace.py --packets 1000000 --out benchmarks/out/trace-1000000.pcap
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SEED = 20261121
T0 = 1_767_225_600  # 2026-01-01 00:00:00 UTC, a multiple of the 5 s window.
SPAN_US = 600 * 1_000_000  # 10 minutes of timestamps, whatever the packet count.
WINDOW_S = 5
CHUNK = 1 << 16  # Packets per chunk: bounds memory whatever --packets is.

SERVER_V4 = "192.0.2.1"
SERVER_V6 = "2001:db8::1"
CLASSES = ("http", "ftp", "tcp", "udp", "other")
HTTP, FTP, TCP, UDP, OTHER = range(5)
IN, OUT = 0, 1
DIRECTIONS = ("in", "out")

# Kinds of server traffic: (share, L4 proto, server ports, class). Proto 1 = ICMP echo.
KINDS: tuple[tuple[float, int, tuple[int, ...], int], ...] = (
    (0.35, 6, (443,), TCP),
    (0.20, 6, (80, 8080), HTTP),
    (0.05, 6, (21,), FTP),
    (0.05, 6, (20,), FTP),
    (0.10, 6, (22,), TCP),
    (0.15, 17, (53,), UDP),
    (0.05, 1, (0,), OTHER),
    (0.05, 17, (123, 514, 1194, 4500), UDP),
)
P_ARP = 0.01
P_OTHER_HOSTS = 0.05

# Pseudo-packet categories in the metadata.
CAT_SERVER, CAT_OTHER_HOSTS, CAT_ARP = 0, 1, 2

ETH = 14
HDR_MAX = 16 + ETH + 40 + 20  # pcap record header + Ethernet + IPv6 + TCP: the widest header.


def _v4(s: str) -> int:
    return int(ipaddress.IPv4Address(s))


def _v6(s: str) -> int:
    return int(ipaddress.IPv6Address(s))


@dataclass(frozen=True)
class Hosts:
    """Address book: clients first (index = client id in the metadata), then other hosts."""

    clients: list[str]  # 500 IPv4 then 50 IPv6, as ipaddress prints them.
    n_v4: int
    weights: np.ndarray  # Zipf-like client weights, summing to 1.
    others_v4: np.ndarray  # uint32 addresses of non-server hosts in 192.0.2.0/24.
    others_v6: list[int]  # Non-server hosts in 2001:db8::/64.


def make_hosts(rng: np.random.Generator) -> Hosts:
    """Clients from 198.51.100.0/24, 203.0.113.0/24 and 2001:db8:1::/64, skewed weights."""
    v4_pool = [f"198.51.100.{i}" for i in range(1, 255)] + [f"203.0.113.{i}" for i in range(1, 255)]
    v4 = [v4_pool[i] for i in sorted(rng.choice(len(v4_pool), 500, replace=False))]
    v6_ids = sorted(rng.choice(1 << 32, 50, replace=False))
    v6 = [str(ipaddress.IPv6Address(_v6("2001:db8:1::") + int(i) + 1)) for i in v6_ids]
    ranks = rng.permutation(len(v4) + len(v6)) + 1
    w = 1.0 / ranks**1.1
    others_v4 = np.array([_v4(f"192.0.2.{i}") for i in range(10, 251)], dtype=np.uint32)
    others_v6 = [_v6("2001:db8::") + i for i in range(0x10, 0x40)]
    return Hosts(v4 + v6, len(v4), w / w.sum(), others_v4, others_v6)


def _be(a: np.ndarray, dtype: str) -> np.ndarray:
    """Big-endian bytes of each element, one row per element."""
    width = np.dtype(dtype).itemsize
    return np.ascontiguousarray(a.astype(dtype)).view(np.uint8).reshape(-1, width)


def _v6_bytes(values: list[int]) -> np.ndarray:
    return np.frombuffer(b"".join(v.to_bytes(16, "big") for v in values), np.uint8).reshape(-1, 16)


def _payload_len(rng: np.random.Generator, kind: np.ndarray, l4max: np.ndarray) -> np.ndarray:
    """Application payload per packet: ACK-or-MSS bimodal TCP, small DNS, 56-byte pings."""
    n = len(kind)
    u = rng.random(n)
    full = l4max
    mid = (rng.random(n) * full).astype(np.int64)
    tcp_bulk = np.where(u < 0.40, 0, np.where(u < 0.75, full, mid))
    out = tcp_bulk
    out = np.where(kind == 2, rng.integers(0, 120, n), out)  # FTP control: short lines.
    out = np.where(kind == 4, np.where(u < 0.5, 0, rng.integers(1, 400, n)), out)  # SSH.
    out = np.where(kind == 5, rng.integers(20, 480, n), out)  # DNS.
    out = np.where(kind == 6, 56, out)  # ping.
    out = np.where(kind == 7, rng.integers(20, 1200, n), out)  # Other UDP.
    return np.minimum(out, full)


def _chunk(rng: np.random.Generator, hosts: Hosts, first: int, n: int, total: int) -> tuple:
    """One chunk of packets: (pcap bytes, metadata arrays)."""
    idx = np.arange(first, first + n, dtype=np.int64)
    step = SPAN_US / total
    ts = T0 * 1_000_000 + (idx * step + rng.random(n) * step).astype(np.int64)

    u = rng.random(n)
    cat = np.where(u < P_ARP, CAT_ARP, np.where(u < P_ARP + P_OTHER_HOSTS, CAT_OTHER_HOSTS, 0))
    shares = np.array([k[0] for k in KINDS])
    kind = rng.choice(len(KINDS), n, p=shares / shares.sum())
    proto = np.array([k[1] for k in KINDS])[kind]
    cls = np.array([k[3] for k in KINDS])[kind]
    port_pick = rng.integers(0, 1 << 30, n)
    sport_srv = np.array(
        [[k[2][j % len(k[2])] for j in range(4)] for k in KINDS], dtype=np.int64
    )[kind, port_pick % 4]
    ephemeral = rng.integers(32768, 61000, n)
    direction = rng.integers(0, 2, n)
    client = rng.choice(len(hosts.clients), n, p=hosts.weights)
    is_v6 = client >= hosts.n_v4

    # Other-host traffic: a random non-server pair, 15 % of it IPv6.
    oh = cat == CAT_OTHER_HOSTS
    is_v6 = np.where(oh, rng.random(n) < 0.15, is_v6)
    ip4_client = np.array([_v4(c) for c in hosts.clients[: hosts.n_v4]], dtype=np.uint32)
    src4 = ip4_client[np.minimum(client, hosts.n_v4 - 1)]
    dst4 = np.full(n, _v4(SERVER_V4), dtype=np.uint32)
    other4 = hosts.others_v4[rng.integers(0, len(hosts.others_v4), n)]
    dst4 = np.where(oh, other4, dst4)
    src4 = np.where(oh & (rng.random(n) < 0.5), hosts.others_v4[rng.integers(0, 241, n)], src4)
    src4 = np.where(oh & (src4 == dst4), hosts.others_v4[0] + 241, src4)  # Never talk to self.

    v6_all = _v6_bytes([_v6(c) for c in hosts.clients[hosts.n_v4 :]])
    v6_other = _v6_bytes(hosts.others_v6)
    v6_server = _v6_bytes([_v6(SERVER_V6)])[0]
    c6 = np.clip(client - hosts.n_v4, 0, len(v6_all) - 1)
    src6 = v6_all[c6]
    src6[oh] = v6_other[rng.integers(0, len(v6_other) // 2, n)][oh]
    dst6 = np.broadcast_to(v6_server, (n, 16)).copy()
    dst6[oh] = v6_other[rng.integers(len(v6_other) // 2, len(v6_other), n)][oh]

    # Server traffic leaving the server: swap addresses and ports.
    swap = direction == OUT
    src4, dst4 = np.where(swap, dst4, src4), np.where(swap, src4, dst4)
    s6 = src6.copy()
    src6[swap] = dst6[swap]
    dst6[swap] = s6[swap]
    sport = np.where(swap, sport_srv, ephemeral)
    dport = np.where(swap, ephemeral, sport_srv)

    ip_hdr = np.where(is_v6, 40, 20)
    l4_hdr = np.where(proto == 6, 20, 8)
    l4max = 1500 - ip_hdr - l4_hdr
    payload = _payload_len(rng, kind, l4max)
    ip_len = ip_hdr + l4_hdr + payload  # IPv4 total length; IPv6 payload length + 40.
    is_arp = cat == CAT_ARP
    ip_len = np.where(is_arp, 0, ip_len)
    frame = np.maximum(60, np.where(is_arp, 42, ETH + ip_len))
    hlen = np.where(is_arp, 16 + 42, 16 + ETH + ip_hdr + l4_hdr)

    h = np.zeros((n, HDR_MAX), dtype=np.uint8)
    h[:, 0:4] = (ts // 1_000_000).astype("<u4").view(np.uint8).reshape(-1, 4)
    h[:, 4:8] = (ts % 1_000_000).astype("<u4").view(np.uint8).reshape(-1, 4)
    h[:, 8:12] = frame.astype("<u4").view(np.uint8).reshape(-1, 4)
    h[:, 12:16] = h[:, 8:12]
    # Ethernet: locally administered MACs, the client's id in the low bytes.
    mac_c = np.zeros((n, 6), np.uint8)
    mac_c[:, 0] = 0x02
    mac_c[:, 4:6] = _be(client, ">u2")
    mac_s = np.array([0x02, 0, 0, 0, 0, 0x01], np.uint8)
    h[:, 16:22] = np.where(swap[:, None], mac_c, mac_s)
    h[:, 22:28] = np.where(swap[:, None], mac_s, mac_c)
    h[:, 28:30] = np.where(is_v6, 0x86DD, 0x0800).astype(">u2").view(np.uint8).reshape(-1, 2)

    ip = 30
    v4 = ~is_v6 & ~is_arp
    r4 = np.flatnonzero(v4)
    if len(r4):
        g = h[r4]
        g[:, ip] = 0x45
        g[:, ip + 2 : ip + 4] = _be(ip_len[r4], ">u2")
        g[:, ip + 4 : ip + 6] = _be(idx[r4] & 0xFFFF, ">u2")
        g[:, ip + 6] = 0x40  # DF
        g[:, ip + 8] = 64
        g[:, ip + 9] = proto[r4]
        g[:, ip + 12 : ip + 16] = _be(src4[r4], ">u4")
        g[:, ip + 16 : ip + 20] = _be(dst4[r4], ">u4")
        words = g[:, ip : ip + 20].astype(np.uint32)
        s = (words[:, 0::2] << 8 | words[:, 1::2]).sum(axis=1)
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        g[:, ip + 10 : ip + 12] = _be(~s & 0xFFFF, ">u2")
        h[r4] = g
    r6 = np.flatnonzero(is_v6 & ~is_arp)
    if len(r6):
        g = h[r6]
        g[:, ip] = 0x60
        g[:, ip + 4 : ip + 6] = _be(ip_len[r6] - 40, ">u2")
        g[:, ip + 6] = np.where(proto[r6] == 1, 58, proto[r6])
        g[:, ip + 7] = 64
        g[:, ip + 8 : ip + 24] = src6[r6]
        g[:, ip + 24 : ip + 40] = dst6[r6]
        h[r6] = g
    for rows, l4 in ((r4, ip + 20), (r6, ip + 40)):
        if not len(rows):
            continue
        g = h[rows]
        p = proto[rows]
        tcp, udp, icmp = p == 6, p == 17, p == 1
        g[:, l4 : l4 + 2] = np.where(icmp[:, None], 0, _be(sport[rows], ">u2"))
        g[:, l4 + 2 : l4 + 4] = np.where(icmp[:, None], 0, _be(dport[rows], ">u2"))
        seq = _be(rng.integers(0, 1 << 32, len(rows)), ">u4")
        g[:, l4 + 4 : l4 + 8] = np.where(tcp[:, None], seq, g[:, l4 + 4 : l4 + 8])
        g[:, l4 + 12] = np.where(tcp, 0x50, g[:, l4 + 12])
        g[:, l4 + 13] = np.where(tcp, np.where(payload[rows] > 0, 0x18, 0x10), g[:, l4 + 13])
        g[:, l4 + 14 : l4 + 16] = np.where(tcp[:, None], _be(np.full(len(rows), 502), ">u2"),
                                           g[:, l4 + 14 : l4 + 16])
        ulen = _be(l4_hdr[rows] + payload[rows], ">u2")
        g[:, l4 + 4 : l4 + 6] = np.where(udp[:, None], ulen, g[:, l4 + 4 : l4 + 6])
        # ICMP echo request in, reply out; ICMPv6 128/129.
        v6r = is_v6[rows]
        echo = np.where(direction[rows] == IN, np.where(v6r, 128, 8), np.where(v6r, 129, 0))
        g[:, l4] = np.where(icmp, echo, g[:, l4])
        g[:, l4 + 4 : l4 + 6] = np.where(icmp[:, None], _be(client[rows], ">u2"),
                                         g[:, l4 + 4 : l4 + 6])
        g[:, l4 + 6 : l4 + 8] = np.where(icmp[:, None], _be(idx[rows] & 0xFFFF, ">u2"),
                                         g[:, l4 + 6 : l4 + 8])
        h[rows] = g
    ra = np.flatnonzero(is_arp)
    if len(ra):
        g = h[ra]
        g[:, 16:22] = 0xFF  # Broadcast who-has for the server, from a client.
        g[:, 28:30] = (0x08, 0x06)
        g[:, 30:38] = (0, 1, 0x08, 0x00, 6, 4, 0, 1)
        g[:, 38:44] = mac_c[ra]
        g[:, 44:48] = _be(ip4_client[np.minimum(client[ra], hosts.n_v4 - 1)], ">u4")
        g[:, 54:58] = _be(np.full(len(ra), _v4(SERVER_V4)), ">u4")
        h[ra] = g

    # Scatter variable-length records into one flat buffer; payload and padding stay zero.
    rec = 16 + frame
    off = np.concatenate(([0], np.cumsum(rec)[:-1]))
    buf = np.zeros(int(rec.sum()), dtype=np.uint8)
    cols = np.arange(HDR_MAX)
    mask = cols[None, :] < hlen[:, None]
    buf[(off[:, None] + cols[None, :])[mask]] = h[mask]

    server = cat == CAT_SERVER
    meta = {
        "ts_us": ts,
        "cat": cat.astype(np.int8),
        "client": np.where(server, client, -1).astype(np.int16),
        "direction": direction.astype(np.int8),
        "cls": cls.astype(np.int8),
        "bytes": np.where(server, ip_len, 0).astype(np.uint16),
        "ip_len": ip_len.astype(np.uint16),
        "frame": frame.astype(np.uint16),
    }
    return buf, meta


def expected_frame(meta: dict[str, np.ndarray], clients: list[str]) -> list[tuple]:
    """Rows a correct daemon writes: (window_epoch, client, direction, total, per-class...)."""
    srv = meta["cat"] == CAT_SERVER
    win = (meta["ts_us"][srv] // 1_000_000 // WINDOW_S) * WINDOW_S
    key_c = meta["client"][srv].astype(np.int64)
    key_d = meta["direction"][srv].astype(np.int64)
    nc = len(clients)
    w0 = int(win.min()) if len(win) else 0
    key = ((win - w0) // WINDOW_S) * nc * 2 + key_c * 2 + key_d
    uniq, inv = np.unique(key, return_inverse=True)
    sums = np.zeros((len(uniq), 5), dtype=np.int64)
    np.add.at(sums, (inv, meta["cls"][srv].astype(np.int64)), meta["bytes"][srv].astype(np.int64))
    rows = []
    for k, s in zip(uniq.tolist(), sums.tolist(), strict=True):
        w, rest = divmod(k, nc * 2)
        c, d = divmod(rest, 2)
        rows.append((w0 + w * WINDOW_S, clients[c], DIRECTIONS[d], sum(s), *s))
    return rows


def meta_path(pcap: Path) -> Path:
    return pcap.with_name(pcap.name + ".meta.npz")


def generate(out: Path, packets: int, seed: int = SEED) -> dict:
    """Write the pcap, its `.meta.npz` (per-packet facts) and `.expected.csv`; return a summary."""
    root = np.random.default_rng(seed)
    hosts = make_hosts(root)
    out.parent.mkdir(parents=True, exist_ok=True)
    metas: list[dict[str, np.ndarray]] = []
    tmp = out.with_name(out.name + ".part")
    with tmp.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for k, first in enumerate(range(0, packets, CHUNK)):
            rng = np.random.default_rng([seed, k])
            buf, meta = _chunk(rng, hosts, first, min(CHUNK, packets - first), packets)
            f.write(buf.tobytes())
            metas.append(meta)
    meta = {k: np.concatenate([m[k] for m in metas]) for k in metas[0]}
    np.savez(meta_path(out), clients=np.array(hosts.clients), **meta)
    rows = expected_frame(meta, hosts.clients)
    with out.with_name(out.name + ".expected.csv").open("w") as f:
        f.write("window_start_epoch,client_ip,direction,total_bytes,")
        f.write(",".join(f"{c}_bytes" for c in CLASSES) + "\n")
        for r in rows:
            f.write(",".join(map(str, r)) + "\n")
    tmp.replace(out)
    srv = meta["cat"] == CAT_SERVER
    by_cls = np.bincount(meta["cls"][srv], weights=meta["bytes"][srv], minlength=5)
    summary = {
        "packets": packets,
        "seed": seed,
        "file_bytes": out.stat().st_size,
        "server_packets": int(srv.sum()),
        "arp_packets": int((meta["cat"] == CAT_ARP).sum()),
        "other_hosts_packets": int((meta["cat"] == CAT_OTHER_HOSTS).sum()),
        "server_bytes": int(meta["bytes"][srv].sum()),
        "server_bytes_by_class": {c: int(b) for c, b in zip(CLASSES, by_cls, strict=True)},
        "expected_rows": len(rows),
    }
    out.with_name(out.name + ".summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def load_meta(pcap: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """Per-packet metadata written by `generate`, and the client address list."""
    with np.load(meta_path(pcap)) as z:
        meta = {k: z[k] for k in z.files if k != "clients"}
        clients = [str(c) for c in z["clients"]]
    return meta, clients


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, default=None, help="default benchmarks/out/trace-N.pcap")
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args(argv)
    if args.packets < 1:
        ap.error("--packets must be >= 1")
    out = args.out or Path(__file__).parent / "out" / f"trace-{args.packets}.pcap"
    t = time.perf_counter()
    summary = generate(out, args.packets, args.seed)
    print(f"wrote {out} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
