"""Safe output: strict JSON, escaped text and sanitized file names.

Anything that comes from a user's data (model names, dataset names, paths) and
reaches HTML, Markdown, a plot title or a file name goes through one of these
helpers, because reports are mailed to people who never saw the data: a model
named ``<img src=x onerror=…>`` must show as text, and a dataset named
``../../x`` must not choose where files are written. `open_inside` and
`write_inside` are the one way files are written into an output folder: through
no symbolic link (of the file or of a folder on the way) and into no file that
is hard-linked elsewhere, so a planted ``out/index.html -> ~/.bashrc`` is refused.
`mask_secrets` is the one place secrets (URL passwords, ``?password=``...) are
masked; records, exports, names, pages and messages all go through it.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import stat
from pathlib import Path

import numpy as np

from ..errors import ConfigError

__all__ = ["strict_json", "to_jsonable", "plain_value", "escape_html", "escape_markdown",
           "escape_mathtext", "safe_filename", "path_inside", "open_inside", "write_inside",
           "mask_secrets", "MASK"]

# Characters that Markdown (CommonMark and the extensions Jupyter renders) gives
# a meaning to; each is escaped with a backslash after HTML-escaping.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~$])")
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")
MASK = "***"
# Names whose value is a secret: ``password``, ``db_password``, ``sslpassword``,
# ``client_secret``, ``api_key``, ``access_token``, ``--token``... but not the
# tokenizer's ``eos_token`` or ``max_tokens``: the whole name must match.
_SECRET_KEY = re.compile(
    r"-*(?:[\w.-]*?(?:password|passwd|pwd|secret|api[_-]?key|apikey|access[_-]?key|private[_-]?key|credentials?)"
    r"|(?:[\w.-]*?[_.-])?(?:access|auth|api|hf|refresh|id|bearer|session|private|security)[_-]?token|token)",
    re.IGNORECASE)
# ``name=value`` (URL queries, libpq and ODBC strings, argv) and ``'name': value`` (a
# dict's repr in a message). Only the name and '=' are consumed (the value is a
# lookahead), so a pair inside another pair's value is still seen.
_VALUE = r"(?=(?P<secret>'[^']*'|\"[^\"]*\"|[^&\s;,'\"#)}\]=]+))"
_PAIRS = (re.compile(rf"(?<![\w.-])(?P<name>[\w.-]+)\s*=\s*{_VALUE}"),
          re.compile(rf"(?P<q>['\"])(?P<name>[\w.-]+)(?P=q)\s*:\s*{_VALUE}"))
# A URL of any scheme, to the next space or quote: ``scheme://user:password@host``.
_URL_TOKEN = re.compile(r"(?<![A-Za-z0-9+.-])(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>[^\s'\"]*)")
# Opening a folder on the way or the file itself never follows a symbolic link (ELOOP instead).
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_FOLDER_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW
# Modes of `open_inside`: open flags, and whether the file is emptied once it is known to be ours.
_WRITE_MODES = {"w": (os.O_WRONLY, True), "wb": (os.O_WRONLY, True), "a": (os.O_WRONLY | os.O_APPEND, False),
                "a+": (os.O_RDWR | os.O_APPEND, False)}


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


def mask_secrets(value):
    """Return `value` with every secret in it replaced by ``***``.

    The one masking function: run records, store rows, exports, job and file
    names, pages and messages all go through it. Masked are the password of a URL
    of any scheme (``mysql://u:***@host/db``), the value of a secret-named
    parameter in any text (``?password=***``, ``token=***``, ``'secret': '***'``)
    and the value under a secret-named key of a dict.

    Parameters
    ----------
    value : object
        A string, or plain data (dicts, lists, tuples) holding strings; other
        values are returned as they are. The input is never mutated.

    Returns
    -------
    object
        A masked copy of the same shape.
    """
    if isinstance(value, str):
        if "://" in value:
            value = _URL_TOKEN.sub(_masked_url, value)
        for pattern, sign in zip(_PAIRS, "=:"):
            if sign in value:
                value = _masked_pairs(pattern, value)
        return value
    if isinstance(value, dict):
        return {mask_secrets(k): MASK if _is_secret_entry(k, v) else mask_secrets(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        # argv style: the item after ``--password`` (or ``--api-key``...) is its value.
        masked = [MASK if i and str(value[i - 1]).startswith("-") and _SECRET_KEY.fullmatch(str(value[i - 1]))
                  else mask_secrets(v)
                  for i, v in enumerate(value)]
        return tuple(masked) if isinstance(value, tuple) else masked
    return value


def _masked_url(match) -> str:
    """``scheme://user:***@host``: the last '@' ends the password (an unescaped '@' or '/' may sit in one)."""
    credentials, at, host = match["rest"].rpartition("@")
    user, colon, password = credentials.partition(":")
    return f"{match['scheme']}://{user}:{MASK}@{host}" if at and colon and password else match[0]


def _masked_pairs(pattern, text) -> str:
    """`text` with the value of every secret-named pair of `pattern` masked (quotes kept)."""
    parts, end = [], 0
    for match in pattern.finditer(text):
        if match.start() < end or not _SECRET_KEY.fullmatch(match["name"]):
            continue
        start, stop = match.span("secret")
        quote = text[start] if text[start] in "'\"" else ""
        parts += [text[end:start], f"{quote}{MASK}{quote}"]
        end = stop
    return "".join(parts) + text[end:]


def _is_secret_entry(key, value) -> bool:
    """True for ``{'password': 'x'}``: a secret-named key holding a value to hide."""
    return (isinstance(key, str) and _SECRET_KEY.fullmatch(key) is not None and value != ""
            and isinstance(value, (str, bytes, int, float)) and not isinstance(value, bool))


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
    return html.escape(mask_secrets(str(text)), quote=True)


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
    slug = _UNSAFE_FILENAME.sub("_", mask_secrets(str(name))).strip("._-")
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


def open_inside(root, path, mode="w", *, encoding="utf-8"):
    """Open ``path`` inside the folder ``root`` for writing, never through a link.

    Missing folders on the way are created. No folder on the way and not the file
    itself may be a symbolic link (each is opened relative to the one before, with
    ``O_NOFOLLOW``, so a link swapped in meanwhile is refused too), and an existing
    file must be a regular file with no other hard link. A file opened with ``"w"``
    is emptied only after those checks, so a link's target is never truncated.

    Parameters
    ----------
    root : str or Path
        The output folder (itself the user's choice: it may be a link).
    path : str or Path
        A path inside `root`: relative to it, or absolute below it, without ``..``.
    mode : {"w", "wb", "a", "a+"}
        As for :func:`open`; ``"a+"`` also reads.
    encoding : str
        Text encoding (ignored for ``"wb"``).

    Returns
    -------
    file object

    Raises
    ------
    ConfigError
        When `path` leaves `root` or meets a link, a hard-linked file or a non-file.
    """
    flags, empty = _WRITE_MODES[mode]
    root, parts = _parts_inside(root, path)
    folder = _open_folders(root, parts[:-1], path)
    try:
        fd = os.open(parts[-1], flags | os.O_CREAT | _NOFOLLOW, 0o666, dir_fd=folder)
    except OSError as exc:
        raise _link_error(root, path, exc) from None
    finally:
        os.close(folder)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        os.close(fd)
        kind = "a hard link to a file elsewhere" if stat.S_ISREG(info.st_mode) else "not a regular file"
        raise ConfigError(f"`out` = {str(root)!r} holds {str(path)!r}, {kind}; lensllm-nb never writes through "
                          "links: remove it or choose another --out")
    if empty:
        os.ftruncate(fd, 0)
    return os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": encoding}))


def write_inside(root, path, text) -> Path:
    """Write ``text`` (str or bytes) to ``path`` inside ``root`` with `open_inside`; return the path."""
    with open_inside(root, path, "wb" if isinstance(text, bytes) else "w") as handle:
        handle.write(text)
    root, parts = _parts_inside(root, path)
    return root.joinpath(*parts)


def _parts_inside(root, path):
    """The absolute `root` and the components of `path` below it (checked lexically: no link is resolved)."""
    root = Path(os.path.abspath(Path(root).expanduser()))
    path = Path(path)
    relative = path.relative_to(root) if path.is_absolute() and path.is_relative_to(root) else path
    parts = relative.parts
    if relative.is_absolute() or not parts or any(part in ("..", ".") for part in parts):
        raise ConfigError(f"output name {str(path)!r} would write outside `out` ({root}); "
                          "use a plain name without '/' or '..'")
    return root, parts


def _open_folders(root, parts, path) -> int:
    """Open (creating) the folders `parts` below `root` one by one without following links; return an fd."""
    root.mkdir(parents=True, exist_ok=True)  # `root` itself is the caller's choice
    folder = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        for part in parts:
            try:
                os.mkdir(part, 0o777, dir_fd=folder)
            except FileExistsError:
                pass
            inner = os.open(part, _FOLDER_FLAGS, dir_fd=folder)
            os.close(folder)
            folder = inner
    except OSError as exc:
        os.close(folder)
        raise _link_error(root, path, exc) from None
    return folder


def _link_error(root, path, exc) -> Exception:
    """A `ConfigError` for a link met on the way; other OS errors unchanged (unwritable, disk full)."""
    import errno

    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EISDIR):
        return ConfigError(f"`out` = {str(root)!r}: {str(path)!r} passes through a symbolic link or a non-folder; "
                           "lensllm-nb never writes through links: remove it or choose another --out")
    return exc
