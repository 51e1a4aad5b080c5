"""traffic-capture: per-client traffic of a server in tumbling windows, as a CSV for Excel."""

from traffic_capture.version import __version__

__all__ = ["__version__"]
