"""One direction of imports: the library never imports the pipelines (they and the CLI import it)."""

from __future__ import annotations

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[1] / "src" / "movierec"


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_library_never_imports_the_pipelines():
    modules = sorted(LIBRARY.rglob("*.py"))
    assert len(modules) > 20
    offenders = {str(p.relative_to(LIBRARY)): sorted(m for m in imported_modules(p) if m.split(".")[0] == "pipelines")
                 for p in modules}
    assert not {p: m for p, m in offenders.items() if m}


def test_the_library_has_no_native_code_of_its_own():
    assert not [p.name for p in LIBRARY.rglob("*") if p.suffix in (".c", ".h", ".so", ".pyx")]
