"""The registry of outputs: a capture run's command line, its configuration and its sinks come
from this list and nothing else. Adding an output is its own module (an `OUTPUT`, an instance
of sinks.Output; see CONTRIBUTING.md) plus one line here.

Modules are named, not imported, so that `--help` loads each one light module and a run loads
a sink's heavy parts only when that output is asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

from traffic_capture.sinks import Output

REGISTRY: list[str] = [
    "traffic_capture.sinks.csv_file",  # always on: the CSV is the product
    "traffic_capture.web.output",
    "traffic_capture.sinks.history",
    "traffic_capture.sinks.clickhouse",
    "traffic_capture.sinks.packet_log",
    "traffic_capture.sinks.viewer",
]


def registered() -> list[Output[Any]]:
    """Every output, in the registry's order (the order of --help and of the sinks)."""
    outputs = []
    for name in REGISTRY:
        output = importlib.import_module(name).OUTPUT
        if not isinstance(output, Output):
            raise TypeError(f"{name}.OUTPUT is not a traffic_capture.sinks.Output")
        outputs.append(output)
    return outputs
