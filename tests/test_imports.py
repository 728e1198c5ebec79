"""The shape of the code: no import cycle in pipelines/ (a module's imports inside functions count too), the engines
and the params apart (no engine module reaches pipelines.config; config imports only the engine registry), and no
function longer than about 60 lines anywhere in the project."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LONGEST = 60


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict:
    return {module_name(p): p for p in (ROOT / "pipelines").rglob("*.py")}


def imports(path: Path, modules: dict) -> set:
    """The project modules `path` imports: `from a.b import c` names a.b.c when that is a module, else a.b."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if name in modules else node.module)
    return found & set(modules)


def cycle(graph: dict) -> list:
    """One import cycle of `graph` (module -> imported modules) as a list of modules, or []."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        state[node] = "done"
        stack.pop()
        return []
    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return []


def test_no_import_cycle_in_pipelines():
    modules = project_modules()
    graph = {name: imports(path, modules) - {name} for name, path in modules.items()}
    assert cycle(graph) == []


def reachable(graph: dict, start: str) -> set:
    """Every module `start` imports, directly or through others."""
    found, todo = set(), [start]
    while todo:
        for target in graph.get(todo.pop(), ()):
            if target not in found:
                found.add(target)
                todo.append(target)
    return found


def test_engines_and_params_point_one_way():
    """The engines read a template through its TemplateSpec and the contract, never params.yaml's code; config knows
    the engines by their registry alone (to check run.templates), not by anything inside them."""
    modules = project_modules()
    graph = {name: imports(path, modules) - {name} for name, path in modules.items()}
    engines = [name for name in modules if name.startswith("pipelines.engines.")]
    assert engines and [name for name in engines if "pipelines.config" in reachable(graph, name)] == []
    assert {name for name in graph["pipelines.config"] if name.startswith("pipelines.engines")} == {"pipelines.engines"}


def test_the_cycle_finder_finds_one():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) == []


def test_no_function_is_longer_than_about_60_lines():
    long = []
    for path in sorted(ROOT.rglob("*.py")):
        if {".venv", ".git"} & set(path.parts):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                    node.end_lineno - node.lineno + 1 > LONGEST:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert long == []
