"""The typed artifact layer is the one way to the registry's tables: outside `registry/` and `store/`, no
module moves or reads an alias on the store (`.set_alias(`, `.get_alias(`), selects from `aliases`,
`alias_history`, `reports`, `dataset_versions` or `model_versions`, or names them after FROM in raw SQL.
It reads the source (ast), so a new bypass fails here before it can make two readers disagree.
"""

import ast
import re
from pathlib import Path

import tailorlm

SRC = Path(tailorlm.__file__).parent
TABLES = {"aliases", "alias_history", "reports", "dataset_versions", "model_versions"}
RAW_SQL = re.compile(r"\b(?:FROM|JOIN)\s+(" + "|".join(sorted(TABLES)) + r")\b", re.IGNORECASE)
LAYER = {"registry", "store"}

# What still goes round the layer, and why. Empty: every module reads and moves through the registry.
ALLOWED: dict[str, str] = {}


def bypasses(tree: ast.AST, module: str) -> set[str]:
    """'module: what' for each way `tree` reaches the registry's tables without the registry."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            attr = node.func.attr
            if attr in ("set_alias", "get_alias"):
                found.add(f"{module}: {attr}")
            elif attr == "select" and node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value in TABLES:
                found.add(f"{module}: select {node.args[0].value}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found |= {f"{module}: sql {m.group(1).lower()}" for m in RAW_SQL.finditer(node.value)}
    return found


def all_bypasses() -> set[str]:
    found = set()
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("").parts
        if len(rel) > 1 and rel[1] in LAYER:
            continue
        module = ".".join(rel[:-1] if rel[-1] == "__init__" else rel)
        found |= bypasses(ast.parse(path.read_text(encoding="utf-8")), module)
    return found


def test_the_walker_finds_each_kind_of_bypass():
    code = '''
def f(project, conn):
    project.store.set_alias("model", "a", "production", "a:sft@v1")
    project.store.get_alias("dataset", "a", "latest")
    project.store.select("model_versions", id="a:sft@v1")
    project.store.select("runs")  # not a registry table
    conn.exec_driver_sql("SELECT COUNT(*), MAX(created_at) FROM dataset_versions")
    project.artifacts("reports")  # a folder, not the table
'''
    assert bypasses(ast.parse(code), "m") == {"m: set_alias", "m: get_alias", "m: select model_versions",
                                              "m: sql dataset_versions"}


def test_alias_moves_and_registry_reads_go_through_the_registry():
    new = sorted(all_bypasses() - ALLOWED.keys())
    assert new == [], ("these modules reach the registry's tables round `tailorlm.registry`: move aliases with "
                       "registry.move_alias, read with registry.alias_target / aliases / dataset / datasets / model / "
                       "models / reports")
