#!/usr/bin/env python3
"""Same as `traffic-capture report`, runnable from a checkout without installing the package.

    python excel/make_report.py --csv traffic.csv --out traffic_report.xlsx
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from traffic_capture.excel.report import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
