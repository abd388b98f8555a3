"""Package boundaries (docs/INTERNALS.md): parse every import and fail on a forbidden edge."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PACKAGES = ("sim", "storage", "models", "flows")  # folders at the root, imported as tfus.<name>

# package -> modules (or dotted prefixes) it must not import
FORBIDDEN = {
    "sim": ("prefect", "prefect_dask", "dask", "distributed", "zarr", "torch", "tfus.storage", "tfus.models",
            "tfus.flows"),
    "storage": ("prefect", "prefect_dask", "dask", "distributed", "torch", "tfus.sim", "tfus.models",
                "tfus.flows"),
    "models": ("prefect", "prefect_dask", "dask", "distributed", "tfus.flows", "tfus.sim.solver",
               "tfus.sim.simulation", "tfus.sim.source", "tfus.sim.kwave_import", "tfus.sim.engine", "kwave"),
}
# Nothing anywhere imports the old top-level names: they are not installed (no compatibility aliases).
TOP_LEVEL_GONE = PACKAGES


def _python_files():
    for folder in (*PACKAGES, "tfus", "tests", "benchmarks", "deploy"):
        yield from sorted((ROOT / folder).rglob("*.py"))


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


def test_nothing_imports_the_old_top_level_names():
    """``sim``, ``storage``, ``models``, ``flows`` exist only as ``tfus.<name>``."""
    bad = [f"{path.relative_to(ROOT)}:{lineno} imports {name}" for path in _python_files()
           for lineno, name in _imports(path) if any(_violates(name, old) for old in TOP_LEVEL_GONE)]
    assert not bad, "import these as tfus.<package>:\n" + "\n".join(bad)


def test_kwave_is_imported_at_module_level_only_by_kwave_import():
    """Only sim.kwave_import may import k-wave-python when a module loads; others call kwave_modules()."""
    bad = []
    for package in PACKAGES:
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
import tfus, tfus.sim, tfus.storage, tfus.models, tfus.flows, tfus.flows.cli
from tfus.sim.kwave_import import kwave_modules
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


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return "tfus." + ".".join(parts) if parts[0] in PACKAGES else ".".join(parts)


def _import_graph(package: str) -> dict[str, set[str]]:
    """Edges module -> tfus module it imports (lazy imports included), inside one package."""
    files = {_module_name(p): p for p in (ROOT / package).rglob("*.py")}
    graph = {}
    for name, path in files.items():
        targets = set()
        for _, imported in _imports(path):
            # ``from tfus.storage import table`` yields tfus.storage.table; keep the longest known module
            while imported and imported not in files:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and not files[imported].name == "__init__.py":
                targets.add(imported)
        graph[name] = targets
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycles_inside_a_package(package):
    """Arrows between a package's modules run one way (lazy imports count: they hide a cycle, not fix it)."""
    cycle = _cycle(_import_graph(package))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
