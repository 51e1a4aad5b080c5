"""FTP data connections: where the file bytes of real FTP travel.

A control connection (port 21) announces the port of each data connection: the server in its
227 (PASV) and 229 (EPSV) replies, the client in its PORT and EPRT commands. Without following
these, an FTP download would count as plain tcp and the ftp column would hold only commands.
"""

from __future__ import annotations

import re
from collections import OrderedDict

from traffic_capture.rules import FTP_DATA_ENDPOINTS_MAX

# RFC 959 4.1.2/4.2: "227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)"; the parentheses are
# customary, not required, so only the six numbers are looked for.
_PASV = re.compile(rb"^227[ -][^\r\n]*?(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3})",
                   re.MULTILINE)
# RFC 2428: "229 Entering Extended Passive Mode (|||port|)", any delimiter character.
_EPSV = re.compile(rb"^229[ -][^\r\n]*?\((.)\1\1(\d{1,5})\1\)", re.MULTILINE)
# RFC 959 "PORT h1,h2,h3,h4,p1,p2"; commands are case-insensitive.
_PORT = re.compile(rb"^PORT +(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3})",
                   re.MULTILINE | re.IGNORECASE)
# RFC 2428 "EPRT |1|132.235.1.2|6275|" or "EPRT |2|1080::8:800:200C:417A|5282|".
_EPRT = re.compile(rb"^EPRT +(.)[12]\1[0-9A-Fa-f.:]+\1(\d{1,5})\1", re.MULTILINE | re.IGNORECASE)

# Every announcement starts with one of these (case aside): the batch path runs the regexes
# above only on segments holding one, found with plain substring search over all of a batch's
# control payloads at once. A new announcement form needs its mark here too.
ANNOUNCEMENT_MARKS = (b"227 ", b"227-", b"229 ", b"229-", b"port ", b"eprt ")


def _valid_port(port: int) -> int | None:
    return port if 0 < port < 65536 else None


def announced_port(payload: bytes) -> int | None:
    """The data port announced by one FTP control segment, or None.

    Works on either direction: replies come from port 21, commands go to it.
    """
    match = _PASV.search(payload) or _PORT.search(payload)
    if match:
        numbers = [int(n) for n in match.groups()]
        if max(numbers) > 255:
            return None
        return _valid_port(numbers[4] * 256 + numbers[5])
    match = _EPSV.search(payload) or _EPRT.search(payload)
    if match:
        return _valid_port(int(match.group(2)))
    return None


class FtpDataTracker:
    """Remembers announced data endpoints and recognises the connections that use them.

    An endpoint is (announcing host, port, peer host): the host that sent the announcement
    listens on the port and the other end of the control connection connects to it. The
    addresses are the ones on the wire, not the one in a 227 reply, which NAT often rewrites.
    """

    def __init__(self, capacity: int = FTP_DATA_ENDPOINTS_MAX) -> None:
        self._capacity = capacity
        self.endpoints: OrderedDict[tuple[bytes, int, bytes], None] = OrderedDict()

    def __len__(self) -> int:
        return len(self.endpoints)

    def remember(self, src: bytes, port: int, dst: bytes) -> None:
        """`src` announced `port` to `dst` on their control connection."""
        key = (src, port, dst)
        self.endpoints[key] = None
        self.endpoints.move_to_end(key)
        if len(self.endpoints) > self._capacity:
            self.endpoints.popitem(last=False)

    def ports(self) -> set[int]:
        return {port for _, port, _ in self.endpoints}

    def is_data(self, src: bytes, sport: int, dst: bytes, dport: int) -> bool:
        endpoints = self.endpoints
        return (dst, dport, src) in endpoints or (src, sport, dst) in endpoints
