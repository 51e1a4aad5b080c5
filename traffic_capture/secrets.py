"""Secrets (the web's token, a database password): read from a file, the environment or a
systemd credential, never from the command line, a unit file or a log.

A value on a command line shows in every user's process list (`ps`); a unit file is readable
by every user. systemd's LoadCredential= hands a root-only file to the service as
$CREDENTIALS_DIRECTORY/<name>, readable by the service alone.
"""

from __future__ import annotations

import os
from pathlib import Path

from traffic_capture.errors import UsageError

CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"


class SecretError(UsageError):
    """A secret's file cannot be read, or holds nothing."""


def read_secret_file(path: Path, what: str) -> str:
    """The first line of a file (without its line end); one line saying why when it cannot."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SecretError(f"cannot read {what} from {path}: {error.strerror or error}") from None
    value = text.splitlines()[0].strip() if text.strip() else ""
    if not value:
        raise SecretError(f"{path} holds no {what}")
    return value


def credential_path(name: str) -> Path | None:
    """systemd's credential `name`, when the service was given one (LoadCredential=)."""
    folder = os.environ.get(CREDENTIALS_ENV)
    if not folder:
        return None
    path = Path(folder) / name
    return path if path.is_file() else None


FROM_COMMAND_LINE, FROM_FILE, FROM_ENVIRONMENT, FROM_CREDENTIAL = (
    "command line", "file", "environment", "credential")


def find_secret(what: str, given: str | None, file: Path | None, environment: str,
                credential: str) -> tuple[str | None, str | None]:
    """(the secret, where it came from) from, in order: the command line (kept for old
    scripts; visible to every user), a file, the environment variable, the systemd
    credential. (None, None): none."""
    if given:
        return given, FROM_COMMAND_LINE
    if file is not None:
        return read_secret_file(file, what), FROM_FILE
    if os.environ.get(environment):
        return os.environ[environment], FROM_ENVIRONMENT
    path = credential_path(credential)
    if path is not None:
        return read_secret_file(path, what), FROM_CREDENTIAL
    return None, None


def write_secret_file(path: Path, value: str) -> None:
    """A file only its owner may read, holding `value` (for LoadCredential=)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0),
                 0o600)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)
        os.write(fd, (value + "\n").encode("utf-8"))
    finally:
        os.close(fd)
