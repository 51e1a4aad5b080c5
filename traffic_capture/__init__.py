"""traffic-capture: per-client traffic of a server in tumbling windows, as a CSV for Excel."""

__version__ = "0.1.0"
