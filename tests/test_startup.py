"""What the command line does before any run, for every command."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

# numpy imported after the command line has started, and the threads the process then has.
THREADS_AFTER_NUMPY = (
    "import os, contextlib, io; from traffic_capture.cli import main\n"
    "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
    "    main(['--help'])\n"
    "import numpy\n"
    "print(os.environ['OPENBLAS_NUM_THREADS'], len(os.listdir('/proc/self/task')))")


@pytest.mark.parametrize("asked", [None, "2"])
def test_the_command_starts_no_blas_threads_unless_asked(asked: str | None) -> None:
    """numpy's OpenBLAS starts a spinning thread per core at import (0.1 s of CPU taken from a
    file's read); the command line turns them off, unless the user set the number."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if asked:
        env["OPENBLAS_NUM_THREADS"] = asked
    result = subprocess.run([sys.executable, "-c", THREADS_AFTER_NUMPY], capture_output=True,
                            text=True, timeout=60, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr
    setting, threads = result.stdout.split()
    assert setting == (asked or "1")
    if not asked:  # (how many a user's number gives is OpenBLAS's business: it caps it)
        assert int(threads) == 1
