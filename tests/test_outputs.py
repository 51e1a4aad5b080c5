"""Outputs describe themselves: a new output is its own module plus one line in the registry.

A toy JSON-lines output, written in a temporary module the way CONTRIBUTING.md says, is
registered by a child process (the one line) and runs end to end through the real command: its
option in --help, its usage error, its file, its part of the status line and the summary.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from tests.conftest import REPO, SAMPLE, child_env
from traffic_capture.outputs import REGISTRY, registered

TOY = '''
"""--toy-out PATH: each closed window's rows as JSON lines."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path

from traffic_capture.errors import UsageError
from traffic_capture.sinks import Output, OutputContext, Sink


@dataclass(frozen=True)
class ToySettings:
    path: Path
    pretty: bool


class ToyOutput(Output[ToySettings]):
    name = "toy"
    title = "toy output"

    def add_options(self, group: argparse._ActionsContainer) -> None:
        group.add_argument("--toy-out", type=Path, metavar="PATH", help="rows as JSON lines")
        group.add_argument("--toy-pretty", action="store_true", help="indent them")

    def settings(self, args: argparse.Namespace) -> ToySettings | None:
        if args.toy_pretty and not args.toy_out:
            raise UsageError("--toy-pretty needs --toy-out PATH")
        return ToySettings(args.toy_out, args.toy_pretty) if args.toy_out else None

    def build(self, settings: ToySettings, context: OutputContext) -> Sink:
        return ToySink(settings.path, context.warn, context.info)


OUTPUT = ToyOutput()


class ToySink(Sink):
    name = "toy"
    unit = "rows"

    def __init__(self, path: Path, warn, info) -> None:
        super().__init__(warn, info)
        self.path = path

    def open(self) -> None:
        self.path.write_text("")

    def handle_window(self, window) -> None:
        with self.path.open("a") as out:
            for row in window.rows():
                out.write(json.dumps(row._asdict()) + "\\n")
        self.written += len(window)

    def summary_target(self) -> str:
        return str(self.path)

    def status_fields(self) -> dict:
        return {"toy_rows": self.written}
'''

RUN = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
       "from traffic_capture import outputs; outputs.REGISTRY.append('toy_output'); "
       "from traffic_capture.cli import main; sys.exit(main(sys.argv[1:]))")


def run_with_toy(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", RUN, str(folder), *args], capture_output=True,
                          text=True, timeout=60, env=child_env(), stdin=subprocess.DEVNULL)


def git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                          capture_output=True, text=True, cwd=REPO, timeout=30).stdout


def test_a_toy_output_in_its_own_module_runs_end_to_end(tmp_path: Path) -> None:
    before = git_status()
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "toy_output.py").write_text(TOY)
    csv, toy = tmp_path / "t.csv", tmp_path / "toy.jsonl"

    shown = run_with_toy(modules, "--help")
    assert shown.returncode == 0 and "--toy-out PATH" in shown.stdout
    assert "toy output:" in shown.stdout  # its own group
    refused = run_with_toy(modules, "--read", str(SAMPLE), "--server-ip", "192.0.2.1",
                           "--toy-pretty")
    assert refused.returncode == 2
    assert refused.stderr.strip() == ("traffic-capture: error: --toy-pretty needs --toy-out "
                                      "PATH (see traffic-capture --help)")

    result = run_with_toy(modules, "--read", str(SAMPLE), "--server-ip", "192.0.2.1",
                          "--server-ip", "2001:db8::1", "--out", str(csv),
                          "--toy-out", str(toy), "--status-interval", "3600")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in toy.read_text().splitlines()]
    written = pd.read_csv(csv, dtype={"client_ip": str})
    assert len(rows) == len(written) > 0
    assert sum(row["total_bytes"] for row in rows) == written["total_bytes"].sum()
    assert f"written to {csv}, {toy}" in result.stderr  # the summary names its file
    assert f"toy rows {len(rows)} written, 0 pending" in result.stderr  # the status line
    assert git_status() == before  # nothing else in the project changed


def test_every_registered_output_is_one_module_with_its_own_name() -> None:
    outputs = registered()
    assert [type(o).__module__ for o in outputs] == REGISTRY
    names = [o.name for o in outputs]
    assert len(set(names)) == len(names) and names[0] == "csv"


def test_help_loads_no_heavy_library() -> None:
    """Every output's module is imported for --help: none may pull numpy, pandas, scapy or
    FastAPI at its top (they come with a run that needs them)."""
    code = ("import sys, contextlib, io; from traffic_capture.cli import main\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "    main(['--help'])\n"
            "print(sorted(m for m in ('numpy', 'pandas', 'scapy', 'fastapi') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# What only --clickhouse, --history, --view or --packet-log use: a run without them loads none
# of it (each costs a run's start-up milliseconds: hashlib's OpenSSL, multiprocessing).
OPTIONAL_PARTS = ("traffic_capture.sinks.clickhouse_sink", "traffic_capture.fleet.connect",
                  "traffic_capture.history.store", "multiprocessing", "hashlib")


def test_plain_run_loads_no_optional_output(tmp_path: Path) -> None:
    """Reading a file into the CSV alone imports no other output's working parts, and leaves
    the garbage collector on (start-up turns it off for a while)."""
    code = ("import gc, sys; from traffic_capture.cli import main\n"
            f"status = main(['--read', {str(SAMPLE)!r}, '--out', {str(tmp_path / 'out.csv')!r},"
            " '--server-ip', '192.0.2.1', '--quiet'])\n"
            f"print(status, gc.isenabled(), sorted(m for m in {OPTIONAL_PARTS!r}"
            " if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=REPO, env=child_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0 True []"

