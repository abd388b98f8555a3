"""Package boundaries (docs/INTERNALS.md): parse every import and fail on a forbidden edge."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> top-level modules (or dotted prefixes) it must not import
FORBIDDEN = {
    "sim": ("prefect", "prefect_dask", "dask", "distributed", "zarr", "torch", "storage", "models", "flows"),
    "storage": ("prefect", "prefect_dask", "dask", "distributed", "torch", "sim", "models", "flows"),
    "models": ("prefect", "prefect_dask", "dask", "distributed", "flows", "sim.solver", "sim.simulation",
               "sim.source", "sim.kwave_import", "kwave"),
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _violates(name: str, banned: str) -> bool:
    return name == banned or name.startswith(banned + ".")


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_boundaries(package):
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for lineno, name in _imports(path):
            for banned in FORBIDDEN[package]:
                if _violates(name, banned):
                    bad.append(f"{path.relative_to(ROOT)}:{lineno} imports {name}")
    assert not bad, "forbidden imports:\n" + "\n".join(sorted(set(bad)))


def _module_level_imports(path: Path) -> list[tuple[int, str]]:
    """Imports executed when the module is imported (not those inside functions)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found, stack = [], list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                stack += getattr(node, field, [])
        elif isinstance(node, ast.ExceptHandler):
            stack += node.body
    return found


def test_kwave_is_imported_at_module_level_only_by_kwave_import():
    """Only sim.kwave_import may import k-wave-python when a module loads; others call kwave_modules()."""
    bad = []
    for package in ("sim", "storage", "models", "flows"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "sim" / "kwave_import.py":
                continue
            for lineno, name in _module_level_imports(path):
                if _violates(name, "kwave"):
                    bad.append(f"{path.relative_to(ROOT)}:{lineno} imports {name}")
    assert not bad, "import k-wave-python only through sim.kwave_import:\n" + "\n".join(bad)


OFFLINE_SCRIPT = """
import socket, urllib.request
def refuse(*a, **k):
    raise OSError("network disabled in this test")
socket.socket.connect = refuse
socket.create_connection = refuse
urllib.request.urlopen = refuse
import sim, storage, models, flows
from sim.kwave_import import kwave_modules
m = kwave_modules()
assert m.solver.Simulation is not None
print("offline-ok")
"""


def test_project_imports_offline(tmp_path):
    """Importing the project and k-wave-python never touches the network."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "offline-ok" in out.stdout
