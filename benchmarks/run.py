"""The one benchmark command: offline speed and memory next to tshark/tcpdump, then live loss.

Why this shape: absolute times differ between machines, so every figure is printed next to
tshark's and tcpdump's on the same trace and the same run; and a fast monitor that miscounts is
worthless, so offline rows are checked against the generator's exact totals and live runs
report the share of the replayed server bytes that reached the CSV, plus the kernel's drops.

Live runs replay with tcpreplay inside private network namespaces only (no other address is
ever used): by default a veth pair across two namespaces (replay into one end, capture on the
other: each packet is received once, as from a NIC); `--live-mode lo` replays into `lo` of one
namespace instead (the daemon must then skip the outgoing copy).

A blast round then floods a veth pair with trafgen (netsniff-ng) from every core, as fast as
the kernel sends, and reports how much of it the daemon and tcpdump (same 64 MiB buffer) count
and their CPU per packet.

Usage: sudo python benchmarks/run.py [--offline-only | --live-only | --blast-only]
       [--packets N] [--rates 50000,100000,200000,300000] [--live-mode veth|lo] [--repeat 3]
       [--blast PACKETS]
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ipaddress
import json
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_trace  # noqa: E402  (a sibling script, not a package)

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "benchmarks" / "out"
SERVERS = (gen_trace.SERVER_V4, gen_trace.SERVER_V6)
CLASS_COLS = [f"{c}_bytes" for c in gen_trace.CLASSES]
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # The CSV's window_start format (traffic_capture.rules).
OFFLINE_TIMEOUT_S = 300.0
SLOW_RUN_S = 30.0  # A run slower than this is not repeated: best-of-3 would blow the budget.
PCAPNG_ROW = "traffic-capture, same trace as pcapng"
# Issue 19's goal for reading files, as ratios to the tools measured in the same run.
TARGET_TSHARK_RATIO = 20.0
TARGET_TCPDUMP_RATIO = 0.7
TARGET_RSS_MIB = 128
TARGET_LIVE_PPS = 200_000

_netns: list[str] = []
_children: list[subprocess.Popen] = []


def _cleanup() -> None:
    """Kill what we started and delete our namespaces, whatever happened."""
    for p in _children:
        if p.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(p.pid, signal.SIGKILL)  # The group: time(1) would orphan its child.
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)
    _children.clear()
    for ns in reversed(_netns):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10, check=False)
    _netns.clear()


def _on_signal(signum: int, _frame: object) -> None:
    _cleanup()
    sys.exit(128 + signum)


@dataclass
class Run:
    """One finished child: wall time, its own peak RSS and CPU time, and its output."""

    cmd: list[str]
    wall: float
    maxrss_mib: float
    cpu: float
    rc: int
    stdout: str
    stderr: str
    timed_out: bool = False


def _popen(cmd: list[str], **kw: object) -> subprocess.Popen:
    """Start in a new process group, so cleanup can kill wrapper and program together."""
    p = subprocess.Popen(cmd, start_new_session=True, **kw)
    _children.append(p)
    return p


TIME = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)


def timed(cmd: list[str], rss_file: Path) -> list[str]:
    """Wrap in GNU time for the peak RSS: a child's own ru_maxrss also counts the memory of this
    (pandas-sized) parent it was spawned from, so wait4 alone overstates small readers."""
    return [TIME, "-f", "%M", "-o", str(rss_file), *cmd] if TIME else cmd


def _read_rss_mib(rss_file: Path, fallback_kib: int) -> float:
    try:
        return int(rss_file.read_text().split()[-1]) / 1024
    except (OSError, ValueError, IndexError):
        return fallback_kib / 1024


def leaf_pid(pid: int) -> int:
    """The program under the time(1) wrapper (`ip netns exec` execs, so it adds no level)."""
    if not TIME:
        return pid
    for proc in Path("/proc").iterdir():  # /proc/PID/task/PID/children may not exist.
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            return int(proc.name)
    return pid


def exited(p: subprocess.Popen) -> bool:
    """Whether `p` has ended, without reaping it (wait4 must still get its rusage)."""
    if p.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def wait_measured(p: subprocess.Popen, start: float, timeout: float, out: IO[bytes],
                  err: IO[bytes], rss_file: Path | None = None) -> Run:
    """Reap `p` with wait4 (its CPU time, including a time wrapper's child), kill on timeout."""
    lock, done, killed = threading.Lock(), [False], [False]

    def kill() -> None:
        with lock:
            if not done[0]:
                killed[0] = True
                with contextlib.suppress(OSError):
                    os.killpg(p.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        if p.returncode is None:
            _, status, ru = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
        else:  # Already reaped elsewhere: no rusage left to read.
            ru = resource.struct_rusage((0.0,) * 2 + (0,) * 14)
    finally:
        with lock:
            done[0] = True
        timer.cancel()
    wall = time.perf_counter() - start
    with contextlib.suppress(ValueError):
        _children.remove(p)
    out.seek(0)
    err.seek(0)
    rss = _read_rss_mib(rss_file, ru.ru_maxrss) if rss_file else ru.ru_maxrss / 1024
    return Run(p.args, wall, rss, ru.ru_utime + ru.ru_stime, p.returncode,
               out.read().decode(errors="replace"), err.read().decode(errors="replace"),
               killed[0])


def run_measured(cmd: list[str], timeout: float, **kw: object) -> Run:
    """Run to completion (bounded by `timeout`), measuring wall time and peak RSS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(prefix="tcbench-rss-") as rss:
        start = time.perf_counter()
        p = _popen(timed(cmd, Path(rss.name)), stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                   **kw)
        run = wait_measured(p, start, timeout, out, err, Path(rss.name))
        run.cmd = cmd
        return run


def sh(cmd: list[str], timeout: float = 20) -> str:
    """A setup command that must succeed (ip, sysctl)."""
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
    return r.stdout


LIVE_EXTRA: list[str] = []  # --daemon-args: options added to the live rounds' daemon


def daemon_cmd(*args: str) -> list[str]:
    servers = [a for s in SERVERS for a in ("--server-ip", s)]
    return [sys.executable, "-m", "traffic_capture", *args, *servers, "--quiet"]


def daemon_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def daemon_available() -> str | None:
    """None if `python -m traffic_capture --help` works, else the reason it doesn't."""
    try:
        r = subprocess.run(daemon_cmd("--help")[:4], capture_output=True, text=True, timeout=60,
                           cwd=REPO, env=daemon_env(), check=False)
    except subprocess.TimeoutExpired:
        return "--help timed out after 60 s"
    if r.returncode:
        lines = (r.stderr or r.stdout).strip().splitlines()
        return f"--help exited {r.returncode}: {lines[-1] if lines else ''}"
    return None


# ---------------------------------------------------------------- expected totals and checking


def _norm_ip(s: str) -> str:
    return ipaddress.ip_address(s.strip()).compressed


def expected_by_key(meta: dict[str, np.ndarray], clients: list[str], sent: int) -> pd.DataFrame:
    """Server bytes per (client, direction) and class for the first `sent` packets, looping."""
    n = len(meta["bytes"])
    loops, rem = divmod(sent, n)
    nc = len(clients)
    srv = meta["cat"] == gen_trace.CAT_SERVER
    key = np.where(srv, meta["client"].astype(np.int64) * 2 + meta["direction"], 0)
    idx = key * 5 + meta["cls"]
    w = meta["bytes"].astype(np.int64)
    full = np.bincount(idx, weights=w, minlength=nc * 10) * loops
    part = np.bincount(idx[:rem], weights=w[:rem], minlength=nc * 10)
    tot = (full + part).astype(np.int64).reshape(nc, 2, 5)
    rows = [(clients[c], gen_trace.DIRECTIONS[d], *tot[c, d].tolist())
            for c in range(nc) for d in range(2) if tot[c, d].any()]
    df = pd.DataFrame(rows, columns=["client_ip", "direction", *CLASS_COLS])
    return df.set_index(["client_ip", "direction"])


def read_rows(csv: Path) -> pd.DataFrame:
    df = pd.read_csv(csv, dtype={"client_ip": str, "direction": str, "window_start": str})
    df["client_ip"] = df["client_ip"].map(_norm_ip)
    return df


def compare_totals(got: pd.DataFrame, exp: pd.DataFrame) -> dict:
    """Bytes missing and bytes in excess per (client, direction, class), summed."""
    g = got.groupby(["client_ip", "direction"])[CLASS_COLS].sum()
    g, e = g.align(exp, join="outer", fill_value=0)
    diff = g.to_numpy(np.int64) - e.to_numpy(np.int64)
    exp_total = int(e.to_numpy().sum())
    return {
        "expected_bytes": exp_total,
        "got_bytes": int(g.to_numpy().sum()),
        "missing_bytes": int(-diff[diff < 0].sum()),
        "excess_bytes": int(diff[diff > 0].sum()),
        "share": float(g.to_numpy().sum()) / exp_total if exp_total else float("nan"),
    }


def check_offline(csv: Path, pcap: Path) -> dict:
    """Row-by-row comparison with the generator's `.expected.csv` (windows in local time)."""
    exp = pd.read_csv(pcap.with_name(pcap.name + ".expected.csv"), dtype={"client_ip": str})
    exp["window_start"] = [time.strftime(TIME_FORMAT, time.localtime(t))
                           for t in exp.pop("window_start_epoch")]
    exp["client_ip"] = exp["client_ip"].map(_norm_ip)
    got = read_rows(csv)
    keys = ["window_start", "client_ip", "direction"]
    cols = ["total_bytes", *CLASS_COLS]
    m = exp.merge(got[keys + cols], on=keys, how="outer", suffixes=("_exp", "_got"),
                  indicator=True)
    both = m[m["_merge"] == "both"]
    bad = np.zeros(len(both), dtype=bool)
    for c in cols:
        bad |= both[f"{c}_exp"].to_numpy() != both[f"{c}_got"].to_numpy()
    inconsistent = int((got["total_bytes"] != got[CLASS_COLS].sum(axis=1)).sum())
    res = {
        "expected_rows": len(exp),
        "got_rows": len(got),
        "missing_rows": int((m["_merge"] == "left_only").sum()),
        "extra_rows": int((m["_merge"] == "right_only").sum()),
        "wrong_rows": int(bad.sum()),
        "total_ne_sum_rows": inconsistent,
        "by_class_expected": {c: int(exp[c].sum()) for c in cols},
        "by_class_got": {c: int(got[c].sum()) for c in cols},
    }
    res["exact"] = not (res["missing_rows"] or res["extra_rows"] or res["wrong_rows"]
                        or inconsistent)
    return res


# ---------------------------------------------------------------- offline


def offline(pcap: Path, packets: int, repeat: int, with_daemon: bool) -> dict:
    """Best-of-`repeat` wall time and peak RSS of each reader on the same file."""
    work = Path(tempfile.mkdtemp(prefix="tcbench-"))
    out_csv, ng_csv = work / "offline.csv", work / "offline-pcapng.csv"
    tools: dict[str, tuple[list[str], dict]] = {}
    if with_daemon:
        tools["traffic-capture"] = (
            daemon_cmd("--read", str(pcap), "--out", str(out_csv)),
            {"cwd": REPO, "env": daemon_env()},
        )
        tools["traffic-capture --help (startup only)"] = (
            daemon_cmd("--help")[:4], {"cwd": REPO, "env": daemon_env()})
        if shutil.which("editcap"):
            # Wireshark's and dumpcap's default format: the same packets as pcapng.
            subprocess.run(["editcap", "-F", "pcapng", str(pcap), str(work / "trace.pcapng")],
                           check=True, capture_output=True, timeout=OFFLINE_TIMEOUT_S)
            tools[PCAPNG_ROW] = (
                daemon_cmd("--read", str(work / "trace.pcapng"), "--out", str(ng_csv)),
                {"cwd": REPO, "env": daemon_env()})
    if shutil.which("tshark"):
        tools["tshark -q -z conv,ip"] = (["tshark", "-q", "-z", "conv,ip", "-r", str(pcap)], {})
    if shutil.which("tcpdump"):
        tools["tcpdump -r -w /dev/null"] = (["tcpdump", "-r", str(pcap), "-w", "/dev/null"], {})
    results: dict[str, dict] = {}
    for name, (cmd, kw) in tools.items():
        runs: list[Run] = []
        for _ in range(repeat):
            if name == "traffic-capture":
                out_csv.unlink(missing_ok=True)
            if name == PCAPNG_ROW:
                ng_csv.unlink(missing_ok=True)
            r = run_measured(cmd, OFFLINE_TIMEOUT_S, **kw)
            runs.append(r)
            if r.rc or r.timed_out or r.wall > SLOW_RUN_S:
                break
        best = min(runs, key=lambda r: r.wall)
        ok = all(r.rc == 0 and not r.timed_out for r in runs)
        results[name] = {
            "cmd": " ".join(cmd),
            "ok": ok,
            "runs": [round(r.wall, 3) for r in runs],
            "best_s": best.wall,
            "pps": packets / best.wall,
            "peak_rss_mib": max(r.maxrss_mib for r in runs),
            "cpu_s": best.cpu,
            "error": "" if ok else (runs[-1].stderr.strip().splitlines() or ["timed out"])[-1],
        }
        print(f"  {name}: runs {results[name]['runs']} s", file=sys.stderr)
    checks = {}
    for name, csv in (("traffic-capture", out_csv), (PCAPNG_ROW, ng_csv)):
        if with_daemon and results.get(name, {}).get("ok") and csv.exists():
            try:
                checks[name] = check_offline(csv, pcap)
            except Exception as exc:  # report a broken CSV, don't crash the run
                checks[name] = {"exact": False, "error": f"{type(exc).__name__}: {exc}"}
    shutil.rmtree(work, ignore_errors=True)
    return {"tools": results, "check": checks.get("traffic-capture"),
            "check_pcapng": checks.get(PCAPNG_ROW)}


def print_offline(res: dict, packets: int, file_bytes: int) -> None:
    tools = res["tools"]
    ref = {k: tools[k]["pps"] for k in tools if k.startswith(("tshark", "tcpdump")) and
           tools[k]["ok"]}
    ts = next((v for k, v in ref.items() if k.startswith("tshark")), None)
    td = next((v for k, v in ref.items() if k.startswith("tcpdump")), None)
    print(f"\nOFFLINE: {packets:,} packets, {file_bytes / 2**20:.0f} MiB pcap, best of runs")
    hdr = (f"{'reader':<40}{'best s':>8}{'packets/s':>12}{'peak RSS':>10}{'CPU s':>7}"
           f"{'x tshark':>10}{'x tcpdump':>10}")
    print(hdr)
    print("-" * len(hdr))
    for name, t in tools.items():
        if not t["ok"]:
            print(f"{name:<40}  FAILED: {t['error'][:80]}")
            continue
        startup = "startup" in name
        pps = "-" if startup else f"{t['pps']:,.0f}"
        rx = "-" if startup or not ts else f"{t['pps'] / ts:.2f}"
        rd = "-" if startup or not td else f"{t['pps'] / td:.3f}"
        print(f"{name:<40}{t['best_s']:>8.3f}{pps:>12}{t['peak_rss_mib']:>7.0f} MiB"
              f"{t['cpu_s']:>7.2f}{rx:>10}{rd:>10}")
    print(f"{'target (issue 19)':<40}{'-':>8}{'-':>12}{'<' + str(TARGET_RSS_MIB):>7} MiB"
          f"{'-':>7}{TARGET_TSHARK_RATIO:>10.2f}{TARGET_TCPDUMP_RATIO:>10.3f}")
    tc = tools.get("traffic-capture")
    if tc and tc["ok"] and ts and td:
        misses = [what for what, missed in (
            (f"x tshark {tc['pps'] / ts:.2f} < {TARGET_TSHARK_RATIO:.0f}",
             tc["pps"] / ts < TARGET_TSHARK_RATIO),
            (f"x tcpdump {tc['pps'] / td:.3f} < {TARGET_TCPDUMP_RATIO}",
             tc["pps"] / td < TARGET_TCPDUMP_RATIO),
            (f"peak {tc['peak_rss_mib']:.0f} MiB", tc["peak_rss_mib"] >= TARGET_RSS_MIB))
            if missed]
        print(f"traffic-capture {'MISSES' if misses else 'MEETS'} issue 19's file target"
              + (f": {'; '.join(misses)}" if misses else ""))
    print_check(res.get("check"), "")
    if PCAPNG_ROW in tools:
        print_check(res.get("check_pcapng"), " (pcapng)")


def print_check(c: dict | None, what: str) -> None:
    if c is None:
        print(f"exactness{what}: not checked (daemon unavailable or failed)")
    elif "error" in c:
        print(f"exactness{what}: could not read the CSV: {c['error']}")
    else:
        print(f"exactness{what} vs generator: {'EXACT' if c['exact'] else 'NOT EXACT'} "
              f"(rows expected {c['expected_rows']:,}, got {c['got_rows']:,}; "
              f"missing {c['missing_rows']}, extra {c['extra_rows']}, wrong {c['wrong_rows']}, "
              f"total!=sum {c['total_ne_sum_rows']})")
        if not c["exact"]:
            for k, v in c["by_class_expected"].items():
                g = c["by_class_got"][k]
                print(f"    {k:<12} expected {v:>14,}  got {g:>14,}  diff {g - v:>+14,}")


def profile(pcap: Path, top: int = 15) -> str:
    """cProfile of the daemon on the trace, by own time: where the offline seconds go."""
    with tempfile.TemporaryDirectory(prefix="tcbench-prof-") as work:
        cmd = [sys.executable, "-m", "cProfile", "-s", "tottime", *daemon_cmd(
            "--read", str(pcap), "--out", str(Path(work) / "p.csv"))[1:]]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=OFFLINE_TIMEOUT_S * 2,
                           cwd=REPO, env=daemon_env(), check=False)
    lines = r.stdout.splitlines()
    head = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls")), None)
    if r.returncode or head is None:
        return f"profile failed (rc {r.returncode}): {r.stderr.strip()[-300:]}"
    total = next((ln.strip() for ln in lines if "function calls" in ln), "")
    return "\n".join([total, *lines[head : head + top + 1]])


# ---------------------------------------------------------------- live


@dataclass
class Netns:
    """Private namespaces for one live round; `rx_ns`/`rx_if` is where the capture runs."""

    mode: str
    tx_ns: str = ""
    tx_if: str = ""
    rx_ns: str = ""
    rx_if: str = ""
    made: list[str] = field(default_factory=list)

    def up(self) -> Netns:
        tag = f"tcb{os.getpid()}"
        names = [f"{tag}tx", f"{tag}rx"] if self.mode == "veth" else [f"{tag}lo"]
        for ns in names:
            sh(["ip", "netns", "add", ns])
            _netns.append(ns)
            self.made.append(ns)
            # No IPv6 autoconf chatter (RS, MLD, DAD) on the captured link.
            for key in ("all", "default"):
                sh(["ip", "netns", "exec", ns, "sysctl", "-qw",
                    f"net.ipv6.conf.{key}.disable_ipv6=1"])
            sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        if self.mode == "veth":
            self.tx_ns, self.rx_ns = names
            self.tx_if, self.rx_if = "vtx", "vrx"
            sh(["ip", "-n", self.tx_ns, "link", "add", "vtx", "type", "veth", "peer", "name",
                "vrx", "netns", self.rx_ns])
            sh(["ip", "-n", self.tx_ns, "link", "set", "vtx", "up"])
            sh(["ip", "-n", self.rx_ns, "link", "set", "vrx", "up"])
        else:
            self.tx_ns = self.rx_ns = names[0]
            self.tx_if = self.rx_if = "lo"
        return self

    def down(self) -> None:
        for ns in self.made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10,
                           check=False)
            with contextlib.suppress(ValueError):
                _netns.remove(ns)
        self.made.clear()

    def exec(self, ns: str, cmd: list[str]) -> list[str]:
        return ["ip", "netns", "exec", ns, *cmd]

    def rx_stats(self) -> dict[str, int]:
        """Counters of the capture interface: what the kernel received and dropped before us."""
        out = sh(["ip", "-n", self.rx_ns, "-j", "-s", "link", "show", self.rx_if])
        s = json.loads(out)[0]["stats64"]["rx"]
        return {"packets": int(s["packets"]), "bytes": int(s["bytes"]),
                "dropped": int(s["dropped"])}

    def packet_sockets(self) -> int:
        out = sh(self.exec(self.rx_ns, ["cat", "/proc/net/packet"]))
        return max(0, len(out.strip().splitlines()) - 1)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process so far, from /proc (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def softnet_dropped() -> int:
    """Backlog drops on all CPUs (2nd column of softnet_stat): loss before any capture."""
    total = 0
    for line in Path("/proc/net/softnet_stat").read_text().splitlines():
        total += int(line.split()[1], 16)
    return total


def parse_tcpreplay(text: str) -> dict:
    def grab(pattern: str) -> float | None:
        m = re.search(pattern, text)
        return float(m.group(1)) if m else None

    return {
        "actual_packets": grab(r"Actual:\s*(\d+) packets"),
        "actual_bytes": grab(r"Actual:\s*\d+ packets \((\d+) bytes"),
        "seconds": grab(r"sent in ([\d.]+) seconds"),
        "pps": grab(r"Rated:.*?([\d.]+) pps"),
        "successful": grab(r"Successful packets:\s*(\d+)"),
        "failed": grab(r"Failed packets:\s*(\d+)"),
    }


def parse_drops(stderr: str) -> str:
    """The daemon's 'kernel drops' line(s), verbatim-ish; wording may change, so be lenient."""
    lines = [ln.strip() for ln in stderr.splitlines() if re.search(r"drop", ln, re.I)]
    return " | ".join(lines)[:160] if lines else "(no drops line)"


def start_capture(ns: Netns, cmd: list[str], kw: dict, rss_file: Path, out: IO[bytes],
                  err: IO[bytes]) -> tuple[subprocess.Popen, float, str | None]:
    """The capture in the rx namespace, once its packet socket is up: (process, start time,
    why it did not start or None)."""
    start = time.perf_counter()
    cap = _popen(ns.exec(ns.rx_ns, timed(cmd, rss_file)), stdout=out, stderr=err,
                 stdin=subprocess.DEVNULL, **kw)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not exited(cap) and ns.packet_sockets() < 1:
        time.sleep(0.05)
    time.sleep(0.5)  # Socket seen: let it finish setting up its ring and filter.
    if exited(cap) or ns.packet_sockets() < 1:
        run = wait_measured(cap, start, 10, out, err, rss_file)
        return cap, start, f"capture did not start (rc {run.rc}): {run.stderr.strip()[-200:]}"
    return cap, start, None


def end_round(cap: subprocess.Popen | None, ns: Netns, work: Path) -> None:
    """Whatever happened: the capture killed, the namespaces and the work folder gone."""
    if cap is not None and not exited(cap):
        with contextlib.suppress(OSError):
            os.killpg(cap.pid, signal.SIGKILL)
    ns.down()
    shutil.rmtree(work, ignore_errors=True)


def tcpdump_stats(stderr: str) -> tuple[int | None, int | None, str]:
    """tcpdump's own last lines: (packets captured, dropped by the kernel, the drops line)."""
    m = re.search(r"(\d+) packets captured", stderr)
    d = re.search(r"(\d+) packets dropped by kernel", stderr)
    return (int(m.group(1)) if m else None, int(d.group(1)) if d else None,
            d.group(0) if d else "(no stats)")


def live_round(tool: str, rate: int, seconds: float, pcap: Path, meta: dict, clients: list[str],
               mode: str) -> dict:
    """One rate: start the capture in the rx namespace, replay, stop it, account for bytes."""
    n_trace = len(meta["bytes"])
    want = int(rate * seconds)
    loops = max(1, math.ceil(want / n_trace))
    ns = Netns(mode).up()
    work = Path(tempfile.mkdtemp(prefix="tcbench-live-"))
    csv = work / "live.csv"
    res: dict = {"tool": tool, "rate": rate, "mode": mode}
    try:
        if tool == "traffic-capture":
            cmd = daemon_cmd("--iface", ns.rx_if, "--out", str(csv), *LIVE_EXTRA)
            kw: dict = {"cwd": REPO, "env": daemon_env()}
        else:  # tcpdump as the reference capture; on lo only the incoming copy.
            cmd = ["tcpdump", "-i", ns.rx_if, "-n", "-w", "/dev/null"]
            cmd += ["-Q", "in"] if mode == "lo" else []
            kw = {}
        before = ns.rx_stats()
        rss_file = work / "rss"
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            cap, start, failed = start_capture(ns, cmd, kw, rss_file, out, err)
            if failed:
                res["error"] = failed
                return res
            sd0 = softnet_dropped()
            leaf = leaf_pid(cap.pid)
            cpu0 = cpu_seconds(leaf)
            rep = subprocess.run(
                ns.exec(ns.tx_ns, ["tcpreplay", "-i", ns.tx_if, f"--pps={rate}",
                                   f"--limit={want}", f"--loop={loops}", "--preload-pcap",
                                   str(pcap)]),
                capture_output=True, text=True, timeout=seconds * 4 + 60, check=False)
            res["tcpreplay"] = parse_tcpreplay(rep.stdout + rep.stderr)
            # CPU the capture used while packets flowed (tcpreplay's preload time is idle).
            busy = cpu_seconds(leaf) - cpu0
            res["cpu_during_replay"] = busy / (res["tcpreplay"]["seconds"] or seconds)
            if rep.returncode:
                res["error"] = f"tcpreplay rc {rep.returncode}: {rep.stderr.strip()[-200:]}"
            time.sleep(2.5)  # Past the daemon's close delay, so the last window is due.
            sd1 = softnet_dropped()
            after = ns.rx_stats()
            cap_start = time.perf_counter()
            with contextlib.suppress(OSError):
                os.kill(leaf_pid(cap.pid), signal.SIGINT)  # time(1) ignores SIGINT.
            run = wait_measured(cap, start, 30, out, err, rss_file)
            res["stop_s"] = time.perf_counter() - cap_start
        res["rc"] = run.rc
        res["timed_out"] = run.timed_out
        res["peak_rss_mib"] = run.maxrss_mib
        res["iface_rx"] = after["packets"] - before["packets"]
        res["iface_dropped"] = after["dropped"] - before["dropped"]
        res["softnet_dropped"] = sd1 - sd0
        sent = int(res["tcpreplay"]["successful"] or res["tcpreplay"]["actual_packets"] or 0)
        res["sent"] = sent
        if tool == "traffic-capture":
            res["drops_line"] = parse_drops(run.stderr)
            m = re.search(r"kernel drops?\D{0,20}?(\d[\d,]*)", run.stderr, re.I)
            res["kernel_drops"] = int(m.group(1).replace(",", "")) if m else None
            if csv.exists():
                try:
                    res.update(compare_totals(read_rows(csv), expected_by_key(meta, clients,
                                                                              sent)))
                except Exception as exc:  # report, don't crash
                    res["error"] = f"CSV unreadable: {type(exc).__name__}: {exc}"
            else:
                res["error"] = res.get("error") or f"no CSV (rc {run.rc}): " + \
                    run.stderr.strip()[-200:]
        else:
            res["captured"], res["kernel_drops"], res["drops_line"] = tcpdump_stats(run.stderr)
            if res["captured"] is not None and sent:
                res["share"] = res["captured"] / sent  # Packets, not bytes: tcpdump is a baseline.
        return res
    finally:
        end_round(locals().get("cap"), ns, work)


def print_live(rounds: list[dict], seconds: float, mode: str) -> None:
    where = ("veth pair across two private netns (replay into one end, capture the other)"
             if mode == "veth" else "lo of a private netns (outgoing copy must be skipped)")
    print(f"\nLIVE: {seconds:.0f} s of tcpreplay --pps per rate, {where}")
    hdr = (f"{'capture':<16}{'rate':>8}{'replayed pps':>13}{'sent':>10}{'iface rx':>10}"
           f"{'pre-cap drop':>13}{'accounted':>11}{'excess B':>10}{'CPU':>6}  kernel drops")
    print(hdr)
    print("-" * (len(hdr) + 20))
    for r in rounds:
        tr = r.get("tcpreplay", {})
        pps = f"{tr['pps']:,.0f}" if tr.get("pps") else "?"
        share = r.get("share")
        share_s = f"{share * 100:.3f}%" if share is not None else "-"
        if r["tool"] == "tcpdump":
            share_s += "p"  # tcpdump: packets captured / sent.
        excess = r.get("excess_bytes")
        pre = r.get("iface_dropped", 0) + r.get("softnet_dropped", 0)
        kd = r.get("kernel_drops")
        drops = f"{kd:,}" if kd is not None else r.get("drops_line") or "?"
        if kd is None and drops == "(no drops line)":
            # --quiet: the daemon warns about kernel drops only when there are some.
            drops = "0 (no warning)" if r.get("rc") == 0 else "none reported"
        print(f"{r['tool']:<16}{r['rate']:>8,}{pps:>13}{r.get('sent', 0):>10,}"
              f"{r.get('iface_rx', 0):>10,}{pre:>13,}{share_s:>11}"
              f"{'-' if excess is None else f'{excess:,}':>10}"
              f"{r.get('cpu_during_replay', 0) * 100:>5.0f}%  {drops}")
        if r.get("error"):
            print(f"{'':<16}ERROR: {r['error']}")
    print("accounted = CSV bytes / server bytes in the packets tcpreplay sent (tcpdump: 'p' = "
          "packets captured / sent);\npre-cap drop = rx_dropped of the capture interface + "
          "softnet backlog drops (lost before any capture);\nCPU = the capture's CPU time "
          "while tcpreplay was sending / sending time (100% = one core).")
    print(f"target: >= {TARGET_LIVE_PPS:,} pps for 10 s with < 0.1 % of bytes missing, "
          "no excess.")
    for r in rounds:
        if r["tool"] == "traffic-capture" and r["rate"] >= TARGET_LIVE_PPS and "share" in r:
            ok = r["share"] > 0.999 and not r.get("excess_bytes")
            print(f"traffic-capture at {r['rate']:,} pps: {'MEETS' if ok else 'MISSES'} target")


# ---------------------------------------------------------------- trafgen blast

# Every blast packet is 46 IP bytes (a 60-byte frame): the CSV's bytes / 46 is the packets counted.
BLAST_IP_BYTES = 46
BLAST_CLIENTS = 200


def blast_config(rx_mac: str) -> str:
    """trafgen's packets: UDP and TCP/80 to the benchmark's IPv4 server from 200 clients, in
    turn; trafgen fills in lengths and checksums."""
    ip = (f"ipv4(sa=198.51.100.1, sa[3]=dinc(1, {BLAST_CLIENTS}), da={gen_trace.SERVER_V4})")
    return (f"{{ eth(da={rx_mac}), {ip}, udp(sp=dinc(1024, 60000), dp=9), fill(0x41, 18) }}\n"
            f"{{ eth(da={rx_mac}), {ip}, tcp(sp=dinc(1024, 60000), dp=80, ack), fill(0x41, 6) }}\n")


def blast_round(tool: str, packets: int, cpus: int) -> dict:
    """trafgen floods the veth from `cpus` cores (as fast as the kernel sends); the capture on
    the other end counts what it can. The ceiling, not a rate: how much of a flood is seen."""
    ns = Netns("veth").up()
    work = Path(tempfile.mkdtemp(prefix="tcbench-blast-"))
    csv = work / "blast.csv"
    res: dict = {"tool": tool, "packets": packets, "cpus": cpus}
    try:
        rx_mac = json.loads(sh(["ip", "-n", ns.rx_ns, "-j", "link", "show", ns.rx_if]))[0][
            "address"]
        config = work / "blast.cfg"
        config.write_text(blast_config(rx_mac))
        if tool == "traffic-capture":
            cmd = daemon_cmd("--iface", ns.rx_if, "--out", str(csv), *LIVE_EXTRA)
            kw: dict = {"cwd": REPO, "env": daemon_env()}
        else:  # the same kernel buffer as the daemon's ring (64 MiB)
            cmd = ["tcpdump", "-i", ns.rx_if, "-n", "-B", "65536", "-w", "/dev/null"]
            kw = {}
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            cap, start, failed = start_capture(ns, cmd, kw, work / "rss", out, err)
            if failed:
                res["error"] = failed
                return res
            leaf = leaf_pid(cap.pid)
            cpu0, sent0 = cpu_seconds(leaf), time.perf_counter()
            gen = subprocess.run(ns.exec(ns.tx_ns, ["trafgen", "-o", ns.tx_if, "-i", str(config),
                                                    "-n", str(packets), "-P", str(cpus)]),
                                 capture_output=True, text=True, timeout=600, check=False)
            seconds = time.perf_counter() - sent0
            res["cpu_during_blast"] = (cpu_seconds(leaf) - cpu0) / seconds
            m = re.search(r"(\d+) packets outgoing", gen.stdout + gen.stderr)
            res["sent"] = int(m.group(1)) if m else 0
            res["pps"] = res["sent"] / seconds
            if gen.returncode or not m:
                res["error"] = f"trafgen rc {gen.returncode}: {gen.stderr.strip()[-200:]}"
            time.sleep(2.5)  # the daemon's close delay: the last window is due
            res["iface_rx"] = ns.rx_stats()["packets"]
            with contextlib.suppress(OSError):
                os.kill(leaf_pid(cap.pid), signal.SIGINT)
            run = wait_measured(cap, start, 30, out, err, work / "rss")
        busy = res["cpu_during_blast"] * seconds
        if tool == "traffic-capture":
            m = re.search(r"kernel drops?\D{0,20}?(\d[\d,]*)", run.stderr, re.I)
            # --quiet: the daemon says kernel drops only when there are some.
            res["kernel_drops"] = int(m.group(1).replace(",", "")) if m else (
                0 if run.rc == 0 else None)
            counted = int(read_rows(csv)["total_bytes"].sum()) // BLAST_IP_BYTES \
                if csv.exists() else 0
        else:
            captured, res["kernel_drops"], _ = tcpdump_stats(run.stderr)
            counted = captured or 0
        res["counted"] = counted
        res["share"] = counted / res["sent"] if res["sent"] else None
        res["us_per_packet"] = busy / counted * 1e6 if counted else None
        return res
    finally:
        end_round(locals().get("cap"), ns, work)


def print_blast(rounds: list[dict]) -> None:
    print("\nBLAST: trafgen floods a veth pair from every core (60-byte frames, UDP and TCP/80 "
          "from 200 clients); the capture runs on the other end")
    hdr = (f"{'capture':<16}{'sent':>11}{'sent pps':>12}{'counted':>11}{'share':>10}"
           f"{'kernel drops':>14}{'CPU':>6}{'us/packet':>11}")
    print(hdr)
    print("-" * len(hdr))
    for r in rounds:
        share = f"{r['share'] * 100:.3f}%" if r.get("share") is not None else "-"
        drops = f"{r['kernel_drops']:,}" if r.get("kernel_drops") is not None else "?"
        us = f"{r['us_per_packet']:.3f}" if r.get("us_per_packet") else "-"
        print(f"{r['tool']:<16}{r.get('sent', 0):>11,}{r.get('pps', 0):>12,.0f}"
              f"{r.get('counted', 0):>11,}{share:>10}{drops:>14}"
              f"{r.get('cpu_during_blast', 0) * 100:>5.0f}%{us:>11}")
        if r.get("error"):
            print(f"{'':<16}ERROR: {r['error']}")
    print("share = packets counted / sent (traffic-capture: CSV bytes / 46); us/packet = the "
          "capture's CPU time while trafgen sent / packets counted.")


def blast_rounds(packets: int, why_not: str | None) -> list[dict]:
    """tcpdump's and the daemon's blast rounds, in turn, when trafgen (netsniff-ng) is here."""
    if os.geteuid() != 0 or not shutil.which("trafgen"):
        print("\nBLAST: skipped, needs root and trafgen (apt-get install netsniff-ng)")
        return []
    tools = ([] if why_not else ["traffic-capture"]) + (
        ["tcpdump"] if shutil.which("tcpdump") else [])
    rounds = []
    for tool in tools:
        print(f"  blast {tool}: {packets:,} packets ...", file=sys.stderr)
        rounds.append(blast_round(tool, packets, os.cpu_count() or 1))
    print_blast(rounds)
    return rounds


# ---------------------------------------------------------------- main


def ensure_trace(packets: int) -> Path:
    pcap = OUT_DIR / f"trace-{packets}.pcap"
    needed = [pcap, gen_trace.meta_path(pcap), pcap.with_name(pcap.name + ".expected.csv")]
    if not all(p.exists() for p in needed):
        t = time.perf_counter()
        print(f"generating {pcap} ...", file=sys.stderr)
        gen_trace.generate(pcap, packets)
        print(f"  done in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return pcap


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--offline-only", action="store_true")
    g.add_argument("--live-only", action="store_true")
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--rates", default="50000,100000,200000,300000")
    ap.add_argument("--seconds", type=float, default=10.0, help="replay time per rate")
    ap.add_argument("--live-mode", choices=("veth", "lo"), default="veth")
    ap.add_argument("--repeat", type=int, default=3, help="offline runs per reader (best kept)")
    ap.add_argument("--no-tcpdump-live", action="store_true",
                    help="skip the tcpdump reference capture at each rate")
    ap.add_argument("--blast", type=int, default=4_000_000, metavar="PACKETS",
                    help="packets trafgen floods in the blast round (0: no blast round)")
    ap.add_argument("--blast-only", action="store_true",
                    help="only the trafgen blast round (traffic-capture and tcpdump)")
    ap.add_argument("--json", type=Path, default=None, help="also write all figures here")
    ap.add_argument("--profile", action="store_true",
                    help="also print the daemon's top-15 cProfile lines on the offline trace")
    ap.add_argument("--daemon-args", default="", metavar="ARGS",
                    help="options added to the daemon in the live rounds, e.g. "
                         "'--web 127.0.0.1:0' or '--packet-log /tmp/p.jsonl'")
    args = ap.parse_args(argv)
    LIVE_EXTRA.extend(args.daemon_args.split())
    rates = [int(r) for r in args.rates.split(",") if r.strip()]
    if args.packets < 1 or not rates or min(rates) < 1 or not 1 <= args.repeat <= 10:
        ap.error("--packets, --rates and --repeat (1-10) must be positive")

    atexit.register(_cleanup)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    pcap = ensure_trace(args.packets)
    summary = json.loads(pcap.with_name(pcap.name + ".summary.json").read_text())
    why_not = daemon_available()
    load = os.getloadavg()[0]
    print(f"benchmark {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}, load average {load:.2f}")
    if load > 0.5:
        print("  WARNING: the machine is busy; figures will be noisy (ratios less so)")
    print(f"trace {pcap.name}: {summary['server_packets']:,} server packets, "
          f"{summary['server_bytes']:,} server bytes")
    if why_not:
        print(f"traffic-capture NOT AVAILABLE: {why_not}")
    report: dict = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "cpus": os.cpu_count(), "trace": summary}

    if not args.live_only and not args.blast_only:
        off = offline(pcap, args.packets, args.repeat, why_not is None)
        print_offline(off, args.packets, summary["file_bytes"])
        report["offline"] = off
        if args.profile and why_not is None:
            report["profile"] = profile(pcap)
            print(f"\nPROFILE (python -m cProfile -s tottime, offline trace)\n"
                  f"{report['profile']}")

    if not args.offline_only and not args.blast_only:
        missing = [t for t in ("ip", "tcpreplay") if not shutil.which(t)]
        if os.geteuid() != 0:
            print("\nLIVE: skipped, needs root (network namespaces): "
                  "sudo python benchmarks/run.py")
        elif missing:
            print(f"\nLIVE: skipped, missing {', '.join(missing)}")
        else:
            meta, clients = gen_trace.load_meta(pcap)
            tools = [] if why_not else ["traffic-capture"]
            if not args.no_tcpdump_live and shutil.which("tcpdump"):
                tools.append("tcpdump")
            rounds = []
            for rate in rates:
                for tool in tools:
                    print(f"  live {tool} at {rate:,} pps ...", file=sys.stderr)
                    rounds.append(live_round(tool, rate, args.seconds, pcap, meta, clients,
                                             args.live_mode))
            if why_not:
                print(f"\nLIVE: traffic-capture not measured ({why_not})")
            print_live(rounds, args.seconds, args.live_mode)
            report["live"] = rounds
    if not args.offline_only and args.blast:
        blast = blast_rounds(args.blast, why_not)
        if blast:
            report["blast"] = blast
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
