"""`traffic-capture service-unit`: a systemd unit that runs the daemon for weeks with the
capture right given to it alone.

The capabilities go to this one service (AmbientCapabilities for a dedicated user), never to
an interpreter every user and program shares (what `setcap` on /usr/bin/python3 would do).
"""

from __future__ import annotations

from pathlib import Path

from traffic_capture.errors import PROG

USER = "traffic-capture"
STATE = Path("/var/lib/traffic-capture")
UNIT_PATH = "/etc/systemd/system/traffic-capture.service"
CAPABILITIES = ("CAP_NET_RAW", "CAP_NET_ADMIN")


def systemd_quote(argument: str) -> str:
    """One ExecStart argument: specifiers (%) and variables ($) escaped, quoted when needed."""
    text = argument.replace("%", "%%").replace("$", "$$")
    if text and not any(c in text for c in " \t\"'\\;"):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unit_text(python: str, capture_args: list[str], out: Path | None, user: str = USER) -> str:
    """The unit for `python -m traffic_capture <capture_args>`, writing to `out` (default: the
    state folder systemd creates for it)."""
    csv = out or STATE / "traffic.csv"
    # Not --quiet: off a terminal the journal gets one status line a minute.
    command = [python, "-m", "traffic_capture", *capture_args, "--out", str(csv)]
    writable = "" if out is None else f"ReadWritePaths={csv.parent}\n"
    caps = " ".join(CAPABILITIES)
    return f"""\
# Made by `{PROG} service-unit`. To install it:
#   sudo useradd --system --no-create-home --shell /usr/sbin/nologin {user}
#   {PROG} service-unit ... | sudo tee {UNIT_PATH}
#   sudo systemctl daemon-reload && sudo systemctl enable --now traffic-capture
# Rows go to {csv}; `journalctl -u traffic-capture` shows a status line a minute and
# the warnings.
[Unit]
Description=traffic-capture: per-client traffic of this server in tumbling windows
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User={user}
Group={user}
ExecStart={" ".join(systemd_quote(a) for a in command)}
# The right to capture, for this daemon alone (not for the interpreter other programs share).
AmbientCapabilities={caps}
CapabilityBoundingSet={caps}
NoNewPrivileges=yes
StateDirectory=traffic-capture
StateDirectoryMode=0755
WorkingDirectory=-{STATE}
{writable}ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictAddressFamilies=AF_PACKET AF_INET AF_INET6 AF_UNIX AF_NETLINK
# SIGTERM writes the partial window; a locked CSV is retried for 10 s before its side file.
KillSignal=SIGTERM
TimeoutStopSec=30
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
"""
