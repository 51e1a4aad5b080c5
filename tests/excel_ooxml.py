"""Checks on an .xlsx as a zip package, openxml-audit's verdict, and a LibreOffice headless
converter for the tests."""

from __future__ import annotations

import contextlib
import posixpath
import shutil
import subprocess
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from tests.requirements import tool

CT_NS = "{http://schemas.openxmlformats.org/package/2006/content-types}"
RELS_NS = "{http://schemas.openxmlformats.org/package/2006/relationships}"


def read_parts(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def package_problems(path: Path) -> list[str]:
    """Everything that would make Excel 'repair' the file at the package level."""
    parts = read_parts(path)
    problems = []
    for name, data in parts.items():
        if name.endswith((".xml", ".rels")):
            try:
                ET.fromstring(data)
            except ET.ParseError as exc:
                problems.append(f"{name}: not well-formed: {exc}")
    types = ET.fromstring(parts["[Content_Types].xml"])
    defaults = {d.get("Extension").lower() for d in types.iter(CT_NS + "Default")}
    overrides = {o.get("PartName").lstrip("/") for o in types.iter(CT_NS + "Override")}
    for name in parts:
        if name == "[Content_Types].xml" or name.endswith("/"):
            continue
        if name not in overrides and name.rsplit(".", 1)[-1].lower() not in defaults:
            problems.append(f"{name}: no content type")
    for name in overrides - set(parts):
        problems.append(f"content type for missing part {name}")
    for name, data in parts.items():
        if not name.endswith(".rels"):
            continue
        folder = posixpath.dirname(posixpath.dirname(name))
        if name != "_rels/.rels":
            source = posixpath.join(folder, posixpath.basename(name)[: -len(".rels")])
            if source not in parts:
                problems.append(f"{name}: relationships of missing part {source}")
        ids = set()
        for rel in ET.fromstring(data).iter(RELS_NS + "Relationship"):
            rid = rel.get("Id")
            if rid in ids:
                problems.append(f"{name}: duplicate Id {rid}")
            ids.add(rid)
            if rel.get("TargetMode") == "External":
                continue
            target = rel.get("Target")
            resolved = target.lstrip("/") if target.startswith("/") else \
                posixpath.normpath(posixpath.join(folder, target))
            if resolved not in parts:
                problems.append(f"{name}: {rid} -> missing {resolved}")
    return problems


def audit_problems(path: Path) -> list[str]:
    """What openxml-audit (the Open XML SDK's validation rules: schemas of Office 2007 to
    Microsoft 365 with their extensions, semantic and package rules) finds wrong, errors and
    warnings alike, under its strict policy."""
    from openxml_audit import FileFormat, OpenXmlValidator

    validator = OpenXmlValidator(file_format=FileFormat.MICROSOFT_365, max_errors=0, strict=True)
    with positions_counted_once():
        result = validator.validate(str(path))
    found = [f"{e.severity.value}: {e.part_uri or ''} {e.path or ''}: {e.description}"
             for e in result.errors]
    if not result.is_valid and not found:
        found.append("invalid, with no finding listed")
    return found


class SiblingPositions:
    """An element's 1-based position among its parent's children of its tag, as openxml-audit
    names it in a finding's path, counted once per parent and tag.

    openxml-audit 0.8 (`context._sibling_position`) counts them anew for each element, which
    is quadratic in a sheet's rows: most of the audit of a day's workbook (17,280 rows in the
    Data sheet and in the pivot cache). The cache holds each parent and child it has seen, so
    lxml hands back the same proxy objects, and identity keys stay true."""

    def __init__(self) -> None:
        self._by_parent: dict[tuple[Any, Any], dict[Any, int]] = {}

    def __call__(self, element: Any) -> int:
        parent = element.getparent()
        if parent is None:
            return 1
        key = (parent, element.tag)
        positions = self._by_parent.get(key)
        if positions is None:
            positions = self._by_parent[key] = {
                child: number for number, child in enumerate(parent.iterchildren(element.tag), 1)}
        return positions[element]


@contextlib.contextmanager
def positions_counted_once() -> Iterator[None]:
    """openxml-audit with SiblingPositions in place of its own count, for one validation."""
    from openxml_audit import context

    original = getattr(context, "_sibling_position", None)
    if original is None:  # a later version that no longer counts this way
        yield
        return
    context._sibling_position = SiblingPositions()  # type: ignore[attr-defined]
    try:
        yield
    finally:
        context._sibling_position = original  # type: ignore[attr-defined]


def rels(parts: dict[str, bytes], part: str) -> dict[str, tuple[str, str]]:
    """r:id -> (type, absolute target) of `part`'s relationships."""
    folder, base = posixpath.split(part)
    name = posixpath.join(folder, "_rels", base + ".rels")
    if name not in parts:
        return {}
    out = {}
    for rel in ET.fromstring(parts[name]).iter(RELS_NS + "Relationship"):
        target = rel.get("Target")
        resolved = target.lstrip("/") if target.startswith("/") else \
            posixpath.normpath(posixpath.join(folder, target))
        out[rel.get("Id")] = (rel.get("Type").rsplit("/", 1)[-1], resolved)
    return out


def soffice() -> str:
    """The LibreOffice binary (tests/requirements.py says what happens when it is missing)."""
    return tool("soffice")


def convert(src: Path, fmt: str, outdir: Path) -> Path:
    """Convert with LibreOffice headless in a private profile, so parallel runs don't collide."""
    return convert_all([src], fmt, outdir)[0]


def convert_all(sources: list[Path], fmt: str, outdir: Path) -> list[Path]:
    """Convert several files in one LibreOffice start (each start costs seconds)."""
    binary = soffice()
    profile = outdir / f"lo-profile-{uuid.uuid4().hex}"
    outdir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [binary, f"-env:UserInstallation={profile.as_uri()}", "--headless", "--norestore",
         "--convert-to", fmt, "--outdir", str(outdir), *map(str, sources)],
        capture_output=True, text=True, timeout=300,
    )
    shutil.rmtree(profile, ignore_errors=True)
    outs = [outdir / (src.stem + "." + fmt.split(":")[0]) for src in sources]
    for src, out in zip(sources, outs, strict=True):
        assert out.exists(), f"LibreOffice did not convert {src}: {result.stdout} {result.stderr}"
    return outs
