"""Imports go one way: the composition roots on top (`serve_app`, the routes and the Serve
application; `voiceq_cli`, the installed command), then `deployments`, then the adapters to
vendors (`convex_client`, `droplets`), then the core `voiceq`. Read from the source, as the
imports are written."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# package: the packages above it, which it must never import
ROOTS = ("serve_app", "voiceq_cli")
ABOVE = {
    "deployments": ROOTS,
    "convex_client": (*ROOTS, "deployments"),
    "droplets": (*ROOTS, "deployments"),
    "voiceq": (*ROOTS, "deployments", "convex_client", "droplets"),
}


def imported_packages(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_package_imports_one_above_it() -> None:
    upward = [
        f"{path.relative_to(REPO)} imports {above}"
        for package, forbidden in ABOVE.items()
        for path in sorted((REPO / package).rglob("*.py"))
        for above in sorted(imported_packages(path) & set(forbidden))
    ]
    assert upward == []
