"""More offline tasks for the zoo corpus, made from the standard library's task modules.

The zoo's code → summary task has about 2,600 training examples, too few for full
runs of 4,096. The functions of the same *task* modules (no candidate was pretrained
on them: ``zoo.is_task_module``), documented or not, give three larger tasks:

* ``zoo-name``: a function with its name blanked (``def _(...)``) → its name;
* ``zoo-args``: a function's body → its parameter list;
* ``zoo-next-line``: the end of a function's first lines → its next line.

Each is cached as JSON in the zoo folder and loaded as a ``TaskData`` with the zoo
task's fixed test and validation splits (details: docs/METHODS.md).
"""

from __future__ import annotations

import ast
import hashlib
import json
import sysconfig
from pathlib import Path

from . import zoo
from .data import TaskData
from ..errors import ConfigError

__all__ = ["TASKS", "SEPARATORS", "task_data", "task_rows"]

TASKS = ("zoo-name", "zoo-args", "zoo-next-line")
SEPARATORS = {"zoo-name": "\n# name: ", "zoo-args": "\n# args: ", "zoo-next-line": "\n# next: "}
_SPEC = {"version": 1, "max_input_chars": 300, "target_chars": (3, 60), "test_size": 256,
         "val_size": 64, "split_seed": 0}
_SKIP_DIRS = {"site-packages", "test", "tests", "idlelib", "pydoc_data", "turtledemo", "__pycache__"}


def task_data(name, **settings):
    """Return corpus task `name` (one of :data:`TASKS`) as a :class:`~lensllm_nb.collection.data.TaskData`.

    Parameters
    ----------
    name : str
        ``"zoo-name"``, ``"zoo-args"`` or ``"zoo-next-line"``.
    **settings
        Override ``test_size``, ``val_size`` or ``split_seed``.
    """
    allowed = {"test_size", "val_size", "split_seed"}
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise ConfigError(f"The zoo corpus tasks take only {sorted(allowed)}; got {unknown}.")
    options = {k: _SPEC[k] for k in allowed}
    options.update(settings)
    return TaskData.from_records(task_rows(name), name=name, format="pairs", **options)


def task_rows(name) -> list:
    """Rows (``input``, ``target``, ``module``) of corpus task `name`, built once and cached."""
    if name not in TASKS:
        raise ConfigError(f"`name` {name!r} is not a zoo corpus task; choose one of {list(TASKS)}.")
    path = zoo.zoo_dir() / "tasks" / f"{name}-v{_SPEC['version']}.json"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{hashlib.sha256(str(path).encode()).hexdigest()[:8]}.tmp")
        tmp.write_text(json.dumps(_extract(name)), encoding="utf-8")
        tmp.replace(path)
    return json.loads(path.read_text(encoding="utf-8"))


def _extract(name):
    make = {"zoo-name": _name_row, "zoo-args": _args_row, "zoo-next-line": _next_line_row}[name]
    rows, seen = [], set()
    for module, node in _task_functions():
        row = make(node)
        if row is None or row["input"] in seen:
            continue
        low, high = _SPEC["target_chars"]
        if low <= len(row["target"]) <= high:
            seen.add(row["input"])
            rows.append({**row, "module": module})
    return rows


def _task_functions():
    """(module, function node) of every function of the task modules, in file order."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.rglob("*.py") if not _SKIP_DIRS & set(p.relative_to(stdlib).parts))
    for file in files:
        module = ".".join(file.relative_to(stdlib).with_suffix("").parts)
        if not zoo.is_task_module(module):
            continue
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield module, node


def _source(node, name=None, body_only=False):
    """Unparsed source of `node` without its docstring (renamed to `name`), or None."""
    body = node.body[1:] if ast.get_docstring(node) else node.body
    body = body or [ast.Pass()]
    try:
        if body_only:
            return "\n".join(ast.unparse(stmt) for stmt in body)
        stripped = type(node)(
            name=name or node.name, args=node.args, body=body, decorator_list=[], returns=node.returns,
            type_comment=None, **({"type_params": []} if "type_params" in node._fields else {}),
        )
        return ast.unparse(ast.fix_missing_locations(stripped))
    except (ValueError, TypeError, AttributeError, RecursionError):
        return None


def _name_row(node):
    if node.name.startswith("__") or len(node.name) < 3:
        return None
    source = _source(node, name="_")
    return None if source is None else {"input": source[: _SPEC["max_input_chars"]], "target": node.name}


def _args_row(node):
    if not (node.args.args or node.args.posonlyargs or node.args.kwonlyargs):
        return None
    body = _source(node, body_only=True)
    try:
        args = ast.unparse(node.args)
    except (ValueError, TypeError, AttributeError, RecursionError):
        return None
    return None if body is None else {"input": body[: _SPEC["max_input_chars"]], "target": args}


def _next_line_row(node):
    source = _source(node)
    lines = [] if source is None else source.split("\n")
    if len(lines) < 2:
        return None
    # The cut point is a hash of the function, not random: the task is fixed.
    cut = 1 + int(hashlib.sha256(source.encode()).hexdigest(), 16) % (len(lines) - 1)
    prompt = "\n".join(lines[:cut])[-_SPEC["max_input_chars"] // 2:]
    return {"input": prompt, "target": lines[cut].strip()}
