"""The layout shows the architecture: imports only run down the layers, and nothing imports in a circle.

    core -> kinds -> channels -> services -> adapters -> edge -> functions
                                                                 local (the stand-in, ops tools, bench)

Every import counts, at module level or inside a function (a function-level import is still an
arrow). ``redflag`` never imports ``redflag_local``.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).parents[2]
LAYERS = ("core", "kinds", "channels", "services", "adapters", "edge")


def module_name(path: Path) -> str:
    for base in (ROOT / "layers/redflag", ROOT / "local", ROOT):
        if base in path.parents:
            parts = path.relative_to(base).with_suffix("").parts
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    raise AssertionError(path)


def sources() -> dict[str, Path]:
    files = [*(ROOT / "layers/redflag/redflag").rglob("*.py"), *(ROOT / "local/redflag_local").rglob("*.py")]
    files += (ROOT / "functions").glob("*/app.py")
    return {module_name(p): p for p in files}


def imports(path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports (a ``from package import module`` names the module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known}
    return {name for name in found if name in known}


def graph() -> dict[str, set[str]]:
    modules = sources()
    known = set(modules)
    return {name: imports(path, known) - {name} for name, path in modules.items()}


def layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "redflag" or len(parts) < 2:
        return None
    return LAYERS.index(parts[1]) if parts[1] in LAYERS else None


def test_imports_only_run_down_the_layers():
    up = []
    for source, targets in graph().items():
        if layer(source) is None:
            continue
        for target in targets:
            if target.startswith("redflag_local"):
                up.append(f"{source} -> {target} (the product importing the local tools)")
            elif (t := layer(target)) is not None and t > layer(source):
                up.append(f"{source} ({LAYERS[layer(source)]}) -> {target} ({LAYERS[t]})")
    assert up == []


def test_no_import_circles_anywhere():
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert circles == []


def test_the_layers_are_the_folders():
    package = ROOT / "layers/redflag/redflag"
    loose = sorted(p.name for p in package.glob("*.py") if p.name != "__init__.py")
    assert loose == [], "every module of the layer lives in the folder of its role"
    assert sorted(p.name for p in package.iterdir() if p.is_dir() and p.name != "__pycache__") == sorted(LAYERS)
