"""What the packet log and the viewer cost: figures for the README (not a test).

Offline: the 1 M-packet trace (benchmarks/gen_trace.py) read without the log, with
--packet-log, and with --packet-log-payload; best wall time of --repeat runs, packets/s, the
ratio to the run without the log, and the log checked against the CSV (one line per counted
packet, the sum of ip_bytes = the CSV's total).

Live (root): the trace replayed by tcpreplay at --rate packets/s into a veth pair between two
private namespaces, the daemon capturing the other end, as benchmarks/run.py does: without the
log, with --view alone, with --packet-log, and with --packet-log --view (the window on a
private Xvfb display).
For each: the share of the server's bytes in the CSV, the log lines written and dropped, the
daemon's CPU while packets flowed, kernel drops.

    python benchmarks/packet_log.py --offline-only
    sudo python benchmarks/packet_log.py --rate 100000 --seconds 10
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_trace  # noqa: E402  (sibling scripts, not a package)
import run as bench  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.xserver import private_display  # noqa: E402  (the viewer tests' X server)

REPO = bench.REPO


def log_check(log: Path, csv: Path) -> dict:
    """Lines, their ip_bytes and the CSV's total (streamed: the log is hundreds of MB)."""
    lines = ip_bytes = dropped_lines = 0
    pattern = re.compile(rb'"ip_bytes":(\d+)')
    with log.open("rb") as text:
        for line in text:
            found = pattern.search(line)
            if found is None:
                dropped_lines += 1
                continue
            lines += 1
            ip_bytes += int(found.group(1))
    total = int(bench.read_rows(csv)["total_bytes"].sum()) if csv.exists() else -1
    return {"lines": lines, "ip_bytes": ip_bytes, "csv_bytes": total,
            "exact": ip_bytes == total and not dropped_lines}


# A line per packet from tshark, for scale: the log's fields that tshark has (no MD5, no
# preview, no classes), written to a file.
TSHARK_FIELDS = ["frame.time_epoch", "ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "tcp.srcport",
                 "udp.srcport", "tcp.dstport", "udp.dstport", "ip.proto", "ip.len", "tcp.flags",
                 "tcp.len"]


def tshark_lines(pcap: Path, out: Path) -> None:
    fields = [arg for field in TSHARK_FIELDS for arg in ("-e", field)]
    with out.open("wb") as text:
        subprocess.run(["tshark", "-n", "-r", str(pcap), "-T", "fields", "-E", "separator=,",
                        *fields], stdout=text, stderr=subprocess.DEVNULL, check=True,
                       timeout=900)


def offline(pcap: Path, repeat: int) -> list[dict]:
    results = []
    variants = [("no log", []), ("--packet-log", ["--packet-log"]),
                ("--packet-log-payload", ["--packet-log", "--packet-log-payload"])]
    if shutil.which("tshark"):
        variants.append(("tshark -T fields (13)", ["tshark"]))
    for name, extra in variants:
        best = None
        for _ in range(repeat):
            work = Path(tempfile.mkdtemp(prefix="tcbench-log-"))
            try:
                csv, log = work / "t.csv", work / "p.jsonl"
                if extra == ["tshark"]:
                    started = time.perf_counter()
                    tshark_lines(pcap, log)
                    wall = time.perf_counter() - started
                    if best is None or wall < best["wall"]:
                        best = {"variant": name, "wall": wall,
                                "log_mib": log.stat().st_size / 2**20}
                    continue
                args = ["--read", str(pcap), "--out", str(csv)]
                if extra:
                    args += [extra[0], str(log), *extra[1:]]
                started = time.perf_counter()
                done = subprocess.run(bench.daemon_cmd(*args), capture_output=True, text=True,
                                      timeout=900, env=bench.daemon_env(), cwd=REPO)
                wall = time.perf_counter() - started
                if done.returncode:
                    raise RuntimeError(f"{name}: exit {done.returncode}: {done.stderr[-300:]}")
                result = {"variant": name, "wall": wall}
                if extra:
                    result.update(log_check(log, csv))
                    result["log_mib"] = log.stat().st_size / 2**20
                if best is None or wall < best["wall"]:
                    best = result
            finally:
                shutil.rmtree(work, ignore_errors=True)
        assert best is not None
        results.append(best)
    return results


def print_offline(results: list[dict], packets: int) -> None:
    base = results[0]["wall"]
    print(f"\nOFFLINE: {packets:,}-packet trace, best of the runs, wall time including start-up")
    tshark = next((r["wall"] for r in results if r["variant"].startswith("tshark")), None)
    print(f"{'variant':<24}{'wall s':>8}{'packets/s':>12}{'vs no log':>11}{'x tshark':>10}"
          f"{'log MiB':>9}{'lines':>11}  check")
    for r in results:
        check = ""
        if "lines" in r:
            check = ("EXACT (sum of ip_bytes = CSV total)" if r["exact"]
                     else f"DIFFERS: log {r['ip_bytes']:,} B, CSV {r['csv_bytes']:,} B")
        versus = f"{tshark / r['wall']:>9.2f}x" if tshark else f"{'':>10}"
        print(f"{r['variant']:<24}{r['wall']:>8.2f}{packets / r['wall']:>12,.0f}"
              f"{base / r['wall']:>10.2f}x{versus}{r.get('log_mib', 0):>9.0f}"
              f"{r.get('lines', 0):>11,}  {check}")


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (the viewer window, multiprocessing's helper)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def live_round(variant: str, extra: list[str], rate: int, seconds: float, pcap: Path,
               meta: dict, clients: list[str], display: str | None) -> dict:
    n_trace = len(meta["bytes"])
    want = int(rate * seconds)
    loops = max(1, math.ceil(want / n_trace))
    ns = bench.Netns("veth").up()
    work = Path(tempfile.mkdtemp(prefix="tcbench-live-log-"))
    csv, log = work / "live.csv", work / "p.jsonl"
    args = ["--iface", ns.rx_if, "--out", str(csv)]
    if "--packet-log" in extra:
        args += ["--packet-log", str(log)]
    if "--view" in extra:
        args += ["--view"]
    env = bench.daemon_env()
    if display:
        env["DISPLAY"] = display
    res: dict = {"variant": variant, "rate": rate}
    cap = None
    try:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            cmd = bench.daemon_cmd(*args)
            cmd.remove("--quiet")  # the closing summary says how many log lines were dropped
            cap = bench._popen(ns.exec(ns.rx_ns, cmd), stdout=out, stderr=err,
                               stdin=subprocess.DEVNULL, cwd=REPO, env=env)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not bench.exited(cap) and \
                    ns.packet_sockets() < 1:
                time.sleep(0.05)
            time.sleep(1.0 if display else 0.5)
            leaf = cap.pid  # `ip netns exec` execs the daemon; the viewer is the daemon's child
            before, softnet0 = ns.rx_stats(), bench.softnet_dropped()
            cpu0 = bench.cpu_seconds(leaf)
            kids = children(leaf)
            kids_cpu0 = sum(bench.cpu_seconds(kid) for kid in kids)
            rep = subprocess.run(
                ns.exec(ns.tx_ns, ["tcpreplay", "-i", ns.tx_if, f"--pps={rate}",
                                   f"--limit={want}", f"--loop={loops}", "--preload-pcap",
                                   str(pcap)]),
                capture_output=True, text=True, timeout=seconds * 4 + 60, check=False)
            replay = bench.parse_tcpreplay(rep.stdout + rep.stderr)
            res["pps"] = replay["pps"]
            res["cpu"] = (bench.cpu_seconds(leaf) - cpu0) / (replay["seconds"] or seconds)
            res["window_cpu"] = ((sum(bench.cpu_seconds(kid) for kid in kids) - kids_cpu0)
                                 / (replay["seconds"] or seconds))
            time.sleep(2.5)
            after = ns.rx_stats()
            res["iface_rx"] = after["packets"] - before["packets"]
            res["pre_capture_drops"] = (after["dropped"] - before["dropped"]
                                        + bench.softnet_dropped() - softnet0)
            with contextlib.suppress(OSError):
                os.kill(leaf, signal.SIGINT)
            cap.wait(120)
            err.seek(0)
            stderr = err.read().decode(errors="replace")
        sent = int(replay["successful"] or replay["actual_packets"] or 0)
        res["sent"] = sent
        res.update(bench.compare_totals(bench.read_rows(csv),
                                        bench.expected_by_key(meta, clients, sent)))
        drops = re.findall(r"kernel drops:? (\d[\d,]*)", stderr)  # the closing line is last
        res["kernel_drops"] = int(drops[-1].replace(",", "")) if drops else 0
        dropped = re.search(r"packet log: ([\d,]+) of ([\d,]+) lines were dropped", stderr)
        res["log_dropped"] = int(dropped.group(1).replace(",", "")) if dropped else 0
        if log.exists():
            res.update(log_check(log, csv))
        return res
    finally:
        if cap is not None and not bench.exited(cap):
            with contextlib.suppress(OSError):
                os.killpg(cap.pid, signal.SIGKILL)
        ns.down()
        shutil.rmtree(work, ignore_errors=True)


def print_live(rounds: list[dict], seconds: float) -> None:
    print(f"\nLIVE: {seconds:.0f} s of tcpreplay per round, veth pair between private netns")
    print(f"{'variant':<28}{'rate':>9}{'replayed':>10}{'iface rx':>10}{'pre-cap drop':>13}"
          f"{'CSV bytes':>11}{'log lines':>11}{'log drop':>10}{'CPU':>6}{'window CPU':>11}"
          f"{'kernel drops':>14}")
    for r in rounds:
        print(f"{r['variant']:<28}{r['rate']:>9,}{r.get('pps') or 0:>10,.0f}"
              f"{r.get('iface_rx', 0):>10,}{r.get('pre_capture_drops', 0):>13,}"
              f"{r['share'] * 100:>10.3f}%{r.get('lines', 0):>11,}{r.get('log_dropped', 0):>10,}"
              f"{r['cpu'] * 100:>5.0f}%{r.get('window_cpu', 0) * 100:>10.0f}%"
              f"{r['kernel_drops']:>14,}")
    print("pre-cap drop = rx_dropped of the capture interface + softnet backlog drops (lost "
          "before any capture could see them);")
    print("CSV bytes = server bytes in the CSV / in the packets tcpreplay sent; CPU = the "
          "daemon's CPU while packets flowed (100 % = one core); window CPU = its child "
          "processes' (the viewer window's).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--rate", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--offline-only", action="store_true")
    parser.add_argument("--live-only", action="store_true")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    atexit.register(bench._cleanup)
    signal.signal(signal.SIGTERM, bench._on_signal)
    pcap = bench.ensure_trace(args.packets)
    figures: dict = {}
    if not args.live_only:
        figures["offline"] = offline(pcap, args.repeat)
        print_offline(figures["offline"], args.packets)
    if not args.offline_only:
        if os.geteuid() != 0 or not shutil.which("tcpreplay"):
            print("\nLIVE: skipped (needs root and tcpreplay)")
        else:
            meta, clients = gen_trace.load_meta(pcap)
            rounds = []
            for variant, extra in (("no log", []), ("--view", ["--view"]),
                                   ("--packet-log", ["--packet-log"]),
                                   ("--packet-log --view", ["--packet-log", "--view"])):
                if "--view" in extra:
                    if not shutil.which("Xvfb"):
                        print("(--view round skipped: no Xvfb)")
                        continue
                    with private_display() as display:
                        rounds.append(live_round(variant, extra, args.rate, args.seconds,
                                                 pcap, meta, clients, str(display)))
                else:
                    rounds.append(live_round(variant, extra, args.rate, args.seconds, pcap,
                                             meta, clients, None))
            figures["live"] = rounds
            print_live(rounds, args.seconds)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
