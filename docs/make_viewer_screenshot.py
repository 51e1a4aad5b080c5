"""Regenerate docs/viewer.png: the viewer following the packet log of samples/sample.pcap, on a
private Xvfb display (Debian: xvfb, xdotool, imagemagick).

    python docs/make_viewer_screenshot.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "docs" / "viewer.png"


def main() -> int:
    env = dict(os.environ, TZ="UTC", PYTHONPATH=str(REPO))
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "sample.jsonl"
        subprocess.run([sys.executable, "-m", "traffic_capture", "--read",
                        str(REPO / "samples" / "sample.pcap"), "--server-ip", "192.0.2.1",
                        "--server-ip", "2001:db8::1", "--out", str(Path(folder) / "t.csv"),
                        "--packet-log", str(log), "--quiet"], check=True, env=env)
        read, write = os.pipe()
        xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0",
                                 "1100x650x24", "-nolisten", "tcp"], pass_fds=(write,))
        os.close(write)
        with os.fdopen(read) as number:
            env["DISPLAY"] = ":" + number.readline().strip()
        viewer = subprocess.Popen([sys.executable, "-m", "traffic_capture", "view", "--log",
                                   str(log)], env=env)
        try:
            window = ""
            for _ in range(100):
                window = subprocess.run(["xdotool", "search", "--name", "^traffic-capture view"],
                                        capture_output=True, text=True, env=env).stdout.split()
                if window:
                    break
                time.sleep(0.1)
            time.sleep(1.5)  # the log read and drawn
            subprocess.run(["import", "-window", window[0], "-colors", "64", "-strip",
                            str(OUT)], check=True, env=env)
        finally:
            viewer.terminate()
            xvfb.terminate()
    print(f"{OUT}: {OUT.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
