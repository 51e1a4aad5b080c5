#!/usr/bin/env python3
"""Same as `traffic-capture excel`, runnable from a checkout without installing the package.

    python excel/make_dashboard.py --csv traffic.csv --out traffic_dashboard.xlsx [--link]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from traffic_capture.excel.dashboard import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
