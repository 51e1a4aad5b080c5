"""The shipped sample: samples/traffic.csv is exactly what the daemon makes of sample.pcap.

Why: the sample is what a new user runs first and what the docs show; if the daemon's output
changes, the sample must be regenerated (samples/regenerate.py) in the same change.
"""

from __future__ import annotations

from pathlib import Path

from tests import tshark_oracle as oracle
from tests.realtools_traffic import REPO, SERVERS, run_daemon
from tests.requirements import needs_tools

SAMPLES = REPO / "samples"
PCAP = SAMPLES / "sample.pcap"
CSV = SAMPLES / "traffic.csv"


def test_daemon_reproduces_sample_csv_exactly(tmp_path: Path) -> None:
    out = tmp_path / "traffic.csv"
    res = run_daemon([PCAP], out, tz="UTC")
    assert res.returncode == 0, f"daemon exited {res.returncode}: {res.stderr}"
    assert out.read_bytes() == CSV.read_bytes(), (
        "samples/traffic.csv is stale: run `sudo python3 samples/regenerate.py`\n"
        f"got:\n{out.read_text()}"
    )


def test_sample_csv_matches_tshark() -> None:
    needs_tools("tshark")
    expected = oracle.expected_rows(PCAP, SERVERS, window=5, tz="UTC")
    differences = oracle.diff(expected, oracle.read_csv(CSV))
    assert not differences, differences


def test_sample_holds_what_the_readme_says() -> None:
    """Under 1 MB, the three clients, every class but plain tcp, and two windows."""
    assert PCAP.stat().st_size < 1_000_000
    rows = oracle.read_csv(CSV)
    assert set(rows.client_ip) == {"192.0.2.2", "192.0.2.3", "2001:db8::2"}
    assert rows.window_start.nunique() == 2
    sums = rows[oracle.BYTE_COLUMNS].sum()
    for col in ("http_bytes", "ftp_bytes", "udp_bytes", "other_bytes"):
        assert sums[col] > 0, col
    assert sums["tcp_bytes"] == 0
    # Both passive FTP downloads of the 100,000-byte file go out as ftp bytes.
    out = rows[rows.direction == "out"].groupby("client_ip")["ftp_bytes"].sum()
    assert out["192.0.2.2"] >= 100_000 and out["192.0.2.3"] >= 100_000
