"""The atheris fuzz targets (tests/fuzz_targets.py), run for a bounded number of inputs: a
crash, an exception or a disagreement between the two parsers fails the test. Longer runs:
the commands in the targets' docstring."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, child_env
from tests.pcapng_builder import mixed_file
from tests.requirements import needs_module, tool

TARGETS = REPO / "tests" / "fuzz_targets.py"


def fuzz(target: str, *args: str, folder: Path) -> None:
    needs_module("atheris")
    # In a folder of its own: a failing input is saved there as crash-..., not in the repo.
    result = subprocess.run([sys.executable, str(TARGETS), target, *args],
                            capture_output=True, text=True, timeout=600, env=child_env(),
                            cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done" in result.stderr, result.stderr[-2000:]


def test_the_parsers_agree_on_fuzzed_frames(tmp_path: Path) -> None:
    fuzz("parser", "-runs=30000", "-seed=1", folder=tmp_path)


@pytest.mark.slow
def test_the_readers_survive_fuzzed_capture_files(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    sample = REPO / "samples" / "sample.pcap"
    # The sample's first packets: small seeds fuzz faster.
    subprocess.run([tool("editcap"), "-r", str(sample), str(corpus / "sample.pcap"), "1-12"],
                   check=True, capture_output=True, timeout=60)
    pcapng = mixed_file(seed=3, packets=30)
    (corpus / "mixed.pcapng").write_bytes(pcapng)
    (corpus / "mixed.pcapng.gz").write_bytes(gzip.compress(pcapng))
    fuzz("reader", "-runs=3000", "-seed=1", "-max_len=20000", str(corpus), folder=tmp_path)
