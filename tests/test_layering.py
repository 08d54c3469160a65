"""The packages depend one way only: every import (module level or inside a function) of every
medseg module points down this order, never back up.

    base        errors, config, progress, volume (the central type), resample, planes, masks,
                geometry (planes in patient space), cc_line (the CC's lines on its plane),
                localhost (child services' ports and stopping)
    io          io (DICOM/NIfTI -> Volume at the edge), examples, synth
    infer       model contract, onnxruntime sessions, the network grid and plane normalisation
    preprocess  N4, head mask, mid-sagittal symmetry, skull stripping
    segment     CC segmentation, training, export
    positioning angles, plan, morphometry, QC, the positioning pipeline; ``medseg.pipeline``
                (the stage lists over a Case, which name stages of every package above)
    apps        batch, dicomout, report, listen, pacs, demo
    cli

spine sits beside preprocess/segment/positioning: it may import base and io, and only apps and
the CLI import it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

ORDER = {
    "base": 0, "io": 1, "infer": 2, "preprocess": 3, "segment": 4, "positioning": 5, "apps": 6, "cli": 7,
}
GROUP = {
    "medseg": "base", "errors": "base", "config": "base", "progress": "base", "volume": "base",
    "resample": "base", "planes": "base", "masks": "base", "geometry": "base", "cc_line": "base",
    "localhost": "base", "io": "io", "examples": "io", "synth": "io",
    "infer": "infer", "preprocess": "preprocess", "segment": "segment", "positioning": "positioning",
    "pipeline": "positioning",
    "batch": "apps", "dicomout": "apps", "report": "apps", "listen": "apps", "pacs": "apps", "demo": "apps",
    "cli": "cli",
}
SPINE_MAY_IMPORT = {"base", "io"}


def _group(module: str) -> str:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "medseg"
    if top == "spine":
        return "spine"
    if top not in GROUP:
        raise AssertionError(f"{module}: no layer for medseg.{top}: add it to tests/test_layering.py")
    return GROUP[top]


def _allowed(source: str, target: str) -> bool:
    if source == target:
        return True
    if source == "spine":
        return target in SPINE_MAY_IMPORT
    if target == "spine":
        return ORDER[source] >= ORDER["apps"]
    return ORDER[target] < ORDER[source]


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported medseg module) of every import in ``path``, at any depth."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
    return [(line, name) for line, name in found if name == "medseg" or name.startswith("medseg.")]


def back_arrows() -> list[str]:
    wrong = []
    for path in sorted((REPO / "medseg").rglob("*.py")):
        source = _group(module_name(path))
        for line, target in imports(path):
            if not _allowed(source, _group(target)):
                wrong.append(f"{path.relative_to(REPO)}:{line}: {source} imports {target} ({_group(target)})")
    return wrong


def test_no_package_imports_a_later_stage():
    assert back_arrows() == []


def test_the_check_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
    """A back-arrow hidden in a function, or written relatively, is found."""
    fake = tmp_path / "medseg"
    (fake / "preprocess").mkdir(parents=True)
    (fake / "segment").mkdir()
    (fake / "preprocess" / "strip.py").write_text(
        "import numpy\n\ndef f():\n    from medseg.segment.infer import CCSegmenter\n    return CCSegmenter\n")
    (fake / "segment" / "x.py").write_text("from ..positioning import angles\nfrom ..infer import grid\n")
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    assert back_arrows() == [
        "medseg/preprocess/strip.py:4: preprocess imports medseg.segment.infer (segment)",
        "medseg/segment/x.py:1: segment imports medseg.positioning (positioning)",
    ]


@pytest.mark.parametrize("source,target,allowed", [
    ("segment", "preprocess", True), ("preprocess", "segment", False), ("io", "volume", True),
    ("spine", "io", True), ("spine", "segment", False), ("positioning", "spine", False), ("batch", "spine", True),
    ("infer", "preprocess", False), ("cli", "batch", True), ("batch", "cli", False),
])
def test_the_order(source, target, allowed):
    assert _allowed(_group(f"medseg.{source}"), _group(f"medseg.{target}")) is allowed
