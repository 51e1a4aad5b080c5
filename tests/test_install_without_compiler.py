"""Issue 19: the package installs on a machine without a C compiler (Windows without the Build
Tools) and gives the same results there. setup.py's extensions (one per C file) are optional:
their build fails, pip still succeeds, and the Python twins of the C steps run instead. (Its
dependencies have Windows wheels: .ci/windows-wheels.)

Unlike TRAFFIC_CAPTURE_PURE_PYTHON (tests/test_packet_log.py), this is the real install: pip
builds a copy of the source with a compiler that always fails, and the copy it installs runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.conftest import REPO, SAMPLE, STEPS_IN_USE, child_env
from tests.requirements import needs_module

# What pip needs of the source tree to build the package (pyproject's readme is README.md).
SOURCE = ("setup.py", "pyproject.toml", "README.md", "traffic_capture")
# Every C file of the package is one optional extension of setup.py, named after its path.
EXTENSIONS = sorted(".".join(c.relative_to(REPO).with_suffix("").parts)
                    for c in (REPO / "traffic_capture").rglob("*.c"))
# The sample's server (samples/README.md); samples/traffic.csv is what the daemon writes.
SAMPLE_RUN = ["--read", str(SAMPLE), "--server-ip", "192.0.2.1", "--server-ip", "2001:db8::1",
              "--quiet"]
# Which step runs (conftest.STEPS_IN_USE), and where every module of the package was imported
# from.
SWITCHES = (f"import sys; {STEPS_IN_USE}; "
            "[print(m.__file__) for n, m in sorted(sys.modules.items()) "
            "if n.split('.')[0] == 'traffic_capture']")


def without_compiler() -> dict[str, str]:
    """The environment of the build: every compiler and linker command is `false`, and no pip
    configuration of this machine (pip works offline here: no deps, no build isolation)."""
    false = shutil.which("false") or "/bin/false"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIP_") and k != "TRAFFIC_CAPTURE_PURE_PYTHON"}
    env.update(CC=false, CXX=false, LDSHARED=false, PIP_CONFIG_FILE=os.devnull)
    return env


def install_copy(tmp_path: Path) -> tuple[Path, str]:
    """pip-install a copy of the source (no built .so in it) into a folder of its own."""
    source, site = tmp_path / "source", tmp_path / "site"
    source.mkdir()
    for name in SOURCE:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns(
                "*.so", "*.pyd", "__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-v", "--no-deps", "--no-build-isolation",
         "--no-index", "--no-compile", "--disable-pip-version-check", "--target", str(site),
         str(source)],
        capture_output=True, text=True, env=without_compiler(), cwd=tmp_path, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return site, output


def only_the_copy(site: Path) -> tuple[list[str], dict[str, str]]:
    """Python's options and environment to run the installed copy: its folder and the venv's
    site-packages (the dependencies) on the path, without the venv's site processing (-S),
    whose editable install of the clone would otherwise find the clone's built modules when
    the copy has none; not in the clone, and without TRAFFIC_CAPTURE_PURE_PYTHON."""
    paths = dict.fromkeys([str(site), sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    env = {k: v for k, v in child_env().items() if k != "TRAFFIC_CAPTURE_PURE_PYTHON"}
    env.update(PYTHONPATH=os.pathsep.join(paths), TZ="UTC")
    return ["-S"], env


def run_sample(out: Path, options: list[str], env: dict[str, str], cwd: Path
               ) -> tuple[bytes, bytes]:
    """The sample read with a packet log, as a new user would: the CSV and the log's bytes."""
    out.mkdir()
    csv, log = out / "traffic.csv", out / "packets.jsonl"
    done = subprocess.run([sys.executable, *options, "-m", "traffic_capture", *SAMPLE_RUN,
                           "--out", str(csv), "--packet-log", str(log), "--packet-log-payload"],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return csv.read_bytes(), log.read_bytes()


def test_without_a_compiler_the_install_succeeds_and_reads_the_sample_the_same(
        tmp_path: Path) -> None:
    needs_module("setuptools")  # the venv's own: the build runs without isolation, offline
    assert EXTENSIONS, "no C file found: the test would check nothing"
    site, output = install_copy(tmp_path)
    for extension in EXTENSIONS:  # pip tried each, and went on without it
        assert f'building extension "{extension}" failed' in output, (extension, output[-4000:])
    assert (site / "traffic_capture" / "cli.py").exists()
    built = [p for p in (site / "traffic_capture").rglob("*") if p.suffix in (".so", ".pyd")]
    assert not built, built

    options, env = only_the_copy(site)
    said = subprocess.run([sys.executable, *options, "-c", SWITCHES], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=120, check=True).stdout
    switches, *files = said.splitlines()
    assert switches.split() == ["False", "True", "True", "True", "True"], said  # the Python twins
    assert files and all(Path(f).is_relative_to(site) for f in files), said

    copied = run_sample(tmp_path / "copy", options, env, tmp_path)
    normal = run_sample(tmp_path / "clone", [], child_env(TZ="UTC"), tmp_path)
    assert copied[0] == (REPO / "samples" / "traffic.csv").read_bytes()
    assert copied == normal
    assert copied[1].count(b"\n") > 100
