#!/usr/bin/env python3
"""Render the dashboard's first sheet to excel/dashboard.png with LibreOffice headless.

Needs `soffice` (Debian: libreoffice-calc) and `pdftoppm` (poppler-utils). LibreOffice draws the
pivots and the chart but not slicers: it shows their placeholder boxes instead.

    python excel/make_screenshot.py [--csv traffic.csv] [--png excel/dashboard.png]
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from traffic_capture.csvformat import COLUMNS, TIME_FORMAT  # noqa: E402
from traffic_capture.excel.dashboard import main as build  # noqa: E402
from traffic_capture.rules import CLASSES  # noqa: E402


def sample_csv(path: Path) -> None:
    """A minute of made-up traffic from four clients, IPv4 and IPv6."""
    rng = random.Random(4)
    clients = {"192.168.10.21": 1.0, "192.168.10.35": 0.5, "10.0.0.7": 0.3, "2001:db8::17": 0.8}
    start = datetime(2026, 3, 2, 14, 0, 0)
    lines = [",".join(COLUMNS)]
    for w in range(12):
        ws = start + timedelta(seconds=5 * w)
        for ip, weight in clients.items():
            for direction, scale in (("in", 1.0), ("out", 0.3)):
                classes = [int(rng.random() * weight * scale * m)
                           for m in (400_000, 80_000 if w % 4 == 0 else 0, 150_000, 60_000, 5_000)]
                row = [ws.strftime(TIME_FORMAT), (ws + timedelta(seconds=5)).strftime(TIME_FORMAT),
                       ip, direction, str(sum(classes)), *map(str, classes)]
                lines.append(",".join(row))
    assert len(CLASSES) == 5
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, help="a traffic.csv (default: a made-up sample)")
    parser.add_argument("--png", type=Path, default=HERE / "dashboard.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        csv = args.csv or tmp / "traffic.csv"
        if args.csv is None:
            sample_csv(csv)
        xlsx = tmp / "traffic_dashboard.xlsx"
        if build(["--csv", str(csv), "--out", str(xlsx)]) != 0:
            return 1
        soffice = shutil.which("soffice") or "soffice"
        subprocess.run([soffice, f"-env:UserInstallation={(tmp / 'profile').as_uri()}",
                        "--headless", "--convert-to", "pdf", "--outdir", str(tmp), str(xlsx)],
                       check=True, capture_output=True, timeout=180)
        # The sheet prints on an A4/Letter landscape page; crop to the part the sample fills.
        dpi = 110
        page_w, page_h = int(11.0 * dpi), int(8.0 * dpi)
        crop = [str(v) for v in (int(page_w * 0.05), int(page_h * 0.07),
                                 int(page_w * 0.87), int(page_h * 0.55))]
        subprocess.run(["pdftoppm", "-f", "1", "-l", "1", "-r", str(dpi), "-x", crop[0],
                        "-y", crop[1], "-W", crop[2], "-H", crop[3], "-png", "-singlefile",
                        str(tmp / "traffic_dashboard.pdf"), str(tmp / "page")], check=True)
        shutil.copyfile(tmp / "page.png", args.png)
    print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
