"""The package's structure: no import cycles, the layers read in one direction, and no model class
repeats another's methods."""

import ast
import inspect
from pathlib import Path

import adafocus

SRC = Path(adafocus.__file__).parent


def _module(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """``module -> modules of adafocus it imports`` (every import statement, in functions too)."""
    modules = {_module(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from X import a`: the module X.a if there is one, else X itself
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name and t.startswith("adafocus") and t != "adafocus":
                    graph[name].add(t)
    return graph


def test_no_import_cycles():
    graph = import_graph()
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(n) :] + [n]))
            if n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_layers_import_downwards():
    """models import no tool, training, acceleration or command line; the core imports no CLI."""
    graph = import_graph()
    for m, deps in graph.items():
        if m.startswith("adafocus.models"):
            bad = [d for d in deps if d.split(".")[1] not in ("models", "errors", "serialization")]
            assert not bad, f"{m} imports {bad}"
        if not m.startswith("adafocus.cli") and m != "adafocus.__main__":
            assert not [d for d in deps if d.startswith("adafocus.cli")], m


def test_no_method_is_copied_between_model_classes():
    from adafocus.models import AdaFocus, AdaFocusBase, AdaFocusTSM

    def bodies(cls: type) -> dict[str, str]:
        return {n: inspect.getsource(f) for n, f in vars(cls).items() if inspect.isfunction(f) and n != "__init__"}

    base, frame, video = bodies(AdaFocusBase), bodies(AdaFocus), bodies(AdaFocusTSM)
    for name, src in frame.items():
        assert video.get(name) != src and base.get(name) != src, name
    for name, src in video.items():
        assert base.get(name) != src, name
