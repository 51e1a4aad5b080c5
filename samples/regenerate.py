#!/usr/bin/env python3
"""Re-record samples/sample.pcap in a private namespace lab and re-derive samples/traffic.csv.

Usage (needs root, tcpdump, tshark, curl, dig, ping, dnsmasq and pyftpdlib; see README.md):

    sudo python3 samples/regenerate.py

Why a script: the sample must be real traffic from real tools, and anyone must be able to make
it again the same way. traffic.csv is written with TZ=UTC so it doesn't depend on where it runs.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent
sys.path.insert(0, str(SAMPLES.parent))

from tests import netns  # noqa: E402
from tests.realtools_traffic import missing_traffic_tools, record, run_daemon  # noqa: E402

FTP_FILE_SIZE = 100_000  # keeps the sample well under 1 MB


def main() -> int:
    problem = netns.unavailable_reason()
    missing = missing_traffic_tools()
    if problem or missing:
        print(f"cannot record: {problem or 'missing ' + ', '.join(missing)}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        rec = record(Path(tmp), ["eth.pcap"], FTP_FILE_SIZE, full=False)
        shutil.copyfile(rec.files["eth.pcap"], SAMPLES / "sample.pcap")
    csv = SAMPLES / "traffic.csv"
    csv.unlink(missing_ok=True)  # the daemon appends
    res = run_daemon([SAMPLES / "sample.pcap"], csv, tz="UTC")
    if res.returncode != 0:
        print(f"traffic_capture exited {res.returncode}: {res.stderr}", file=sys.stderr)
        return 1
    size = (SAMPLES / "sample.pcap").stat().st_size
    print(f"wrote {SAMPLES / 'sample.pcap'} ({size} bytes) and {csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
