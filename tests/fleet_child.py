"""`serve --clickhouse chdb://FOLDER/DATABASE` and a sender's inserts into the same store, in
one process: chDB's engine is the process's own, and no other process can open its folder
while serve reads it. `python tests/fleet_child.py URL [serve options]`; each line on stdin is
a JSON list of rows ([server, window start, client, direction, [five classes' bytes]]),
inserted into the raw table as a sender inserts them, then `inserted N` on stderr.
"""

from __future__ import annotations

import json
import sys
import threading

from tests.fleet_store import insert
from traffic_capture.fleet.connect import open_client, parse_url


def insert_lines(fleet_url: str) -> None:
    target = parse_url(fleet_url)
    client = None
    for line in sys.stdin:
        rows = [(server, start, client_ip, direction, counts)
                for server, start, client_ip, direction, counts in json.loads(line)]
        client = client or open_client(target)  # the serve command has the engine open
        insert(client, target.database, rows)
        print(f"inserted {len(rows)}", file=sys.stderr, flush=True)


def main() -> int:
    from traffic_capture.web.command import main as serve

    fleet_url = sys.argv[1]
    threading.Thread(target=insert_lines, args=(fleet_url,), daemon=True).start()
    return serve(["--clickhouse", fleet_url, *sys.argv[2:]])


if __name__ == "__main__":
    sys.exit(main())
