"""What the viewer window is sent, from counted packets: the rows of the latest packets (time,
direction, client, class, bytes, preview) and every packet's bytes summed per (window, client).
Pure functions over the tap's columns; the sink (viewer.py) decides when to send them."""

from __future__ import annotations

import numpy as np

from traffic_capture.addresses import AddressText
from traffic_capture.frames import NS, gather_frames
from traffic_capture.pipeline import CountedPackets
from traffic_capture.rules import CLASSES, IN, OUT
from traffic_capture.sinks.log_lines import distinct, preview
from traffic_capture.sinks.payload import payload_spans
from traffic_capture.viewer.model import Row, Sum


def view_rows(packets: CountedPackets, address: AddressText, limit: int) -> list[Row]:
    """The latest `limit` packets as the window shows them."""
    n = len(packets)
    chosen = np.arange(max(0, n - limit), n)
    frames = packets.frames
    shown = [""] * len(chosen)
    if frames is not None and len(chosen):
        few = gather_frames(frames, chosen)
        starts, (at, length, _) = few.starts, payload_spans(few)
        data = few.data.tobytes()
        for k, (start, size, payload_at, payload_len) in enumerate(zip(
                starts.tolist(), few.lengths.tolist(), at.tolist(), length.tolist(),
                strict=True)):
            if payload_at >= 0:
                stop = start + min(size, payload_at + payload_len)
                shown[k] = preview(data[start + payload_at:stop])
    inbound = packets.inbound[chosen]
    is6 = packets.is6[chosen]
    client_hi = np.where(inbound, packets.src_hi[chosen], packets.dst_hi[chosen])
    client_lo = np.where(inbound, packets.src_lo[chosen], packets.dst_lo[chosen])
    clients = address(is6, client_hi, client_lo)
    ts = frames.ts_ns[chosen] / NS if frames is not None else np.zeros(len(chosen))
    return [(t, IN if i else OUT, client, CLASSES[kind], size, text)
            for t, i, client, kind, size, text in zip(
                ts.tolist(), inbound.tolist(), clients,
                packets.protocol_class[chosen].tolist(), packets.ip_bytes[chosen].tolist(),
                shown, strict=True)]


def latest_rows(batches: list[CountedPackets], address: AddressText, limit: int) -> list[Row]:
    """The rows of the latest `limit` packets of the batches (oldest first)."""
    rows: list[Row] = []
    for packets in reversed(batches):
        if len(rows) >= limit:
            break
        rows[:0] = view_rows(packets, address, limit - len(rows))
    return rows


def view_sums(batches: list[CountedPackets], window_seconds: int,
              address: AddressText) -> list[Sum]:
    """Every packet's bytes, summed per (window, client)."""
    def column(name: str) -> np.ndarray:
        return np.concatenate([getattr(packets, name) for packets in batches])

    inbound, is6 = column("inbound").astype(bool), column("is6").astype(bool)
    hi = np.where(inbound, column("src_hi"), column("dst_hi")).astype(np.uint64)
    lo = np.where(inbound, column("src_lo"), column("dst_lo")).astype(np.uint64)
    window = column("ts_ns") // (window_seconds * NS) * window_seconds
    chosen, inverse = distinct(window, is6, hi, lo)
    size = column("ip_bytes").astype(np.float64)
    bytes_in = np.bincount(inverse, weights=np.where(inbound, size, 0), minlength=len(chosen))
    bytes_out = np.bincount(inverse, weights=np.where(inbound, 0, size), minlength=len(chosen))
    count = np.bincount(inverse, minlength=len(chosen))
    texts = address(is6[chosen], hi[chosen], lo[chosen])
    return [(int(start), text, int(b_in), int(b_out), int(c)) for start, text, b_in, b_out, c
            in zip(window[chosen].tolist(), texts, bytes_in.tolist(), bytes_out.tolist(),
                   count.tolist(), strict=True)]
