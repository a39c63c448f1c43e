"""The house: no import cycle, small functions and classes, the layer lists in step.

The module graph is read from the source with :mod:`ast`, imports inside
functions included (they are cycles all the same, only deferred), so this test
needs nothing installed beyond the standard library.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lensllm_nb"
MAX_FUNCTION_LINES = 60
MAX_CLASS_LINES = 400


def _module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules():
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module, path, node):
    """The lensllm_nb modules an import node names (relative imports resolved)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    if node.level:
        base = package.split(".")
        base = base[: len(base) - node.level + 1]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module
    # `from . import zoo` names a module; `from .data import TaskData` names a member.
    return [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]


def _graph():
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets |= {name for name in _resolve(module, path, node) if name in modules}
        # A package's __init__ runs before its submodules: importing one imports it.
        graph[module] = targets - {module}
    return graph


def _cycles(graph):
    """The import cycles: strongly connected components of more than one module, sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_the_graph_reader_sees_imports_inside_functions(tmp_path):
    source = "def f():\n    from .zoo import build\n    from . import data\n"
    tree = ast.parse(source)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names |= set(_resolve("lensllm_nb.collection.finetune", PACKAGE / "finetune.py", node))
    assert {"lensllm_nb.collection.zoo", "lensllm_nb.collection.data"} <= names
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_the_package():
    assert _cycles(_graph()) == []


def _code_lines(node, source):
    """Lines of code of a def or class: its lines less blank lines, comments and docstrings."""
    docstrings = set()
    for child in ast.walk(node):
        body = getattr(child, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
    return sum(
        1 for number in range(node.lineno, node.end_lineno + 1)
        if number not in docstrings and source[number - 1].strip()
        and not source[number - 1].strip().startswith("#")
    )


def _oversized():
    found = []
    for module, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        source = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                limit = MAX_FUNCTION_LINES
            elif isinstance(node, ast.ClassDef):
                limit = MAX_CLASS_LINES
            else:
                continue
            size = _code_lines(node, source)
            if size > limit:
                found.append(f"{module}.{node.name}: {size} lines of code (limit {limit})")
    return found


def test_line_counter_skips_docstrings_and_blank_lines():
    source = 'def f():\n    """Doc\n\n    more."""\n\n    x = 1\n    # note\n    return x\n'
    (node,) = ast.parse(source).body
    assert _code_lines(node, source.splitlines()) == 3  # def, x = 1, return x


def test_no_function_over_60_and_no_class_over_400_lines_of_code():
    assert _oversized() == []


def test_torch_free_contract_lists_exactly_the_layers_below_collection():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    contracts = {c["id"]: c for c in config["contracts"]}
    layers = contracts["layers"]["layers"]
    below = layers[layers.index("collection") + 1:]
    core = {f"lensllm_nb.{name.strip()}" for line in below for name in line.split(":")}
    assert set(contracts["analysis-without-torch"]["source_modules"]) == core


@pytest.mark.parametrize("module", ["lensllm_nb.analysis.laws", "lensllm_nb.analysis.ntk_features", "lensllm_nb.collection.data"])
def test_light_modules_do_not_reach_the_collection_or_torch_at_import(module):
    graph = _graph()
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph.get(name, ()))
    assert not seen & {"lensllm_nb.collection.zoo", "lensllm_nb.collection.finetune", "lensllm_nb.collection.ntk"}


def test_no_module_over_600_lines_and_module_docstrings_say_what_in_12_lines():
    # One job per file (issue 19): longer modules split by concept; derivations go to docs/METHODS.md.
    long = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in _modules().items()}
    assert {name: n for name, n in long.items() if n > 600} == {}
    wordy = {}
    for name, path in _modules().items():
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")), clean=False) or ""
        if len(doc.splitlines()) > 12:
            wordy[name] = len(doc.splitlines())
    assert wordy == {}
