"""The package's import graph: no cycle among the imports that run when a module loads, and no
module-level import that runs up a floor (the floors: docs/architecture.md, "Floors").

Imports inside functions are left out of both checks on purpose: they are how a module reaches a
heavy library, or a higher floor, only when it is called (`tailor --help` stays fast), and they
cannot deadlock a load. What no module may do, at load time or not, is use another package's
`_`-private names.
"""

import ast
from pathlib import Path

import tailorlm

SRC = Path(tailorlm.__file__).parent


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def load_time_imports(path: Path, modules: set[str]) -> set[str]:
    """The tailorlm modules `path` imports at module level (in `if`/`try` blocks too)."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for top in ast.parse(path.read_text()).body:
        for node in ast.walk(top) if isinstance(top, (ast.If, ast.Try)) else [top]:
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
                found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in SRC.rglob("*.py")}
    return {name: load_time_imports(path, set(paths)) for name, path in paths.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_walker_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_at_load_time():
    graph = import_graph()
    # The walker sees the package: `from package import module` and `from module import name` both resolve.
    assert len(graph) > 100 and "tailorlm.rungs.base" in graph["tailorlm.rungs.rag"]
    assert "tailorlm.store" in graph["tailorlm.ladder.run"]
    assert "tailorlm.errors" in graph["tailorlm.config"]
    assert cycles(graph) == []


# Lowest first. A package (or top-level module) may import, when it loads, only from its own floor or
# below. Within a floor the packages do not import each other at load time either (the cycle check).
FLOORS = [
    {"tailorlm", "errors", "paths", "plugins", "progress", "callables"},  # import nothing of Tailor's at load time
    {"config"},  # tailor.yaml's schema
    {"store"},  # the database
    {"project", "registry"},  # a project's folder and config; the typed artifacts over the store
    {"models"},  # generators, embedders, backends
    {"chat"},  # the system prompt and the generator a command uses
    {"data"},  # records, steps, dataset versions
    {"generate", "eval"},  # batch generation; metrics, suites, the eval runner (over any object with the Rung interface)
    {"rag"},  # chunking, the index, retrieval eval
    {"rungs"},  # the Rung interface and every rung kind
    {"train"},  # fine-tuning runs and model versions
    {"ladder", "synthesize"},  # what orchestrates rungs, training and eval
    {"loop"},  # the feedback loop: curate, retrain, gate
    {"review", "advise"},  # human review; the advisor
    {"serve", "ui"},  # the server and the workbench
    {"api", "quickstart"},  # the public library functions
    {"cli", "__main__"},  # the command line
]

# Imports inside functions may reach up a floor (that is what they are for), but each such reach between
# packages is a seam to know about: these are the ones there are, and why. A new one fails the test below;
# when one goes away, take it out here and in docs/architecture.md.
REACHES_UP = {
    ("eval", "review"): "eval.judge corrects a judge's score with people's ratings of the same answers (PPI)",
    ("loop", "review"): "loop.curate adds the pairs people preferred in blind review to the feedback data",
    ("loop", "serve"): "loop.run reads the live A/B verdict and the traces the server wrote",
    ("review", "serve"): "review.queue stores a correction or accept as feedback on a served trace",
}


def floor_of(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "tailorlm"
    for i, floor in enumerate(FLOORS):
        if top in floor:
            return i
    raise AssertionError(f"{module}: its package {top!r} is on no floor; add it to FLOORS in tests/test_imports.py "
                         "and to docs/architecture.md")


def upward(graph: dict[str, set[str]]) -> list[str]:
    """'a -> b' for each load-time import from a lower floor to a higher one."""
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets if floor_of(b) > floor_of(a))


def private_imports() -> list[str]:
    """'module: pkg.mod._name' for each import of another package's `_`-name (anywhere in the module)."""
    found = []
    for path in SRC.rglob("*.py"):
        name = module_name(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tailorlm."):
                other = node.module.split(".")[1] != name.split(".")[1]
                found += [f"{name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_") and other]
    return sorted(found)


def test_the_floor_check_catches_an_upward_import():
    assert upward({"tailorlm.models.pool": {"tailorlm.train.registry"}, "tailorlm.train.registry": set()}) == [
        "tailorlm.models.pool -> tailorlm.train.registry"]
    assert upward({"tailorlm.ladder.run": {"tailorlm.rungs.build"}, "tailorlm.rungs.build": set()}) == []


def test_every_package_has_a_floor():
    for module in import_graph():
        floor_of(module)


def test_no_module_level_import_runs_up_a_floor():
    assert upward(import_graph()) == []


def reaches_up() -> dict[tuple[str, str], list[str]]:
    """(package, higher package) -> 'module:line -> module' for every import, at any depth, that goes up a floor."""
    modules, found = {module_name(p) for p in SRC.rglob("*.py")}, {}
    for path in SRC.rglob("*.py"):
        name = module_name(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tailorlm"):
                targets = {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                           for a in node.names}
            elif isinstance(node, ast.Import):
                targets = {a.name for a in node.names}
            else:
                continue
            for target in sorted(t for t in targets if t in modules and floor_of(t) > floor_of(name)):
                key = (name.split(".")[1] if "." in name else name, target.split(".")[1])
                found.setdefault(key, []).append(f"{name}:{node.lineno} -> {target}")
    return found


def test_imports_inside_functions_reach_up_only_where_listed():
    new = {k: v for k, v in reaches_up().items() if k not in REACHES_UP}
    assert new == {}, "a new import reaches up a floor: call down instead, or list it in REACHES_UP with why"


def test_no_package_uses_another_package_private_names():
    assert private_imports() == []
