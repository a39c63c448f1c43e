"""Short display names for models and datasets named by a path.

A local model folder or data file is named in a grid by its path, and the store
keeps that full path (it identifies the run). Job names, legends, tables and
answers show a short name instead: the path's last part, with parent folders
added only where two short names would collide, or the user's own name from a
``names`` mapping. Zoo names (``zoo/gpt2-tiny``), hub ids (``gpt2``,
``facebook/opt-350m``) and benchmark names are short already and stay as they
are. This module is the one home of that rule.
"""

from __future__ import annotations

from pathlib import PurePath

from ..errors import ConfigError

__all__ = ["is_path_name", "short_name", "display_names", "with_display_names", "PATH_COLUMNS"]

# The full names a table keeps next to the display names (see with_display_names).
PATH_COLUMNS = {"model": "model_path", "dataset": "dataset_path"}
_DATA_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet", ".pq", ".txt", ".tsv")


def is_path_name(name) -> bool:
    """True when `name` reads as a filesystem path rather than a zoo name, hub id or benchmark name.

    A path starts with ``/``, ``.``, ``~`` or a drive (``C:``), has two or more
    ``/``, or ends with a data-file suffix. ``org/name`` (one slash) is a hub id;
    a URL (``scheme://``) is no path, and a backslash alone makes none (a model may
    be named ``tex$\\frac{a}{b}$``; only a drive path's backslashes separate).
    """
    text = str(name)
    if "://" in text:  # a URL (a store), not a path
        return False
    return (text.startswith(("/", ".", "~")) or text.count("/") >= 2 or _is_drive_path(text)
            or text.lower().endswith(_DATA_SUFFIXES))


def _is_drive_path(text) -> bool:
    return len(text) > 2 and text[0].isalpha() and text[1] == ":" and text[2] in "\\/"


def short_name(name, parts=1) -> str:
    """The last `parts` parts of a path name (`name` itself when it is not a path)."""
    text = str(name)
    if not is_path_name(text):
        return text
    separated = text.replace("\\", "/") if _is_drive_path(text) else text
    pieces = [p for p in PurePath(separated).parts if p not in ("/", ".", "..", "~")]
    return "/".join(pieces[-parts:]) if pieces else text


def display_names(names, overrides=None) -> dict:
    """Map each full name to a short name that is unique among `names`.

    Parameters
    ----------
    names : iterable of str
        Full names (paths, zoo names, hub ids) as the store holds them.
    overrides : dict, optional
        ``{name: display}``; a key matches a full name, its path's trailing parts
        (``models/gpt2`` matches ``/data/models/gpt2``) or its default short name.

    Returns
    -------
    dict
        ``{full name: display name}``.

    Raises
    ------
    ConfigError
        When `overrides` is not a mapping of strings, or gives two names one display name.
    """
    full = sorted({str(n) for n in names})
    chosen = _overridden(full, _check_overrides(overrides))
    rest = [n for n in full if n not in chosen]
    depth = {n: 1 for n in rest}
    for _ in range(max((len(PurePath(n).parts) for n in rest), default=0)):
        taken = list(chosen.values()) + [short_name(n, depth[n]) for n in rest]
        clashing = [n for n in rest if taken.count(short_name(n, depth[n])) > 1 and is_path_name(n)]
        if not clashing:
            break
        for n in clashing:
            depth[n] += 1
    chosen.update({n: short_name(n, depth[n]) for n in rest})
    shown = list(chosen.values())
    if len(set(shown)) < len(shown):  # paths equal in every part ("/a/b" and "a/b"), or an override clash
        return {n: (n if shown.count(chosen[n]) > 1 else chosen[n]) for n in full}
    return chosen


def with_display_names(table, overrides=None):
    """A copy of a tidy table whose ``model`` and ``dataset`` show display names.

    The full names move to ``model_path`` and ``dataset_path`` (kept when the
    table already has them), so nothing of the store's identity is lost.
    """
    out = table.copy()
    out.attrs.update(table.attrs)
    for column, path_column in PATH_COLUMNS.items():
        if column not in out.columns:
            continue
        if path_column not in out.columns:
            out[path_column] = out[column].astype(str)
        mapping = display_names(out[path_column].unique(), overrides)
        out[column] = out[path_column].map(mapping)
    return out


def _check_overrides(overrides) -> dict:
    if overrides is None:
        return {}
    if not isinstance(overrides, dict) or not all(isinstance(k, str) and isinstance(v, str) and v.strip()
                                                  for k, v in overrides.items()):
        raise ConfigError(f"`names` must map model or dataset names to non-empty display names, got "
                          f"{overrides!r}; e.g. {{'models/gpt2-64': 'gpt2 (64 dim)'}}.")
    shown = list(overrides.values())
    if len(set(shown)) < len(shown):
        twice = sorted({v for v in shown if shown.count(v) > 1})
        raise ConfigError(f"`names` gives several names the display name {twice}; give each its own.")
    return overrides


def _overridden(full, overrides) -> dict:
    chosen = {}
    for name in full:
        for key, shown in overrides.items():
            if key in (name, short_name(name)) or (is_path_name(name) and name.endswith("/" + key.strip("/"))):
                chosen[name] = shown
    return chosen
