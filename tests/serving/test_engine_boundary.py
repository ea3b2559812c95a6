"""The decision engine stands apart from HTTP, and uvicorn's internals behind one seam."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import clickrouter

PACKAGE = Path(clickrouter.__file__).parent
ENGINE = PACKAGE / "serving" / "engine"
HTTP = PACKAGE / "serving" / "http"


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at any level of the file (absolute names)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            found.add(node.module)
    return found


def test_no_engine_module_imports_the_http_package() -> None:
    modules = sorted(ENGINE.glob("*.py"))
    assert len(modules) >= 6
    offenders = {
        path.name: sorted(
            m for m in imported_modules(path) if m.startswith("clickrouter.serving.http")
        )
        for path in modules
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_engine_loads_without_the_http_package() -> None:
    code = (
        "import sys, clickrouter.serving.engine.service, clickrouter.serving.engine.decision;"
        "print(sorted(m for m in sys.modules"
        " if m.startswith(('clickrouter.serving.http', 'uvicorn'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"


def test_only_the_seam_imports_uvicorns_protocol_classes() -> None:
    importers = {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if any(m.startswith("uvicorn.protocols") for m in imported_modules(path))
    }
    assert importers == {"serving/http/uvicorn_protocols.py"}
