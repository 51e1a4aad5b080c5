"""`traffic-capture service-unit`: a systemd unit that runs the daemon for weeks with the
capture right given to it alone.

The capabilities go to this one service (AmbientCapabilities for a dedicated user), never to
an interpreter every user and program shares (what `setcap` on /usr/bin/python3 would do).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from traffic_capture.config import Config
from traffic_capture.errors import PROG, UsageError
from traffic_capture.secrets import write_secret_file
from traffic_capture.sinks import Credential

USER = "traffic-capture"
STATE = Path("/var/lib/traffic-capture")
DEFAULT_CSV = STATE / "traffic.csv"
DEFAULT_HISTORY = STATE / "history"  # months of windows for serve/excel/report (DuckDB)
UNIT_PATH = "/etc/systemd/system/traffic-capture.service"
CAPABILITIES = ("CAP_NET_RAW", "CAP_NET_ADMIN")


def systemd_quote(argument: str) -> str:
    """One ExecStart argument: specifiers (%) and variables ($) escaped, quoted when needed."""
    text = argument.replace("%", "%%").replace("$", "$$")
    if text and not any(c in text for c in " \t\"'\\;"):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def check_for_service(config: Config) -> None:
    """Refuse, as the daemon would, what cannot run as a service: an output that needs a
    desktop, an interface this machine does not have."""
    for enabled in config.outputs:
        if enabled.output.service_refusal:
            raise UsageError(enabled.output.service_refusal)
    if config.interfaces:
        from traffic_capture.interfaces import list_interfaces, resolve_interfaces

        try:
            known = list_interfaces()
        except (OSError, ImportError):
            return  # cannot list them here: the service says so at its start
        resolve_interfaces(config.interfaces, known)


def service_arguments(parser: argparse.ArgumentParser, argv: list[str],
                      leave_out: set[str]) -> list[str]:
    """The capture options for ExecStart: paths made absolute (the service starts in its
    state folder, not where this command ran), the options in `leave_out` (secrets, --out)
    removed with their values."""
    actions = {option: action for action in parser._actions
               for option in action.option_strings}
    arguments: list[str] = []
    rest = iter(argv)
    for argument in rest:
        name, has_value, inline = argument.partition("=")
        action = actions.get(name) if name.startswith("--") else None
        if action is None:
            arguments.append(argument)
            continue
        takes_value = action.nargs != 0
        value = inline if has_value else (next(rest, None) if takes_value else None)
        if name in leave_out:
            continue
        if takes_value and value is not None:
            if action.type is Path:
                value = str(Path(value).expanduser().absolute())
            arguments += [name, value]
        else:
            arguments.append(name)
    return arguments


def save_credentials(credentials: list[tuple[Credential, str | None]]) -> None:
    """Write the secrets given on this command line to their root-only files; each comes
    with the option that names such a file instead (for the error's advice)."""
    for credential, file_option in credentials:
        if credential.value is None:
            continue
        try:
            write_secret_file(credential.path, credential.value)
        except OSError as error:
            instead = f" with {file_option}" if file_option else ""
            raise UsageError(
                f"cannot save the {credential.name} to {credential.path} "
                f"({error.strerror or error}): run this as root, or give the file yourself "
                f"(mode 0600, root's){instead}") from None


def unit_for(python: str, parser: argparse.ArgumentParser, argv: list[str],
             config: Config) -> str:
    """The unit of a checked configuration (its secrets saved to their files first). `argv`
    holds --out (the command line adds the state folder's CSV when the user gave none)."""
    leave_out = {option for enabled in config.outputs
                 for option in enabled.output.secret_options}
    owned = [(Credential(c.name, c.path.expanduser().absolute(), c.value),
              next((o for o in enabled.output.secret_options if o.endswith("-file")), None))
             for enabled in config.outputs
             for c in enabled.output.service_credentials(enabled.settings)]
    save_credentials(owned)
    credentials = [credential for credential, _ in owned]
    folders = [folder.expanduser().absolute() for enabled in config.outputs
               for folder in enabled.output.service_folders(enabled.settings)]
    csv = config.settings_of("csv")
    out = csv.out.expanduser().absolute() if csv is not None else DEFAULT_CSV
    return unit_text(python, service_arguments(parser, argv, leave_out), out,
                     folders=[folder for folder in folders if not _under(folder, STATE)],
                     credentials=credentials)


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def unit_text(python: str, capture_args: list[str], out: Path = DEFAULT_CSV,
              user: str = USER, folders: list[Path] | None = None,
              credentials: list[Credential] | None = None) -> str:
    """The unit for `python -m traffic_capture <capture_args>` (which hold --out), writing to
    `out` and to `folders` besides the state folder systemd creates for it."""
    # Not --quiet: off a terminal the journal gets one status line a minute.
    command = [python, "-m", "traffic_capture", *capture_args]
    csv = out
    writable = "".join(f"ReadWritePaths={systemd_quote(str(folder))}\n"
                       for folder in dict.fromkeys(folders or []))
    loaded = "".join(f"LoadCredential={systemd_quote(f'{c.name}:{c.path}')}\n"
                     for c in credentials or [])
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
{writable}{loaded}ProtectSystem=strict
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
