"""Safe output: strict JSON, escaped text and sanitized file names.

Anything that comes from a user's data (model names, dataset names, paths) and
reaches HTML, Markdown, a plot title or a file name goes through one of these
helpers, because reports are mailed to people who never saw the data: a model
named ``<img src=x onerror=…>`` must show as text, and a dataset named
``../../x`` must not choose where files are written.
"""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

import numpy as np

from ..errors import ConfigError

__all__ = ["strict_json", "to_jsonable", "plain_value", "escape_html", "escape_markdown",
           "escape_mathtext", "safe_filename", "path_inside"]

# Characters that Markdown (CommonMark and the extensions Jupyter renders) gives
# a meaning to; each is escaped with a backslash after HTML-escaping.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~$])")
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


def to_jsonable(value):
    """Return ``value`` as plain Python with every non-finite float replaced by None.

    numpy scalars and arrays, pandas-style ``tolist`` objects, tuples and sets
    become lists/floats/ints; dict keys become strings.
    """
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [to_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def plain_value(value):
    """numpy scalars as plain Python, so messages read ``0.5``, not ``np.float64(0.5)``."""
    return value.item() if isinstance(value, np.generic) else value


def strict_json(value, **dumps_kwargs) -> str:
    """Serialize to strict JSON: non-finite floats become ``null``, never ``NaN``.

    Parameters
    ----------
    value : object
        Dicts, lists, numbers, strings, numpy values.
    **dumps_kwargs
        Passed to :func:`json.dumps` (``indent``, ``sort_keys``, ...).
    """
    dumps_kwargs.setdefault("default", str)
    return json.dumps(to_jsonable(value), allow_nan=False, **dumps_kwargs)


def escape_html(text) -> str:
    """HTML-escape ``text`` (quotes included) after turning it into a string."""
    return html.escape(str(text), quote=True)


def escape_markdown(text) -> str:
    """Escape ``text`` so that Markdown renders it literally, raw HTML included.

    HTML is escaped first (so ``<img …>`` shows as text), then every character
    with a Markdown meaning gets a backslash (so ``[x](javascript:…)`` is no link).
    """
    return _MARKDOWN_SPECIAL.sub(r"\\\1", escape_html(text))


def escape_mathtext(text) -> str:
    """Escape ``$`` so that matplotlib draws ``text`` literally in a title or label."""
    return str(text).replace("$", r"\$")


def safe_filename(name, *, fallback="unnamed", max_length=80) -> str:
    """Turn ``name`` into one safe path component: letters, digits, ``.``, ``_``, ``-``.

    ``org/name`` becomes ``org_name``, ``../../x`` becomes ``x``; the result never
    starts with a dot, so it is never ``.``, ``..`` or a hidden file.
    """
    slug = _UNSAFE_FILENAME.sub("_", str(name)).strip("._-")
    return slug[:max_length] or fallback


def path_inside(root, name) -> Path:
    """Return ``root / name`` after checking that it stays inside ``root``.

    Raises
    ------
    ConfigError
        When ``name`` is absolute or climbs out of ``root``.
    """
    base = Path(root).resolve()
    path = (base / name).resolve()
    if path != base and base not in path.parents:
        raise ConfigError(
            f"output name {name!r} would write outside `out` ({base}); "
            "use a plain name without '/' or '..'"
        )
    return path
