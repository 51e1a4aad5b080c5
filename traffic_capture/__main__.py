"""`python -m traffic_capture` runs the same command line as the console script."""

import sys

from traffic_capture.cli import main

sys.exit(main())
