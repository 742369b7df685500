"""Imports only go down: ui → control → functions, and media → functions (README, "Architecture").

Reads every module's import statements (nothing is imported). A module that reaches up or across a
plane fails here, naming the file and the import. Peer: none (the source tree itself).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
TOP = {"functions", "control", "media", "ui"}
# What each package may import from the project's packages besides itself.
ALLOWED = {
    "functions": set(),
    "control": {"functions"},
    "media": {"functions"},
    "ui": {"functions", "control"},
}


def _project_imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return [(line, name) for line, name in out if name.split(".")[0] in TOP]


def test_the_packages_exist() -> None:
    assert {p for p in TOP if (ROOT / p / "__init__.py").is_file()} == TOP


@pytest.mark.parametrize("package", sorted(TOP))
def test_imports_only_go_down(package: str) -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, name in _project_imports(path)
        if name.split(".")[0] not in ALLOWED[package] | {package}
    ]
    assert wrong == []


def test_the_media_entry_point_stays_in_the_media_plane() -> None:
    """worker.py starts the media plane: it may use media and functions, never the control plane or UI."""
    wrong = [name for _, name in _project_imports(ROOT / "worker.py") if name.split(".")[0] in {"control", "ui"}]
    assert wrong == []


def test_modal_deploy_wraps_only_service_functions() -> None:
    """Modal ships the `functions` package alone: modal_deploy.py may import nothing else of ours."""
    wrong = [name for _, name in _project_imports(ROOT / "modal_deploy.py") if name.split(".")[0] != "functions"]
    assert wrong == []
