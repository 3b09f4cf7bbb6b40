"""Layering: the compute core never imports the command line, the widgets or a GUI toolkit."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "napari_organelle"
#: sub-packages that sit on top of the core
FRONT_ENDS = ("cli", "_widgets")
#: GUI libraries the core must run without (headless cluster workers)
GUI_PACKAGES = frozenset({"napari", "qtpy", "magicgui", "PyQt5", "PyQt6", "PySide2", "PySide6"})


def core_modules(root: Path = PACKAGE) -> list[Path]:
    return sorted(path for path in root.rglob("*.py")
                  if path.relative_to(root).parts[0] not in FRONT_ENDS)


def imported_modules(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in the file, relative ones resolved."""
    module = ".".join(("napari_organelle", *path.relative_to(root).with_suffix("").parts))
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    package = package.removesuffix(".__init__")
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            # ``from . import cli`` / ``from napari_organelle import _widgets``
            found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]
    return found


def test_the_checker_resolves_relative_imports():
    # the helper itself must see the imports this test is about
    lines = imported_modules(PACKAGE / "cli" / "evaluate.py")
    assert any(name == "napari_organelle.evaluation" for _, name in lines)
    assert any(name == "napari_organelle.errors" for _, name in lines)
    lines = imported_modules(PACKAGE / "training" / "report.py")
    assert any(name == "napari_organelle.evaluation" for _, name in lines)
    assert any(name == "napari_organelle.models.io" for _, name in lines)


def forbidden_imports(path: Path, root: Path = PACKAGE) -> list[str]:
    offending = []
    for line, name in imported_modules(path, root):
        parts = name.split(".")
        if parts[0] == "napari_organelle" and len(parts) > 1 and parts[1] in FRONT_ENDS:
            offending.append(f"line {line}: {name}")
        if parts[0] in GUI_PACKAGES:
            offending.append(f"line {line}: {name}")
    return offending


def test_the_checker_catches_every_spelling(tmp_path):
    root = tmp_path / "napari_organelle"
    (root / "training").mkdir(parents=True)
    (root / "training" / "report.py").write_text(
        "from ..cli.evaluate import evaluate_dataset\n"
        "def later():\n"
        "    from .. import _widgets\n"
        "    import qtpy.QtWidgets\n"
        "    from napari.layers import Labels\n"
        "    import napari_organelle.cli\n"
        "    from ..metrics import MetricAccumulator\n")
    found = forbidden_imports(root / "training" / "report.py", root)
    assert found == ["line 1: napari_organelle.cli.evaluate",
                     "line 1: napari_organelle.cli.evaluate.evaluate_dataset",
                     "line 3: napari_organelle._widgets", "line 4: qtpy.QtWidgets",
                     "line 5: napari.layers", "line 5: napari.layers.Labels",
                     "line 6: napari_organelle.cli"]


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_modules_do_not_import_front_ends_or_gui(path):
    offending = forbidden_imports(path)
    assert not offending, f"{path.relative_to(PACKAGE)} imports " + ", ".join(offending)


def test_there_are_core_modules_to_check():
    names = {str(path.relative_to(PACKAGE)) for path in core_modules()}
    assert {"evaluation.py", "metrics.py", "training/report.py", "training/datasets.py"} <= names
    assert not any(name.startswith(("cli/", "_widgets/")) for name in names)
