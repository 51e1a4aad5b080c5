"""traffic-capture as a script: `python traffic_capture.py` (as Administrator / with sudo).

Edit the two constants below if you prefer that to command-line options; `--server-ip` and
`--window` still win over them. Everything else lives in the traffic_capture package.
"""

import sys

SERVER_IP = ""  # e.g. "192.168.1.10", or several: "192.168.1.10, 2001:db8::10"
WINDOW_SIZE = 5  # seconds per row

if __name__ == "__main__":
    import os

    # Copied away from its package, this file would shadow it under the same name.
    here = os.path.dirname(os.path.abspath(__file__))
    if not os.path.isdir(os.path.join(here, "traffic_capture")):
        sys.path = [p for p in sys.path if os.path.abspath(p or ".") != here]

    try:
        from traffic_capture.cli import main

        code = main(default_server_ip=SERVER_IP, default_window=WINDOW_SIZE, script=True)
    except ModuleNotFoundError as error:  # run by a Python without the project's packages
        if error.name is None or error.name.startswith("traffic_capture"):
            raise
        sys.stderr.write(
            f"traffic-capture: error: {error.name.split('.')[0]} is not installed for "
            f"{sys.executable}: install what it needs with `{sys.executable} -m pip install "
            f"-e .` in this folder, or run it with the venv's Python "
            "(.venv/bin/python traffic_capture.py)\n")
        code = 1
    sys.exit(code)
