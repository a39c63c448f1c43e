"""Batch grids: read and validate a grid YAML, expand it into deterministic jobs.

A grid is refused before anything runs when it is not plain JSON, repeats a key,
hides a YAML alias bomb, would expand past `max_jobs`, names a notebook outside its
``root``, or sets a parameter name its notebook does not declare (papermill writes
the names into the notebook as code). Job names are unique, file-name safe and hold
no secret.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ...collection.display_names import display_names
from ...errors import ConfigError
from ...utils.provenance import config_hash
from ...utils.safe_output import mask_secrets, safe_filename
from ..report import find_templates

__all__ = ["DEFAULT_KERNEL", "DEFAULT_MAX_JOBS", "Job", "load_grid", "expand_grid"]

DEFAULT_KERNEL = "lensllm-nb"
# Jobs a grid may expand to unless its `max_jobs` (or --max-jobs) says more: counted before expanding.
DEFAULT_MAX_JOBS = 10_000
# Values (scalars, lists, mappings, aliases counted as often as they are used) a grid may hold:
# a YAML alias bomb ("billion laughs") is refused before it is expanded.
_MAX_GRID_VALUES = 1_000_000

_TOP_KEYS = {"name", "root", "kernel", "workers", "timeout", "start_timeout", "retries",
             "stagger", "gpu", "env", "parameters", "jobs", "max_jobs"}
_JOB_KEYS = {"notebook", "name", "stage", "grid", "parameters", "timeout", "gpu", "env"}
_DEFAULTS = {"kernel": DEFAULT_KERNEL, "workers": 2, "timeout": 3600, "start_timeout": 120,
             "retries": 3, "stagger": 1.0, "gpu": False, "max_jobs": DEFAULT_MAX_JOBS}
_MAX_NAME = 96


@dataclass(frozen=True)
class Job:
    """One notebook execution of a batch, with absolute paths only.

    Attributes
    ----------
    name : str
        Deterministic, file-name safe name (notebook stem and grid values).
    stage : int
        Jobs of a lower stage all finish before a higher stage starts.
    notebook : str
        The input notebook.
    parameters : dict
        Values papermill injects into the ``parameters`` cell.
    grid_values : dict
        The swept parameters that distinguish this job (shown in the index).
    cwd, output, report, log, result : str
        Working directory of the kernel; executed notebook; HTML report; process
        log; the JSON result the job's process writes.
    kernel : str
        Registered Jupyter kernel name (passed to papermill explicitly).
    timeout, start_timeout : float
        Seconds the notebook may run; seconds its kernel may take to start. Each cell
        is stopped at `timeout` by papermill; the job's whole process is stopped at
        ``timeout + start_timeout`` plus a minute for the report.
    retries : int
        Kernel-start retries after port races (``ZMQError``) or dead-on-start kernels.
    gpu : bool
        Whether the job needs a GPU (Dask resource ``GPU=1``; one at a time locally).
    env : dict
        Extra environment variables for the job's process and kernel.
    templates : str
        The report template folder.
    start_delay : float
        Seconds to wait before starting, so that kernels do not all start at once.
    out : str
        The output folder: every file of the job is written inside it, through no
        link (see `lensllm_nb.utils.safe_output.open_inside`). Default: the folder of `output`.
    """

    name: str
    stage: int
    notebook: str
    parameters: dict
    grid_values: dict
    cwd: str
    output: str
    report: str
    log: str
    result: str
    kernel: str = DEFAULT_KERNEL
    timeout: float = 3600
    start_timeout: float = 120
    retries: int = 3
    gpu: bool = False
    env: dict = field(default_factory=dict)
    templates: str = ""
    start_delay: float = 0.0
    out: str = ""

    @property
    def folder(self) -> str:
        """The folder every file of the job stays inside: `out`, else the folder of `output`."""
        return self.out or str(Path(self.output).parent)


def load_grid(path) -> dict:
    """Read and validate a grid YAML file.

    Parameters
    ----------
    path : str or Path
        The grid file. Relative paths inside it resolve against its ``root`` key,
        which itself is relative to the file's folder (default: that folder).

    Returns
    -------
    dict
        The validated grid with ``root`` made absolute.

    Raises
    ------
    ConfigError
        When the file is missing, is not YAML, repeats a key, holds a value that is
        not plain JSON (a date, ``!!binary``), expands past ``_MAX_GRID_VALUES``
        values through aliases, or has unknown or ill-typed keys.
    """
    import yaml

    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"`grid` = {str(path)!r} does not exist; pass a grid YAML such as templates/grid.yaml")
    try:
        grid = _parse_yaml(path.read_text(encoding="utf-8"), path)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"`grid` = {str(path)!r} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(f"`grid` = {str(path)!r} is not valid YAML ({detail}); fix the file") from exc
    except RecursionError:
        raise ConfigError(f"`grid` = {str(path)!r} nests lists or mappings too deeply; flatten the file") from None
    if not isinstance(grid, dict):
        raise ConfigError(f"`grid` = {str(path)!r} holds {type(grid).__name__}; it must be a mapping with a `jobs` list")
    grid = dict(grid)
    grid["root"] = str((path.parent / str(grid.get("root") or ".")).resolve())
    grid.setdefault("name", path.stem)
    return _validate_grid(grid)


def expand_grid(grid, *, out, max_jobs=None) -> list[Job]:
    """Expand a grid into jobs: every notebook × every combination of its sweeps.

    Parameters
    ----------
    grid : dict or str or Path
        A grid mapping (``root`` defaults to the current folder) or a grid file.
    out : str or Path
        The output folder; the placeholder ``{out}`` in string parameters becomes
        its absolute path, ``{root}`` the grid's root.
    max_jobs : int, optional
        The most jobs the grid may expand to. Default: the grid's ``max_jobs``
        (`DEFAULT_MAX_JOBS`). Counted from the sweep lengths before expanding.

    Returns
    -------
    list of Job
        In stage order, then file order; names are unique and deterministic.

    Raises
    ------
    ConfigError
        When the grid would expand past `max_jobs`, a notebook lies outside
        ``root``, or a parameter name is not declared in its notebook's
        ``parameters`` cell (names are written into the notebook as code).
    """
    from itertools import product

    grid = load_grid(grid) if isinstance(grid, (str, Path)) else _validate_grid(grid)
    root = Path(grid["root"])
    if not root.is_dir():
        raise ConfigError(f"grid `root` = {str(root)!r} is not a folder; fix `root` (relative to the grid file)")
    _check_job_count(grid, grid["max_jobs"] if max_jobs is None else max_jobs)
    out = Path(out).expanduser().resolve()
    templates = str(find_templates())
    places = {"{out}": str(out), "{root}": str(root)}
    drafts = []
    for spec in grid["jobs"]:
        notebook = _notebook_path(root, spec)
        sweeps = spec.get("grid") or {}
        _check_parameter_names(notebook, spec, grid.get("parameters"))
        shown = _display_labels(sweeps, places, {**grid.get("parameters", {}), **spec.get("parameters", {})})
        for values in product(*sweeps.values()):
            grid_values = dict(zip(sweeps, values))
            parameters = {**grid.get("parameters", {}), **spec.get("parameters", {}), **grid_values}
            # A `name:` from the grid names files: sanitized, so '../x' cannot climb out of `out`.
            prefix = safe_filename(spec.get("name") or notebook.stem, fallback="job")
            drafts.append({
                # Secrets masked before naming: no password in a job, file or page name.
                "base": "__".join([prefix, *(_slug(shown(key, value)) for key, value in mask_secrets(grid_values).items())]),
                "stage": int(spec.get("stage", 1)),
                "notebook": str(notebook),
                "parameters": _substitute(parameters, places),
                "grid_values": grid_values,
                "timeout": float(spec.get("timeout", grid["timeout"])),
                "gpu": bool(spec.get("gpu", grid["gpu"])),
                "env": {**grid.get("env", {}), **spec.get("env", {})},
            })
    names = _unique_names(drafts)
    jobs = []
    for draft, name in zip(drafts, names):
        jobs.append(Job(
            name=name, stage=draft["stage"], notebook=draft["notebook"],
            parameters=draft["parameters"], grid_values=draft["grid_values"], cwd=str(root),
            **_job_paths(out, name),
            kernel=grid["kernel"], timeout=draft["timeout"], start_timeout=float(grid["start_timeout"]),
            retries=int(grid["retries"]), gpu=draft["gpu"],
            env={str(k): str(v) for k, v in draft["env"].items()}, templates=templates, out=str(out),
        ))
    return sorted(jobs, key=lambda job: job.stage)


def _validate_grid(grid) -> dict:
    """Return a copy of `grid` with defaults filled in, or raise `ConfigError`."""
    if not isinstance(grid, dict):
        raise ConfigError(f"`grid` has type {type(grid).__name__}; pass a mapping or a grid YAML path")
    # Up front, so that a date or bytes fails here (exit 2), not in a running job.
    _check_plain(grid, lambda: "", [_MAX_GRID_VALUES])
    grid = {**_DEFAULTS, **copy.deepcopy(grid)}
    grid["root"] = str(Path(grid.get("root") or os.getcwd()).expanduser().resolve())
    grid.setdefault("name", "batch")
    unknown = sorted(set(grid) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"grid keys {unknown} are unknown; use only {sorted(_TOP_KEYS)}")
    for key in ("parameters", "env"):
        if not isinstance(grid.get(key, {}), dict):
            raise ConfigError(f"grid `{key}` = {grid[key]!r} must be a mapping of name: value")
    for key in ("timeout", "start_timeout", "stagger"):
        value = grid[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (value == 0 and key != "stagger"):
            raise ConfigError(f"grid `{key}` = {value!r} must be a {'non-negative' if key == 'stagger' else 'positive'} "
                              "number of seconds")
    for key in ("workers", "retries", "max_jobs"):
        if isinstance(grid[key], bool) or not isinstance(grid[key], int) or grid[key] < (0 if key == "retries" else 1):
            raise ConfigError(f"grid `{key}` = {grid[key]!r} must be an integer ≥ {0 if key == 'retries' else 1}")
    jobs = grid.get("jobs")
    if not isinstance(jobs, list) or not jobs:
        raise ConfigError(f"grid `jobs` = {jobs!r} must be a non-empty list of {{notebook: ..., grid: ...}} entries")
    for i, spec in enumerate(jobs):
        _validate_job_spec(i, spec)
    return grid


def _validate_job_spec(i, spec) -> None:
    """Raise `ConfigError` when the `i`-th job entry is malformed."""
    where = f"grid `jobs[{i}]`"
    if not isinstance(spec, dict) or "notebook" not in spec:
        raise ConfigError(f"{where} = {spec!r} must be a mapping with a `notebook` path")
    unknown = sorted(set(spec) - _JOB_KEYS)
    if unknown:
        raise ConfigError(f"{where} has unknown keys {unknown}; use only {sorted(_JOB_KEYS)}")
    for key in ("parameters", "env", "grid"):
        if not isinstance(spec.get(key) or {}, dict):
            raise ConfigError(f"{where}.{key} = {spec[key]!r} must be a mapping")
    for key, values in (spec.get("grid") or {}).items():
        if not isinstance(values, list) or not values:
            raise ConfigError(
                f"{where}.grid.{key} = {values!r} must be a non-empty list of values to sweep; "
                f"put a fixed value under `parameters` instead"
            )
    if not isinstance(spec.get("stage", 1), int):
        raise ConfigError(f"{where}.stage = {spec['stage']!r} must be an integer")
    if "timeout" in spec and (not isinstance(spec["timeout"], (int, float)) or spec["timeout"] <= 0):
        raise ConfigError(f"{where}.timeout = {spec['timeout']!r} must be a positive number of seconds")


def _parse_yaml(text, path):
    """Compose the YAML, refuse an alias bomb by its expanded size, then construct it (duplicate keys refused)."""
    loader = _grid_loader()(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {})
        if size > _MAX_GRID_VALUES:
            raise ConfigError(f"`grid` = {str(path)!r} expands to more than {_MAX_GRID_VALUES:,} values (YAML "
                              "aliases repeating one value many times?); write a smaller grid")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _grid_loader():
    """A `yaml.SafeLoader` that refuses a key repeated in one mapping (instead of keeping the last)."""
    import yaml

    class GridLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key, _ in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    if (key.tag, key.value) in seen:
                        raise yaml.constructor.ConstructorError(
                            "while reading a mapping", node.start_mark,
                            f"found the key {key.value!r} twice (remove one)", key.start_mark)
                    seen.add((key.tag, key.value))
            return super().construct_mapping(node, deep=deep)

    return GridLoader


def _expanded_size(node, sizes) -> int:
    """Number of values `node` stands for once every alias is expanded, each distinct node visited once."""
    key = id(node)
    if key in sizes:
        if sizes[key] is None:
            raise ConfigError("`grid` holds a YAML alias that refers to itself; write the value out")
        return sizes[key]
    sizes[key] = None
    children = node.value if isinstance(node.value, list) else []
    size = 1
    for child in children:
        for item in (child if isinstance(child, tuple) else (child,)):
            size += _expanded_size(item, sizes)
            if size > _MAX_GRID_VALUES:  # stop counting: the answer is "too many"
                break
    sizes[key] = size
    return size


def _check_plain(value, where, budget) -> None:
    """Refuse a value that is not plain JSON (string, finite number, bool, null, list, string-keyed mapping).

    `budget` (a one-item list) counts the values visited, so a grid built in Python
    whose lists share one another (an alias bomb without YAML) is refused too.
    """
    budget[0] -= 1
    if budget[0] < 0:
        raise ConfigError(f"the grid holds more than {_MAX_GRID_VALUES:,} values; write a smaller grid")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"grid `{where()}` has the key {key!r} ({type(key).__name__}); "
                                  "keys must be strings: quote it")
            _check_plain(item, lambda: f"{where()}.{key}".lstrip("."), budget)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_plain(item, lambda: f"{where()}[{i}]", budget)
    elif value is not None and not isinstance(value, (str, int, float)) or (
            isinstance(value, float) and not math.isfinite(value)):
        raise ConfigError(f"grid `{where()}` = {value!r} ({type(value).__name__}) is not a plain JSON value "
                          "(string, finite number, true/false, null, list or mapping); quote it, e.g. \"2024-01-31\"")


def _job_paths(out, name) -> dict:
    """The output, report, log and result files of job `name` under `out`.

    Names are built from sanitized parts (`safe_filename`, `_slug`), so they are one
    path component; checked here without resolving (10,000 jobs, 40,000 paths).
    Links on the way are refused when the files are written (`open_inside`).
    """
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"job name {name!r} would write outside `out` ({out}); use a plain name")
    return {"output": str(out / "notebooks" / f"{name}.ipynb"), "report": str(out / "reports" / f"{name}.html"),
            "log": str(out / "logs" / f"{name}.log"), "result": str(out / "logs" / f"{name}.result.json")}


def _check_job_count(grid, limit) -> None:
    """Refuse a grid whose sweeps multiply past `limit` jobs, before any job is expanded."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"`max_jobs` = {limit!r} must be a positive integer")
    total = sum(math.prod(len(values) for values in (spec.get("grid") or {}).values()) for spec in grid["jobs"])
    if total > limit:
        raise ConfigError(f"the grid expands to {total:,} jobs, above `max_jobs` = {limit:,}; sweep fewer values "
                          "or split the grid, or raise `max_jobs` in the grid (or --max-jobs) if you mean it")


def _notebook_path(root, spec) -> Path:
    """The job's notebook, resolved; refused when missing or outside `root` (links resolved)."""
    notebook = (root / spec["notebook"]).resolve()
    if not notebook.is_relative_to(root):
        raise ConfigError(f"`notebook` = {spec['notebook']!r} resolves to {str(notebook)!r}, outside the grid's "
                          f"root {str(root)!r}; keep notebooks under `root` (or move `root` up)")
    if not notebook.is_file():
        raise ConfigError(
            f"`notebook` = {spec['notebook']!r} does not exist under root {str(root)!r}; "
            "fix the path in the grid (paths are relative to `root`)"
        )
    return notebook


def _check_parameter_names(notebook, spec, shared) -> None:
    """Refuse parameter names that are not identifiers declared in the notebook's ``parameters`` cell.

    papermill writes each name into the notebook as code (``name = value``), so a
    name such as ``"a = 1; __import__('os').system(...) #"`` would run; and a
    misspelt one (``max_trian``) would be ignored silently while the job reports ok.
    Grid-level `shared` parameters go to every notebook, so every notebook must declare them.
    """
    import difflib
    import keyword

    declared = _declared_parameters(notebook)
    for where, names in (("grid-level `parameters`", shared), ("`parameters`", spec.get("parameters")),
                         ("`grid`", spec.get("grid"))):
        bad = [name for name in names or {} if not name.isidentifier() or keyword.iskeyword(name)]
        if bad:
            raise ConfigError(f"{where} of job {spec['notebook']!r} has parameter name(s) {bad} that are not Python "
                              "identifiers; a name is a variable of the notebook's `parameters` cell (letters, digits, _)")
        unknown = [name for name in names or {} if name not in declared]
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(declared), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            shared_hint = " (grid-level parameters go to every notebook: set it per job instead)" if shared is names else ""
            raise ConfigError(f"{where} of job {spec['notebook']!r} sets parameter(s) {unknown} that the notebook does "
                              f"not declare; {hint}its `parameters` cell declares {sorted(declared)}{shared_hint}")


def _declared_parameters(notebook) -> set:
    """Names assigned in the notebook's ``parameters``-tagged cell (IPython magics allowed there)."""
    import ast

    import nbformat

    try:
        nb = nbformat.read(notebook, as_version=4)
    except Exception as exc:  # nbformat raises several types for a broken file
        raise ConfigError(f"`notebook` = {str(notebook)!r} is not a readable notebook ({type(exc).__name__}); "
                          "fix the path in the grid") from None
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            try:
                tree = ast.parse(_python_source(cell.source))
            except SyntaxError as exc:
                raise ConfigError(f"the `parameters` cell of `notebook` = {str(notebook)!r} is not Python (line "
                                  f"{exc.lineno}: {exc.msg}), so its parameter names cannot be known; fix the cell") from None
            names = set()
            for node in tree.body:
                targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
                # `a, b = 1, 2` declares both names.
                names.update(t.id for target in targets if target is not None
                             for t in ast.walk(target) if isinstance(t, ast.Name))
            return names
    return set()


def _python_source(source) -> str:
    """The cell as plain Python: IPython's own transformer turns magics (``%matplotlib``, ``!ls``) into calls."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def _display_labels(sweeps, places, parameters):
    """``(key, value) -> label`` for job names: a swept path's display name (its last part, unique).

    The names are those notebooks show (:mod:`lensllm_nb.collection.display_names`,
    with the grid's ``names`` as overrides), so a job is named as its model is in the
    report; other values stay as they are.
    """
    overrides = _substitute(parameters.get("names"), places) or None
    shown = {key: display_names([_substitute(v, places) for v in values if isinstance(v, str)], overrides)
             for key, values in sweeps.items()}

    def label(key, value):
        return shown[key].get(_substitute(value, places), value) if isinstance(value, str) else value

    return label


def _slug(value) -> str:
    """Return a file-name safe rendering of a parameter value."""
    if isinstance(value, (list, tuple)):
        value = "-".join(str(v) for v in value)
    text = re.sub(r"[^A-Za-z0-9.+-]+", "-", str(value)).strip("-.")
    return text or "x"


def _unique_names(drafts) -> list[str]:
    """Return one unique, deterministic name per draft job.

    Long names are shortened with a hash; names shared by several jobs (the same
    notebook listed twice with other fixed parameters) get a parameter hash.
    """
    from collections import Counter

    names = []
    for draft in drafts:
        base = draft["base"]
        if len(base) > _MAX_NAME:
            base = f"{base[:_MAX_NAME - 9]}-{hashlib.sha256(base.encode()).hexdigest()[:8]}"
        names.append(base)
    # Counted once (linear); names.count per name would be quadratic in the number of jobs.
    counts = Counter(names)
    names = [f"{name}-{config_hash(draft['parameters'])[:8]}" if counts[name] > 1 else name
             for name, draft in zip(names, drafts)]
    counts = Counter(names)
    if len(counts) != len(names):
        duplicates = sorted(name for name, count in counts.items() if count > 1)
        raise ConfigError(f"grid `jobs` repeat the same notebook with the same parameters: {duplicates}; remove the duplicates")
    return names


def _substitute(value, places):
    """Replace ``{out}`` and ``{root}`` in every string of a nested value (mapping keys too: ``names``)."""
    if isinstance(value, str):
        for token, replacement in places.items():
            value = value.replace(token, replacement)
        return value
    if isinstance(value, list):
        return [_substitute(item, places) for item in value]
    if isinstance(value, dict):
        return {_substitute(key, places): _substitute(item, places) for key, item in value.items()}
    return value
