"""The systemd unit: valid for systemd, and its command line, run as a plain user holding only
the unit's capabilities, captures and writes rows; without them it says how to get them."""

from __future__ import annotations

import os
import select
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import (
    DAEMON,
    SAMPLE,
    ChildProcess,
    child_env,
    in_netns,
    needs_tools,
    read_rows,
    run_cli,
)

NOBODY = 65534


def unit(tmp_path: Path, *args: str) -> str:
    result = run_cli(["service-unit", *args])
    assert result.returncode == 0, result.stderr
    return result.stdout


def settings(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines()
                if "=" in line and not line.startswith("#"))


def test_the_unit_is_valid_for_systemd_and_confines_the_daemon(tmp_path: Path) -> None:
    needs_tools("systemd-analyze")
    text = unit(tmp_path, "--server-ip", "192.0.2.10", "--filter", "not port 22")
    path = tmp_path / "traffic-capture.service"
    path.write_text(text)
    check = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    keys = settings(text)
    assert keys["User"] == "traffic-capture" and keys["ProtectSystem"] == "strict"
    assert keys["AmbientCapabilities"] == keys["CapabilityBoundingSet"] == \
        "CAP_NET_RAW CAP_NET_ADMIN"
    assert keys["StateDirectory"] == "traffic-capture" and keys["Restart"] == "on-failure"
    assert keys["NoNewPrivileges"] == "yes"
    command = shlex.split(keys["ExecStart"])
    assert command[command.index("--filter") + 1] == "not port 22"
    assert command[command.index("--out") + 1] == "/var/lib/traffic-capture/traffic.csv"


def test_service_unit_refuses_what_a_service_cannot_do() -> None:
    result = run_cli(["service-unit", "--read", "x.pcap", "--server-ip", "192.0.2.1"])
    assert result.returncode == 2 and "not --read" in result.stderr
    result = run_cli(["service-unit", "--server-ip", "not-an-address"])
    assert result.returncode == 2 and "invalid server address" in result.stderr


def wait_for_line(process: subprocess.Popen, text: str, timeout: float = 60) -> str:
    """stderr read until it holds `text` (what was read is returned). Read from the pipe's
    descriptor itself: a readline() would leave lines in its buffer that select() never
    reports again."""
    assert process.stderr is not None
    descriptor = process.stderr.fileno()
    seen, deadline = "", time.monotonic() + timeout
    while text not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([descriptor], [], [], 0.5)
        if ready:
            chunk = os.read(descriptor, 65536)
            if not chunk:
                break
            seen += chunk.decode(errors="replace")
    assert text in seen, seen
    return seen


def as_the_service_user(namespace: str, command: list[str], caps: bool) -> subprocess.Popen:
    """The unit's command as a plain user (nobody) holding the unit's capabilities, or none."""
    keep = "+net_raw,+net_admin" if caps else ""
    setpriv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
               f"--inh-caps=-all{',' + keep if keep else ''}",
               f"--ambient-caps=-all{',' + keep if keep else ''}",
               f"--bounding-set=-all{',' + keep if keep else ''}", "--"]
    return subprocess.Popen(in_netns(namespace, setpriv + command), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("caps", [True, False])
def test_the_units_command_captures_with_only_its_capabilities(netns: str, tmp_path: Path,
                                                              caps: bool) -> None:
    needs_tools("setpriv", "ping")
    # pytest's own folders are root's alone: the state folder goes where any user may pass.
    folder = Path(tempfile.mkdtemp(prefix="traffic-capture-state-"))
    os.chown(folder, NOBODY, NOBODY)  # what StateDirectory= does for the service's user
    try:
        run_as_service(netns, tmp_path, folder, caps)
    finally:
        shutil.rmtree(folder)


def run_as_service(netns: str, tmp_path: Path, folder: Path, caps: bool) -> None:
    out = folder / "traffic.csv"
    keys = settings(unit(tmp_path, "--server-ip", "127.0.0.1", "--out", str(out),
                         "--history", str(folder / "history")))
    daemon = as_the_service_user(netns, shlex.split(keys["ExecStart"]), caps)
    if caps:
        said = wait_for_line(daemon, "capturing on")  # start-up can be slow on a busy machine
        time.sleep(0.3)  # the socket is bound just before the message
        subprocess.run(in_netns(netns, ["ping", "-c", "3", "-i", "0.2", "127.0.0.1"]),
                       capture_output=True, timeout=30, check=True)
        time.sleep(0.5)
        daemon.send_signal(signal.SIGTERM)  # what systemctl stop sends
    _, rest = daemon.communicate(timeout=60)
    stderr = (said if caps else "") + rest
    if not caps:
        assert daemon.returncode == 1 and "no permission to capture" in stderr, stderr
        return
    assert daemon.returncode == 0, stderr
    rows = read_rows(out)
    assert out.stat().st_uid == NOBODY
    # 3 pings, 84-byte request and reply, counted once each on lo.
    assert rows["other_bytes"].sum() == 3 * 2 * 84 and set(rows["client_ip"]) == {"127.0.0.1"}


def test_the_unit_lets_the_service_write_every_output_folder_and_quotes_paths(
        tmp_path: Path) -> None:
    """ReadWritePaths= names the packet log's folder too (also with the default --out), a
    folder with a space is quoted, and relative paths are made absolute where the command ran
    (the service starts in its state folder)."""
    needs_tools("systemd-analyze")
    folder = tmp_path / "with space"
    folder.mkdir()
    result = subprocess.run(
        [*DAEMON, "service-unit", "--server-ip", "192.0.2.10", "--packet-log", "logs/p.jsonl"],
        capture_output=True, text=True, timeout=60, env=child_env(), cwd=folder)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    keys = settings(text)
    assert keys["ReadWritePaths"] == f'"{folder / "logs"}"'
    command = shlex.split(keys["ExecStart"])
    assert command[command.index("--packet-log") + 1] == str(folder / "logs" / "p.jsonl")
    assert command[command.index("--out") + 1] == "/var/lib/traffic-capture/traffic.csv"
    path = tmp_path / "traffic-capture.service"
    path.write_text(text)
    check = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    assert "not absolute" not in check.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--iface", "nosuch0"], "unknown interface 'nosuch0'"),
    (["--view"], "--view needs a desktop session"),
])
def test_service_unit_refuses_what_the_daemon_would_refuse(args: list[str], message: str
                                                          ) -> None:
    result = run_cli(["service-unit", "--server-ip", "192.0.2.1", *args])
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_the_web_token_goes_to_a_root_only_credential_never_into_the_unit(
        tmp_path: Path) -> None:
    needs_tools("systemd-analyze")
    secret = "s3cret-token-0123456789"
    token_file = tmp_path / "credentials" / "web-token"
    result = run_cli(["service-unit", "--server-ip", "192.0.2.1", "--web", "0.0.0.0:8080",
                      "--web-token", secret, "--web-token-file", str(token_file)])
    assert result.returncode == 0, result.stderr
    assert secret not in result.stdout and secret not in result.stderr
    keys = settings(result.stdout)
    assert keys["LoadCredential"] == f"web-token:{token_file}"
    assert "--web-token" not in keys["ExecStart"]
    assert token_file.read_text() == secret + "\n"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    path = tmp_path / "traffic-capture.service"
    path.write_text(result.stdout)
    check = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stderr


def test_the_daemon_reads_its_token_from_the_credential_and_shows_it_to_no_one(
        tmp_path: Path) -> None:
    """As systemd runs the unit: $CREDENTIALS_DIRECTORY/web-token, no token in the process's
    arguments; requests without it get 401, with it 200."""
    pytest.importorskip("fastapi")
    import httpx

    from tests.web_helpers import URL

    credentials = tmp_path / "creds"
    credentials.mkdir()
    secret = "credential-token-42"
    (credentials / "web-token").write_text(secret + "\n")
    env = child_env(CREDENTIALS_DIRECTORY=str(credentials))
    env.pop("TRAFFIC_WEB_TOKEN", None)
    daemon = ChildProcess([*DAEMON, "--read", str(SAMPLE), "--server-ip", "192.0.2.1",
                           "--out", str(tmp_path / "t.csv"), "--web", "0.0.0.0:0"], env=env)
    try:
        daemon.wait_for("the dashboard stays at")
        found = URL.search(daemon.stderr)
        assert found is not None, daemon.stderr
        port = found.group(1).rsplit(":", 1)[1].rstrip("/")
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/api/status", timeout=10).status_code == 401
        answer = httpx.get(f"{base}/api/status", timeout=10,
                           headers={"Authorization": f"Bearer {secret}"})
        assert answer.status_code == 200
        arguments = Path(f"/proc/{daemon.process.pid}/cmdline").read_bytes()
        assert secret.encode() not in arguments
    finally:
        assert daemon.stop() == 0, daemon.stderr
    assert secret not in daemon.stderr
